"""Quantize the chat model every way the lesson describes, and measure what each way costs and saves.

    python 06_quantize/quantize.py --preset tiny             # the default: the tiny chat model, CPU, ~1 minute
    python 06_quantize/quantize.py --ckpt runs/04_sft/ckpt.pt --data-dir runs/03_pretrain
    python 06_quantize/quantize.py --methods rtn4,gptq4 --group-size 64 --act-order
    python 06_quantize/quantize.py --preset gpt2             # GPT-2-small-sized checkpoints, one GPU

The model: --ckpt, by default a chat model of chapter 05 if it has run, else chapter 04's:
the first that exists of runs/05_rlhf/ppo/ckpt.pt, runs/05_rlhf/grpo/ckpt.pt,
runs/05_rlhf/dpo/ckpt.pt, runs/04_sft/ckpt.pt (the script says which it used). The validation tokens
(perplexity) and the calibration tokens (GPTQ, from the TRAINING split only) are chapter 03's
train.bin/val.bin: --data-dir, by default the folder the checkpoint's base model was trained on.

Methods (one row each): fp32 and bf16 (the references); int8 of weights AND activations: absmax per
tensor, zero-point per tensor, row-wise, vector-wise, LLM.int8() (threshold 6); weight-only RTN and GPTQ
at 4 and 3 bits, per row and per group of --group-size columns.

Outputs, in --out-dir (default runs/06_quantize/):
    <stage>/ckpt.pt (+ tokenizer)   every quantized model but fp32 (the source is fp32): bf16, int8_absmax,
                                    ..., llm_int8, rtn4, gptq4, rtn4_g64, ..., gptq3_g64
    results.md, results.json        the table, the LLM.int8 threshold sweep, outlier dims per layer
                                    and the int8 rows on injected outliers (outlier_injection.py)
    ppl_vs_bits.png                 perplexity vs stored bits per weight, RTN vs GPTQ
    error_hist.png                  the weight error per layer, RTN-4 vs GPTQ-4
Then chat with one: python 06_quantize/chat_quantized.py --ckpt runs/06_quantize/gptq4/ckpt.pt
"""
import copy
import dataclasses
import json
import re
import shutil
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: script plumbing)
import hardware  # noqa: E402  (chapter 03)
import world  # noqa: E402  (chapter 03: the mini-world, for the held-out prompts)
from chat_format import render_chat  # noqa: E402  (chapter 04)
from model_loader import base_run, load_model  # noqa: E402  (chapter 03: the one loader)
from dataset import TokenDataset  # noqa: E402  (chapter 03)
from grading import evaluate  # noqa: E402  (chapter 04)
from sft_data import EVAL_MIX, world_examples  # noqa: E402  (chapter 04)
from gptq import gptq_model  # noqa: E402  (this chapter)
from quant_checkpoint import save_quantized  # noqa: E402  (registers the "quantized" format with the loader)
from quant_eval import (chat_perplexity, greedy_tokens_per_second, input_absmax_per_dim, outlier_dims_per_layer,  # noqa: E402
                        perplexity, plot_error_histograms, plot_ppl_vs_bits)
from quant_modules import Int8Linear, QuantLinear, linear_names, linear_weight_bytes, swap_linears  # noqa: E402
from quantizers import check_bits, check_group_size, rtn  # noqa: E402
from outlier_injection import outlier_study, write_outlier_study  # noqa: E402
from worker_pool import cpu_seconds, worker_pool  # noqa: E402  (chapter 03: plumbing for speed)

RUNS = REPO / "runs"
DEFAULT_SOURCES = [RUNS / "05_rlhf" / "ppo" / "ckpt.pt",
                   RUNS / "05_rlhf" / "grpo" / "ckpt.pt", RUNS / "05_rlhf" / "dpo" / "ckpt.pt",
                   RUNS / "04_sft" / "ckpt.pt"]
DEFAULT_OUT_DIR = RUNS / "06_quantize"
WORLD_SEED, EVAL_SEED = 0, 1339  # chapter 04's world and its held-out evaluation prompts (sft.py: seed + 2)
EVAL_TASKS = ("fact", "math", "harmful")  # the table's three task columns
# Chat perplexity is measured on held-out conversations whose replies are worded as in training (new
# entities and values, known words). The held-out word problems, stories and requests are worded in
# phrasings training never uses, on purpose (chapter 04 measures generalisation with them): words the
# tokenizer never saw cost 10-19 nats a token, so they would dominate the mean (SFT model: fact 2.4,
# unknown 2.2, code 1.1, but math 911, stories 24,381) and hide what quantization does.
CHAT_PPL_TASKS = ("fact", "unknown", "code")

