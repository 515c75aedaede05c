"""What quantization costs and saves, measured: perplexity, greedy speed, outlier dimensions, the plots.

    perplexity(model, data, n_batches, batch_size, context)   exp(mean next-token loss) on the val split
    chat_perplexity(model, tokenizer, conversations)          the same on the assistant's tokens of chats
    greedy_tokens_per_second(model, prompt_ids, n_tokens)     one reply's decoding speed (KV cache)
    input_absmax_per_dim(model, tokens)                       the largest |input| per feature dim, per Linear
    outlier_dims_per_layer(maxima, thresholds)                LLM.int8()'s outlier feature count per layer
    plot_ppl_vs_bits, plot_error_histograms                   the chapter's two PNGs
"""
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from chat_format import render_chat, to_inputs_and_targets  # noqa: E402  (chapter 04)
from train import estimate_loss  # noqa: E402  (chapter 03)
from quant_modules import linear_names  # noqa: E402  (this chapter)


def perplexity(model, data, n_batches, batch_size, context, device="cpu", precision="fp32"):
    """exp(mean cross-entropy) over the same n_batches random windows of the val split every call
    (chapter 03's estimate_loss with its fixed seed), so every method is measured on the same tokens."""
    context = min(context, model.config.block_size)
    get_batch = lambda split, generator: data.get_batch(split, batch_size, context, generator)
    loss = estimate_loss(model, get_batch, n_batches, device, precision, splits=("val",))["val"]
    return math.exp(loss)


@torch.no_grad()
def chat_perplexity(model, tokenizer, conversations, batch_size=16):
    """exp(mean -log p(token)) over the ASSISTANT's tokens of held-out conversations (render_chat's loss
    mask, the tokens SFT trained on): how well the chat model still predicts the reference replies.

    Rows are right-padded: with causal attention, padding after a token cannot change its prediction.
    """
    device = next(model.parameters()).device
    block = model.config.block_size
    rows = [to_inputs_and_targets(*[part[-(block + 1):] for part in render_chat(c, tokenizer)]) for c in conversations]
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(x) for x, _ in chunk)
        x = torch.zeros(len(chunk), width, dtype=torch.long)
        y = torch.full((len(chunk), width), -1, dtype=torch.long)
        for i, (xs, ys) in enumerate(chunk):
            x[i, :len(xs)], y[i, :len(ys)] = torch.tensor(xs), torch.tensor(ys)
        logits, _ = model(x.to(device))  # (B, T, vocab)
        y = y.to(device)
        total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-1,
                                                         reduction="sum"))
        count += int((y != -1).sum())
    return math.exp(total / count)


@torch.no_grad()
def greedy_tokens_per_second(model, prompt_ids, n_tokens=64):
    """New tokens per second of one greedy reply of exactly n_tokens (no stop token), with the KV cache:
    the speed a person chatting sees. A short warm-up run first (first calls allocate)."""
    device = next(model.parameters()).device
    idx = torch.tensor([prompt_ids[-(model.config.block_size - n_tokens):]], device=device)
    model.generate(idx, 4, temperature=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(idx, n_tokens, temperature=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_tokens / (time.perf_counter() - start)


@torch.no_grad()
def input_absmax_per_dim(model, tokens, batch_size=8, skip=("lm_head",)):
    """{layer name: (K,) the largest |input| each feature dimension of the layer's input takes} over
    the token windows `tokens` (S, T): one forward pass with a hook on every Linear."""
    maxima, handles = {}, []
    for name in linear_names(model, skip):
        def hook(module, args, name=name):
            x = args[0].detach().float().reshape(-1, args[0].size(-1)).abs().amax(dim=0)
            maxima[name] = x if name not in maxima else torch.maximum(maxima[name], x)
        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        for start in range(0, len(tokens), batch_size):
            model(tokens[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def outlier_dims_per_layer(maxima, thresholds):
    """{threshold: {layer: how many input dims reach |x| >= threshold}} from input_absmax_per_dim."""
    return {t: {name: int((m >= t).sum()) for name, m in maxima.items()} for t in thresholds}


# ----------------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg backend)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_ppl_vs_bits(rows, fp32, path):
    """Two panels, validation-text perplexity and chat perplexity, against stored bits per Linear weight
    (scales included), RTN vs GPTQ.

    rows: [{"family": "RTN" | "GPTQ", "bits_per_weight", "perplexity", "chat_perplexity", "label"}];
    fp32: the fp32 row (its two perplexities are the dashed lines)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "perplexity", "validation text (chapter 03)"),
                           (axes[1], "chat_perplexity", "chat: held-out reference replies")):
        for family, marker in (("RTN", "o"), ("GPTQ", "s")):
            points = sorted((r["bits_per_weight"], r[key], r["label"]) for r in rows if r["family"] == family)
            if not points:
                continue
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=family)
            for x, y, label in points:
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(fp32[key], color="gray", linestyle="--", label=f"fp32 ({fp32[key]:.3f})")
        ax.set(xlabel="stored bits per Linear weight (scales and zeros included)", ylabel="perplexity", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Weight-only quantization: perplexity vs bits")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_error_histograms(errors, path, title="Weight error per layer"):
    """One histogram per layer of the weight error W_hat - W, several methods overlaid.

    errors: {method: {layer name: (M, K) error tensor}}, same layers for every method."""
    plt = _pyplot()
    methods = list(errors)
    layers = list(errors[methods[0]])
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        span = max(float(errors[m][layer].abs().max()) for m in methods) or 1.0
        for method in methods:
            values = errors[method][layer].flatten().float().numpy()
            ax.hist(values, bins=60, range=(-span, span), histtype="step", label=method)
        ax.set_title(layer.replace("transformer.", ""), fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yscale("log")
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
