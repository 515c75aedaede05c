"""The training loop, piece by piece: optimizer, schedule, clipping, checkpoints, and the loop itself.

Chapter 03 (pretrain.py) trains a base model with it; chapter 04 (SFT) reuses it unchanged with another
batch source and a loss mask. Read top to bottom:

    AdamW, param_groups, make_optimizer   our AdamW (decoupled weight decay) and which tensors decay
    lr_at                                 linear warmup, then cosine decay to min_lr
    clip_grad_norm                        scale all gradients so their global L2 norm is <= max_norm
    pick_device, resolve_precision,       cuda > mps > cpu; bf16 autocast on GPU (fp16 + GradScaler
    autocast, setup_ddp                   where bf16 is absent); DDP under torchrun
    save_checkpoint, load_checkpoint,     atomic writes; a clear error for another model's checkpoint;
    resume_from                           restore model, optimizer and every process's RNGs
    TrainConfig, estimate_loss, train     the loop: accumulate, clip, step, log, evaluate, sample, save
    plot_metrics                          metrics.jsonl -> loss.png

The batch source is any callable `get_batch(split, generator)` returning `(x, y)` or `(x, y, doc_ids)`:
x, y are (B, T) int64 token ids with y[:, t] the token after x[:, t], and y = -1 where the loss is masked;
doc_ids (B, T) marks packed documents. `generator` is a torch.Generator the loop seeds for every
micro-batch from (seed, micro-batch index), so the data a step sees depends only on the step: an
interrupted run resumes onto exactly the same batches, and N processes under DDP together draw exactly
the micro-batches that one process would draw alone.

The model is any nn.Module whose forward(x, targets, doc_ids=None) returns (logits, loss) and that has a
dataclass `.config` (chapter 02's GPT). `.flops_per_token()`, if present, feeds the MFU figure.
"""
import contextlib
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn


# ----------------------------------------------------------------------------------------------------
# AdamW


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization").

    For every parameter θ with gradient g, at step t = 1, 2, 3, ...:

        m ← β1·m + (1 − β1)·g                      running mean of the gradient (first moment)
        v ← β2·v + (1 − β2)·g²                     running mean of its square (second moment)
        m̂ = m / (1 − β1^t),   v̂ = v / (1 − β2^t)   bias correction: m and v start at 0
        θ ← θ − lr·λ·θ                             weight decay, decoupled from the gradient
        θ ← θ − lr · m̂ / (√v̂ + ε)                  the Adam step: about lr per coordinate

    "Decoupled" means λ·θ is not added to g (that would be L2 regularisation, which Adam rescales by
    1/√v̂ and so weakens exactly for the weights with large gradients); it shrinks θ directly.
    State per parameter: "step" (int), "exp_avg" (m), "exp_avg_sq" (v), each m and v shaped like θ.
    torch.optim.AdamW computes the same thing; tests/test_03_pretrain.py checks it over 1000 steps.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"AdamW: need lr, eps, weight_decay >= 0 and 0 <= betas < 1; got "
                             f"lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2) = group["lr"], group["betas"]
            eps, weight_decay = group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:  # first step for this parameter: the moments start at zero
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grad, 1 - beta1)  # m + (1 − β1)(g − m) = β1·m + (1 − β1)·g
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if weight_decay:
                    param.mul_(1 - lr * weight_decay)
                bias_correction1 = 1 - beta1**t
                bias_correction2 = 1 - beta2**t
                # √v̂ + ε = √v / √(1 − β2^t) + ε; the 1/(1 − β1^t) of m̂ goes into the step size
                denom = v.sqrt().div_(math.sqrt(bias_correction2)).add_(eps)
                param.addcdiv_(m, denom, value=-lr / bias_correction1)
        return loss


def param_groups(model, weight_decay):
    """Split the trainable parameters into [decayed, not decayed] optimizer groups.

    Only the weight matrices of nn.Linear layers decay. Biases, norm gains and embeddings do not:
    shrinking a norm's gain or a bias toward 0 is not a sensible prior, and an embedding row only
    gets gradient when its token appears, so decay would wipe out rare tokens. A matrix shared by an
    embedding and the output layer (tied weights) counts as an embedding. Shared tensors appear once.
    """
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    linear_weight_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    decay, no_decay = [], []
    for param in model.parameters():  # yields each shared (tied) tensor once
        if not param.requires_grad:
            continue
        if id(param) in linear_weight_ids and id(param) not in embedding_ids:
            decay.append(param)
        else:
            no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model, lr, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, kind="ours"):
    """Our AdamW (kind="ours"), or torch's fused AdamW (kind="torch", the fast path), over param_groups."""
    groups = param_groups(model, weight_decay)
    if kind == "ours":
        return AdamW(groups, lr=lr, betas=betas, eps=eps)
    if kind == "torch":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    raise ValueError(f"unknown optimizer {kind!r}: use 'ours' or 'torch'")