# Every preset sets every setting; a flag overrides one.
PRESETS = {
    # The tiny chat model (2.2M parameters, context 256) on a 2-core CPU, about a minute. Group size 64:
    # it must divide the Linear input widths, 192 and 768 here (128 does not divide 192). One CPU thread:
    # at this size a second thread gains little, and on a machine shared with other jobs torch's
    # OpenMP threads spin-wait for each other (the lesson's appendix has the figures). Two worker
    # processes instead, one thread each, share out the table's rows (03_pretrain/worker_pool.py).
    "tiny": dict(group_size=64, act_order=False, calib_samples=16, calib_context=256, ppl_batches=4,
                 ppl_batch_size=8, ppl_context=256, eval_per_task=20, max_new_tokens=64, speed_tokens=48,
                 sweep=[8.0, 6.0, 4.0, 2.0, 1.0], plot_bits=[2], device="cpu", threads=1, workers=2),
    # GPT-2 small (124M, context 1024) on one GPU: GPTQ's own settings (128 calibration windows of the
    # context, groups of 128), every held-out prompt.
    "gpt2": dict(group_size=128, act_order=False, calib_samples=128, calib_context=1024, ppl_batches=20,
                 ppl_batch_size=8, ppl_context=1024, eval_per_task=None, max_new_tokens=160, speed_tokens=128,
                 sweep=[8.0, 6.0, 4.0, 3.0, 2.0, 1.0], plot_bits=[8, 2], device=None, threads=None, workers=1),
}
# `pipeline.py --preset small`: the tiny settings (group 64 divides the small model's widths 256 and 1024 too)
PRESETS["small"] = PRESETS["tiny"]
# --dry-run: a preset's model and code paths with tiny work (2 calibration windows, one perplexity window, 2
# prompts per task, the 4-bit rows only, one sweep point), to find a shape, memory or precision error on a CPU
# before a GPU evening does. Flags you pass still override these.
DRY_RUN = dict(calib_samples=2, ppl_batches=1, ppl_batch_size=1, eval_per_task=2, max_new_tokens=8, speed_tokens=8,
               sweep=[6.0], plot_bits=[2], weight_bits=[4])
INT8_METHODS = [("int8_absmax", "absmax"), ("int8_zeropoint", "zeropoint"), ("int8_rowwise", "rowwise"),
                ("int8_vectorwise", "vectorwise"), ("llm_int8", "llm_int8")]
STAGING = ".staging"  # where a run writes until it is complete (publish() moves it into --out-dir)
STAGE_NAME = re.compile(r"fp32|bf16|int8_[a-z]+|llm_int8|(rtn|gptq)[2-8](_g\d+)?")  # the folders a run writes
LLM_INT8_THRESHOLD = 6.0  # bitsandbytes' default, chosen for billion-parameter models


