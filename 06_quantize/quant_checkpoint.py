"""Save and load a quantized chat model: one ckpt.pt whose size on disk is the size the table reports.

    save_quantized(path, model, stage="gptq4", source="runs/04_sft/ckpt.pt", tokenizer=tokenizer, settings={})
    model, tokenizer, meta = load_model("runs/06_quantize/gptq4/ckpt.pt", stage="chat")   # chapter 03's loader

Importing this module registers the "quantized" format with chapter 03's loader (model_loader.py), so
every script that imports it loads quantized checkpoints like any other.

What ckpt.pt holds (a plain dict; torch.load(..., weights_only=True) reads it, through chapter 03's
read_checkpoint):
    model          the swapped model's state dict: packed codes, scales, zeros (uint8 / float16 buffers)
                   for the quantized layers, float tensors for the rest (embeddings, norms, the head)
    model_config   the GPTConfig as a dict, as every chapter's checkpoint
    quantization   {layer name: spec}: which nn.Linear became which module (kind, mode / bits, group size)
    dtype          "fp32" or "bf16": the dtype of the float tensors
    stage          the method: "bf16", "int8_absmax", ..., "llm_int8", "rtn4", "gptq4", "gptq3_g64", ...
    role, format   "chat" (the source's role) and "quantized" (rebuilt by rebuild_quantized)
    source         the checkpoint it was quantized from; source_stage its stage if it recorded one
    tokenizer      the tokenizer's path prefix (saved next to ckpt.pt as tokenizer.tiktoken + .json)
    tokenizer_sha256  the source's tokenizer hash: the loader refuses a tokenizer changed under it
    settings       what quantize.py ran with (bits, group size, calibration, ...)
No optimizer state: a quantized model is for inference.
"""
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from checkpoint import model_config_dict, save_checkpoint  # noqa: E402  (chapter 03)
from model_loader import rebuild_gpt, register_format  # noqa: E402  (chapter 03: the one loader)
from quant_modules import apply_specs, quantization_specs  # noqa: E402  (this chapter)


def save_quantized(path, model, stage, source=None, tokenizer=None, settings=None, source_meta=None, final_path=None):
    """Write `model` (quantized modules swapped in, or a plain float model for fp32/bf16) to `path`
    atomically, with its tokenizer beside it; source_meta: the source checkpoint's metadata (its stage,
    role and tokenizer hash are passed on); final_path: where the file will live once the run is complete
    (quantize.py writes to a staging folder first), which the recorded tokenizer path follows. Returns the
    file's size in bytes."""
    source_meta = source_meta or {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer_prefix = None
    if tokenizer is not None:
        tokenizer_prefix = path.parent / "tokenizer"
        tokenizer.save(tokenizer_prefix)
    dtype = "bf16" if model.transformer.wte.weight.dtype == torch.bfloat16 else "fp32"
    save_checkpoint(path, {
        "model": model.state_dict(),
        "model_config": model_config_dict(model),
        "quantization": quantization_specs(model),
        "dtype": dtype,
        "stage": stage,
        "role": source_meta.get("role", "chat"),
        "format": "quantized",
        "source": None if source is None else str(source),
        "source_stage": source_meta.get("stage"),
        "tokenizer": None if tokenizer_prefix is None else str(Path(final_path or path).parent / "tokenizer"),
        "tokenizer_sha256": source_meta.get("tokenizer_sha256"),
        "settings": settings or {},
    })
    return path.stat().st_size


def rebuild_quantized(meta, state_dict):
    """The GPT of a checkpoint of this chapter: float tensors in meta["dtype"], each Linear the spec of
    meta["quantization"] names swapped for its quantized module, then the saved weights. Chapter 03's loader
    calls it once this module is imported: load_model("runs/06_quantize/gptq4/ckpt.pt", stage="chat")."""
    model = rebuild_gpt(meta, None)
    if meta.get("dtype") == "bf16":
        model.to(torch.bfloat16)
    apply_specs(model, meta.get("quantization") or {})
    model.load_state_dict(state_dict)
    return model


register_format("quantized", rebuild_quantized,
                recognize=lambda meta: bool(meta.get("quantization")) or meta.get("dtype") == "bf16")
