"""Scaling laws in miniature: train several GPT sizes on the same tokens, fit L(N) = a · N^(-α) + c.

    python 03_pretrain/scaling.py            # 5 sizes, 25K-1.8M non-embedding parameters, CPU minutes
    python 03_pretrain/scaling.py --quick    # 3 small sizes, a few seconds (what the test runs)

Kaplan et al. (2020, "Scaling Laws for Neural Language Models") found that, with enough data, the
loss of a language model falls as a power law in its number of non-embedding parameters N:
L(N) = (N_c / N)^α_N with α_N ≈ 0.076, a straight line on log-log axes. Here every size sees the same
tokens (same batches, same schedule), which is how their Figure 1 (middle) was measured; we fit

    log L = log a − α · log N           (a pure power law: a straight line in log-log)
    L = a · N^(−α) + c                  (plus an irreducible loss c, scanned on a grid; each c gives
                                         a straight-line fit of log(L − c), and the best c is kept)

with numpy's least squares, and plot final validation loss against N and against training compute
C = FLOPs per token × tokens (chapter 02's flops_per_token: 6N + 12·L·C·T, forward and backward).
Outputs in --out-dir (default runs/03_pretrain/scaling/): scaling.png, scaling.json, one run folder per size.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one clear line for bad input)
import dataset  # noqa: E402  (this chapter)
import hardware  # noqa: E402
import train  # noqa: E402
import train_log  # noqa: E402
from gpt import GPT, GPTConfig  # noqa: E402

# (n_layer, n_head, n_embd): non-embedding parameters grow ~35x from the first to the last
SIZES = [(2, 2, 32), (2, 4, 64), (3, 4, 96), (4, 4, 128), (4, 6, 192)]
QUICK_SIZES = SIZES[:3]


def fit_power_law(n, loss):
    """Least-squares fit of log L = log a − α log N. Returns (a, α).

    Example: fit_power_law([1e4, 1e5, 1e6], [4.0, 2.0, 1.0]) -> (a ≈ 64.0, α ≈ 0.301): each 10x in N halves L.
    """
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return float(math.exp(intercept)), float(-slope)


def fit_power_law_with_constant(n, loss, grid=200):
    """Fit L = a · N^(−α) + c: for each c on a grid in [0, min L), fit log(L − c) linearly; keep the best
    c (smallest squared error in L). Returns (a, α, c). With few points, c is only loosely determined."""
    n, loss = np.asarray(n, dtype=float), np.asarray(loss, dtype=float)
    best = None
    for c in np.linspace(0.0, loss.min() * 0.99, grid):
        a, alpha = fit_power_law(n, loss - c)
        error = float(np.sum((a * n**-alpha + c - loss) ** 2))
        if best is None or error < best[0]:
            best = (error, a, alpha, float(c))
    return best[1], best[2], best[3]


def run_size(layers, heads, width, data, settings, out_dir):
    """Train one size on the shared batches; returns its record (params, compute, final losses)."""
    B, T = settings["batch_size"], settings["context"]
    torch.manual_seed(settings["seed"])
    model = GPT(GPTConfig.from_preset("tiny", vocab_size=data.vocab_size, block_size=T, n_layer=layers,
                                      n_head=heads, n_embd=width))
    config = train.TrainConfig(steps=settings["steps"], batch_size=B, lr=settings["lr"], min_lr=settings["lr"] / 10,
                               warmup_steps=settings["steps"] // 10, beta2=0.99, precision=settings["precision"],
                               device=settings["device"], seed=settings["seed"], eval_interval=settings["steps"],
                               eval_batches=settings["eval_batches"], log_interval=max(1, settings["steps"] // 20),
                               out_dir=str(out_dir))
    summary = train.train(model, lambda split, g: data.get_batch(split, B, T, g), config, quiet=True)
    tokens = summary["tokens"]
    return {"n_layer": layers, "n_head": heads, "n_embd": width, "params": model.num_params(),
            "non_embedding_params": model.num_params(non_embedding=True), "tokens": tokens,
            "compute": model.flops_per_token() * tokens, "val_loss": summary["val_loss"],
            "train_loss": summary["train_loss"], "seconds": summary["wall_seconds"], "run_dir": str(out_dir)}


def plot(records, fit, fit_c, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    n = np.array([r["non_embedding_params"] for r in records], dtype=float)
    loss = np.array([r["val_loss"] for r in records])
    fig, (ax_n, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_n.loglog(n, loss, "o", color="C0", label="final val loss")
    grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
    ax_n.loglog(grid, fit[0] * grid ** -fit[1], "--", color="C1", label=f"L = {fit[0]:.2f} N^-{fit[1]:.3f}")
    ax_n.loglog(grid, fit_c[0] * grid ** -fit_c[1] + fit_c[2], ":", color="C2",
                label=f"L = {fit_c[0]:.1f} N^-{fit_c[1]:.3f} + {fit_c[2]:.2f}")
    ax_n.set(xlabel="non-embedding parameters N", ylabel="validation loss (nats/token)",
             title="loss vs model size (same tokens)")
    ax_n.legend(fontsize=8)
    for i, r in enumerate(records):  # each size's training curve against compute spent so far
        steps = [e for e in train_log.read_metrics(Path(r["run_dir"]) / "metrics.jsonl") if e["kind"] == "train"]
        per_token = r["compute"] / r["tokens"]
        ax_c.loglog([per_token * e["tokens"] for e in steps], [e["loss"] for e in steps], color=f"C{i}", alpha=0.6,
                    lw=1, label=f"{r['non_embedding_params'] / 1e6:.2f}M")
        ax_c.loglog(r["compute"], r["val_loss"], "o", color=f"C{i}")
    ax_c.set(xlabel="training compute C (FLOPs)", ylabel="loss", title="loss vs compute (curves: train, dots: val)")
    ax_c.legend(fontsize=8, title="N")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax in (ax_n, ax_c):
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.set_minor_formatter(NullFormatter())  # loss spans less than a decade: label it plainly
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 small sizes, a small corpus, 20 steps (seconds)")
    parser.add_argument("--steps", type=cli.positive_int, help="steps per size (default 400; --quick 20)")
    parser.add_argument("--batch-size", type=cli.positive_int, help="sequences per step (default 16; --quick 8)")
    parser.add_argument("--context", type=cli.positive_int, help="tokens per sequence (default 128; --quick 64)")
    parser.add_argument("--lr", type=cli.positive_float, default=2e-3,
                        help="peak learning rate, the same for every size")
    parser.add_argument("--precision", default="bf16", choices=["auto", "fp32", "bf16"],
                        help="bf16 autocast (default: faster on this 2-core CPU at these sizes); auto on a GPU")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the first available)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out-dir", default=str(REPO / "runs" / "03_pretrain" / "scaling"))
    parser.add_argument("--overwrite", action="store_true", help="replace the results and runs already in --out-dir")
    args = parser.parse_args(argv)
    quick = args.quick
    settings = {"steps": args.steps or (20 if quick else 400), "batch_size": args.batch_size or (8 if quick else 16),
                "context": args.context or (64 if quick else 128), "lr": args.lr, "seed": args.seed,
                "precision": args.precision, "device": args.device, "eval_batches": 2 if quick else 20}
    # an earlier study (its results, or the run of any size) is replaced only when asked
    out_dir = cli.check_out_dir(args.out_dir, overwrite=args.overwrite, marker="scaling.json", resumable=False)
    for layers, heads, width in SIZES:
        cli.check_out_dir(out_dir / f"L{layers}_H{heads}_C{width}", overwrite=args.overwrite, resumable=False)
    hardware.place(args.device, args.precision)  # a device this machine lacks: one line, before any work
    start = time.time()

    # the mini-world and a BPE trained on it, as in pretrain.py's tiny preset (smaller with --quick)
    dataset.prepare("world", out_dir / "data", vocab_size=512 if quick else 2048,
                    n_bytes=300_000 if quick else None, verbose=not quick)
    data = dataset.TokenDataset(out_dir / "data")
    tokens = settings["steps"] * settings["batch_size"] * settings["context"]
    print(f"{len(QUICK_SIZES if quick else SIZES)} sizes, each {settings['steps']} steps x {settings['batch_size']} x "
          f"{settings['context']} = {tokens:,} tokens ({tokens / data.lengths['train']:.2f} epochs)")
    records = []
    for layers, heads, width in QUICK_SIZES if quick else SIZES:
        record = run_size(layers, heads, width, data, settings, out_dir / f"L{layers}_H{heads}_C{width}")
        records.append(record)
        print(f"  {layers} layers x {heads} heads x {width} wide: N = {record['non_embedding_params']:>9,} "
              f"non-embedding ({record['params']:,} total), C = {record['compute']:.2e} FLOPs, "
              f"val loss {record['val_loss']:.4f}  ({record['seconds']:.0f} s)", flush=True)

    n = [r["non_embedding_params"] for r in records]
    loss = [r["val_loss"] for r in records]
    fit = fit_power_law(n, loss)
    fit_c = fit_power_law_with_constant(n, loss)
    compute_fit = fit_power_law([r["compute"] for r in records], loss)
    print(f"\nfit L(N) = {fit[0]:.3f} * N^-{fit[1]:.4f}            (Kaplan et al.: alpha_N ~ 0.076 at far larger N)")
    print(f"fit L(N) = {fit_c[0]:.3f} * N^-{fit_c[1]:.4f} + {fit_c[2]:.3f}    (with an irreducible loss)")
    print(f"fit L(C) = {compute_fit[0]:.3f} * C^-{compute_fit[1]:.4f}")
    results = {"settings": settings, "runs": records, "fit": {"a": fit[0], "alpha": fit[1]},
               "fit_with_constant": {"a": fit_c[0], "alpha": fit_c[1], "c": fit_c[2]},
               "fit_compute": {"a": compute_fit[0], "alpha": compute_fit[1]}}
    cli.write_text_atomic(out_dir / "scaling.json", json.dumps(results, indent=2) + "\n")
    plot(records, fit, fit_c, out_dir / "scaling.png")
    print(f"\n{time.time() - start:.0f} s. Wrote {out_dir / 'scaling.png'} (open it: the points should lie near a "
          f"straight line) and {out_dir / 'scaling.json'}")
    return results


if __name__ == "__main__":
    cli.run(main)