# ----------------------------------------------------------------------------------------------------
# learning-rate schedule and gradient clipping


def lr_at(step, max_lr, min_lr, warmup_steps, decay_end):
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine decay to min_lr.

        step < warmup_steps:               lr = max_lr · (step + 1) / warmup_steps
        warmup_steps <= step < decay_end:  p = (step − warmup_steps) / (decay_end − warmup_steps)
                                           lr = min_lr + ½ · (1 + cos(π·p)) · (max_lr − min_lr)
        step >= decay_end:                 lr = min_lr

    decay_end is an absolute step (usually the last step of the run), not a count after warmup.
    Example: max_lr=1, min_lr=0.1, warmup_steps=10, decay_end=110 gives 0.1 at step 0, 1.0 at steps 9
    and 10, 0.55 at step 60 (halfway down the cosine), 0.1 from step 110 on.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= decay_end:
        return min_lr
    progress = (step - warmup_steps) / (decay_end - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


@torch.no_grad()
def clip_grad_norm(params, max_norm, eps=1e-6):
    """Scale every gradient by min(1, max_norm / (‖g‖ + eps)), where ‖g‖ = √(Σ over all params of Σ g²).

    One norm over all parameters together (the "global" L2 norm), so the update keeps its direction
    and only its length is capped. Parameters without a gradient are skipped. Returns ‖g‖ before
    clipping (a 0-dim tensor), the number the progress line shows as "grad". Same as
    torch.nn.utils.clip_grad_norm_(params, max_norm).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # ‖g‖ = ‖(‖g_1‖, ‖g_2‖, ...)‖: the norm of the per-parameter norms, in fp32
    total_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]))
    scale = torch.clamp(max_norm / (total_norm + eps), max=1.0)  # a tensor: no GPU->CPU sync here
    for g in grads:
        g.mul_(scale)
    return total_norm


# ----------------------------------------------------------------------------------------------------
# device, mixed precision, data parallel


def pick_device(requested=None):
    """'cuda' if a GPU is there, else 'mps' (Apple), else 'cpu'; `requested` overrides, with a clear error."""
    if requested:
        kind = requested.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"--device {requested}: no CUDA GPU is visible to torch here; use --device cpu")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise SystemExit(f"--device {requested}: MPS is not available here; use --device cpu")
        if kind not in ("cuda", "mps", "cpu"):
            raise SystemExit(f"--device {requested}: unknown device; use cuda, mps or cpu")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(precision, device_type):
    """'auto' -> 'bf16' on a GPU that has it, 'fp16' on an older GPU, 'fp32' elsewhere; checks the rest.

    bf16 keeps fp32's exponent range, so it needs no loss scaling; fp16 does (a GradScaler).
    On this project's 2-core CPU, bf16 autocast pays off only from about 10M parameters upward.
    """
    if precision == "auto":
        if device_type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise SystemExit(f"--precision {precision}: use auto, fp32, bf16 or fp16")
    if precision == "fp16" and device_type != "cuda":
        raise SystemExit("--precision fp16 needs a CUDA GPU (it relies on a GradScaler); use bf16 or fp32")
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SystemExit("--precision bf16: this GPU has no bf16; use fp16 (or auto)")
    return precision


def autocast(device_type, precision):
    """Mixed precision: matmuls in bf16/fp16, reductions and the weights in fp32 ('fp32': no-op)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


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
# checkpoints


def save_checkpoint(path, checkpoint):
    """torch.save to `path` atomically: write a temp file in the same folder, then os.replace it.

    os.replace is atomic on POSIX and Windows, so `path` is always either the old complete checkpoint
    or the new complete one, never half a file, even if the run is killed while saving.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp_path, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def model_config_dict(model):
    """The model's config as a plain dict (for the checkpoint), or None if it has no dataclass config."""
    config = getattr(model, "config", None)
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None


def load_checkpoint(path, model=None):
    """Load a checkpoint written by save_checkpoint; if `model` is given, check its config and load it.

    A checkpoint made for another model config (another width, depth, vocab, ...) gets a clear error
    naming the fields that differ, instead of torch's "size mismatch for transformer.h.0...".
    """
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"no checkpoint at {path}: train first, or point --out-dir/--resume at a run folder")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if model is not None:
        saved, current = checkpoint.get("model_config"), model_config_dict(model)
        if saved is not None and current is not None and saved != current:
            diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
                     for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
            raise ValueError(f"checkpoint {path} was saved from a different model config ("
                             + "; ".join(diffs) + "). Use the same model settings as that run, "
                             "or start a fresh run in another --out-dir.")
        try:
            model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise ValueError(f"checkpoint {path} does not fit this model (different architecture?): "
                             f"{str(error).splitlines()[0]}. Start a fresh run in another --out-dir.") from None
    return checkpoint


