"""Outlier features on demand: a function-preserving rescaling that gives a small model the activations of a
large one, and the int8 rows measured on it.

    inject_outliers(model, dims=[5, 77, 140], alpha=30)   in place: the same function, outliers of ~30x in `dims`
    study = outlier_study(model, tokenizer, data, chats, calibration, settings, device, threshold=6.0)
                                                   the int8 rows at alpha 1, 10, 30, the largest input, the sweep
    write_outlier_study(out_dir, study)            its section of results.md and its key in results.json

Dettmers et al. (LLM.int8(), 2022) found that from about 6.7B parameters a few feature dimensions of the
inputs of attention's QKV projection and the MLP's first layer hold values of magnitude 20-60 in most
tokens. Our tiny model never goes above about 5 (section 3 of the lesson), so every int8 method is within
noise of fp32 on it. A norm's gain g and the next Linear's weight W come in a pair that can be rescaled
without changing the function, so we can put the outliers in ourselves and watch each method meet them.
"""
import copy
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: atomic writes)
from quant_eval import chat_perplexity, input_absmax_per_dim, outlier_dims_per_layer, perplexity  # noqa: E402
from quant_modules import Int8Linear, linear_names, linear_weight_bytes, swap_linears  # noqa: E402

ALPHAS = (1.0, 10.0, 30.0)  # 1: the natural model; 10 and 30: the range of the paper's emergent features
N_DIMS = 3  # how many hidden dimensions get the outliers (the paper: a handful out of thousands)


def norm_and_readers(block):
    """The (norm, [the Linear layers that read its output]) pairs of one chapter-02 Block."""
    mlp = block.mlp
    first_mlp = [mlp.c_fc] if hasattr(mlp, "c_fc") else [mlp.w_gate, mlp.w_up]  # GELU MLP | SwiGLU
    return [(block.ln_1, [block.attn.c_attn]), (block.ln_2, first_mlp)]


@torch.no_grad()
def inject_outliers(model, dims, alpha):
    """Make hidden dimensions `dims` carry activations alpha times larger, without changing what the model
    computes. In place; returns the model.

    A norm (LayerNorm or RMSNorm) ends with a per-dimension gain g (C,) and, for LayerNorm, a bias b (C,):
        h_d = n(x)_d g_d + b_d          (n(x): x centred and/or divided by its RMS; no parameters)
    and the Linear that reads h computes y = W h + c = sum_d W[:, d] h_d + c, with W (out, C). For each
    d in dims:
        g_d <- alpha g_d,   b_d <- alpha b_d          so  h_d <- alpha h_d
        W[:, d] <- W[:, d] / alpha                    so  W[:, d] h_d is unchanged, and so is y
    Every block's ln_1 (read by attention's c_attn) and ln_2 (read by the MLP's c_fc, or SwiGLU's w_gate
    and w_up) is rescaled. The residual stream itself does not change: only the inputs of those Linear
    layers do, which is where the paper found the outliers and where int8 quantizes activations.
    The final norm ln_f is left alone: lm_head reads it, and chapter 06 keeps lm_head in float anyway; in
    GPT-2 it is tied to the token embedding, so dividing its columns would change the embeddings too.
    In exact arithmetic the logits are identical; in float32 they agree to about 1e-5 (a test).
    dims: a list of hidden dimensions (< n_embd); alpha > 0.
    """
    if alpha <= 0:
        raise ValueError(f"alpha={alpha} must be positive: it multiplies a gain and divides a weight")
    dims = [int(d) for d in dims]  # a list indexes a tensor on any device
    for block in model.transformer.h:
        for norm, readers in norm_and_readers(block):
            # --- student part: the function-preserving outlier injection (lesson: "3. One outlier ruins a scale; smaller groups and the decomposition fix it") ---
            norm.weight[dims] *= alpha
            if getattr(norm, "bias", None) is not None:
                norm.bias[dims] *= alpha
            for linear in readers:
                linear.weight[:, dims] /= alpha
            # --- end of student part ---
    return model


