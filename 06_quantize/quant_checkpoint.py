"""Save and load a quantized chat model: one ckpt.pt whose size on disk is the size the table reports.

    save_quantized(path, model, stage="gptq4", source="runs/04_sft/ckpt.pt", tokenizer=tokenizer, settings={})
    model, tokenizer, checkpoint = load_quantized_model("runs/06_quantize/gptq4/ckpt.pt")

What ckpt.pt holds (a plain dict; torch.load(..., weights_only=True) reads it, through chapter 03's
read_checkpoint):
    model          the swapped model's state dict: packed codes, scales, zeros (uint8 / float16 buffers)
                   for the quantized layers, float tensors for the rest (embeddings, norms, the head)
    model_config   the GPTConfig as a dict, as every chapter's checkpoint
    quantization   {layer name: spec}: which nn.Linear became which module (kind, mode / bits, group size)
    dtype          "fp32" or "bf16": the dtype of the float tensors
    stage          the method: "bf16", "int8_absmax", ..., "llm_int8", "rtn4", "gptq4", "gptq3_g64", ...
    source         the checkpoint it was quantized from; source_stage its stage if it recorded one
    tokenizer      the tokenizer's path prefix (saved next to ckpt.pt as tokenizer.tiktoken + .json)
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

from checkpoint import model_config_dict, read_checkpoint, save_checkpoint  # noqa: E402  (chapter 03)
from quant_modules import apply_specs, quantization_specs  # noqa: E402  (this chapter)


def save_quantized(path, model, stage, source=None, tokenizer=None, settings=None, source_stage=None):
    """Write `model` (quantized modules swapped in, or a plain float model for fp32/bf16) to `path`
    atomically, with its tokenizer beside it. Returns the file's size in bytes."""
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
        "source": None if source is None else str(source),
        "source_stage": source_stage,
        "tokenizer": None if tokenizer_prefix is None else str(tokenizer_prefix),
        "settings": settings or {},
    })
    return path.stat().st_size


def find_tokenizer(ckpt_path, checkpoint):
    """The tokenizer a checkpoint names (checkpoint["tokenizer"], a path prefix), else the one beside it."""
    from bpe import Tokenizer

    candidates = [ckpt_path.parent / "tokenizer"]
    if checkpoint.get("tokenizer"):
        candidates.insert(0, Path(checkpoint["tokenizer"]))
    prefix = next((p for p in candidates if p.with_name(p.name + ".tiktoken").is_file()), None)
    if prefix is None:
        raise FileNotFoundError(f"no tokenizer for {ckpt_path}: looked for "
                                + " and ".join(f"{p}.tiktoken" for p in candidates))
    return Tokenizer.load(prefix)


def load_quantized_model(path, device="cpu"):
    """(model, tokenizer, checkpoint) from a checkpoint of this chapter (quantized or fp32/bf16) or any
    chapter 03-05 checkpoint (a float model). The model is in eval mode on `device`.

    FileNotFoundError for a missing file or tokenizer; ValueError for a file that is not a model
    checkpoint (the message says what it lacks).
    """
    from gpt import GPT, GPTConfig

    path = Path(path)
    checkpoint = read_checkpoint(path)  # FileNotFoundError, or ValueError for a damaged / foreign file
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "model_config" not in checkpoint:
        raise ValueError(f"{path} is not a model checkpoint: it needs 'model' (a state dict) and 'model_config' "
                         f"(chapter 03-06 checkpoints have both); give the ckpt.pt of a chat model")
    tokenizer = find_tokenizer(path, checkpoint)
    try:
        model = GPT(GPTConfig(**checkpoint["model_config"]))
    except TypeError as error:
        raise ValueError(f"{path}: its model_config is not a GPTConfig ({error})") from None
    if checkpoint.get("dtype") == "bf16":
        model.to(torch.bfloat16)
    apply_specs(model, checkpoint.get("quantization") or {})
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ValueError(f"{path}: the weights do not fit the model its config describes: "
                         f"{str(error).splitlines()[0]}") from None
    return model.to(device).eval(), tokenizer, checkpoint
