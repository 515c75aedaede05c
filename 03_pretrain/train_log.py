"""What a training run writes as it goes: metrics.jsonl, the progress line, loss.png.

    append_record(path, {...})     one JSON line per progress line and per evaluation, on disk at once
    keep_records_until(path, s)    on resume: drop the records a crashed run logged after its checkpoint
    Progress                       sums the loss (and any extra metrics) between two progress lines
    read_metrics, plot_metrics     metrics.jsonl -> records -> loss.png
"""
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist


def append_record(path, entry):
    """Append one record as a JSON line (opened and closed each time: a crash loses nothing logged)."""
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def keep_records_until(path, step):
    """Drop the records logged after `step` (a resumed run logs those steps again)."""
    if Path(path).exists():
        kept = [line for line in Path(path).read_text().splitlines() if json.loads(line)["step"] <= step]
        Path(path).write_text("".join(line + "\n" for line in kept))


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """The training loss and the loss hook's extra metrics between two progress lines, and their timing.

    add() keeps the sums as tensors on the device, so the loop never waits for the GPU; only report()
    calls .tolist() (one sync per progress line). Under DDP report() averages over the processes, so
    every process must call it.
    """

    def __init__(self, flops_per_token=None, peak_flops=None):
        """flops_per_token: to train on one token; peak_flops: of all devices together (None: no MFU)."""
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.sums, self.steps, self.t_last, self.step_time = {}, 0, time.time(), None

    def add(self, values):
        """values: {name: 0-dim tensor} of one micro-batch, already divided by the micro-batch count."""
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0) + value.detach().float()

    def step_done(self):
        self.steps += 1

    def pause(self, seconds):
        """Do not count `seconds` (evaluation, checkpoints) as training time."""
        self.t_last += seconds

    def report(self, tokens_per_step):
        """{name: mean per step since the last report, ..., "tokens_per_sec", "ms_per_step", "mfu"}; resets.

        MFU (model FLOPs utilisation) = tokens/s × FLOPs per token / peak FLOP/s.
        """
        names = list(self.sums)
        sums = torch.stack([self.sums[name] for name in names])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums)
            sums /= dist.get_world_size()
        means = {name: value / self.steps for name, value in zip(names, sums.tolist())}
        now = time.time()
        dt = (now - self.t_last) / self.steps
        self.step_time = dt if self.step_time is None else 0.9 * self.step_time + 0.1 * dt  # smoothed, for the ETA
        self.sums, self.steps, self.t_last = {}, 0, now
        tokens_per_sec = tokens_per_step / dt
        mfu = tokens_per_sec * self.flops_per_token / self.peak_flops if self.peak_flops else None
        return {**means, "tokens_per_sec": tokens_per_sec, "ms_per_step": 1000 * dt, "mfu": mfu}


def progress_line(entry, steps, stop, step_time):
    """step     12/600 | loss 3.2101 | lr 1.00e-03 | grad 0.812 |   41.3k tok/s | 98.1 ms/step | ETA 0m58s"""
    known = {"step", "kind", "loss", "lr", "grad_norm", "tokens", "tokens_per_sec", "ms_per_step", "mfu", "time"}
    extras = "".join(f"{k} {v:.4g} | " for k, v in entry.items() if k not in known)
    return (f"step {entry['step']:>6}/{steps} | loss {entry['loss']:.4f} | {extras}lr {entry['lr']:.2e} | "
            f"grad {entry['grad_norm']:.3f} | {entry['tokens_per_sec'] / 1000:7.1f}k tok/s | "
            + (f"MFU {100 * entry['mfu']:5.1f}% | " if entry["mfu"] is not None else "")
            + f"{entry['ms_per_step']:6.1f} ms/step | ETA {format_duration(step_time * (stop - entry['step']))}")


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