@torch.no_grad()
def typical_dims(model, tokens, n=N_DIMS):
    """The n hidden dimensions whose norm outputs are largest on average (mean |h_d| over the tokens (S, T)
    and over every block's ln_1 and ln_2): injected there, the outliers appear in most tokens, as the
    paper's do ("systematic"), not in a few. -> sorted list of n ints."""
    totals, handles = [], []
    for block in model.transformer.h:
        for norm, _ in norm_and_readers(block):
            handles.append(norm.register_forward_hook(
                lambda module, args, out: totals.append(out.detach().float().abs().flatten(0, -2).mean(0))))
    try:
        model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return sorted(torch.stack(totals).mean(0).topk(n).indices.tolist())


def fp16_path_bytes(model, counts):
    """Bytes of the weight columns LLM.int8() keeps in float16 for the outlier input dims found on the
    calibration windows: for every layer, k dims (counts {layer: k}) x its output width M x 2 bytes, plus
    8 bytes of index per dim: what Int8Linear.from_linear(..., float_dims=...) adds to the int8 weight."""
    return sum(k * (model.get_submodule(name).out_features * 2 + 8) for name, k in counts.items())


@torch.no_grad()
def outlier_study(model, tokenizer, data, chats, calibration, settings, device, threshold, natural_rows=(),
                  alphas=ALPHAS, log=print):
    """The int8 rows of the natural model (alpha 1) and of injected copies, perplexities only (no checkpoint,
    no task evaluation): absmax per tensor, vector-wise, LLM.int8 at `threshold` as bitsandbytes runs it
    (W's outlier columns dequantized from int8), and LLM.int8 with W's columns for the dims that reach the
    threshold on the calibration windows kept in float16 (the paper's W_f16). For each alpha also the
    largest |input| of any Linear, the largest change of a logit (the function is the same: ~1e-5), and the
    threshold sweep: outlier columns and their float16 bytes.
    To stay cheap, the rows the main table already measured (natural_rows: its fp32, int8_absmax, ...) are
    reused for alpha 1, and fp32 is measured once: the injected models compute the same function.
    -> {"dims", "threshold", "alphas": [{"alpha", "max_abs_input", "max_logit_change", "rows", "sweep"}],
        "int8_weight_bytes"}."""
    def measure(method, quantized):
        return {"method": method, "linear_bytes": linear_weight_bytes(quantized),
                "perplexity": perplexity(quantized, data, settings["ppl_batches"], settings["ppl_batch_size"],
                                         settings["ppl_context"], device),
                "chat_perplexity": chat_perplexity(quantized, tokenizer, chats)}

    known = {r["method"]: {k: r[k] for k in ("method", "linear_bytes", "perplexity", "chat_perplexity")}
             for r in natural_rows}
    probe = calibration[: settings["ppl_batch_size"]]
    dims = typical_dims(model, probe)
    reference = model(probe)[0]
    fp32 = known.get("fp32") or measure("fp32", model)
    study = {"dims": dims, "threshold": threshold, "alphas": []}
    for alpha in alphas:
        injected = inject_outliers(copy.deepcopy(model), dims, alpha)
        maxima = input_absmax_per_dim(injected, calibration)  # {layer: (K,)} over the calibration windows
        counts = outlier_dims_per_layer(maxima, settings["sweep"])
        float_dims = {name: (m >= threshold).nonzero().flatten().tolist() for name, m in maxima.items()}
        makers = {"int8_absmax": lambda n, l: Int8Linear.from_linear(l, "absmax"),
                  "int8_vectorwise": lambda n, l: Int8Linear.from_linear(l, "vectorwise"),
                  "llm_int8": lambda n, l: Int8Linear.from_linear(l, "llm_int8", threshold),
                  "llm_int8_fp16_cols": lambda n, l: Int8Linear.from_linear(l, "llm_int8", threshold, float_dims[n])}
        rows = [fp32]
        for method, make in makers.items():
            reused = known.get(method) if alpha == 1 else None
            if alpha == 1 and method == "llm_int8_fp16_cols" and not any(float_dims.values()) and "llm_int8" in known:
                reused = {**known["llm_int8"], "method": method}  # no float columns: the same modules as llm_int8
            rows.append(reused or measure(method, swap_linears(copy.deepcopy(injected), make)))
        sweep = [{"threshold": t, "outlier_columns": sum(counts[t].values()),
                  "fp16_bytes": fp16_path_bytes(model, counts[t])} for t in settings["sweep"]]
        study["alphas"].append({"alpha": alpha, "max_abs_input": max(float(m.max()) for m in maxima.values()),
                                "max_logit_change": float((injected(probe)[0] - reference).abs().max()),
                                "rows": rows, "sweep": sweep})
        log(f"outliers alpha {alpha:g} in dims {dims}: largest |input| {study['alphas'][-1]['max_abs_input']:.1f}; "
            + ", ".join(f"{r['method']} {r['perplexity']:.4f}" for r in rows[1:]))
    study["int8_weight_bytes"] = sum(model.get_submodule(n).weight.numel() for n in linear_names(model))
    return study