def method_table(group_size, weight_bits=(4, 3)):
    """[(stage, spec)] for every row of the table, in order. spec: family, bits, mode / group size."""
    methods = [("fp32", dict(family="float", bits=32)), ("bf16", dict(family="float", bits=16))]
    methods += [(stage, dict(family="int8", bits=8, mode=mode)) for stage, mode in INT8_METHODS]
    for bits in weight_bits:
        for group in (None, group_size):
            suffix = f"_g{group}" if group else ""
            methods += [(f"rtn{bits}{suffix}", dict(family="RTN", bits=bits, group_size=group)),
                        (f"gptq{bits}{suffix}", dict(family="GPTQ", bits=bits, group_size=group))]
    return methods


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--preset", default="tiny", choices=sorted(PRESETS),
        help="the settings to start from (default: tiny; small: the same as tiny)")
    add("--ckpt", help="the chat model to quantize (default: chapter 05's PPO, GRPO or DPO policy, else runs/04_sft/ckpt.pt)")
    add("--data-dir", help="chapter 03's folder with train.bin/val.bin (default: the one the model was trained on)")
    add("--out-dir", default=str(DEFAULT_OUT_DIR), help=f"where everything goes (default: {DEFAULT_OUT_DIR})")
    add("--overwrite", action="store_true", help="replace an earlier run in --out-dir")
    add("--methods", help="a comma-separated subset of the table's rows, e.g. fp32,rtn4,gptq4 (default: all)")
    add("--bits", help="bit widths of the RTN and GPTQ rows, from 2 to 8, e.g. 8,4,3 (default: 4,3)")
    add("--group-size", type=cli.positive_int, help="columns per scale for the grouped rows (must divide the widths)")
    add("--act-order", action=cli.argparse.BooleanOptionalAction, default=None,
        help="GPTQ: quantize columns in order of decreasing Hessian diagonal")
    add("--calib-samples", type=cli.positive_int, help="GPTQ calibration windows from the training split")
    add("--eval-per-task", type=cli.positive_int, help="held-out prompts per task (world questions, word "
                                                       "problems, harmful requests)")
    add("--max-new-tokens", type=cli.positive_int, help="reply length limit in the task evaluation")
    add("--ppl-batches", type=cli.positive_int, help="validation batches for the perplexity")
    add("--device", help="cuda, mps or cpu (default: the preset's, or the first available)")
    add("--threads", type=cli.positive_int, help="CPU threads for torch (default: the preset's; gpt2: torch's)")
    add("--workers", type=cli.positive_int, help="CPU: processes that build and measure the rows side by side, each "
                                                 "with --threads threads (default: the preset's, at most the CPU count)")
    add("--seed", type=cli.non_negative_int, default=0, help="seed of the calibration windows (default 0)")
    add("--dry-run", action="store_true", help="the preset's model and code paths, tiny work: 2 calibration windows, "
                                               "2 prompts per task, the 4-bit rows (DRY_RUN)")
    return parser.parse_args(argv)


def default_source():
    """The chat model to quantize: chapter 05's if it has run, else chapter 04's (see the docstring)."""
    for path in DEFAULT_SOURCES:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no chat model to quantize: none of {', '.join(str(p) for p in DEFAULT_SOURCES)} "
                            f"exists. Run chapter 04 first (python 04_sft/sft.py --preset tiny) or pass --ckpt PATH")


def data_dir_of(checkpoint):
    """The folder of train.bin/val.bin the model's base was pretrained on (chapter 03's model_loader.base_run
    follows the chain of base/started_from/source checkpoints to it). FileNotFoundError when the chain ends
    without one (pass --data-dir)."""
    base = base_run(checkpoint)
    if base is None:
        raise FileNotFoundError("the checkpoint does not say which pretraining tokens its base model was trained on "
                                "(its chain of base/started_from/source checkpoints ends before chapter 03's): pass "
                                "--data-dir, the folder with chapter 03's train.bin/val.bin (e.g. runs/03_pretrain)")
    return Path(base["data"]["dir"])


def calibration_windows(data, n, context, seed):
    """n random windows (n, context) of the TRAINING split: GPTQ's calibration inputs."""
    x, _ = data.get_batch("train", n, context, torch.Generator().manual_seed(seed))
    return x


@torch.no_grad()
def build(stage, spec, fp32_model, calibration, settings):
    """A quantized copy of fp32_model for one row of the table -> (model, {layer: weight error} or None)."""
    model = copy.deepcopy(fp32_model)
    family = spec["family"]
    if stage == "fp32":
        return model, None
    if stage == "bf16":
        return model.to(torch.bfloat16), None
    if family == "int8":
        threshold = LLM_INT8_THRESHOLD
        return swap_linears(model, lambda name, linear: Int8Linear.from_linear(linear, spec["mode"], threshold)), None
    bits, group = spec["bits"], spec["group_size"]
    if family == "RTN":
        errors = {name: rtn(linear.weight, bits, group) - linear.weight.float()
                  for name, linear in _linears(model)}
        return swap_linears(model, lambda name, linear: QuantLinear.from_linear(linear, bits, group)), errors
    if family == "GPTQ":
        originals = {name: linear.weight.detach().float().clone() for name, linear in _linears(model)}
        results = gptq_model(model, calibration, bits, group, settings["act_order"])
        errors = {name: results[name]["weight"] - originals[name] for name in results}
        return swap_linears(model, lambda name, linear: QuantLinear.from_result(
            linear, results[name]["codes"], results[name]["scale"], results[name]["zero"], bits, group,
            results[name]["perm"])), errors
    raise ValueError(f"unknown method {stage!r}")


def _linears(model):
    return [(name, model.get_submodule(name)) for name in linear_names(model)]


