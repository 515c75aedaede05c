"""The training loop of every stage: pretraining (chapter 03), SFT (04), the reward model and DPO (05).

    summary = train(model, get_batch, config)                      # next-token prediction (the default)
    summary = train(model, get_batch, config, loss_fn=sft_loss)    # any loss of (model, batch)

The pieces live in modules of one idea each; this file puts them together:

    optimizer.py    AdamW, param_groups, make_optimizer, lr_at (warmup + cosine), clip_grad_norm
    checkpoint.py   save_checkpoint (atomic), load_checkpoint (the model, and the optimizer when asked),
                    the RNG states, save_training_state / resume_from (what exact resume needs)
    hardware.py     pick_device, resolve_precision, autocast, setup_ddp, the peak FLOP/s of MFU
    train_log.py    metrics.jsonl, the progress line, loss.png
    train.py        TrainConfig, next_token_loss, estimate_loss, train (this file)

The batch source is any callable `get_batch(split, generator)` returning a tuple of tensors, for the
default loss `(x, y)` or `(x, y, doc_ids)`: x, y are (B, T) int64 token ids with y[:, t] the token after
x[:, t] and y = -1 where the loss is masked; doc_ids (B, T) marks packed documents. `generator` is a
torch.Generator the loop seeds for every micro-batch from (seed, micro-batch index), so the data a step
sees depends only on the step: an interrupted run resumes onto exactly the same batches, and N processes
under DDP together draw exactly the micro-batches that one process would draw alone.

The loss hook is any callable `loss_fn(model, batch) -> loss`, or `-> (loss, {name: value})`:
    model    the model as the loop runs it (wrapped by torch.compile and DDP when those are on): call
             it, model(...), rather than its other methods, so that DDP sees the forward pass;
    batch    get_batch's tuple, its tensors moved to the device;
    loss     a 0-dim tensor, the mean loss of this micro-batch (the loop divides by the micro-batches);
    {name: value}   optional 0-dim tensors or numbers, averaged like the loss and logged beside it in
             metrics.jsonl and the progress line (e.g. DPO's reward accuracy); evaluations log them
             per split as "train_<name>" and "val_<name>".
The same loss_fn gives the validation loss (estimate_loss). The model is any nn.Module; a dataclass
`.config` is saved in the checkpoint and checked on resume, and `.flops_per_token()`, if present,
feeds the MFU figure (chapter 02's GPT has both).
"""
import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from checkpoint import resume_from, save_training_state
from hardware import autocast, compile_problem, ddp_info, peak_flops_of, place, training_flops_per_token
from optimizer import clip_grad_norm, lr_at, make_optimizer
from train_log import Progress, append_record, keep_records_until, plot_metrics, progress_line

# Names train.py held before it was split, still importable from here (new code imports them from their
# modules): train.AdamW, train.save_checkpoint, train.pick_device, train.read_metrics, ...
from checkpoint import load_checkpoint, model_config_dict, save_checkpoint  # noqa: E402,F401
from hardware import pick_device, resolve_precision, setup_ddp  # noqa: E402,F401
from optimizer import AdamW, param_groups  # noqa: E402,F401
from train_log import read_metrics  # noqa: E402,F401


@dataclass
class TrainConfig:
    """Settings of one training run (saved in the checkpoint). Defaults: nanoGPT's Shakespeare recipe."""
    steps: int = 2000            # optimizer steps the run (and its schedule: the cosine ends here) is planned for
    batch_size: int = 12         # sequences per micro-batch, per process
    grad_accum: int = 1          # micro-batches per optimizer step for the WHOLE job; DDP divides it
    lr: float = 1e-3             # peak learning rate
    min_lr: float = 1e-4         # the cosine ends here
    warmup_steps: int = 100
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


def check_config(config, world_size):
    """Raise ValueError for settings the loop cannot run; returns the micro-batches per process."""
    if min(config.steps, config.batch_size, config.grad_accum, config.eval_interval, config.log_interval,
           config.eval_batches) < 1:
        raise ValueError("steps, batch_size, grad_accum, eval_interval, eval_batches and log_interval must be at "
                         "least 1")
    if config.warmup_steps < 0 or config.sample_interval < 0 or not config.lr > 0 or not config.min_lr >= 0 \
            or not config.weight_decay >= 0:
        raise ValueError("warmup_steps, sample_interval, min_lr and weight_decay must be 0 or more, and lr more than 0")
    if config.grad_accum % world_size:
        raise ValueError(f"grad_accum={config.grad_accum} must be a multiple of the number of processes "
                         f"({world_size}) so the global batch stays the same: pass --grad-accum "
                         f"{max(world_size, config.grad_accum // world_size * world_size)}")
    return config.grad_accum // world_size


