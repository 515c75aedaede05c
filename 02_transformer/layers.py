"""The pieces a Transformer is made of, each written out once, with its formula.

Read top to bottom: softmax -> attention -> the two norms -> the two MLPs -> rotary positions.
tests/test_02_transformer.py checks each against a reference: torch's built-in twin where there is one
(F.softmax, F.scaled_dot_product_attention, F.layer_norm, nn.RMSNorm, F.gelu, F.silu), and for RoPE,
which torch lacks, the same rotation written with complex numbers. The built-ins are faster (one fused
kernel instead of several small ops), so the model can switch to them with GPTConfig(attn_impl="sdpa");
the math is the same.

Shape names used below: B batch, H heads, T query positions, S key positions, D head size, C width.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- softmax and attention

def softmax(x, dim=-1):
    """softmax(x)_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)), along `dim`.

    Subtracting the max changes nothing mathematically (it cancels between top and bottom) but keeps
    exp() from overflowing: softmax([1000., 1001.]) -> [0.2689, 0.7311] instead of nan.
    Entries equal to -inf get weight exactly 0, which is how the attention mask works.
    """
    # --- student part: a numerically stable softmax (lesson: "2. Attention is a weighted average") ---
    x_max = x.amax(dim=dim, keepdim=True).detach()  # a constant shift: no gradient needed through it
    exp_x = torch.exp(x - x_max)
    return exp_x / exp_x.sum(dim=dim, keepdim=True)
    # --- end of student part ---


def causal_mask(n_query, n_key, device=None):
    """Boolean (T, S) mask, True = may attend: query i sees keys 0 .. i + (S - T).

    The queries are the LAST T of the S positions (S > T when earlier keys come from a KV cache), so
    causal_mask(2, 4) = [[1, 1, 1, 0],
                         [1, 1, 1, 1]].
    """
    return torch.ones(n_query, n_key, dtype=torch.bool, device=device).tril(diagonal=n_key - n_query)


def attention_weights(q, k, attn_mask=None, is_causal=False):
    """A = softmax(Q K^T / sqrt(D)), with masked-out entries set to -inf before the softmax.

    q: (B, H, T, D), k: (B, H, S, D) -> A: (B, H, T, S); each row of A sums to 1.
    attn_mask: bool, broadcastable to (B, H, T, S), True = "may attend" (torch's convention).
    is_causal: apply causal_mask(T, S) (the queries are the last T positions).
    Row i of A says how much query i takes from each key: attention is a weighted average.
    """
    # --- student part: the attention weights with the mask (lesson: "2. Attention is a weighted average") ---
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, H, T, S)
    if is_causal:
        causal = causal_mask(q.size(-2), k.size(-2), device=q.device)
        attn_mask = causal if attn_mask is None else attn_mask & causal
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    # in float32 even under bf16 autocast: exp() of bf16 scores loses too many digits
    return softmax(scores.float(), dim=-1).to(q.dtype)
    # --- end of student part ---


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, dropout_p=0.0):
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(D) + M) V, with M = 0 where attn_mask is True, else -inf.

    q: (B, H, T, D), k, v: (B, H, S, D) -> (B, H, T, D). Same arguments and meaning as
    F.scaled_dot_product_attention (attn_mask True = may attend), which is the reference and the fast path.
    Every query must be allowed at least one key, or its row is 0/0 = nan (torch's kernel does the same).
    """
    # --- student part: attention: the weighted average of the values (lesson: "2. Attention is a weighted average") ---
    weights = attention_weights(q, k, attn_mask, is_causal)  # (B, H, T, S)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, T, D): each output row is a weighted average of the rows of V
    # --- end of student part ---


# ----------------------------------------------------------------------------- norms

def layer_norm(x, weight, bias=None, eps=1e-5):
    """LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, over the last dim (C).

    var is the biased variance (divide by C), as in nn.LayerNorm. x: (..., C); weight, bias: (C,).
    """
    # --- student part: LayerNorm over the last dimension (lesson: "5. The block, pre-norm, and the MLP") ---
    centered = x - x.mean(dim=-1, keepdim=True)
    var = centered.pow(2).mean(dim=-1, keepdim=True)
    y = centered * torch.rsqrt(var + eps) * weight
    return y + bias if bias is not None else y
    # --- end of student part ---


def rms_norm(x, weight, eps=1e-6):
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * weight, over the last dim (C); no mean, no bias.

    Computed in float32 whatever x's dtype (squares of bf16 values lose too much), returned in x's dtype.
    x: (..., C); weight: (C,).
    """
    # --- student part: RMSNorm over the last dimension, in float32 (lesson: "7. GPT-2 versus LLaMA") ---
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)
    # --- end of student part ---


class LayerNorm(nn.Module):
    """GPT-2's norm: layer_norm() above with a learned scale (ones) and an optional shift (zeros).

    fused=True calls F.layer_norm (one kernel, same result); fused=False runs our formula.
    """

    def __init__(self, n_embd, bias=True, eps=1e-5, fused=False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None
        self.eps = eps
        self.fused = fused

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        if self.fused:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        return layer_norm(x, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """LLaMA's norm: rms_norm() above with a learned scale (ones). fused=True calls F.rms_norm in float32."""

    def __init__(self, n_embd, eps=1e-6, fused=False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.eps = eps
        self.fused = fused

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        if self.fused:
            return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)
        return rms_norm(x, self.weight, self.eps)


# ----------------------------------------------------------------------------- MLPs

def gelu_tanh(x):
    """GELU(x) ~= 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh form GPT-2 uses.

    A smooth ReLU: gelu_tanh(-3) ~ -0.004, gelu_tanh(0) = 0, gelu_tanh(3) ~ 2.996.
    """
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def gelu_erf(x):
    """GELU(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), the exact form (BERT, nanoGPT's nn.GELU()).

    gelu_tanh above approximates this to within 5e-4. In torch 2.13 on an AVX-512 CPU, F.gelu's exact
    form runs ~4x faster than its tanh form forward and ~3x forward + backward: that is why the choice exists.
    """
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def silu(x):
    """SiLU(x) = x * sigmoid(x) (also called swish), the gate inside SwiGLU."""
    return x * torch.sigmoid(x)


class MLP(nn.Module):
    """GPT-2's feed-forward layer: MLP(x) = W_proj GELU(W_fc x + b_fc) + b_proj, width C -> 4C -> C.

    gelu="tanh" is GPT-2's gelu_tanh(), gelu="erf" the exact gelu_erf(). fused=True uses F.gelu, the same
    function in one kernel.
    """

    def __init__(self, n_embd, hidden, bias=True, dropout=0.0, fused=False, gelu="tanh"):
        super().__init__()
        self.gelu = gelu
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)  # writes into the residual stream
        self.dropout = nn.Dropout(dropout)
        self.fused = fused

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        h = self.c_fc(x)
        if self.fused:
            h = F.gelu(h, approximate="tanh" if self.gelu == "tanh" else "none")
        else:
            h = gelu_tanh(h) if self.gelu == "tanh" else gelu_erf(h)
        return self.dropout(self.c_proj(h))