def measure(model, tokenizer, data, examples, chats, settings, device):
    """Perplexity (of pretraining text and of the `chats`), the three task scores, greedy tokens/s of one model."""
    ppl = perplexity(model, data, settings["ppl_batches"], settings["ppl_batch_size"], settings["ppl_context"], device)
    chat_ppl = chat_perplexity(model, tokenizer, chats)
    scores = evaluate(model, tokenizer, examples, settings["max_new_tokens"]) if examples else {"metrics": {}}
    prompt, _ = render_chat(examples[0]["messages"][:-1], tokenizer, add_generation_prompt=True)
    speed = greedy_tokens_per_second(model, prompt, settings["speed_tokens"])
    return {"perplexity": ppl, "chat_perplexity": chat_ppl, "fact_accuracy": scores["metrics"].get("fact_accuracy"),
            "math_accuracy": scores["metrics"].get("math_accuracy"),
            "harmful_refusal": scores["metrics"].get("harmful_refusal"), "tokens_per_s": speed}


def resolve_settings(args):
    settings = {**PRESETS[args.preset], "weight_bits": [4, 3], **(DRY_RUN if args.dry_run else {})}
    for key in ("group_size", "act_order", "calib_samples", "eval_per_task", "max_new_tokens", "ppl_batches",
                "device", "threads", "workers"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["seed"] = args.seed
    if args.bits:
        settings["weight_bits"] = parse_bits(args.bits)
    return settings


def parse_bits(text):
    """'4,3' -> [4, 3]; ValueError naming the problem for anything outside 2..8."""
    try:
        bits = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--bits {text!r}: give integers from 2 to 8 separated by commas, e.g. 4,3") from None
    if not bits:
        raise ValueError(f"--bits {text!r}: give at least one bit width, e.g. 4,3")
    for b in bits:
        try:
            check_bits(b)
        except ValueError as error:
            raise ValueError(f"--bits {text}: {error}") from None
    return bits


def main(argv=None):
    args = parse_args(argv)
    settings = resolve_settings(args)
    # an earlier run finished when its results.md is there; an interrupted one left only its staging folder
    out_dir = cli.check_out_dir(args.out_dir, overwrite=args.overwrite, marker="results.md", resumable=False)
    methods = method_table(settings["group_size"], settings["weight_bits"])
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        known = [stage for stage, _ in methods]
        unknown = [m for m in wanted if m not in known]
        if unknown or not wanted:
            raise ValueError(f"--methods {args.methods!r}: unknown {unknown}; choose among {', '.join(known)}")
        methods = [(stage, spec) for stage, spec in methods if stage in wanted or stage == "fp32"]
    source = Path(args.ckpt) if args.ckpt else default_source()
    if not source.is_file():
        raise FileNotFoundError(f"--ckpt {source}: no such file; give the ckpt.pt of a chat model (chapter 04's "
                                f"runs/04_sft/ckpt.pt, or chapter 05's)")
    device = hardware.pick_device(settings["device"])
    threads_before = torch.get_num_threads()
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    out_dir_existed = out_dir.exists()
    try:
        return quantize_all(args, settings, out_dir, methods, source, device)
    except BaseException:  # a failure or Ctrl-C: the earlier run stays as it was, the staging folder goes
        shutil.rmtree(out_dir / STAGING, ignore_errors=True)
        if not out_dir_existed and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    finally:
        torch.set_num_threads(threads_before)  # main() may run inside another program (the tests)


def load_source(source):
    """The full-precision chat model to quantize (chapter 03's loader: a reward model, a base model, a changed
    tokenizer or a damaged file is one clear line)."""
    model, tokenizer, checkpoint = load_model(source, stage="chat")
    if checkpoint["format"] == "quantized":
        raise ValueError(f"{source} is already quantized ({checkpoint['stage']}): give a full-precision chat model")
    return model, tokenizer, checkpoint


def load_token_data(data_dir, source, vocab_size):
    """Chapter 03's train.bin/val.bin in data_dir, checked to be tokens this model can read."""
    if not (data_dir / "train.bin").is_file() or not (data_dir / "val.bin").is_file():
        raise FileNotFoundError(f"no train.bin/val.bin in {data_dir}: pass --data-dir, the folder chapter 03 "
                                f"wrote its tokens to (python 03_pretrain/pretrain.py --preset tiny makes runs/03_pretrain)")
    data = TokenDataset(data_dir)
    if data.vocab_size > vocab_size:
        raise ValueError(f"the tokens in {data_dir} were made with a {data.vocab_size}-id tokenizer, but {source} has "
                         f"{vocab_size} embedding rows: pass --data-dir, the folder its base model was pretrained on")
    for split, length in data.lengths.items():
        if length < 2:
            raise ValueError(f"{data_dir / (split + '.bin')} holds {length} tokens: calibration and perplexity need "
                             f"text; pass --data-dir, the folder chapter 03 wrote its tokens to")
    return data


def publish(staging, out_dir):
    """Move a finished run from the staging folder into out_dir: each model folder replaces the earlier run's
    (renamed away first, deleted once the new one is in place); model folders of the earlier run that this
    run did not make are removed; then the results, results.md last (the marker of a finished run)."""
    for folder in out_dir.iterdir():
        if folder.is_dir() and STAGE_NAME.fullmatch(folder.name) and not (staging / folder.name).exists():
            shutil.rmtree(folder)  # a model of the earlier run that the new results.md will not list
    for new in sorted(staging.iterdir(), key=lambda p: p.name == "results.md"):
        target = out_dir / new.name
        if new.is_dir():
            old = out_dir / f".{new.name}.replaced"
            if target.exists():
                target.rename(old)
            new.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            new.replace(target)
    staging.rmdir()


@dataclasses.dataclass
class Inputs:
    """What every method of one run is built from and measured on."""
    source: Path            # the chat model's checkpoint
    checkpoint: dict        # its metadata (stage, tokenizer hash, ...)
    tokenizer: object
    data: TokenDataset      # chapter 03's train.bin/val.bin
    examples: list          # held-out prompts of the task columns
    chats: list             # held-out conversations for the chat perplexity
    calibration: torch.Tensor  # (calib_samples, context) token windows of the training split
    n_linear: int           # weights in the Linear layers (bits per weight = 8 * bytes / n_linear)


def held_out_sets(per_task):
    """The held-out prompts of the table's task columns (at most per_task each) and the conversations of
    the chat perplexity (CHAT_PPL_TASKS)."""
    mix = {task: EVAL_MIX[task] if per_task is None else min(per_task, EVAL_MIX[task]) for task in EVAL_TASKS}
    w = world.build_world(WORLD_SEED)
    examples = world_examples(w, "heldout", mix, seed=EVAL_SEED)
    chats = [e["messages"] for e in world_examples(w, "heldout", {task: min(mix.values()) for task in CHAT_PPL_TASKS},
                                                   seed=EVAL_SEED)]
    return examples, chats


def quantize_method(stage, spec, model, inputs, settings, staging, out_dir, device):
    """One row of the table: build the method's model, save it (in the staging folder), load it back and
    measure what was saved -> (row, {layer: weight error} or None)."""
    quantized, weight_errors = build(stage, spec, model, inputs.calibration, settings)
    path = staging / stage / "ckpt.pt"
    size = save_quantized(path, quantized.cpu(), stage, inputs.source, inputs.tokenizer, {**settings, "method": spec},
                          inputs.checkpoint, final_path=out_dir / stage / "ckpt.pt")
    linear_bytes = linear_weight_bytes(quantized)
    del quantized
    if stage == "fp32":  # the source itself: measure its size as saved, keep no copy
        shutil.rmtree(staging / stage)
    loaded, _, _ = load_model(path if stage != "fp32" else inputs.source, stage="chat", device=device)
    row = {"method": stage, "family": spec["family"], "bits": spec["bits"], "group_size": spec.get("group_size"),
           "linear_bytes": linear_bytes, "bits_per_weight": 8 * linear_bytes / inputs.n_linear, "checkpoint_bytes": size,
           **measure(loaded, inputs.tokenizer, inputs.data, inputs.examples, inputs.chats, settings, device)}
    return row, weight_errors and {name: e.cpu() for name, e in weight_errors.items()}


def check_source(args, settings, source, device):
    """Load the model to quantize and its token data, checking both before anything is written -> (model,
    tokenizer, checkpoint metadata, data_dir, data)."""
    model, tokenizer, checkpoint = load_source(source)
    widths = sorted({m.in_features for _, m in _linears(model)})
    for width in widths:  # a bad --group-size fails now, before any work
        check_group_size(width, settings["group_size"])
    data_dir = Path(args.data_dir) if args.data_dir else data_dir_of(checkpoint)
    data = load_token_data(data_dir, source, model.config.vocab_size)
    print(f"quantizing {source} (stage {checkpoint['stage']}; {model.num_params():,} parameters, Linear inputs "
          f"{widths}) on {device}")
    print(f"validation and calibration tokens: {data_dir} (calibration from the training split only)")
    return model, tokenizer, checkpoint, data_dir, data


def open_staging(out_dir, run_settings):
    """The staging folder, emptied of what an interrupted run left (never a finished model), with settings.json.
    The models go there first and replace the earlier run's only once every one of them is made (publish), so
    Ctrl-C or a failure half-way loses nothing."""
    staging = out_dir / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    cli.write_text_atomic(staging / "settings.json", json.dumps(run_settings, indent=1, default=str))
    return staging


def measure_methods(methods, submit, start):
    """Every row of the table, one progress line each -> (rows, {"RTN-4" | "GPTQ-4": {layer: weight error}}).
    `submit` (worker_pool) runs quantize_method in this process, or shares the rows out among worker processes."""
    rows, errors = [], {}
    jobs = [submit(row_job, stage, spec) for stage, spec in methods]
    method_start = time.time()
    for k, ((stage, spec), job) in enumerate(zip(methods, jobs)):
        row, weight_errors = job.result()
        if weight_errors and stage in ("rtn4", "gptq4"):
            errors[stage.upper().replace("RTN", "RTN-").replace("GPTQ", "GPTQ-")] = weight_errors
        rows.append(row)
        elapsed = time.time() - start
        print(f"[{k + 1}/{len(methods)}] {stage:<16} ppl {row['perplexity']:.4f} chat {row['chat_perplexity']:.4f}  "
              + "  ".join(f"{key.split('_')[0]} {100 * row[key]:.0f}%" for key in ("fact_accuracy", "math_accuracy",
                                                                                   "harmful_refusal") if row[key] is not None)
              + f"  {row['bits_per_weight']:.2f} bits/w  {row['tokens_per_s']:.0f} tok/s  "
              f"({time.time() - method_start:.1f} s; ETA {elapsed / (k + 1) * (len(methods) - k - 1):.0f} s)", flush=True)
        method_start = time.time()
    return rows, errors


# The jobs worker_pool runs (in this process, or in worker processes that hold the context).


def row_job(c, stage, spec):
    return quantize_method(stage, spec, c["model"], c["inputs"], c["settings"], c["staging"], c["out_dir"], c["device"])


def sweep_job(c):
    t = time.time()
    return threshold_sweep(c["model"], c["inputs"].data, c["inputs"].calibration, c["settings"], c["device"]), \
        time.time() - t


def plot_points_job(c):
    t, i = time.time(), c["inputs"]
    return extra_plot_points(c["model"], i.tokenizer, i.data, i.chats, i.calibration, c["settings"], c["device"],
                             i.n_linear), time.time() - t


def side_studies(model, inputs, settings, device, methods, rows, submit):
    """What the table alone does not show: the LLM.int8 threshold sweep, the int8 rows again on injected
    outlier features (if llm_int8 is among the methods), the plot's extra points -> (sweep, outlier dims per
    layer, the injection study or None, plot points). The sweep and the plot points are submitted (to the
    workers, if any) while this process runs the injection study, which reuses the table's rows."""
    sweep_future, points_future = submit(sweep_job), submit(plot_points_job)
    injected = None
    if any(stage == "llm_int8" for stage, _ in methods):
        phase_start, phase_cpu = time.time(), time.process_time()
        injected = outlier_study(model, inputs.tokenizer, inputs.data, inputs.chats, inputs.calibration, settings,
                                 device, LLM_INT8_THRESHOLD, rows)
        print(f"injected outliers: {time.time() - phase_start:.1f} s ({time.process_time() - phase_cpu:.1f} s of CPU time)",
              flush=True)
    (sweep, outliers), seconds = sweep_future.result()
    print(f"LLM.int8 threshold sweep {settings['sweep']}: ppl " + ", ".join(f"{s['perplexity']:.3f}" for s in sweep)
          + f" ({seconds:.1f} s)", flush=True)
    plot_points, seconds = points_future.result()
    print(f"extra points for the plot (val ppl / chat ppl): " + ", ".join(
        f"{p['family']}{p['bits']}{'_g' if p['group_size'] else ''} {p['perplexity']:.3f}/{p['chat_perplexity']:.3f}"
        for p in plot_points)
          + f" ({seconds:.1f} s)", flush=True)
    return sweep, outliers, injected, plot_points


def quantize_all(args, settings, out_dir, methods, source, device):
    """Load the model, build every method's model, save it, load it back and measure it; then the sweep,
    the extra plot points and the report."""
    start, cpu_start = time.time(), cpu_seconds()
    model, tokenizer, checkpoint, data_dir, data = check_source(args, settings, source, device)

    # Every input is good: now write (into the staging folder).
    staging = open_staging(out_dir, {"source": str(source), "data_dir": str(data_dir), "preset": args.preset,
                                     **settings})
    model.to(device)
    examples, chats = held_out_sets(settings["eval_per_task"])
    calibration = calibration_windows(data, settings["calib_samples"],
                                      min(settings["calib_context"], model.config.block_size), settings["seed"]).to(device)
    n_linear = sum(m.weight.numel() for _, m in _linears(model))
    inputs = Inputs(source, checkpoint, tokenizer, data, examples, chats, calibration, n_linear)
    context = dict(model=model, inputs=inputs, settings=settings, staging=staging, out_dir=out_dir, device=device)
    workers = min(settings["workers"], len(methods)) if torch.device(device).type == "cpu" else 1
    with worker_pool(context, workers, settings["threads"]) as submit:
        rows, errors = measure_methods(methods, submit, start)
        sweep, outliers, injected, plot_points = side_studies(model, inputs, settings, device, methods, rows, submit)

    wall = time.time() - start
    settings["cpu_seconds"] = cpu_seconds() - cpu_start  # beside the wall time: the machine may be shared
    write_results(staging, rows, sweep, outliers, plot_points, settings, source, data_dir, errors, wall)
    if injected:
        write_outlier_study(staging, injected)
    publish(staging, out_dir)
    print(f"\n{(out_dir / 'results.md').read_text().split('## ')[1]}")
    print(f"done in {wall:.0f} s ({settings['cpu_seconds']:.0f} s of CPU time). Outputs in {out_dir}/: results.md/.json (the table, the threshold sweep, outlier "
          f"dims), ppl_vs_bits.png, error_hist.png, <method>/ckpt.pt")
    print(f"next: chat with one: python 06_quantize/chat_quantized.py --ckpt {out_dir / 'gptq4' / 'ckpt.pt'}")
    return {"rows": rows, "sweep": sweep, "wall_seconds": wall}


@torch.no_grad()
def threshold_sweep(model, data, calibration, settings, device):
    """LLM.int8 perplexity at each threshold, and the outlier input dims per layer (over the calibration
    windows) at each threshold. Lower thresholds send more dims to float: the table's vector-wise int8 is
    the threshold-infinity end, fp32 the threshold-0 end."""
    maxima = input_absmax_per_dim(model, calibration)
    counts = outlier_dims_per_layer(maxima, settings["sweep"])
    sweep = []
    for threshold in settings["sweep"]:
        quantized = swap_linears(copy.deepcopy(model), lambda n, l: Int8Linear.from_linear(l, "llm_int8", threshold))
        ppl = perplexity(quantized, data, settings["ppl_batches"], settings["ppl_batch_size"], settings["ppl_context"],
                         device)
        sweep.append({"threshold": threshold, "perplexity": ppl, "outlier_dims": counts[threshold],
                      "max_abs_input": {n: float(m.max()) for n, m in maxima.items()}})
    return sweep, {n: float(m.max()) for n, m in maxima.items()}


@torch.no_grad()
def extra_plot_points(model, tokenizer, data, chats, calibration, settings, device, n_linear):
    """Perplexity of RTN and GPTQ at the preset's extra bit widths (8, 2), per row and per group: points
    for the plot only (no checkpoint, no task evaluation)."""
    points = []
    for bits in settings["plot_bits"]:
        check_bits(bits)
        for group in (None, settings["group_size"]):
            for family in ("RTN", "GPTQ"):
                quantized, _ = build(f"{family.lower()}{bits}", dict(family=family, bits=bits, group_size=group), model,
                                     calibration, settings)
                ppl = perplexity(quantized, data, settings["ppl_batches"], settings["ppl_batch_size"],
                                 settings["ppl_context"], device)
                chat_ppl = chat_perplexity(quantized, tokenizer, chats)
                points.append({"family": family, "bits": bits, "group_size": group, "perplexity": ppl,
                               "chat_perplexity": chat_ppl,
                               "bits_per_weight": 8 * linear_weight_bytes(quantized) / n_linear})
    return points


# ----------------------------------------------------------------------------------------------------
# The report


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.0f}%"