def batch_seed(seed, split, index):
    """The seed of micro-batch `index` of `split`: a pure function, so any process can draw any batch."""
    return (seed * 1_000_003 + index * 2 + (split == "val")) % (2**63)


def draw_batch(get_batch, split, generator, seed, index, device):
    """Seed `generator` for micro-batch `index`, call get_batch, move the tensors to `device`."""
    generator.manual_seed(batch_seed(seed, split, index))
    batch = get_batch(split, generator)
    if not isinstance(batch, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in batch):
        raise ValueError("get_batch(split, generator) must return a tuple of tensors, e.g. (x, y)")
    non_blocking = str(device).startswith("cuda")
    return [t.to(device, non_blocking=non_blocking) for t in batch]


def next_token_loss(model, batch):
    """The default loss hook: the model's mean cross-entropy on (x, y) or (x, y, doc_ids); y = -1 is ignored.

        loss = −1/N · Σ_{t: y_t ≠ −1} log softmax(logits_t)[y_t],   N = the number of targets ≠ −1
    """
    if len(batch) not in (2, 3):
        raise ValueError("next_token_loss needs batches (x, y) or (x, y, doc_ids); pass a loss_fn for others")
    x, y, *doc_ids = batch
    _, loss = model(x, y, doc_ids=doc_ids[0]) if doc_ids else model(x, y)
    return loss


# Names the loop writes into every record itself: a loss hook's metric may not take one of them.
RESERVED_METRICS = {"loss", "step", "kind", "lr", "grad_norm", "tokens", "time", "tokens_per_sec", "ms_per_step", "mfu",
                    "train_loss", "val_loss", "train", "val"}


def split_loss(output):
    """A loss hook's result -> (loss, {name: value}): it may return the loss alone or (loss, metrics).

    A metric named like a field of the log record ("loss", "lr", "step", ...) would overwrite it
    silently, so it is refused with a ValueError.
    """
    if isinstance(output, tuple):
        loss, metrics = output
        clash = sorted(set(metrics) & RESERVED_METRICS | {m for m in metrics if m.startswith(("train_", "val_"))})
        if clash:
            raise ValueError(f"the loss hook's metric names {clash} clash with the log's own fields "
                             f"({', '.join(sorted(RESERVED_METRICS))}, train_*, val_*): rename them")
        return loss, {name: torch.as_tensor(value, device=loss.device) for name, value in metrics.items()}
    return output, {}