def rng_states():
    """Every random number generator the loop touches, in a form torch.load(weights_only=True) accepts."""
    numpy_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ----------------------------------------------------------------------------------------------------
# the loop

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


@dataclass
class TrainConfig:
    """Settings of one training run (saved in the checkpoint). Defaults: nanoGPT's Shakespeare recipe."""
    steps: int = 2000            # optimizer steps the run (and its schedule) is planned for
    batch_size: int = 12         # sequences per micro-batch, per process
    grad_accum: int = 1          # micro-batches per optimizer step for the WHOLE job; DDP divides it
    lr: float = 1e-3             # peak learning rate
    min_lr: float = 1e-4         # the cosine ends here
    warmup_steps: int = 100
    decay_end: int | None = None  # absolute step where the cosine reaches min_lr (None: = steps)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 1.0       # max global gradient L2 norm (0: no clipping)
    optimizer: str = "ours"      # "ours" | "torch" (torch's fused AdamW)
    precision: str = "auto"      # "auto" | "fp32" | "bf16" | "fp16"
    compile: bool = False        # torch.compile the model
    device: str | None = None    # None: cuda > mps > cpu
    seed: int = 1337
    eval_interval: int = 250     # steps between validation-loss estimates (and checkpoints)
    eval_batches: int = 20       # micro-batches per split per estimate (the same batches every time)
    log_interval: int = 10       # steps between progress lines
    sample_interval: int = 0     # steps between sample generations (0: only at the end)
    out_dir: str = "runs/03_pretrain"
    stop_at: int | None = None   # stop early at this step, as if interrupted (checkpoint saved)
    peak_flops: float | None = None  # FLOP/s of one device for MFU (None: from PEAK_FLOPS on a GPU)


def batch_seed(seed, split, index):
    """The seed of micro-batch `index` of `split`: a pure function, so any process can draw any batch."""
    return (seed * 1_000_003 + index * 2 + (split == "val")) % (2**63)


def draw_batch(get_batch, split, generator, seed, index, device):
    """Seed `generator` for micro-batch `index`, call get_batch, move the tensors to `device`."""
    generator.manual_seed(batch_seed(seed, split, index))
    batch = get_batch(split, generator)
    if len(batch) not in (2, 3):
        raise ValueError("get_batch(split, generator) must return (x, y) or (x, y, doc_ids)")
    non_blocking = str(device).startswith("cuda")
    return [t.to(device, non_blocking=non_blocking) for t in batch]


def forward_loss(model, batch):
    """The model's mean cross-entropy on one batch (x, y) or (x, y, doc_ids); y = -1 is ignored."""
    if len(batch) == 3:
        x, y, doc_ids = batch
        _, loss = model(x, y, doc_ids=doc_ids)
    else:
        x, y = batch
        _, loss = model(x, y)
    return loss