def results_table(rows):
    """The Markdown table: one row per method, ratios against fp32 measured in the same run."""
    fp32 = rows[0]
    lines = ["| method | bits/weight | Linear weights | whole ckpt.pt | val ppl (vs fp32) | chat ppl (vs fp32) | world Qs "
             "| word problems | harmful refused | greedy tok/s (vs fp32) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['bits_per_weight']:.2f} | {r['linear_bytes'] / 1e6:.3f} MB "
            f"({r['linear_bytes'] / fp32['linear_bytes']:.3f}x) | {r['checkpoint_bytes'] / 1e6:.2f} MB | "
            f"{r['perplexity']:.4f} ({100 * (r['perplexity'] / fp32['perplexity'] - 1):+.2f}%) | "
            f"{r['chat_perplexity']:.4f} ({100 * (r['chat_perplexity'] / fp32['chat_perplexity'] - 1):+.2f}%) | "
            f"{_pct(r['fact_accuracy'])} | {_pct(r['math_accuracy'])} | {_pct(r['harmful_refusal'])} | "
            f"{r['tokens_per_s']:.0f} ({r['tokens_per_s'] / fp32['tokens_per_s']:.2f}x) |")
    return "\n".join(lines)


def sweep_table(sweep, fp32_ppl):
    layers = list(sweep[0]["outlier_dims"])
    short = [name.replace("transformer.h.", "h") for name in layers]
    lines = ["| threshold | val ppl (vs fp32) | outlier dims per layer: " + ", ".join(short) + " |", "|---:|---:|---|"]
    for s in sweep:
        counts = ", ".join(str(s["outlier_dims"][n]) for n in layers)
        lines.append(f"| {s['threshold']} | {s['perplexity']:.4f} ({100 * (s['perplexity'] / fp32_ppl - 1):+.2f}%) | "
                     f"{counts} |")
    return "\n".join(lines)


