"""Loading OpenAI's published GPT-2 weights (Hugging Face's layout) into chapter 02's GPT.

    sd = torch.load("pytorch_model.bin")              # a Hugging Face GPT-2 state dict (not downloaded here)
    model = load_hf_gpt2_state_dict(GPT(hf_gpt2_config(sd)), sd)
"""
import re

import torch

from gpt import GPTConfig  # this chapter (gpt.py does not import this module: no cycle)


def hf_gpt2_config(hf_state_dict, **overrides):
    """A GPTConfig matching a Hugging Face GPT-2 state dict (sizes read from the tensors, head size 64)."""
    sd = {_strip_prefix(k): v for k, v in hf_state_dict.items()}
    vocab_size, n_embd = sd["wte.weight"].shape
    n_layer = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"h\.(\d+)\.", k)))
    fields = dict(vocab_size=vocab_size, block_size=sd["wpe.weight"].shape[0], n_layer=n_layer,
                  n_head=n_embd // 64, n_embd=n_embd, attn_impl="sdpa")
    return GPTConfig(**{**fields, **overrides})


def _strip_prefix(key):
    return key[len("transformer."):] if key.startswith("transformer.") else key


@torch.no_grad()
def load_hf_gpt2_state_dict(model, hf_state_dict):
    """Copy a Hugging Face GPT-2 state dict (e.g. from pytorch_model.bin) into our GPT; returns the model.

    Our names are HF's names (transformer.h.0.attn.c_attn.weight, ...), with two differences:
    - HF's GPT-2 uses "Conv1D" layers, which store weights as (in, out), i.e. y = x W + b; nn.Linear
      stores (out, in), y = x W^T + b. So every c_attn, c_proj and c_fc weight is transposed.
    - c_attn is the fused q, k, v projection in both: (C, 3C) there, (3C, C) here, q then k then v.
    HF's buffers (attn.bias, attn.masked_bias: its causal mask) are skipped; lm_head.weight, if present,
    is the tied wte. The model must be GPT-2 shaped (layernorm, learned positions, tanh gelu, biases, tied).
    """
    c = model.config
    gpt2_shape = ("layernorm", "learned", "gelu", "tanh", True, True)
    if (c.norm, c.pos, c.mlp, c.gelu, c.bias, c.tie_weights) != gpt2_shape:
        raise ValueError("GPT-2 weights need a GPT-2 shaped model: norm='layernorm', pos='learned', mlp='gelu', "
                         "gelu='tanh', bias=True, tie_weights=True (build it with hf_gpt2_config(state_dict))")
    transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    ours = model.state_dict()
    loaded = set()
    for key, value in hf_state_dict.items():
        key = _strip_prefix(key)
        if re.fullmatch(r"h\.\d+\.attn\.(bias|masked_bias)", key) or key == "lm_head.weight":
            continue
        name = "transformer." + key
        if name not in ours:
            raise ValueError(f"unexpected key {key!r} in the GPT-2 state dict (is it a GPT-2 checkpoint?)")
        if key.endswith(transposed):
            value = value.t()
        if value.shape != ours[name].shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit our {tuple(ours[name].shape)}; "
                             f"build the model with hf_gpt2_config(state_dict)")
        ours[name].copy_(value)
        loaded.add(name)
    missing = set(ours) - loaded - {"lm_head.weight"}
    if missing:
        raise ValueError(f"the GPT-2 state dict lacks {sorted(missing)[:5]} ({len(missing)} keys in all)")
    return model