@torch.no_grad()
def estimate_loss(model, get_batch, n_batches, device, precision="fp32", seed=0, splits=("train", "val")):
    """Mean loss over the same `n_batches` micro-batches of each split every time it is called.

    Fixed batches make successive estimates comparable (the curve moves because the model changed,
    not because the batches did). The batch generator is private, so this never shifts training data.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator()
    losses = {}
    for split in splits:
        total = 0.0
        for i in range(n_batches):
            batch = draw_batch(get_batch, split, generator, seed + 7919, i, device)
            with autocast(torch.device(device).type, precision):
                total += forward_loss(model, batch).item()
        losses[split] = total / n_batches
    model.train(was_training)
    return losses


def resume_from(ckpt_path, model, optimizer, scaler, rank=0, world_size=1, log=print):
    """Load a checkpoint into the model, optimizer and grad scaler, and give this process the RNG states
    it had when the checkpoint was written; returns the checkpoint dict.

    checkpoint["rng"] holds one entry per process of the run that wrote it. Resumed with another number
    of processes, the RNGs keep their fresh seeds: only dropout draws from them (the batches are drawn by
    index), so training goes on correctly, just not bit for bit as the uninterrupted run would have."""
    checkpoint = load_checkpoint(ckpt_path, model)  # a clear error if the model config differs
    optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(checkpoint["scaler"])
    if len(checkpoint["rng"]) == world_size:
        set_rng_states(checkpoint["rng"][rank])
    else:
        log(f"the checkpoint was written by {len(checkpoint['rng'])} process(es), this run has {world_size}: "
            f"same batches, but fresh RNG seeds (other dropout masks than an uninterrupted run)")
    return checkpoint


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def train(model, get_batch, config, make_sample=None, resume=False, checkpoint_extra=None, quiet=False):
    """Train `model` on batches from `get_batch` for config.steps optimizer steps; returns a summary dict.

    One optimizer step (the global batch = batch_size × grad_accum sequences, across all processes):
        for each of the grad_accum / world_size micro-batches of this process:
            loss = model(x, y) / micro-batches;  loss.backward()      # gradients add up
        (DDP averages the gradients over processes during the last backward)
        ‖g‖ = clip_grad_norm(max_norm=grad_clip);  lr = lr_at(step);  optimizer.step()

    make_sample(model) -> str      optional: text written to sample.txt at sample_interval and the end
    resume=True                    continue from out_dir/ckpt.pt if it exists (same model config)
    checkpoint_extra               dict stored in every checkpoint (e.g. {"tokenizer": path, "data": ...})

    Writes under config.out_dir: ckpt.pt (at every eval and at the end), metrics.jsonl (one JSON record
    per log line and per evaluation), loss.png, sample.txt. Under torchrun only rank 0 writes or prints.
    """
    if min(config.steps, config.batch_size, config.grad_accum, config.eval_interval, config.log_interval) < 1:
        raise ValueError("steps, batch_size, grad_accum, eval_interval and log_interval must be at least 1")
    rank, world_size = ddp_info()
    master = rank == 0
    log = (lambda *a, **k: None) if (quiet or not master) else (lambda *a, **k: print(*a, **k, flush=True))
    if config.grad_accum % world_size:
        raise SystemExit(f"grad_accum={config.grad_accum} must be a multiple of the number of processes "
                         f"({world_size}) so the global batch stays the same: pass --grad-accum "
                         f"{max(world_size, config.grad_accum // world_size * world_size)}")
    accum_local = config.grad_accum // world_size

    device = pick_device(config.device)
    if world_size > 1 and device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    device_type = torch.device(device).type
    precision = resolve_precision(config.precision, device_type)
    out_dir = Path(config.out_dir)
    ckpt_path, metrics_path = out_dir / "ckpt.pt", out_dir / "metrics.jsonl"
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed + rank)  # dropout differs per process; the data is drawn by index
    model.to(device)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2),
                               config.eps, config.optimizer)
    scaler = torch.amp.GradScaler(device_type, enabled=(precision == "fp16"))
    generator = torch.Generator()  # the batch-sampling generator, re-seeded for every micro-batch
    step, tokens_done = 0, 0
    if resume and ckpt_path.exists():
        checkpoint = resume_from(ckpt_path, model, optimizer, scaler, rank, world_size, log)
        step, tokens_done = checkpoint["step"], checkpoint["data_position"]["tokens_done"]
        changed = {k: (v, getattr(config, k)) for k, v in checkpoint["train_config"].items()
                   if k not in ("stop_at", "device", "out_dir") and getattr(config, k, v) != v}
        log(f"resuming from {ckpt_path} at step {step}"
            + (f" (settings changed since: {changed})" if changed else ""))
        if master and metrics_path.exists():  # drop records logged after that checkpoint
            kept = [line for line in metrics_path.read_text().splitlines() if json.loads(line)["step"] <= step]
            metrics_path.write_text("".join(line + "\n" for line in kept))
    else:
        if resume:
            log(f"no checkpoint at {ckpt_path} yet: starting from step 0")
        if master and metrics_path.exists():
            metrics_path.unlink()  # a fresh run starts a fresh log

    raw_model = model  # the plain module: what we save, evaluate on and sample from
    compiled_model = torch.compile(raw_model) if config.compile else raw_model
    model = compiled_model  # what the training step calls
    if world_size > 1:
        device_ids = [torch.device(device).index] if device_type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(compiled_model, device_ids=device_ids)

    decay_end = config.decay_end if config.decay_end is not None else config.steps
    stop = min(config.steps, config.stop_at) if config.stop_at is not None else config.steps
    flops_per_token = training_flops_per_token(raw_model)
    peak_flops = config.peak_flops or peak_flops_of(device)
    def record(entry):  # one JSON line per record, appended (and on disk) at once
        if master:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def checkpoint_now():
        rng = [rng_states()]  # this process's RNGs; under DDP, rank 0 saves every rank's (dropout differs)
        if world_size > 1:
            gathered = [None] * world_size
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if not master:
            return
        save_checkpoint(ckpt_path, {
            "model": raw_model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "step": step,
            "rng": rng,  # one entry per process
            "data_position": {"micro_batches_done": step * config.grad_accum, "tokens_done": tokens_done},
            "model_config": model_config_dict(raw_model),
            "train_config": dataclasses.asdict(config),
            **(checkpoint_extra or {}),
        })

    def evaluate_and_sample(final=False):
        nonlocal last_eval, eval_seconds
        if not master:
            return
        eval_start = time.time()
        losses = estimate_loss(compiled_model, get_batch, config.eval_batches, device, precision, config.seed)
        last_eval = losses
        record({"step": step, "kind": "eval", "train_loss": losses["train"], "val_loss": losses["val"],
                "tokens": tokens_done})
        log(f"step {step}: eval train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
            f"(perplexity {math.exp(min(losses['val'], 50)):.2f})")
        if make_sample and (final or (config.sample_interval and step % config.sample_interval == 0)):
            raw_model.eval()
            # sampling draws random numbers: fork the RNG so the training run never sees it
            with torch.random.fork_rng(devices=[device] if device_type == "cuda" else []):
                text = make_sample(raw_model)
            raw_model.train()
            with open(out_dir / "sample.txt", "a") as f:
                f.write(f"===== step {step} =====\n{text}\n\n")
            log(f"sample at step {step}:\n{text}\n")
        eval_seconds += time.time() - eval_start

    tokens_per_step = None
    last_eval, last_loss, eval_seconds, tokens_at_start = {}, float("nan"), 0.0, tokens_done
    log(f"training on {device} ({precision}, {world_size} process{'es' if world_size > 1 else ''}), "
        f"steps {step} -> {stop} of {config.steps}, global batch {config.batch_size} x {config.grad_accum} "
        f"sequences, optimizer {config.optimizer}, out {out_dir}")
    log(f"MFU against a peak of {peak_flops:.3g} FLOP/s per device" if peak_flops else
        f"no MFU: no peak FLOP/s known for {device} (on a CPU it is not a meaningful figure; --peak-flops sets one)")
    start_step, t_start = step, time.time()
    if step == 0:
        evaluate_and_sample()
    model.train()
    loss_sum = torch.zeros((), device=device)  # training loss summed since the last progress line
    t_last, steps_since_log, step_time = time.time(), 0, None
    try:
        while step < stop:
            lr = lr_at(step, config.lr, config.min_lr, config.warmup_steps, decay_end)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for micro in range(accum_local):
                # micro-batch index in the whole job: each process takes every world_size-th one
                index = step * config.grad_accum + micro * world_size + rank
                batch = draw_batch(get_batch, "train", generator, config.seed, index, device)
                if tokens_per_step is None:
                    tokens_per_step = batch[0].numel() * config.grad_accum
                # under DDP, all-reduce the gradients only once, in the last micro-batch's backward
                sync = world_size == 1 or micro == accum_local - 1
                with contextlib.nullcontext() if sync else model.no_sync():
                    with autocast(device_type, precision):
                        loss = forward_loss(model, batch) / accum_local
                    scaler.scale(loss).backward()
                loss_sum += loss.detach()
            scaler.unscale_(optimizer)  # (no-op unless fp16) so clipping sees the true gradients
            grad_norm = clip_grad_norm(raw_model.parameters(), config.grad_clip or float("inf"))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_since_log += 1
            tokens_done += tokens_per_step

            if step % config.log_interval == 0 or step == stop:
                if world_size > 1:
                    dist.all_reduce(loss_sum)
                    loss_sum /= world_size
                last_loss = loss_sum.item() / steps_since_log  # .item() waits for the GPU: only here
                now = time.time()
                dt = (now - t_last) / steps_since_log
                step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt  # smoothed, for the ETA
                tokens_per_sec = tokens_per_step / dt
                mfu = tokens_per_sec * flops_per_token / (peak_flops * world_size) if peak_flops else None
                entry = {"step": step, "kind": "train", "loss": last_loss, "lr": lr,
                         "grad_norm": grad_norm.item(), "tokens": tokens_done, "tokens_per_sec": tokens_per_sec,
                         "ms_per_step": 1000 * dt, "mfu": mfu, "time": now - t_start}
                record(entry)
                log(f"step {step:>6}/{config.steps} | loss {last_loss:.4f} | lr {lr:.2e} | "
                    f"grad {entry['grad_norm']:.3f} | {tokens_per_sec / 1000:7.1f}k tok/s | "
                    + (f"MFU {100 * mfu:5.1f}% | " if mfu is not None else "")
                    + f"{1000 * dt:6.1f} ms/step | ETA {format_duration(step_time * (stop - step))}")
                loss_sum.zero_()
                t_last, steps_since_log = time.time(), 0

            if step % config.eval_interval == 0 or step == stop:
                pause_start = time.time()
                checkpoint_now()  # before eval and sampling, so their work never enters the saved state
                evaluate_and_sample(final=step == stop)
                t_last += time.time() - pause_start  # do not count evaluation time as training time
    except KeyboardInterrupt:
        log(f"\ninterrupted at step {step}; the last checkpoint is {ckpt_path} "
            f"(rerun with --resume to continue from it)")
        raise

    if master and not last_eval:  # nothing left to train (the checkpoint was at the end already)
        log(f"the run is already at step {step} of {config.steps}: pass a larger steps to train further")
        evaluate_and_sample(final=True)
    if master:
        plot_metrics(metrics_path, out_dir / "loss.png")
    if world_size > 1:
        # leave together: a process that tears down its process group while rank 0 is still evaluating
        # and plotting can abort in gloo's teardown ("terminate called without an active exception")
        dist.barrier()
    wall = time.time() - t_start
    train_seconds = wall - eval_seconds
    return {"step": step, "train_loss": last_eval.get("train"), "val_loss": last_eval.get("val"),
            "last_loss": last_loss, "tokens": tokens_done, "wall_seconds": wall, "eval_seconds": eval_seconds,
            "tokens_per_sec": (tokens_done - tokens_at_start) / train_seconds if train_seconds > 0 else None,
            "ms_per_step": 1000 * train_seconds / max(1, step - start_step), "device": device,
            "precision": precision, "out_dir": str(out_dir)}


# ----------------------------------------------------------------------------------------------------
# plot


def read_metrics(path):
    """metrics.jsonl -> list of dicts (the last record wins when a step was logged twice)."""
    records = {}
    for line in Path(path).read_text().splitlines():
        entry = json.loads(line)
        records[(entry["kind"], entry["step"])] = entry
    return sorted(records.values(), key=lambda e: e["step"])


def plot_metrics(metrics_path, png_path, title=None):
    """Draw loss.png: training loss (per log line) and validation loss against step, and the lr."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [e for e in records if e["kind"] == "train"]
    evals = [e for e in records if e["kind"] == "eval"]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    if train:
        ax_loss.plot([e["step"] for e in train], [e["loss"] for e in train], lw=1, alpha=0.8,
                     label="train (mean over log interval)")
        ax_lr.plot([e["step"] for e in train], [e["lr"] for e in train])
    if evals:
        ax_loss.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-", label="val")
    ax_loss.set(xlabel="step", ylabel="cross-entropy (nats/token)", title=title or str(Path(metrics_path).parent))
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    ax_lr.set(xlabel="step", ylabel="learning rate", title="schedule")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