def write_results(out_dir, rows, sweep, outliers, plot_points, settings, source, data_dir, errors, wall):
    fp32 = rows[0]
    text = ["# Chapter 06: quantization results", "",
            f"Model `{source}`; validation perplexity on {settings['ppl_batches']} x {settings['ppl_batch_size']} "
            f"windows of {settings['ppl_context']} tokens of `{data_dir}/val.bin` (pretraining text); chat perplexity on "
            f"the reference replies of held-out {'/'.join(CHAT_PPL_TASKS)} prompts (assistant tokens only; worded as in "
            f"training, see CHAT_PPL_TASKS); GPTQ calibrated on "
            f"{settings['calib_samples']} windows of the training split; tasks: greedy replies to held-out prompts "
            f"(at most {settings['max_new_tokens']} tokens); tokens/s: one greedy reply of {settings['speed_tokens']} "
            f"tokens. Wall time {wall:.0f} s, CPU time {settings['cpu_seconds']:.0f} s.", "", "## The table", "", results_table(rows), "",
            "## LLM.int8(): the threshold sweep", "",
            "Outlier dims: input feature dimensions of each Linear where some |x| >= threshold on the calibration "
            "windows (the table's int8_vectorwise is threshold infinity: no dim in float).", "",
            sweep_table(sweep, fp32["perplexity"]), "",
            "Largest |input| per layer: " + ", ".join(f"{n.replace('transformer.', '')} {v:.1f}"
                                                      for n, v in outliers.items()), ""]
    cli.write_text_atomic(out_dir / "results.md", "\n".join(text) + "\n")
    cli.write_text_atomic(out_dir / "results.json", json.dumps(
        {"rows": rows, "threshold_sweep": sweep, "plot_points": plot_points, "settings": settings,
         "source": str(source), "data_dir": str(data_dir), "wall_seconds": wall}, indent=1, default=str) + "\n")
    keys = ("family", "bits_per_weight", "perplexity", "chat_perplexity")
    points = [{**{k: r[k] for k in keys}, "label": r["method"]} for r in rows if r["family"] in ("RTN", "GPTQ")]
    points += [{**{k: p[k] for k in keys},
                "label": f"{p['family'].lower()}{p['bits']}" + (f"_g{p['group_size']}" if p["group_size"] else "")}
               for p in plot_points]
    if points:
        plot_ppl_vs_bits(points, fp32, out_dir / "ppl_vs_bits.png")
    if errors:
        plot_error_histograms(errors, out_dir / "error_hist.png", "Weight error W_hat - W per layer (4 bits, per row)")


if __name__ == "__main__":
    cli.run(main)
