"""The machine a run trains on: which device, which precision, how many processes, how fast the chip is.

    pick_device          cuda > mps > cpu, or the one asked for (ValueError if it is not there)
    resolve_precision    'auto' -> bf16 on a GPU that has it, fp16 on an older one, fp32 elsewhere
    cpu_preset_precision a preset's bf16 on a CPU without bf16 instructions becomes fp32 (with a note)
    autocast             the mixed-precision context for one forward pass
    compile_problem      why torch.compile cannot work here (no C compiler, ...), or None
    resolve_compile      compile or not: a preset's compile falls back with a note, an asked-for one refuses
    setup_ddp, ddp_info  data parallel under torchrun: join the process group; this process's rank
    peak_flops_of, training_flops_per_token    the two numbers of MFU (model FLOPs utilisation)
"""
import contextlib
import os
from pathlib import Path

import torch
import torch.distributed as dist


# ----------------------------------------------------------------------------------------------------
# device, mixed precision, data parallel


def pick_device(requested=None):
    """'cuda' if a GPU is there, else 'mps' (Apple), else 'cpu'; `requested` overrides, with a clear error."""
    if requested:
        kind = requested.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: no CUDA GPU is visible to torch here; use --device cpu")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {requested}: MPS is not available here; use --device cpu")
        if kind not in ("cuda", "mps", "cpu"):
            raise ValueError(f"--device {requested}: unknown device; use cuda, mps or cpu")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_fast_bf16():
    """True if this CPU has bf16 instructions (Linux: avx512_bf16 or amx_bf16 in /proc/cpuinfo).

    Without them bf16 autocast is emulated and several times slower than fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_preset_precision(precision, device, asked):
    """(precision, note): a preset's bf16 on a CPU without bf16 instructions becomes fp32, which is faster there.

    `asked` is True when --precision was typed: then the user's choice stands, whatever the CPU.
    The tiny presets use bf16 because on a CPU with bf16 instructions it is ~1.5x faster than fp32.
    """
    if precision == "bf16" and not asked and device.split(":")[0] == "cpu" and not cpu_has_fast_bf16():
        return "fp32", "this CPU has no bf16 instructions, so fp32 is faster here than the preset's bf16: using fp32"
    return precision, None


def resolve_precision(precision, device_type):
    """'auto' -> 'bf16' on a GPU that has it, 'fp16' on an older GPU, 'fp32' elsewhere; checks the rest.

    bf16 keeps fp32's exponent range, so it needs no loss scaling; fp16 does (a GradScaler, which torch
    has for the CPU too: GradScaler("cpu")). fp16 is for GPUs without bf16 (a T4); on a CPU it is allowed
    so that a T4 run can be rehearsed, but it is slower than fp32 there (a forward + backward at the tiny
    preset's size, 1 thread: fp16 1.27x fp32's time, bf16 0.67x, on a CPU with avx512_fp16), so 'auto'
    never picks it. MPS: fp16 with loss scaling is untried, so it is refused.
    """
    if precision == "auto":
        if device_type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"--precision {precision}: use auto, fp32, bf16 or fp16")
    if precision == "fp16" and device_type not in ("cuda", "cpu"):
        raise ValueError(f"--precision fp16 on {device_type}: its loss scaling (GradScaler) is untried there; "
                         f"use bf16 or fp32")
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("--precision bf16: this GPU has no bf16; use fp16 (or auto)")
    return precision


def autocast(device_type, precision):
    """Mixed precision: matmuls in bf16/fp16, reductions and the weights in fp32 ('fp32': no-op)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