def outlier_study_markdown(study):
    """The study as a section of results.md: perplexities against each alpha's fp32, then the sweep."""
    names = [r["method"] for r in study["alphas"][0]["rows"]]
    lines = ["## Injected outliers: the int8 rows when a few dims carry large activations", "",
             f"inject_outliers(model, dims={study['dims']}, alpha): the same function (largest change of a logit in "
             f"the last column, fp32), activations alpha times larger in those dims of every QKV and first-MLP input. "
             f"LLM.int8 at threshold {study['threshold']:g}; llm_int8_fp16_cols keeps W's columns of the dims that reach "
             f"it on the calibration windows in float16. Each cell: val ppl / chat ppl, and their change against fp32.",
             "", "| alpha | largest \\|input\\| | " + " | ".join(names) + " | logit change |",
             "|---:|---:|" + "---:|" * (len(names) + 1)]
    for entry in study["alphas"]:
        fp32 = entry["rows"][0]
        cells = [f"{r['perplexity']:.4f} ({100 * (r['perplexity'] / fp32['perplexity'] - 1):+.2f}%) / "
                 f"{r['chat_perplexity']:.4f} ({100 * (r['chat_perplexity'] / fp32['chat_perplexity'] - 1):+.2f}%)"
                 for r in entry["rows"]]
        lines.append(f"| {entry['alpha']:g} | {entry['max_abs_input']:.1f} | " + " | ".join(cells)
                     + f" | {entry['max_logit_change']:.1e} |")
    thresholds = [s["threshold"] for s in study["alphas"][0]["sweep"]]
    lines += ["", "The threshold sweep on the calibration windows: input columns (summed over the Linear layers) "
              "that reach |x| >= threshold, i.e. go to the 16-bit path, and the bytes of their weight columns in "
              f"float16 (the int8 weights are {study['int8_weight_bytes']:,} bytes).", "",
              "| alpha | " + " | ".join(f"threshold {t:g}" for t in thresholds) + " |",
              "|---:|" + "---:|" * len(thresholds)]
    for entry in study["alphas"]:
        lines.append(f"| {entry['alpha']:g} | " + " | ".join(
            f"{s['outlier_columns']} cols, {s['fp16_bytes']:,} B" for s in entry["sweep"]) + " |")
    return "\n".join(lines) + "\n"


def write_outlier_study(out_dir, study):
    """Add the study to a finished run's results.md (its own section, at the end) and results.json
    (key "injected_outliers"), each rewritten atomically."""
    out_dir = Path(out_dir)
    text = (out_dir / "results.md").read_text(encoding="utf-8")
    cli.write_text_atomic(out_dir / "results.md", text.rstrip("\n") + "\n\n" + outlier_study_markdown(study))
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    cli.write_text_atomic(out_dir / "results.json", json.dumps({**results, "injected_outliers": study}, indent=1) + "\n")