@torch.no_grad()
def estimate_loss(model, get_batch, n_batches, device, precision="fp32", seed=0, splits=("train", "val"),
                  loss_fn=next_token_loss):
    """Mean loss over the same `n_batches` micro-batches of each split every time it is called:
    {"train": mean loss, "val": mean loss}, plus {"<split>_<name>": mean} for the loss hook's metrics.

    Fixed batches make successive estimates comparable (the curve moves because the model changed,
    not because the batches did). The batch generator is private, so this never shifts training data.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator()
    losses = {}
    for split in splits:
        totals = {}
        for i in range(n_batches):
            batch = draw_batch(get_batch, split, generator, seed + 7919, i, device)
            with autocast(torch.device(device).type, precision):
                loss, metrics = split_loss(loss_fn(model, batch))
            for name, value in {split: loss, **{f"{split}_{k}": v for k, v in metrics.items()}}.items():
                totals[name] = totals.get(name, 0.0) + value.item()
        losses.update({name: total / n_batches for name, total in totals.items()})
    model.train(was_training)
    return losses


def evaluate_and_sample(eval_model, raw_model, get_batch, config, device, precision, loss_fn, make_sample,
                        step, tokens_done, final, log):
    """Rank 0 only: the validation loss (recorded and printed) and, when due, a sample into sample.txt."""
    out_dir = Path(config.out_dir)
    losses = estimate_loss(eval_model, get_batch, config.eval_batches, device, precision, config.seed,
                           loss_fn=loss_fn)
    extras = {name: value for name, value in losses.items() if name not in ("train", "val")}
    append_record(out_dir / "metrics.jsonl", {"step": step, "kind": "eval", "train_loss": losses["train"],
                                              "val_loss": losses["val"], **extras, "tokens": tokens_done})
    log(f"step {step}: eval train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
        f"(perplexity {math.exp(min(losses['val'], 50)):.2f})" + "".join(f", {k} {v:.4g}" for k, v in extras.items()))
    if make_sample and (final or (config.sample_interval and step % config.sample_interval == 0)):
        raw_model.eval()
        # sampling draws random numbers: fork the RNG so the training run never sees it
        with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
            text = make_sample(raw_model)
        raw_model.train()
        with open(out_dir / "sample.txt", "a") as f:
            f.write(f"===== step {step} =====\n{text}\n\n")
        log(f"sample at step {step}:\n{text}\n")
    return losses


def train(model, get_batch, config, make_sample=None, resume=False, checkpoint_extra=None, quiet=False,
          loss_fn=next_token_loss):
    """Train `model` on batches from `get_batch` for config.steps optimizer steps; returns a summary dict.

    One optimizer step (the global batch = batch_size × grad_accum micro-batches, across all processes):
        for each of the grad_accum / world_size micro-batches of this process:
            loss = loss_fn(model, batch) / micro-batches;  loss.backward()      # gradients add up
        (DDP averages the gradients over processes during the last backward)
        ‖g‖ = clip_grad_norm(max_norm=grad_clip);  lr = lr_at(step);  optimizer.step()

    loss_fn(model, batch)          the loss hook (see the module docstring); default: next-token prediction
    make_sample(model) -> str      optional: text written to sample.txt at sample_interval and the end
    resume=True                    continue from out_dir/ckpt.pt if it exists (same model config)
    checkpoint_extra               dict stored in every checkpoint (e.g. {"tokenizer": path, "data": ...})

    Writes under config.out_dir: ckpt.pt (at every eval and at the end), metrics.jsonl (one JSON record
    per log line and per evaluation), loss.png, sample.txt. Under torchrun only rank 0 writes or prints.
    """
    rank, world_size = ddp_info()
    master = rank == 0
    log = (lambda *a, **k: print(*a, **k, flush=True)) if master and not quiet else (lambda *a, **k: None)
    accum_local = check_config(config, world_size)
    device, precision = place(config.device, config.precision, world_size)
    device_type = torch.device(device).type
    problem = compile_problem(device_type) if config.compile else None
    if problem:  # now, not as a compiler error at the first forward pass
        raise RuntimeError(f"compile=True: torch.compile cannot work here: {problem}")
    out_dir = Path(config.out_dir)
    ckpt_path, metrics_path = out_dir / "ckpt.pt", out_dir / "metrics.jsonl"
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed + rank)  # dropout differs per process; the data is drawn by index
    raw_model = model.to(device)  # the plain module: what we save, evaluate on and sample from
    optimizer = make_optimizer(raw_model, config.lr, config.weight_decay, (config.beta1, config.beta2),
                               config.eps, config.optimizer)
    scaler = torch.amp.GradScaler(device_type, enabled=(precision == "fp16"))
    step, tokens_done = start_or_resume(resume, ckpt_path, raw_model, optimizer, scaler, config, log)
    eval_model = torch.compile(raw_model) if config.compile else raw_model
    model = wrap_ddp(eval_model, device) if world_size > 1 else eval_model  # what the training step calls

    stop = min(config.steps, config.stop_at) if config.stop_at is not None else config.steps
    peak_flops = config.peak_flops or peak_flops_of(device)
    evaluate = lambda final=False: evaluate_and_sample(eval_model, raw_model, get_batch, config, device, precision,
                                                       loss_fn, make_sample, step, tokens_done, final, log)
    log(run_header(config, device, precision, world_size, step, stop, peak_flops))
    generator = torch.Generator()  # the batch-sampling generator, re-seeded for every micro-batch
    start_step, tokens_at_start, t_start = step, tokens_done, time.time()
    last_eval = evaluate() if step == 0 and master else {}
    last_loss, eval_seconds = float("nan"), time.time() - t_start
    model.train()
    progress = Progress(training_flops_per_token(raw_model), peak_flops and peak_flops * world_size)
    try:
        while step < stop:
            lr = lr_at(step, config.lr, config.min_lr, config.warmup_steps, config.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for micro in range(accum_local):
                # micro-batch index in the whole job: each process takes every world_size-th one
                index = step * config.grad_accum + micro * world_size + rank
                batch = draw_batch(get_batch, "train", generator, config.seed, index, device)
                # under DDP, all-reduce the gradients only once, in the last micro-batch's backward
                with contextlib.nullcontext() if world_size == 1 or micro == accum_local - 1 else model.no_sync():
                    with autocast(device_type, precision):
                        loss, metrics = split_loss(loss_fn(model, batch))
                    scaler.scale(loss / accum_local).backward()
                progress.add({"loss": loss / accum_local, **{k: v / accum_local for k, v in metrics.items()}})
            scaler.unscale_(optimizer)  # (no-op unless fp16) so clipping sees the true gradients
            grad_norm = clip_grad_norm(raw_model.parameters(), config.grad_clip or float("inf"))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step, tokens_per_step = step + 1, batch[0].numel() * config.grad_accum
            tokens_done += tokens_per_step
            progress.step_done()

            if step % config.log_interval == 0 or step == stop:
                entry = {"step": step, "kind": "train", **progress.report(tokens_per_step), "lr": lr,
                         "grad_norm": grad_norm.item(), "tokens": tokens_done, "time": time.time() - t_start}
                last_loss = entry["loss"]
                if master:
                    append_record(metrics_path, entry)
                log(progress_line(entry, config.steps, stop, progress.step_time))
            if step % config.eval_interval == 0 or step == stop:
                pause_start = time.time()
                # the checkpoint before eval and sampling, so their work never enters the saved state
                save_training_state(ckpt_path, raw_model, optimizer, scaler, step, tokens_done, config,
                                    checkpoint_extra)
                if master:
                    last_eval = evaluate(final=step == stop)
                    eval_seconds += time.time() - pause_start
                progress.pause(time.time() - pause_start)  # evaluation time is not training time
    except KeyboardInterrupt:
        log(f"\ninterrupted at step {step}; the last checkpoint is {ckpt_path} "
            f"(rerun with --resume to continue from it)")
        raise
    if master and not last_eval:  # nothing left to train (the checkpoint was at the end already)
        log(f"the run is already at step {step} of {config.steps}: pass a larger steps to train further")
        last_eval = evaluate(final=True)
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


def run_header(config, device, precision, world_size, step, stop, peak_flops):
    """The two lines a run starts with: where it trains, what, and against which peak its MFU is measured."""
    return (f"training on {device} ({precision}, {world_size} process{'es' if world_size > 1 else ''}), "
            f"steps {step} -> {stop} of {config.steps}, global batch {config.batch_size} x {config.grad_accum} "
            f"sequences, optimizer {config.optimizer}, out {config.out_dir}\n"
            + (f"MFU against a peak of {peak_flops:.3g} FLOP/s per device" if peak_flops else
               f"no MFU: no peak FLOP/s known for {device} (on a CPU it is not a meaningful figure; "
               f"--peak-flops sets one)"))


def start_or_resume(resume, ckpt_path, model, optimizer, scaler, config, log):
    """(step, tokens_done) to start from: out of ckpt_path with resume=True (its model, optimizer and RNG
    states restored), else (0, 0). Also trims metrics.jsonl to match: a resumed run drops what a crashed
    run logged after its checkpoint, a fresh run starts a fresh log."""
    rank, world_size = ddp_info()
    metrics_path = Path(ckpt_path).with_name("metrics.jsonl")
    if resume and Path(ckpt_path).exists():
        step, tokens_done = resume_from(ckpt_path, model, optimizer, scaler, config, rank, world_size, log)
        if rank == 0:
            keep_records_until(metrics_path, step)
        return step, tokens_done
    if resume:
        log(f"no checkpoint at {ckpt_path} yet: starting from step 0")
    if rank == 0:  # a fresh run starts a fresh log and fresh samples (never those of a run it replaces)
        metrics_path.unlink(missing_ok=True)
        metrics_path.with_name("sample.txt").unlink(missing_ok=True)
    return 0, 0


def wrap_ddp(model, device):
    """DistributedDataParallel: averages the gradients over the processes during backward."""
    device_ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