def compile_problem(device_type):
    """None if torch.compile (its default backend, inductor) can work on `device_type` here, else one line
    saying why and what to do. Cheap checks of what inductor needs, made before any work is done:

        a Python that torch's compiler supports (torch.compile lags new Python releases);
        on a CPU, a C++ compiler (inductor writes C++ kernels and builds them with g++ / clang++ / cl)
            and Python's C headers (the kernels are loaded as Python extensions: Python.h);
        on a CUDA GPU, Triton (inductor's GPU kernels) and a C compiler (Triton builds its launcher with it).
    """
    import shutil
    import sysconfig
    try:
        from torch._dynamo.eval_frame import check_if_dynamo_supported
        check_if_dynamo_supported()
    except ImportError:
        return "this torch has no torch.compile (torch._dynamo is missing): upgrade torch"
    except RuntimeError as error:
        return f"torch.compile does not support this Python here ({error})"
    if device_type == "cpu":
        try:
            from torch._inductor import cpp_builder
            cpp_builder.get_cpp_compiler()
        except ImportError:
            return "this torch has no inductor (torch._inductor is missing): upgrade torch"
        except Exception:  # noqa: BLE001  (inductor's InvalidCxxCompiler, or a compiler that does not run)
            return ("no C++ compiler found, and inductor builds its CPU kernels with one: install g++ or clang++, "
                    "or point the CXX environment variable at one")
        if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
            return "Python's C headers (Python.h) are missing, and inductor needs them: install python3-dev"
    if device_type == "cuda":
        from torch.utils._triton import has_triton
        if not has_triton():
            return "Triton is missing, and inductor's GPU kernels need it: pip install triton"
        if not any(shutil.which(cc) for cc in (os.environ.get("CC") or "gcc", "clang", "cc")):
            return "no C compiler found, and Triton builds its kernel launcher with one: install gcc"
    return None


def resolve_compile(compile, device_type, asked):
    """(compile, note): whether to torch.compile the model, and a line to print when we do not.

    compile   the run's setting (a preset's, or the flag's); asked: True if --compile was on the command line.
    Where compile cannot work (compile_problem), a preset's setting falls back to eager mode with a note:
    compile changes the speed, not the results. A --compile the user typed is refused with a RuntimeError
    instead, so that a run they expect to be compiled (and sized by that speed) is not silently slower.
    """
    problem = compile_problem(device_type) if compile else None
    if problem is None:
        return bool(compile), None
    if asked:
        raise RuntimeError(f"--compile: torch.compile cannot work here: {problem}; or pass --no-compile")
    return False, f"torch.compile is unavailable here, so this run trains without it (same results, slower): {problem}"


def setup_ddp():
    """Join the process group when launched by torchrun; returns (rank, local_rank, world_size).

    torchrun starts one process per GPU (or per CPU worker) and sets RANK, LOCAL_RANK and WORLD_SIZE.
    Backend: NCCL between GPUs, gloo on CPU. Without torchrun this returns (0, 0, 1) and does nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 0, 1
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if not dist.is_initialized():
        use_gpu = torch.cuda.is_available() and os.environ.get("BYTES2CHAT_DDP_BACKEND") != "gloo"
        if use_gpu:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_gpu else "gloo")
    return rank, local_rank, world_size


def ddp_info():
    """(rank, world_size) of this process: (0, 1) unless a process group is up."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1



# ----------------------------------------------------------------------------------------------------
# MFU: how much of the chip's peak the training uses

# Peak dense bf16 tensor FLOP/s of one GPU, from the vendors' data sheets (no sparsity). MFU (model FLOPs
# utilisation) = FLOP/s the training actually does / this peak. First matching name wins; --peak-flops
# sets it for anything else (on a CPU MFU is not meaningful: we print tokens/s only).
PEAK_FLOPS = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
              ("A100", 312e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12), ("A10", 125e12),
              ("V100", 125e12)]  # a longer name before its prefix: "L40" must not match "L4"


def peak_flops_of(device):
    if not str(device).startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((flops for key, flops in PEAK_FLOPS if key in name), None)


def training_flops_per_token(model):
    """FLOPs to train on one token (forward + backward), for MFU.

    Chapter 02's GPT.flops_per_token() gives exactly that (6 N + 12 n_layer C T, at T = block_size);
    for another model, 6 N: 2 FLOPs per weight per token forward, 4 backward.
    """
    if hasattr(model, "flops_per_token"):
        return model.flops_per_token()
    return 6 * sum(p.numel() for p in model.parameters())



def place(requested_device, precision, world_size=1):
    """(device, precision) of this process: under DDP on GPUs, each process its own GPU ('cuda:<local rank>')."""
    device = pick_device(requested_device)
    if world_size > 1 and device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    return device, resolve_precision(precision, torch.device(device).type)
