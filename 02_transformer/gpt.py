"""A GPT (decoder-only Transformer) written out in full, GPT-2 by default, LLaMA's choices one switch away.

    config = GPTConfig.from_preset("tiny")        # or "gpt2", "gpt2-medium", "llama-tiny", ...
    model = GPT(config)
    logits, loss = model(idx, targets)            # idx, targets: (B, T) token ids
    out = model.generate(idx, max_new_tokens=50)  # KV cache on by default

Reading order: GPTConfig and PRESETS, CausalSelfAttention, Block, GPT (embeddings -> blocks -> norm ->
head), then accounting. Beside this file: layers.py (the building blocks: softmax, attention, norms,
GELU, SwiGLU, RoPE), padding.py (batches of different lengths: left_pad, masks, positions),
generation.py (KV cache, sampling, generate / generate_batch / stream / rollout), logprobs.py
(per-token log-probs and entropy) and gpt2_weights.py (loading OpenAI's GPT-2 weights).
"""
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import generation
from generation import KVCache, eval_mode, sample_next_token, token_set  # noqa: F401  (importable from gpt, as before)
from layers import (MLP, LayerNorm, RMSNorm, SwiGLU, apply_rope, attention_weights, causal_mask, rope_tables,
                    scaled_dot_product_attention)
from padding import doc_positions_and_mask, padded_causal_mask, positions_from_mask