class SwiGLU(nn.Module):
    """LLaMA's feed-forward layer: SwiGLU(x) = W_proj (SiLU(W_gate x) * (W_up x)), width C -> hidden -> C.

    The product is a learned gate: each hidden unit is an ordinary linear feature W_up x, let through in
    proportion to SiLU(W_gate x). With three matrices instead of two, hidden ~ 8C/3 keeps the
    parameter count of a 4C GELU MLP. fused=True uses F.silu.
    """

    def __init__(self, n_embd, hidden, bias=False, dropout=0.0, fused=False):
        super().__init__()
        self.w_gate = nn.Linear(n_embd, hidden, bias=bias)
        self.w_up = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)  # writes into the residual stream
        self.dropout = nn.Dropout(dropout)
        self.fused = fused

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        gate = self.w_gate(x)
        gate = F.silu(gate) if self.fused else silu(gate)
        return self.dropout(self.c_proj(gate * self.w_up(x)))


# ----------------------------------------------------------------------------- rotary positions (RoPE)

def rope_tables(head_dim, max_positions, theta=10000.0, device=None):
    """cos and sin of the RoPE angles, each (max_positions, head_dim // 2), in float32.

    angle[p, i] = p * theta^(-2i / D) for position p and pair i = 0 .. D/2 - 1: pair 0 turns by one
    radian per position, the last pair barely turns, so the pairs measure distance at many scales.
    """
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of numbers, so the head size must be even (got {head_dim})")
    # --- student part: RoPE's cos and sin tables (lesson: "7. GPT-2 versus LLaMA") ---
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)  # (D/2,)
    angles = torch.arange(max_positions, dtype=torch.float32, device=device)[:, None] * inv_freq  # (P, D/2)
    return angles.cos(), angles.sin()
    # --- end of student part ---


def apply_rope(x, cos, sin, positions=None):
    """Rotate each adjacent pair (x[2i], x[2i+1]) of every head vector by angle[p, i] (original LLaMA).

        out[2i]   = x[2i] cos - x[2i+1] sin
        out[2i+1] = x[2i] sin + x[2i+1] cos

    i.e. the complex number x[2i] + j x[2i+1] times e^(j angle). Rotating q at position m and k at
    position n makes q.k depend only on m - n: attention sees relative positions.
    x: (B, H, T, D). cos, sin: the tables of rope_tables(), (P, D/2), and positions (B, T), each token's
    position (a left-padded row starts at 0 on its first real token; default 0 .. T-1 for every row).
    With positions=None, cos and sin may also come already indexed, broadcastable to (B, 1, T, D/2).
    (HF's LLaMA port pairs x[i] with x[i + D/2] instead: the same idea with the dims permuted.)
    """
    # --- student part: RoPE's rotation (lesson: "7. GPT-2 versus LLaMA") ---
    if positions is not None:
        cos, sin = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)  # (B, 1, T, D/2)
    elif cos.dim() == 2:  # a table: positions 0 .. T-1
        cos, sin = cos[:x.size(-2)], sin[:x.size(-2)]
    x_even, x_odd = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, H, T, D/2) each
    out_even = x_even * cos - x_odd * sin
    out_odd = x_even * sin + x_odd * cos
    return torch.stack((out_even, out_odd), dim=-1).flatten(-2).to(x.dtype)  # (B, H, T, D)
    # --- end of student part ---
