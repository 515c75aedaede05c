"""A guided tour of chapter 02's GPT: build a preset, count it, train one step, generate, look at attention.

    python 02_transformer/tour_gpt.py                        # tiny preset, a few seconds on a CPU
    python 02_transformer/tour_gpt.py --preset llama-tiny    # the same size with LLaMA's choices
    python 02_transformer/tour_gpt.py --preset gpt2 --device cuda

Steps: (1) the one-screen summary (parameters with and without embeddings, FLOPs per token);
(2) one forward and backward pass on random tokens: an untrained model's loss is about ln(vocab_size),
the loss of guessing uniformly; (3) generation from the untrained model, with and without the KV
cache (same tokens, different speed); (4) the attention maps of one layer for a prompt, saved as
runs/02_transformer/attention.png. The model has no tokenizer yet (chapter 01 builds one, chapter 03
joins them): a prompt here is the UTF-8 bytes of a string, token ids 0..255.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer"]:  # the earlier chapter this file builds on (its cli plumbing)
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one clear line for bad input)
from gpt import GPT, PRESETS, GPTConfig  # noqa: E402


def pick_device(name="auto"):
    """cuda, then mps, then cpu; an explicit name wins, if this machine has it."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu (or auto)")
    if name == "mps" and not mps:
        raise ValueError("--device mps: MPS is not available here; use --device cpu (or auto)")
    if name not in ("auto", "cuda", "mps", "cpu"):
        raise ValueError(f"--device {name}: unknown device; use auto, cuda, mps or cpu")
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if mps:
        return "mps"
    return "cpu"


def bytes_to_text(ids):
    """Show token ids as text: ids < 256 are bytes, anything else as <id>."""
    out = []
    for token in ids:
        out.append(bytes([token]).decode("utf-8", errors="replace") if token < 256 else f"<{token}>")
    return "".join(out).replace("\n", "\\n")