@dataclass
class GPTConfig:
    """Everything that fixes a model's shape. The defaults are GPT-2 small (124M) with a padded vocab.

    norm: "layernorm" (GPT-2) | "rmsnorm" (LLaMA);  pos: "learned" (GPT-2) | "rope" (LLaMA);
    mlp: "gelu" (GPT-2, hidden 4C) | "swiglu" (LLaMA, hidden ~8C/3);  tie_weights: lm_head shares wte.
    gelu: "tanh" (GPT-2's approximation) | "erf" (the exact GELU, as in nanoGPT and BERT; the two differ by
      under 5e-4; torch's CPU kernel for "erf" is ~4x faster forward, ~3x with backward: a CPU run can use it).
    attn_impl: "manual" runs our own formulas from layers.py everywhere (attention, softmax, norms, GELU);
      "sdpa" runs torch's fused kernels for the same math (F.scaled_dot_product_attention, which is
      flash attention on a GPU, plus F.layer_norm, F.rms_norm, F.gelu): same numbers, fewer, faster ops.
    mlp_hidden: width of the MLP's hidden layer; None means 4C for gelu, 8C/3 rounded up to 64 for swiglu.
      The default is written into the field when the config is made (checkpoints then record it), so
      dataclasses.replace(config, n_embd=...) keeps the old width unless you also pass mlp_hidden=None.
    norm_eps: the eps of every norm (added to the variance before the square root); None means each
      norm's usual value, 1e-5 for layernorm (GPT-2) and 1e-6 for rmsnorm (LLaMA 1; LLaMA 2 and 3 use
      1e-5). Written into the field like mlp_hidden.
    """
    vocab_size: int = 50304  # GPT-2's 50257 rounded up to a multiple of 64 (faster matmuls on a GPU)
    block_size: int = 1024  # context length: the most positions the model can see at once
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in the Linear layers and LayerNorms
    norm: str = "layernorm"
    pos: str = "learned"
    mlp: str = "gelu"
    gelu: str = "tanh"
    tie_weights: bool = True
    attn_impl: str = "manual"
    rope_theta: float = 10000.0
    mlp_hidden: int | None = None
    norm_eps: float | None = None

    def __post_init__(self):
        choices = {"norm": ("layernorm", "rmsnorm"), "pos": ("learned", "rope"), "mlp": ("gelu", "swiglu"),
                   "gelu": ("tanh", "erf"), "attn_impl": ("manual", "sdpa")}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"GPTConfig.{field}={getattr(self, field)!r}: choose one of {allowed}")
        sizes = {"vocab_size": self.vocab_size, "block_size": self.block_size, "n_layer": self.n_layer,
                 "n_head": self.n_head, "n_embd": self.n_embd}
        for field, value in sizes.items():
            if value < 1:
                raise ValueError(f"GPTConfig.{field}={value}: it must be a positive integer")
        if not 0.0 <= self.dropout < 1.0 or self.rope_theta <= 0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1) and rope_theta={self.rope_theta} positive")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"pos='rope' needs an even head size, got n_embd/n_head={self.n_embd // self.n_head}")
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.n_embd if self.mlp == "gelu" else 64 * math.ceil(8 * self.n_embd / 3 / 64)
        if self.norm_eps is None:
            self.norm_eps = 1e-5 if self.norm == "layernorm" else 1e-6
        if self.norm_eps <= 0:
            raise ValueError(f"norm_eps={self.norm_eps} must be positive")

    @classmethod
    def from_preset(cls, name, **overrides):
        """GPTConfig.from_preset("tiny", vocab_size=512) -> the preset's fields, then the overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {sorted(unknown)}; the fields are {sorted(fields)}")
        return cls(**{**PRESETS[name], **overrides})


# Plain dicts of GPTConfig fields. The CPU presets use attn_impl="sdpa" because it is faster (README).
PRESETS = {
    # ~2.0M parameters: trains on a laptop CPU in minutes. block_size 512 leaves room for 256 new tokens.
    "tiny": dict(vocab_size=512, block_size=512, n_layer=4, n_head=6, n_embd=192, attn_impl="sdpa"),
    # ~5.3M parameters (with a 2048 vocabulary): chapter 03's `small` preset, 03 + 04 in ~30 minutes on 2 cores
    "small": dict(vocab_size=512, block_size=512, n_layer=6, n_head=8, n_embd=256, attn_impl="sdpa"),
    # the same size with LLaMA's choices: RMSNorm, rotary positions, SwiGLU, untied head, no biases
    "llama-tiny": dict(vocab_size=512, block_size=512, n_layer=4, n_head=6, n_embd=192, attn_impl="sdpa",
                       norm="rmsnorm", pos="rope", mlp="swiglu", tie_weights=False, bias=False),
    # OpenAI's GPT-2 sizes, with the published vocab of 50257 so that their weights load
    "gpt2": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, attn_impl="sdpa"),
    "gpt2-medium": dict(vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024, attn_impl="sdpa"),
    "gpt2-large": dict(vocab_size=50257, block_size=1024, n_layer=36, n_head=20, n_embd=1280, attn_impl="sdpa"),
    "gpt2-xl": dict(vocab_size=50257, block_size=1024, n_layer=48, n_head=25, n_embd=1600, attn_impl="sdpa"),
}


# ----------------------------------------------------------------------------- the model

class CausalSelfAttention(nn.Module):
    """Multi-head self-attention: H heads, each attending in its own D = C/H dimensional subspace.

    q, k, v = x W_qkv (one fused Linear, C -> 3C), split into H heads of size D;
    head_h = softmax(q_h k_h^T / sqrt(D) + mask) v_h;  out = concat(head_1..head_H) W_proj.
    """

    def __init__(self, config, layer_index):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.layer_index = layer_index  # which slot of the KV cache is ours
        self.rope = config.pos == "rope"
        self.attn_impl = config.attn_impl
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # writes into the residual stream
        self.resid_dropout = nn.Dropout(config.dropout)
        self.keep_attention = False  # set by GPT.attention_maps() to store the weights in .attention

    def forward(self, x, rope_cos_sin=None, attn_mask=None, kv_cache=None, positions=None):
        """x: (B, T, C) -> (B, T, C).

        attn_mask: bool (B, 1, T, S), True = may attend; None means plain causal attention (the queries
        are positions S-T .. S-1 of the S keys; with T == 1 that is "attend to everything cached").
        rope_cos_sin: when config.pos == "rope", the (cos, sin) tables (P, D/2) of rope_tables(), read at
        positions (B, T) (None: 0 .. T-1); see layers.apply_rope.
        """
        B, T, C = x.shape
        # --- student part: q, k, v split into heads (lesson: "4. Why several heads") ---
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        # --- end of student part ---
        if self.rope:
            q, k = apply_rope(q, *rope_cos_sin, positions), apply_rope(k, *rope_cos_sin, positions)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_index, k, v)  # (B, H, S, D): the cached keys, then ours
        # No mask given means causal. torch's is_causal aligns the queries with the FIRST keys, which is
        # right only when there are as many keys as queries; several new queries after cached keys (the
        # last T of S positions) need an explicit mask. A single new query may attend to every key.
        is_causal = attn_mask is None and T > 1
        if is_causal and k.size(2) != T:
            attn_mask, is_causal = causal_mask(T, k.size(2), device=x.device), False
        dropout_p = self.dropout if self.training else 0.0
        if self.attn_impl == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p)
        else:
            y = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p)
        if self.keep_attention:
            self.attention = attention_weights(q, k, attn_mask, is_causal).detach()  # (B, H, T, S)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again: (B, T, H * D)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    """One pre-norm Transformer block: x = x + attn(norm(x)); x = x + mlp(norm(x)).

    x is the residual stream: each sub-layer reads a normalised copy and ADDS its result, so the
    identity path from the embeddings to the output is never blocked (gradients flow straight through).
    """

    def __init__(self, config, layer_index):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer_index)
        self.ln_2 = make_norm(config)
        fused = config.attn_impl == "sdpa"
        if config.mlp == "gelu":
            self.mlp = MLP(config.n_embd, config.mlp_hidden, bias=config.bias, dropout=config.dropout, fused=fused,
                           gelu=config.gelu)
        else:
            self.mlp = SwiGLU(config.n_embd, config.mlp_hidden, bias=config.bias, dropout=config.dropout, fused=fused)

    def forward(self, x, rope_cos_sin=None, attn_mask=None, kv_cache=None, positions=None):  # (B, T, C) -> (B, T, C)
        x = x + self.attn(self.ln_1(x), rope_cos_sin, attn_mask, kv_cache, positions)
        x = x + self.mlp(self.ln_2(x))
        return x


def make_norm(config):
    fused = config.attn_impl == "sdpa"
    if config.norm == "layernorm":
        return LayerNorm(config.n_embd, bias=config.bias, eps=config.norm_eps, fused=fused)
    return RMSNorm(config.n_embd, eps=config.norm_eps, fused=fused)


class GPT(nn.Module):
    """Token ids (B, T) -> embeddings -> n_layer Blocks -> final norm -> lm_head -> logits (B, T, vocab)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=make_norm(config),
        ))
        if config.pos == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # position embedding
        else:  # rotary: no parameters, just a table of cos/sin per position (not saved in the state dict)
            cos, sin = rope_tables(config.n_embd // config.n_head, config.block_size, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, D/2)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix to read tokens in and out
        self.apply(self._init_weights)
        # GPT-2: each block ADDS two outputs to the residual stream, so its variance grows with depth;
        # scale the layers that write into it by 1/sqrt(2 * n_layer) to keep the sum at std ~0.02.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        """GPT-2 initialisation: every weight ~ N(0, 0.02), biases 0 (norms start at weight 1, bias 0)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ forward

    def check_length(self, T):
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than the context (block_size="
                             f"{self.config.block_size}); keep the last {self.config.block_size} tokens "
                             f"(idx[:, -{self.config.block_size}:]) or use a model with a larger block_size")
        if T < 1:
            raise ValueError("the input has no tokens: give at least one token per row")

    def _run(self, idx, positions, attn_mask=None, kv_cache=None, embeddings=None):
        """The trunk: idx (B, T) at `positions` (B, T) -> hidden states (B, T, C) after the final norm.
        embeddings (B, T, C), optional: the input vectors to use instead of wte(idx) (chapter 08 puts
        image features there)."""
        x = self.transformer.wte(idx) if embeddings is None else embeddings  # (B, T, C)
        rope_cos_sin = None
        if self.config.pos == "learned":
            x = x + self.transformer.wpe(positions)  # (B, T, C) + (B or 1, T, C)
        else:
            rope_cos_sin = (self.rope_cos, self.rope_sin)  # (block_size, D/2) each, read at `positions`
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, rope_cos_sin, attn_mask, kv_cache, positions)
        if kv_cache is not None:
            kv_cache.length += idx.size(1)
        return self.transformer.ln_f(x)

    def hidden(self, idx, doc_ids=None, attention_mask=None, positions=None, kv_cache=None, embeddings=None):
        """Final hidden states (B, T, C), AFTER the final norm: logits = self.lm_head(hidden).

        doc_ids (B, T), optional: several documents packed in one row. Each token attends only to
        earlier tokens of its own document, and positions restart at 0 where a document starts, so the
        row computes exactly what each document would compute alone (see doc_positions_and_mask).
        attention_mask (B, S) bool, optional: True on real tokens, False on padding (padding.left_pad);
        no real token attends to padding and positions count only real tokens, so each row's real
        tokens get what they get alone. S = T, or with a kv_cache, the cached length + T.
        positions (B, T), optional: each token's position (for wpe or RoPE); it overrides the positions
        the masks imply. Default 0 .. T-1 (after the cached ones).
        embeddings (B, T, C), optional: input vectors in place of the token embeddings wte(idx), e.g. a
        picture's features (chapter 08's LLaVA); idx still gives the shape.
        """
        past = 0 if kv_cache is None else kv_cache.length
        self.check_length(past + idx.size(1))
        attn_mask, implied = None, None
        if doc_ids is not None:
            if doc_ids.shape != idx.shape or attention_mask is not None or kv_cache is not None:
                raise ValueError(f"doc_ids {tuple(doc_ids.shape)} must match idx {tuple(idx.shape)}, without "
                                 f"attention_mask or kv_cache")
            implied, attn_mask = doc_positions_and_mask(doc_ids)
        elif attention_mask is not None:
            if attention_mask.shape != (idx.size(0), past + idx.size(1)):
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; it must be (B, cached "
                                 f"+ T) = {(idx.size(0), past + idx.size(1))}")
            attn_mask = padded_causal_mask(attention_mask.bool(), idx.size(1))
            implied = positions_from_mask(attention_mask)[:, past:]
        if positions is None and implied is None:
            implied = torch.arange(past, past + idx.size(1), device=idx.device)[None]  # (1, T)
        positions = implied if positions is None else positions
        if embeddings is not None and embeddings.shape[:2] != idx.shape:
            raise ValueError(f"embeddings {tuple(embeddings.shape)} must be (B, T, C) with (B, T) = {tuple(idx.shape)}")
        return self._run(idx, positions, attn_mask, kv_cache, embeddings)

    def forward(self, idx, targets=None, doc_ids=None, attention_mask=None, positions=None):
        """idx (B, T) -> (logits (B, T, vocab), loss or None).

        loss = mean cross-entropy of the targets (B, T) over positions where targets != -1:
        loss = -1/N sum_t log softmax(logits_t)[targets_t]. doc_ids, attention_mask, positions: see hidden().
        """
        logits = self.lm_head(self.hidden(idx, doc_ids, attention_mask, positions))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx, layer):
        """Attention weights of every head of one layer for idx (B, T): (B, H, T, T), rows sum to 1."""
        attn = self.transformer.h[layer].attn
        attn.keep_attention = True
        try:
            with eval_mode(self):  # dropout off: the maps are the model's, not a random mask's
                self.hidden(idx)
        finally:
            attn.keep_attention = False
        maps = attn.attention
        del attn.attention
        return maps

    # ------------------------------------------------------------------ generation (generation.py)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None,
                 seed=None, use_cache=True):
        """Continue every row of idx (B, T) -> (B, T + n_new) LongTensor: see generation.generate."""
        return generation.generate(self, idx, max_new_tokens, temperature, top_k, top_p, stop_tokens, seed, use_cache)

    def generate_batch(self, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None,
                       seed=None, use_cache=True, stop_strings=None, decode=None):
        """Prompts of different lengths -> each one's new tokens (list of lists): see generation.generate_batch."""
        return generation.generate_batch(self, prompts, max_new_tokens, temperature, top_k, top_p, stop_tokens, seed,
                                         use_cache, stop_strings, decode)

    def stream(self, prompt, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None,
               seed=None, use_cache=True):
        """Yield one prompt's new token ids one at a time: see generation.stream."""
        return generation.stream(self, prompt, max_new_tokens, temperature, top_k, top_p, stop_tokens, seed, use_cache)

    # ------------------------------------------------------------------ accounting

    def num_params(self, non_embedding=False):
        """Number of parameters (a tied lm_head counted once). non_embedding=True leaves out the token and
        position embedding tables (lookups, no arithmetic), as in the scaling-law papers; an untied
        lm_head stays in, since it is a real matrix multiply."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor once
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self, context=None):
        """Training FLOPs per token (forward + backward) = 6 N + 12 n_layer C T.

        N = weights that multiply (every nn.Linear, lm_head included): each costs 2 FLOPs per token in
        the forward pass (a multiply and an add) and 4 in the backward (gradients for input and weight).
        Attention's own matmuls, Q K^T and A V, cost 2 * 2 * T * C per token per layer forward, times 3
        for forward + backward, at context T (default block_size; the full T x T square, as the kernels
        compute it, as in the PaLM paper's MFU formula).
        """
        T = context or self.config.block_size
        n_matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        return 6 * n_matmul + 12 * self.config.n_layer * self.config.n_embd * T

    def summary(self):
        """One screen: the config, where the parameters are, FLOPs per token, memory."""
        c = self.config
        block = self.transformer.h[0]
        count = lambda module: sum(p.numel() for p in module.parameters())
        n_total, n_body = self.num_params(), self.num_params(non_embedding=True)
        kv_bytes = 2 * c.n_layer * c.n_embd * 4
        mlp = f"gelu-{c.gelu}" if c.mlp == "gelu" else c.mlp
        lines = [
            f"GPT: {c.n_layer} layers x {c.n_head} heads x {c.n_embd} wide (head size {c.n_embd // c.n_head}), "
            f"context {c.block_size}, vocab {c.vocab_size}",
            f"  choices : norm={c.norm} pos={c.pos} mlp={mlp} (hidden {c.mlp_hidden}) tie_weights={c.tie_weights} "
            f"bias={c.bias} dropout={c.dropout} attn_impl={c.attn_impl}",
            f"  params  : {n_total:,} total, {n_body:,} without embeddings ({_human(n_total)})",
            f"    token embedding {c.vocab_size} x {c.n_embd}     {self.transformer.wte.weight.numel():>12,}"
            + ("  (shared with lm_head)" if c.tie_weights else ""),
        ]
        if "wpe" in self.transformer:
            lines.append(f"    position embedding {c.block_size} x {c.n_embd}  {self.transformer.wpe.weight.numel():>12,}")
        lines += [
            f"    per block: attention {count(block.attn):,} + mlp {count(block.mlp):,} + norms "
            f"{count(block.ln_1) + count(block.ln_2):,} = {count(block):,} (x {c.n_layer} = {count(block) * c.n_layer:,})",
            f"    final norm {count(self.transformer.ln_f):,}"
            + ("" if c.tie_weights else f", lm_head {self.lm_head.weight.numel():,}"),
            f"  compute : {self.flops_per_token():,} training FLOPs per token at context {c.block_size} "
            f"(6N + 12*L*C*T)",
            f"  memory  : {n_total * 4 / 2**20:,.1f} MiB of fp32 weights, ~{n_total * 16 / 2**20:,.1f} MiB to train "
            f"with AdamW (weights, grads, 2 moments); KV cache {kv_bytes:,} bytes per token (fp32)",
        ]
        return "\n".join(lines)

    # ------------------------------------------------------------------ vocabulary

    @torch.no_grad()
    def resize_vocab(self, new_vocab_size):
        """Grow (or shrink) the vocabulary, keeping the rows of the existing tokens.

        New rows start at the mean of the old rows (a "generic token" rather than random noise, so the
        new tokens do not disturb the output distribution). Chapter 04 adds chat special tokens this way.
        """
        old = self.transformer.wte.weight
        keep = min(old.size(0), new_vocab_size)

        def grown(weight):
            new = weight.new_empty(new_vocab_size, weight.size(1))
            new[:keep] = weight[:keep]
            new[keep:] = weight.mean(dim=0)
            return nn.Parameter(new)

        old_head = self.lm_head.weight
        self.transformer.wte = nn.Embedding.from_pretrained(grown(old), freeze=False)
        self.lm_head = nn.Linear(self.config.n_embd, new_vocab_size, bias=False, device=old.device, dtype=old.dtype)
        self.lm_head.weight = self.transformer.wte.weight if self.config.tie_weights else grown(old_head)
        self.config.vocab_size = new_vocab_size
        return self


def _human(n):
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"