def plot_attention(maps, labels, layer, path):
    """maps: (H, T, T) for one prompt; one heatmap per head, query rows, key columns."""
    n_head = maps.size(0)
    cols = min(n_head, 4)
    rows = math.ceil(n_head / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= n_head:
            ax.axis("off")
            continue
        ax.imshow(maps[h].float().cpu().numpy(), cmap="viridis", vmin=0.0)
        ax.set_title(f"layer {layer}, head {h}", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    fig.suptitle("attention weights: row = query token, column = key token it reads (rows sum to 1)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size and shape (default tiny)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
    parser.add_argument("--attn-impl", choices=["manual", "sdpa"], help="override the preset's attention code path")
    parser.add_argument("--prompt", default="Hello, world! Attention is", help="text whose bytes are the prompt")
    parser.add_argument("--layer", type=cli.non_negative_int, default=0, help="which layer's attention to plot (default 0)")
    parser.add_argument("--max-new-tokens", type=cli.positive_int, default=48, help="tokens to generate (default 48)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=REPO / "runs" / "02_transformer", help="where the PNG goes")
    args = parser.parse_args(argv)
    if not args.prompt:
        raise ValueError("--prompt is empty: give at least one character (its bytes are the prompt)")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {args.out_dir} is a file, not a folder: give a folder")
    return args


def checked_config(args):
    overrides = {"attn_impl": args.attn_impl} if args.attn_impl else {}
    config = GPTConfig.from_preset(args.preset, **overrides)
    if config.vocab_size < 256:
        raise ValueError(f"this tour feeds bytes (ids 0..255) to the model, so it needs vocab_size >= 256, "
                         f"got {config.vocab_size}")
    if not 0 <= args.layer < config.n_layer:
        raise ValueError(f"--layer must be between 0 and {config.n_layer - 1} for preset {args.preset}")
    return config


def one_training_step(model, config, device, autocast):
    """Step 2: forward and backward on random tokens; the loss starts near ln(vocab_size)."""
    B, T = 4, min(64, config.block_size)
    batch = torch.randint(0, config.vocab_size, (B, T + 1), device=device)
    start = time.perf_counter()
    with autocast:
        _, loss = model(batch[:, :-1], batch[:, 1:])
    loss.backward()
    seconds = time.perf_counter() - start
    grad_norm = torch.sqrt(sum(p.grad.float().pow(2).sum() for p in model.parameters() if p.grad is not None))
    print(f"  batch {B} x {T}: loss {loss.item():.3f} (uniform guessing: ln({config.vocab_size}) = "
          f"{math.log(config.vocab_size):.3f}), gradient norm {grad_norm.item():.3f}, {seconds * 1000:.0f} ms")
    model.zero_grad(set_to_none=True)


def generate_both_ways(model, args, prompt, device, autocast):
    """Step 3: greedy with and without the KV cache (the same tokens), and a sample -> the prompt tensor."""
    new_tokens = min(args.max_new_tokens, model.config.block_size - len(prompt))
    idx = torch.tensor([prompt], device=device)
    timings = {}
    with autocast:
        for use_cache in (True, False):
            start = time.perf_counter()
            out = model.generate(idx, new_tokens, temperature=0, use_cache=use_cache)
            timings[use_cache] = (time.perf_counter() - start, out)
        sampled = model.generate(idx, new_tokens, temperature=1.0, top_k=50, seed=args.seed)
    same = torch.equal(timings[True][1], timings[False][1])
    print(f"  prompt : {args.prompt!r} ({len(prompt)} byte tokens)")
    print(f"  greedy : {bytes_to_text(timings[True][1][0, len(prompt):].tolist())!r}")
    print(f"  sampled: {bytes_to_text(sampled[0, len(prompt):].tolist())!r}  (temperature 1, top_k 50)")
    print(f"  {new_tokens} greedy tokens: {timings[True][0] * 1000:.0f} ms with the KV cache, "
          f"{timings[False][0] * 1000:.0f} ms without; identical tokens: {same}")
    return idx


def show_attention(model, idx, prompt, layer, path, autocast):
    """Step 4: one layer's attention maps of the prompt, as a PNG."""
    with autocast:
        maps = model.attention_maps(idx, layer)[0]  # (H, T, T)
    labels = [bytes_to_text([t]).replace(" ", "\u2423") for t in prompt]  # show spaces as a visible mark
    plot_attention(maps, labels, layer, path)
    first = maps[0, -1, :].float()
    print(f"  {maps.size(0)} heads x {maps.size(1)} x {maps.size(2)}; last query of head 0 spreads its weight "
          f"min {first.min():.3f} / max {first.max():.3f} (uniform would be {1 / len(prompt):.3f}):")
    print("  an untrained model averages almost evenly over the past; the upper triangle is 0 (the causal mask).")


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    config = checked_config(args)
    # bf16 autocast on a GPU (tensor cores); fp32 on the CPU, where it is as fast at this size (README)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")

    print(f"== 1. the model: preset {args.preset!r} on {device}")
    start = time.perf_counter()
    model = GPT(config).to(device)
    print(model.summary())
    print(f"  (built and initialised in {time.perf_counter() - start:.2f} s)")

    print("\n== 2. one training step's forward and backward on random tokens")
    one_training_step(model, config, device, autocast)

    print("\n== 3. generation from the untrained model (its output is noise: nothing is learned yet)")
    prompt = list(args.prompt.encode("utf-8"))[: config.block_size - 1]
    idx = generate_both_ways(model, args, prompt, device, autocast)

    print(f"\n== 4. attention maps of layer {args.layer}")
    path = args.out_dir / "attention.png"
    show_attention(model, idx, prompt, args.layer, path, autocast)
    print(f"\nwrote {path}")
    print("next: open the PNG, read 02_transformer/README.md, then train this model in chapter 03 "
          "(python 03_pretrain/pretrain.py --preset tiny)")


if __name__ == "__main__":
    cli.run(main)
