"""Chapter 02: every piece of the GPT against its torch reference, and the invariants later chapters rely on.

Tolerances: fp32 comparisons use atol 1e-5 (one op) to 1e-4 (a whole model), the size of float32
rounding differences between two orders of summation; exact equality where the same ops run.
"""
import dataclasses
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from generation import Rollout, rollout
from gpt import GPT, PRESETS, GPTConfig, KVCache, doc_positions_and_mask, sample_next_token
from gpt2_weights import hf_gpt2_config, load_hf_gpt2_state_dict
from logprobs import SequenceLogProbs, logprobs_from_logits, sequence_logprobs
from padding import left_pad, padded_causal_mask, positions_from_mask
from layers import (MLP, LayerNorm, RMSNorm, SwiGLU, apply_rope, attention_weights, causal_mask, gelu_erf, gelu_tanh,
                    layer_norm, rms_norm, rope_tables, scaled_dot_product_attention, softmax)


def tiny_config(**overrides):
    fields = dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=32)
    return GPTConfig(**{**fields, **overrides})


LLAMA = dict(norm="rmsnorm", pos="rope", mlp="swiglu", tie_weights=False, bias=False)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(tiny_config(**overrides)).eval()


def lively_model(seed=0, **overrides):
    """A tiny model with large random weights. At GPT-2's init (std 0.02) an untrained model's output
    barely depends on the context, so a broken cache or wrong positions could go unnoticed; here every
    token and position moves the argmax."""
    model = tiny_model(seed, **overrides)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2:
                param.normal_(0.0, 1.0 / math.sqrt(param.size(1)) if "wte" not in name and "wpe" not in name else 0.3)
            elif name.endswith("weight"):  # norm scales
                param.uniform_(0.5, 1.5)
    return model


# ----------------------------------------------------------------------------- building blocks

def test_softmax_matches_torch_and_is_stable():
    torch.manual_seed(0)
    x = torch.randn(4, 7, 9) * 5
    assert torch.allclose(softmax(x, dim=-1), F.softmax(x, dim=-1), atol=1e-6)
    assert torch.allclose(softmax(x, dim=1), F.softmax(x, dim=1), atol=1e-6)
    big = torch.tensor([1000.0, 1001.0])
    assert torch.allclose(softmax(big), torch.tensor([0.2689414, 0.7310586]), atol=1e-6)  # no overflow
    masked = torch.tensor([0.0, float("-inf"), 0.0])
    assert softmax(masked).tolist() == [0.5, 0.0, 0.5]
    # gradient too: the backward of our formula equals torch's softmax backward
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = torch.randn_like(x)
    (softmax(a) * weights).sum().backward()
    (F.softmax(b, dim=-1) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_causal_mask_values():
    assert causal_mask(3, 3).int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert causal_mask(2, 4).int().tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]  # last 2 of 4 positions


def test_attention_matches_sdpa():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)  # (B=2, H=4, T=5, D=8)
    for is_causal in (False, True):
        ours = scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        assert torch.allclose(ours, ref, atol=1e-5)
    # a boolean mask, True = may attend (every query keeps at least its diagonal)
    mask = (torch.rand(2, 1, 5, 5) > 0.5) | torch.eye(5, dtype=torch.bool)
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)
    weights = attention_weights(q, k, attn_mask=mask)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 5), atol=1e-6)
    assert (weights[~mask.expand_as(weights)] == 0).all()
    # queries that are the last 2 of 5 positions (a KV cache): our causal_mask, spelled out for torch
    ours = scaled_dot_product_attention(q[:, :, -2:], k, v, is_causal=True)
    ref = F.scaled_dot_product_attention(q[:, :, -2:], k, v, attn_mask=causal_mask(2, 5))
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(ours, scaled_dot_product_attention(q, k, v, is_causal=True)[:, :, -2:], atol=1e-6)


def test_manual_attention_dropout_drops_weights():
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=gen) for _ in range(3))
    plain = scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=1.0), torch.zeros_like(plain))
    torch.manual_seed(0)
    dropped = scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.5)
    assert torch.isfinite(dropped).all() and not torch.allclose(dropped, plain)


def test_layer_norm_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16) * 3 + 1
    weight, bias = torch.randn(16), torch.randn(16)
    assert torch.allclose(layer_norm(x, weight, bias), F.layer_norm(x, (16,), weight, bias, 1e-5), atol=1e-5)
    reference = nn.LayerNorm(16)
    for fused in (False, True):
        ours = LayerNorm(16, fused=fused)
        with torch.no_grad():
            ours.weight.copy_(weight), ours.bias.copy_(bias)
            reference.weight.copy_(weight), reference.bias.copy_(bias)
        assert torch.allclose(ours(x), reference(x), atol=1e-5)
    no_bias = LayerNorm(16, bias=False)
    assert no_bias.bias is None and torch.allclose(no_bias(x), F.layer_norm(x, (16,)), atol=1e-5)


def test_rms_norm_matches_torch_in_float32():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16) * 3
    weight = torch.randn(16)
    reference = nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        reference.weight.copy_(weight)
    assert torch.allclose(rms_norm(x, weight, eps=1e-6), reference(x), atol=1e-5)
    # hand check: x / sqrt(mean(x^2) + eps)
    assert torch.allclose(rms_norm(torch.tensor([3.0, 4.0]), torch.ones(2), eps=0.0),
                          torch.tensor([3.0, 4.0]) / math.sqrt(12.5), atol=1e-6)
    # bf16 in, bf16 out, computed in float32: equals the float32 result rounded once to bf16
    x16 = x.to(torch.bfloat16)
    for fused in (False, True):
        module = RMSNorm(16, fused=fused)
        with torch.no_grad():
            module.weight.copy_(weight)
        out = module(x16)
        assert out.dtype == torch.bfloat16
        assert torch.equal(out, reference(x16.float()).to(torch.bfloat16))


def test_gelu_tanh_matches_torch():
    x = torch.linspace(-8, 8, 1001)
    assert torch.allclose(gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=1e-6)
    assert gelu_tanh(torch.tensor(0.0)) == 0.0


def test_gelu_erf_matches_torch_and_is_close_to_the_tanh_form():
    x = torch.linspace(-8, 8, 1001)
    assert torch.allclose(gelu_erf(x), F.gelu(x), atol=1e-6)
    assert (gelu_erf(x) - gelu_tanh(x)).abs().max() < 5e-4
    for fused in (False, True):
        mlp = MLP(8, 32, fused=fused, gelu="erf")
        ref = F.linear(F.gelu(F.linear(x[:16].view(2, 8), mlp.c_fc.weight, mlp.c_fc.bias)),
                       mlp.c_proj.weight, mlp.c_proj.bias)
        assert torch.allclose(mlp(x[:16].view(2, 8)), ref, atol=1e-6)
    with pytest.raises(ValueError, match="gelu"):
        GPTConfig(gelu="relu")


def test_mlp_and_swiglu_match_reference_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    for fused in (False, True):
        mlp = MLP(8, 32, fused=fused)
        ref = F.linear(F.gelu(F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias), approximate="tanh"),
                       mlp.c_proj.weight, mlp.c_proj.bias)
        assert torch.allclose(mlp(x), ref, atol=1e-6)
        swiglu = SwiGLU(8, 24, fused=fused)
        gate, up = x @ swiglu.w_gate.weight.T, x @ swiglu.w_up.weight.T
        ref = (gate * torch.sigmoid(gate) * up) @ swiglu.c_proj.weight.T  # SiLU(x W_g) * (x W_u), then W_p
        assert torch.allclose(swiglu(x), ref, atol=1e-6)


def test_rope_adjacent_pairs_equal_complex_rotation():
    torch.manual_seed(0)
    B, H, T, D, theta = 2, 3, 6, 8, 10000.0
    x = torch.randn(B, H, T, D)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [3, 0, 7, 1, 2, 9]])  # any per-token positions
    cos, sin = rope_tables(D, 16, theta)
    ours = apply_rope(x, cos[positions].unsqueeze(1), sin[positions].unsqueeze(1))
    # reference: pairs (x[2i], x[2i+1]) as complex numbers, times e^(j * p * theta^(-2i/D))
    freqs = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,)
    angles = positions.double()[:, None, :, None] * freqs  # (B, 1, T, D/2)
    as_complex = torch.view_as_complex(x.double().reshape(B, H, T, D // 2, 2).contiguous())
    rotated = torch.view_as_real(as_complex * torch.polar(torch.ones_like(angles), angles)).reshape(B, H, T, D)
    assert torch.allclose(ours.double(), rotated, atol=1e-5)
    # hand-computed: D = 2, position 1 rotates (1, 0) by 1 radian; position 0 does nothing
    cos2, sin2 = rope_tables(2, 2)
    one = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2)
    out = apply_rope(one, cos2.view(1, 1, 2, 1), sin2.view(1, 1, 2, 1))
    assert torch.allclose(out[0, 0], torch.tensor([[1.0, 0.0], [math.cos(1), math.sin(1)]]), atol=1e-6)
    # what RoPE is for: q.k depends only on the distance between the two positions
    q, k = torch.randn(2, 1, 1, 1, D).unbind(0)

    def score(m, n):
        rq = apply_rope(q, cos[m].view(1, 1, 1, -1), sin[m].view(1, 1, 1, -1))
        rk = apply_rope(k, cos[n].view(1, 1, 1, -1), sin[n].view(1, 1, 1, -1))
        return (rq * rk).sum()

    assert torch.allclose(score(5, 3), score(12, 10), atol=1e-5)
    assert not torch.allclose(score(5, 3), score(5, 4), atol=1e-3)
    with pytest.raises(ValueError, match="even"):
        rope_tables(7, 4)


# ----------------------------------------------------------------------------- the model

def test_config_presets_and_errors():
    assert set(PRESETS) >= {"tiny", "gpt2", "gpt2-medium", "llama-tiny"}
    config = GPTConfig.from_preset("tiny", vocab_size=300)
    assert config.vocab_size == 300 and config.n_layer == PRESETS["tiny"]["n_layer"]
    assert GPTConfig().vocab_size == 50304 and GPTConfig().attn_impl == "manual"  # GPT-2 is the default
    with pytest.raises(ValueError, match="unknown preset"):
        GPTConfig.from_preset("gpt5")
    with pytest.raises(ValueError, match="unknown GPTConfig fields"):
        GPTConfig.from_preset("tiny", n_layers=3)
    with pytest.raises(ValueError, match="norm"):
        GPTConfig(norm="batchnorm")
    with pytest.raises(ValueError, match="multiple of n_head"):
        GPTConfig(n_embd=100, n_head=12)
    for bad in (dict(n_head=0), dict(n_head=-4, n_embd=32), dict(n_embd=0)):
        with pytest.raises(ValueError, match="positive integer"):
            GPTConfig(**bad)
    with pytest.raises(ValueError, match="rope_theta"):
        GPTConfig(pos="rope", rope_theta=-1.0)
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(dropout=1.0)
    assert 1e6 <= GPT(GPTConfig.from_preset("tiny")).num_params() <= 3e6
    llama = GPTConfig.from_preset("llama-tiny")
    assert (llama.norm, llama.pos, llama.mlp, llama.tie_weights) == ("rmsnorm", "rope", "swiglu", False)


def test_parameter_counts_and_flops():
    with torch.device("meta"):  # shapes only: no memory, no time
        gpt2 = GPT(GPTConfig.from_preset("gpt2"))
        medium = GPT(GPTConfig.from_preset("gpt2-medium"))
    assert gpt2.num_params() == 124_439_808  # the published GPT-2 small count
    assert gpt2.num_params(non_embedding=True) == 85_056_000  # Kaplan et al.'s N for GPT-2 small
    assert medium.num_params() == 354_823_168
    model = tiny_model()
    c = model.config
    n_linear = c.n_layer * (3 * c.n_embd**2 + c.n_embd**2 + 2 * 4 * c.n_embd**2) + c.vocab_size * c.n_embd
    assert model.flops_per_token() == 6 * n_linear + 12 * c.n_layer * c.n_embd * c.block_size
    text = model.summary()
    assert f"{model.num_params():,}" in text and "FLOPs" in text


def test_init_statistics():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=6, n_head=4, n_embd=256))
    std = lambda name: dict(model.named_parameters())[name].std().item()
    assert abs(std("transformer.h.0.attn.c_attn.weight") - 0.02) < 0.001
    assert abs(std("transformer.h.0.mlp.c_fc.weight") - 0.02) < 0.001
    scaled = 0.02 / math.sqrt(2 * 6)  # residual projections
    for name in ("transformer.h.3.attn.c_proj.weight", "transformer.h.3.mlp.c_proj.weight"):
        assert abs(std(name) - scaled) < 0.1 * scaled
    assert abs(std("transformer.wte.weight") - 0.02) < 0.001 and abs(std("transformer.wpe.weight") - 0.02) < 0.001
    assert (model.transformer.h[0].attn.c_attn.bias == 0).all()
    assert (model.transformer.h[0].ln_1.weight == 1).all()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied


def test_untied_head_is_its_own_matrix():
    """tie_weights=False: lm_head has its own Parameter (own storage, own init), trained independently."""
    torch.manual_seed(0)
    untied = GPT(tiny_config(tie_weights=False))
    head, wte = untied.lm_head.weight, untied.transformer.wte.weight
    assert head is not wte and head.data_ptr() != wte.data_ptr()
    assert not torch.equal(head, wte)  # initialised separately
    assert untied.num_params() == GPT(tiny_config()).num_params() + head.numel()  # counted once more
    wte_before = wte.detach().clone()
    idx = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    untied(idx, idx)[1].backward()
    with torch.no_grad():
        head.sub_(1.0)  # moving the head leaves the embedding where it was
    assert torch.equal(wte, wte_before)
    assert head.grad is not None and not torch.equal(head.grad, wte.grad)  # separate gradients
    # and the tied model really shares: a change to the head is a change to the embedding
    tied = GPT(tiny_config())
    with torch.no_grad():
        tied.lm_head.weight[0, 0] += 1.0
    assert tied.transformer.wte.weight[0, 0] == tied.lm_head.weight[0, 0]


def test_every_matmul_is_an_nn_linear():
    for overrides in ({}, LLAMA):
        model = tiny_model(**overrides)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        per_block = 4 if model.config.mlp == "gelu" else 5
        assert len(linears) == model.config.n_layer * per_block + 1  # + lm_head
        # and no weight matrix hides outside them (an nn.Parameter used in a bare matmul): every
        # parameter with 2 or more dims belongs to an nn.Linear or is an embedding table
        owners = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)}
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                assert isinstance(owners[id(param)], (nn.Linear, nn.Embedding)), name


@pytest.mark.parametrize("overrides", [{}, LLAMA, {"gelu": "erf"}], ids=["gpt2", "llama", "gelu-erf"])
def test_sdpa_equals_manual_and_hidden_reproduces_logits(overrides):
    idx = torch.randint(0, 64, (3, 20), generator=torch.Generator().manual_seed(1))
    manual = tiny_model(**overrides, attn_impl="manual")
    sdpa = tiny_model(**overrides, attn_impl="sdpa")
    logits, _ = manual(idx)
    assert logits.shape == (3, 20, 64)
    assert torch.allclose(logits, sdpa(idx)[0], atol=1e-5)
    assert torch.equal(manual.lm_head(manual.hidden(idx)), logits)
    doc_ids = torch.tensor([[0] * 7 + [1] * 13] * 3)
    assert torch.allclose(manual(idx, doc_ids=doc_ids)[0], sdpa(idx, doc_ids=doc_ids)[0], atol=1e-5)


def test_loss_is_mean_cross_entropy_ignoring_minus_one():
    model = tiny_model()
    idx = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(2))
    targets = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(3))
    targets[0, :4] = -1
    logits, loss = model(idx, targets)
    keep = targets != -1
    expected = -F.log_softmax(logits[keep], dim=-1).gather(1, targets[keep][:, None]).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert model(idx)[1] is None


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["learned", "rope"])
def test_packed_documents_equal_documents_alone(overrides):
    model = lively_model(**overrides, attn_impl="manual")
    gen = torch.Generator().manual_seed(4)
    docs = [torch.randint(0, 64, (n,), generator=gen) for n in (5, 9, 1, 7)]
    row = torch.cat(docs)[None]  # (1, 22)
    doc_ids = torch.cat([torch.full((len(d),), i) for i, d in enumerate(docs)])[None]
    packed = model(row, doc_ids=doc_ids)[0][0]
    start = 0
    for d in docs:
        alone = model(d[None])[0][0]
        assert torch.allclose(packed[start:start + len(d)], alone, atol=1e-5)
        start += len(d)
    # without doc_ids the later documents do see the earlier ones
    assert not torch.allclose(model(row)[0][0, 5:14], model(docs[1][None])[0][0], atol=1e-3)


def test_doc_positions_and_mask():
    positions, mask = doc_positions_and_mask(torch.tensor([[7, 7, 7, 2, 2]]))
    assert positions.tolist() == [[0, 1, 2, 0, 1]]
    assert mask[0, 0].int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0],
                                         [0, 0, 0, 1, 0], [0, 0, 0, 1, 1]]


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=32, block_size=16, attn_impl="sdpa"))
    batch = torch.randint(0, 32, (4, 17), generator=torch.Generator().manual_seed(5))
    x, y = batch[:, :-1], batch[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = model(x, y)[1].item()
    for _ in range(60):
        loss = model(x, y)[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 3.0 and loss.item() < 0.05, (first, loss.item())


def test_state_dict_round_trip(tmp_path):
    model = tiny_model(**LLAMA)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "model_config": dataclasses.asdict(model.config)}, path)
    checkpoint = torch.load(path, weights_only=True)
    restored = GPT(GPTConfig(**checkpoint["model_config"]))
    restored.load_state_dict(checkpoint["model"])
    idx = torch.randint(0, 64, (2, 12))
    assert torch.equal(model(idx)[0], restored.eval()(idx)[0])
    assert "rope_cos" not in checkpoint["model"]  # recomputed, not stored


# ----------------------------------------------------------------------------- generation

@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["learned", "rope"])
@pytest.mark.parametrize("attn_impl", ["manual", "sdpa"])
def test_kv_cache_generation_equals_uncached(overrides, attn_impl):
    model = lively_model(**overrides, attn_impl=attn_impl)
    prompt = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(6))  # 2 rows, 6 tokens
    cached = model.generate(prompt, 20, temperature=0)
    uncached = model.generate(prompt, 20, temperature=0, use_cache=False)
    assert cached.shape == (2, 26) and torch.equal(cached[:, :6], prompt)
    assert torch.equal(cached, uncached)
    assert len(set(cached[0, 6:].tolist())) > 3  # a lively model: not one token repeated
    # past the context (block_size 32): both slide the same window
    assert torch.equal(model.generate(prompt, 40, temperature=0), model.generate(prompt, 40, temperature=0, use_cache=False))


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["learned", "rope"])
def test_kv_cache_logits_equal_full_forward(overrides):
    """Prefill 5 tokens, then a chunk of 3, then 3 one at a time: the logits equal the full forward's."""
    model = lively_model(**overrides)
    idx = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(9))
    full = model(idx)[0]
    kv_cache = KVCache(model.config.n_layer, max_len=11)
    positions = torch.arange(11).expand(2, 11)
    steps = []
    with torch.no_grad():
        for start, end in [(0, 5), (5, 8), (8, 9), (9, 10), (10, 11)]:
            hidden = model._run(idx[:, start:end], positions[:, start:end], None, kv_cache)
            steps.append(model.lm_head(hidden))
    assert kv_cache.length == 11
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-4)


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["learned", "rope"])
def test_generate_batch_of_different_lengths_equals_one_at_a_time(overrides):
    model = lively_model(**overrides)
    gen = torch.Generator().manual_seed(7)
    prompts = [torch.randint(0, 64, (n,), generator=gen).tolist() for n in (1, 7, 4)]
    alone = [model.generate(torch.tensor([p]), 12, temperature=0)[0, len(p):].tolist() for p in prompts]
    assert model.generate_batch(prompts, 12, temperature=0) == alone
    assert model.generate_batch(prompts, 12, temperature=0, use_cache=False) == alone
    assert list(model.stream(prompts[1], 12, temperature=0)) == alone[1]


def test_stop_tokens_seed_and_sampling_filters():
    model = lively_model()
    prompt, other = [9, 9, 2, 6, 5], [2, 7, 1, 8, 2]
    greedy, greedy_other = (model.generate_batch([p], 10, temperature=0)[0] for p in (prompt, other))
    # a stop token that `prompt` first emits mid-way, then would NOT emit again at once, and that
    # `other` never emits: so `other` keeps generating while the stopped row must repeat its stop token
    candidates = [i for i in range(1, 8) if greedy.index(greedy[i]) == i and greedy[i + 1] != greedy[i]
                  and greedy[i] not in greedy_other]
    assert candidates, f"no usable stop token in {greedy} / {greedy_other}: pick other prompts"
    first_stop = candidates[0]
    stop = greedy[first_stop]
    assert model.generate_batch([prompt], 10, temperature=0, stop_tokens=[stop])[0] == greedy[:first_stop + 1]
    assert list(model.stream(prompt, 10, temperature=0, stop_tokens=[stop])) == greedy[:first_stop + 1]
    out = model.generate(torch.tensor([prompt]), 10, temperature=0, stop_tokens=torch.tensor([stop]))
    assert out[0, len(prompt):].tolist() == greedy[:first_stop + 1]  # all rows stopped: ends early
    two_rows = model.generate(torch.tensor([prompt, other]), 10, temperature=0, stop_tokens=[stop])
    assert two_rows[0, len(prompt):].tolist() == greedy[:first_stop + 1] + [stop] * (9 - first_stop)
    assert two_rows[1, len(other):].tolist() == greedy_other  # the other row is not disturbed
    a = model.generate_batch([prompt, prompt[:2]], 15, temperature=1.0, seed=123)
    b = model.generate_batch([prompt, prompt[:2]], 15, temperature=1.0, seed=123)
    assert a == b
    assert model.generate_batch([prompt], 10, top_k=1, seed=0)[0] == greedy  # top-1 is greedy
    assert model.generate_batch([prompt], 10, top_p=1e-6, seed=0)[0] == greedy  # nucleus of one token


def sample_frequencies(logits, n=20_000, **options):
    """How often sample_next_token picks each token for one row of logits, over n draws."""
    gen = torch.Generator().manual_seed(0)
    tokens = sample_next_token(logits.expand(n, -1), generator=gen, **options)
    return torch.bincount(tokens, minlength=logits.size(-1)).float() / n


def test_sampling_temperature_top_k_top_p():
    probs = torch.tensor([0.5, 0.3, 0.2])
    logits = probs.log()[None, :]  # (1, 3)
    assert torch.allclose(sample_frequencies(logits), probs, atol=0.015)
    cooled = probs**2 / (probs**2).sum()  # softmax(log p / 0.5) = p^2 / sum p^2: temperature sharpens
    assert torch.allclose(sample_frequencies(logits, temperature=0.5), cooled, atol=0.015)
    heated = probs**0.5 / (probs**0.5).sum()
    assert torch.allclose(sample_frequencies(logits, temperature=2.0), heated, atol=0.015)
    kept_two = torch.tensor([0.625, 0.375, 0.0])  # 0.5 and 0.3, renormalised
    assert torch.allclose(sample_frequencies(logits, top_k=2), kept_two, atol=0.015)
    assert torch.allclose(sample_frequencies(logits, top_p=0.8), kept_two, atol=0.015)  # 0.5 + 0.3 >= 0.8
    assert torch.allclose(sample_frequencies(logits, top_p=0.81), probs, atol=0.015)  # needs all three
    # the nucleus is the SMALLEST set reaching top_p: at exactly 0.5, one of two equal tokens is enough
    halves = torch.tensor([[0.0, 0.0, float("-inf")]])  # probabilities exactly 0.5, 0.5, 0
    assert (sample_frequencies(halves, top_p=0.5) > 0).sum() == 1
    assert torch.equal(sample_next_token(torch.tensor([[0.1, 2.0, -1.0]]), temperature=0), torch.tensor([1]))


def test_generate_feeds_one_token_per_step_with_the_cache():
    """The cache must really be used: after the prompt, each forward pass sees only the newest token."""
    model = tiny_model()
    seen = []
    hook = model.transformer.wte.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[1]))
    prompt = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(2))
    model.generate(prompt, 4, temperature=0)
    assert seen == [5, 1, 1, 1]
    seen.clear()
    model.generate(prompt, 4, temperature=0, use_cache=False)
    assert seen == [5, 6, 7, 8]
    hook.remove()


@pytest.mark.parametrize("attn_impl", ["manual", "sdpa"])
def test_attention_maps_are_the_causal_softmax_of_the_scores(attn_impl):
    model = tiny_model(attn_impl=attn_impl, dropout=0.5).train()  # attention_maps must switch dropout off
    idx = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(3))
    maps = model.attention_maps(idx, layer=0)
    assert model.training  # the mode is restored
    # layer 0 by hand: embeddings -> ln_1 -> q, k -> softmax(q k^T / sqrt(D)) below the diagonal
    with torch.no_grad():
        x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(9))
        block = model.transformer.h[0]
        q, k, _ = block.attn.c_attn(block.ln_1(x)).split(model.config.n_embd, dim=2)
        H, D = model.config.n_head, model.config.n_embd // model.config.n_head
        q, k = (t.view(2, 9, H, D).transpose(1, 2) for t in (q, k))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)
        expected = F.softmax(scores.masked_fill(~torch.ones(9, 9, dtype=torch.bool).tril(), float("-inf")), dim=-1)
    assert maps.shape == (2, H, 9, 9)
    assert torch.allclose(maps, expected, atol=1e-6)
    assert torch.allclose(maps.sum(dim=-1), torch.ones(2, H, 9), atol=1e-6)
    assert (maps.triu(diagonal=1) == 0).all()


def test_dropout_is_off_during_generation_and_the_mode_is_restored():
    model = tiny_model(dropout=0.5).train()
    idx = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(10))
    assert not torch.equal(model(idx)[0], model(idx)[0])  # dropout is active in training mode
    out = model.generate(idx, 6, temperature=0)
    assert model.training  # generate switched to eval mode and back
    assert torch.equal(out, model.eval().generate(idx, 6, temperature=0))


def test_prompt_longer_than_context_is_a_clear_error():
    model = tiny_model()  # block_size 32
    with pytest.raises(ValueError, match="longer than the context"):
        model.generate(torch.zeros(1, 33, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="longer than the context"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="longer than the context"):
        model.generate_batch([[1] * 40, [2]], 5)
    with pytest.raises(ValueError, match="at least one token"):
        model.generate_batch([[1], []], 5)


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["learned", "rope"])
def test_generation_under_bf16_autocast_runs_and_caches(overrides):
    model = lively_model(**overrides, attn_impl="sdpa")
    prompt = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached = model.generate(prompt, 8, temperature=0)
        uncached = model.generate(prompt, 8, temperature=0, use_cache=False)
        logits = model(prompt)[0]
        kv_cache = KVCache(model.config.n_layer, max_len=5)
        with torch.no_grad():
            model._run(prompt, torch.arange(5).expand(2, 5), None, kv_cache)
    assert cached.shape == (2, 13) and torch.equal(cached, uncached)
    assert kv_cache.keys[0].dtype == torch.bfloat16  # half the memory of fp32
    assert torch.allclose(logits.float(), model(prompt)[0], atol=0.05 * model(prompt)[0].abs().max().item())


def test_resize_vocab_keeps_old_rows():
    for tie in (True, False):
        model = tiny_model(tie_weights=tie)
        idx = torch.randint(0, 64, (1, 8))
        before = model(idx)[0]
        old_rows = model.transformer.wte.weight.detach().clone()
        model.resize_vocab(70)
        wte = model.transformer.wte.weight
        assert wte.shape == (70, 32) and model.lm_head.weight.shape == (70, 32) and model.config.vocab_size == 70
        assert torch.equal(wte[:64], old_rows)
        assert torch.allclose(wte[64:], old_rows.mean(0).expand(6, 32))
        assert (model.lm_head.weight is wte) == tie
        assert torch.allclose(model(idx)[0][..., :64], before, atol=1e-6)  # old tokens' logits unchanged


# ----------------------------------------------------------------------------- GPT-2's published layout

def make_hf_gpt2_state_dict(vocab_size=50, block_size=16, n_layer=2, n_embd=128, seed=0):
    """A state dict with Hugging Face GPT-2's names and shapes (Conv1D weights are (in, out)), random values."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=gen) * 0.1
    C = n_embd
    sd = {"transformer.wte.weight": rand(vocab_size, C), "transformer.wpe.weight": rand(block_size, C),
          "transformer.ln_f.weight": 1 + rand(C), "transformer.ln_f.bias": rand(C)}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        sd.update({p + "ln_1.weight": 1 + rand(C), p + "ln_1.bias": rand(C),
                   p + "attn.bias": torch.tril(torch.ones(1, 1, block_size, block_size)),  # HF's mask buffer
                   p + "attn.c_attn.weight": rand(C, 3 * C), p + "attn.c_attn.bias": rand(3 * C),
                   p + "attn.c_proj.weight": rand(C, C), p + "attn.c_proj.bias": rand(C),
                   p + "ln_2.weight": 1 + rand(C), p + "ln_2.bias": rand(C),
                   p + "mlp.c_fc.weight": rand(C, 4 * C), p + "mlp.c_fc.bias": rand(4 * C),
                   p + "mlp.c_proj.weight": rand(4 * C, C), p + "mlp.c_proj.bias": rand(C)})
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def hf_gpt2_reference_logits(sd, idx, n_head):
    """GPT-2's forward written directly on the HF layout: Conv1D is y = x W + b with W (in, out)."""
    ln = lambda x, p: F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], 1e-5)
    conv1d = lambda x, p: x @ sd[p + ".weight"] + sd[p + ".bias"]
    T = idx.size(1)
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    n_layer = len({k.split(".")[2] for k in sd if k.startswith("transformer.h.")})
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        q, k, v = conv1d(ln(x, p + "ln_1"), p + "attn.c_attn").chunk(3, dim=-1)
        heads = lambda t: t.unflatten(-1, (n_head, -1)).transpose(1, 2)  # (B, H, T, D)
        scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(q.size(-1) // n_head)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        y = (torch.softmax(scores, -1) @ heads(v)).transpose(1, 2).flatten(2)
        x = x + conv1d(y, p + "attn.c_proj")
        h = conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc")
        x = x + conv1d(F.gelu(h, approximate="tanh"), p + "mlp.c_proj")
    return ln(x, "transformer.ln_f") @ sd["transformer.wte.weight"].T


def test_load_hf_gpt2_state_dict():
    sd = make_hf_gpt2_state_dict()
    config = hf_gpt2_config(sd)
    assert (config.vocab_size, config.block_size, config.n_layer, config.n_embd, config.n_head) == (50, 16, 2, 128, 2)
    model = load_hf_gpt2_state_dict(GPT(config), sd).eval()
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(8))
    assert torch.allclose(model(idx)[0], hf_gpt2_reference_logits(sd, idx, n_head=2), atol=1e-4)
    # the transpose, spelled out: our nn.Linear weight is HF's Conv1D weight transposed
    assert torch.equal(model.transformer.h[1].mlp.c_fc.weight, sd["transformer.h.1.mlp.c_fc.weight"].T)
    # keys without the "transformer." prefix (as some exports have) load the same
    bare = {k.removeprefix("transformer."): v for k, v in sd.items()}
    assert torch.equal(load_hf_gpt2_state_dict(GPT(config), bare).eval()(idx)[0], model(idx)[0])
    with pytest.raises(ValueError, match="lacks"):
        load_hf_gpt2_state_dict(GPT(config), {k: v for k, v in sd.items() if "ln_f" not in k})
    with pytest.raises(ValueError, match="shape"):
        load_hf_gpt2_state_dict(GPT(hf_gpt2_config(sd, n_embd=64, n_head=1)), sd)
    with pytest.raises(ValueError, match="GPT-2 shaped"):
        load_hf_gpt2_state_dict(GPT(hf_gpt2_config(sd, pos="rope")), sd)


# ----------------------------------------------------------------------------- norm eps, positions, padding

def test_norm_eps_is_a_config_field_with_each_norms_usual_default():
    assert tiny_config().norm_eps == 1e-5 and tiny_config(**LLAMA).norm_eps == 1e-6  # today's values
    model = tiny_model(**LLAMA)
    assert {m.eps for m in model.modules() if isinstance(m, (RMSNorm, LayerNorm))} == {1e-6}
    idx = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(1))
    for attn_impl in ("manual", "sdpa"):
        small = tiny_model(seed=3, **LLAMA, attn_impl=attn_impl)
        wide = tiny_model(seed=3, **LLAMA, attn_impl=attn_impl, norm_eps=10.0)  # a huge eps visibly shrinks outputs
        assert {m.eps for m in wide.modules() if isinstance(m, RMSNorm)} == {10.0}
        assert not torch.allclose(small(idx)[0], wide(idx)[0], atol=1e-3)
    assert {m.eps for m in tiny_model(norm_eps=1e-6).modules() if isinstance(m, LayerNorm)} == {1e-6}
    with pytest.raises(ValueError, match="norm_eps"):
        GPTConfig(norm_eps=0.0)


def test_apply_rope_reads_the_tables_at_positions():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8)
    cos, sin = rope_tables(8, 16)
    positions = torch.tensor([[0, 0, 0, 1, 2], [4, 5, 6, 7, 8]])
    indexed = apply_rope(x, cos[positions].unsqueeze(1), sin[positions].unsqueeze(1))
    assert torch.equal(apply_rope(x, cos, sin, positions), indexed)
    assert torch.equal(apply_rope(x, cos, sin), apply_rope(x, cos, sin, torch.arange(5).expand(2, 5)))  # default 0..T-1
    assert not torch.allclose(apply_rope(x, cos, sin, positions), apply_rope(x, cos, sin), atol=1e-3)


def test_left_pad_mask_and_positions():
    ids, mask, positions = left_pad([[5, 6, 7], [8]], pad_id=9)
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]] and ids.dtype == torch.long
    assert mask.tolist() == [[True, True, True], [False, False, True]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert positions_from_mask(torch.tensor([[False, True, True, False]])).tolist() == [[0, 0, 1, 1]]
    # real tokens never see a pad; a pad sees only itself (+ earlier real tokens); query rows are the last T
    allowed = padded_causal_mask(torch.tensor([[False, False, True, True]]), n_query=4)[0, 0].int().tolist()
    assert allowed == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    last = padded_causal_mask(torch.tensor([[False, True, True, True]]), n_query=1)  # one new token, 3 cached
    assert last.shape == (1, 1, 1, 4) and last[0, 0, 0].tolist() == [False, True, True, True]
    for bad in ([], [[1], []]):
        with pytest.raises(ValueError, match="at least one token"):
            left_pad(bad)


@pytest.mark.parametrize("attn_impl", ["manual", "sdpa"])
@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["gpt2", "llama"])
def test_left_padded_batch_gives_each_row_its_logits_alone(overrides, attn_impl):
    model = lively_model(**overrides, attn_impl=attn_impl)
    gen = torch.Generator().manual_seed(11)
    rows = [torch.randint(0, 64, (n,), generator=gen).tolist() for n in (3, 9, 1, 6)]
    ids, mask, positions = left_pad(rows)
    batched = model(ids, attention_mask=mask)[0]
    explicit = model(ids, attention_mask=mask, positions=positions)[0]
    assert torch.equal(batched, explicit)
    for b, row in enumerate(rows):
        alone = model(torch.tensor([row]))[0][0]
        assert torch.allclose(batched[b, -len(row):], alone, atol=1e-5)
    # both halves matter: without the mask, real tokens see the pads; with other positions, logits change
    # (reversed ones: RoPE is blind to a uniform shift, since it sees only distances)
    short = model(torch.tensor([rows[0]]))[0][0]  # row 0 has 6 pads
    assert not torch.allclose(model(ids)[0][0, -3:], short, atol=1e-3)
    reversed_positions = model(ids, attention_mask=mask, positions=positions.flip(1))[0]
    assert not torch.allclose(reversed_positions[0, -3:], short, atol=1e-3)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(ids, attention_mask=mask[:, 1:])


# ----------------------------------------------------------------------------- log-probs, rollouts, stop strings

def test_logprobs_from_logits_match_cross_entropy_and_categorical():
    gen = torch.Generator().manual_seed(12)
    logits = torch.randn(3, 7, 11, generator=gen) * 3
    targets = torch.randint(0, 11, (3, 7), generator=gen)
    mask = torch.rand(3, 7, generator=gen) > 0.4
    for temperature in (1.0, 0.7):
        out = logprobs_from_logits(logits, targets, mask, temperature)
        assert isinstance(out, SequenceLogProbs)
        assert out.token_logprobs.shape == (3, 7) and out.sequence_logprob.shape == (3,) and out.entropy.shape == (3, 7)
        ce = F.cross_entropy((logits / temperature).transpose(1, 2), targets, reduction="none")  # (B, T)
        assert torch.allclose(out.token_logprobs, torch.where(mask, -ce, 0.0), atol=1e-5)
        dist = torch.distributions.Categorical(logits=logits / temperature)
        assert torch.allclose(out.token_logprobs, torch.where(mask, dist.log_prob(targets), 0.0), atol=1e-5)
        assert torch.allclose(out.entropy, torch.where(mask, dist.entropy(), 0.0), atol=1e-5)
        assert torch.allclose(out.sequence_logprob, (dist.log_prob(targets) * mask).sum(dim=1), atol=1e-5)
    unmasked = logprobs_from_logits(logits, targets)
    assert torch.allclose(unmasked.sequence_logprob, -F.cross_entropy(logits.transpose(1, 2), targets,
                                                                       reduction="none").sum(dim=1), atol=1e-4)
    assert torch.equal(logprobs_from_logits(logits, targets, temperature=0).token_logprobs, unmasked.token_logprobs)


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["gpt2", "llama"])
def test_sequence_logprobs_equal_a_token_by_token_computation(overrides):
    model = lively_model(**overrides)
    gen = torch.Generator().manual_seed(13)
    rows = [torch.randint(0, 64, (n,), generator=gen).tolist() for n in (6, 10, 3)]
    ids, mask, _ = left_pad(rows)
    response = mask.clone()
    response[:, :-2] = False  # score the last two tokens of each row, as a reply to the rest
    out = sequence_logprobs(model, ids, response, mask, temperature=0.8)
    assert out.token_logprobs.shape == ids.shape and out.entropy.shape == ids.shape
    for b, row in enumerate(rows):
        expected_tokens, expected_entropy = [], []
        for t in range(len(row) - 2, len(row)):  # one prefix at a time, each row alone
            log_p = F.log_softmax(model(torch.tensor([row[:t]]))[0][0, -1] / 0.8, dim=-1)
            expected_tokens.append(log_p[row[t]].item())
            expected_entropy.append(-(log_p.exp() * log_p).sum().item())
        assert torch.allclose(out.token_logprobs[b, -2:], torch.tensor(expected_tokens), atol=1e-5)
        assert torch.allclose(out.entropy[b, -2:], torch.tensor(expected_entropy), atol=1e-5)
        assert torch.allclose(out.sequence_logprob[b], torch.tensor(sum(expected_tokens)), atol=1e-5)
        assert (out.token_logprobs[b, :-2] == 0).all() and (out.entropy[b, :-2] == 0).all()
    default = sequence_logprobs(model, ids, attention_mask=mask)  # every real token after a real token
    assert (default.token_logprobs[2, :8] == 0).all() and (default.token_logprobs[2, 8:] < 0).all()
    out.sequence_logprob.sum().backward()  # a policy trains through it
    assert model.lm_head.weight.grad is not None


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["gpt2", "llama"])
def test_rollout_logprobs_equal_one_forward_pass(overrides):
    model = tiny_model(**overrides)
    gen = torch.Generator().manual_seed(14)
    prompts = [torch.randint(0, 64, (n,), generator=gen).tolist() for n in (2, 8, 5)]
    r = rollout(model, prompts, [6, 9, 4], temperature=0.7, top_k=20, seed=0)
    assert isinstance(r, Rollout) and r.prompt_len == 8 and [len(x) for x in r.responses] == [6, 9, 4]
    assert r.ids.shape == r.attention_mask.shape == r.response_mask.shape == r.logprobs.shape == (3, 17)
    for b, (prompt, response) in enumerate(zip(prompts, r.responses)):
        assert r.ids[b, 8 - len(prompt):8].tolist() == prompt and r.ids[b, 8:8 + len(response)].tolist() == response
        assert r.response_mask[b].nonzero().flatten().tolist() == list(range(8, 8 + len(response)))
        assert r.attention_mask[b].sum() == len(prompt) + len(response)
    assert (r.logprobs[r.response_mask] < 0).all() and (r.logprobs[~r.response_mask] == 0).all()
    again = sequence_logprobs(model, r.ids, r.response_mask, r.attention_mask, temperature=0.7)
    assert torch.allclose(again.token_logprobs, r.logprobs, atol=1e-5)
    other_temperature = sequence_logprobs(model, r.ids, r.response_mask, r.attention_mask, temperature=1.0)
    assert not torch.allclose(other_temperature.token_logprobs, r.logprobs, atol=1e-3)
    with pytest.raises(ValueError, match="block_size"):
        rollout(model, prompts, 30)


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["gpt2", "llama"])
def test_batched_greedy_rollout_equals_one_at_a_time(overrides):
    model = lively_model(**overrides)
    gen = torch.Generator().manual_seed(15)
    prompts = [torch.randint(0, 64, (n,), generator=gen).tolist() for n in (1, 7, 4)]
    alone = [model.generate(torch.tensor([p]), 10, temperature=0)[0, len(p):].tolist() for p in prompts]
    assert rollout(model, prompts, 10, temperature=0).responses == alone
    r = rollout(model, prompts, 10, temperature=0, use_cache=False)
    assert r.responses == alone
    greedy = sequence_logprobs(model, r.ids, r.response_mask, r.attention_mask, temperature=0)
    assert torch.allclose(greedy.token_logprobs, r.logprobs, atol=1e-4)  # greedy reports log softmax(logits)


def test_stop_strings_and_per_row_budgets():
    model = lively_model()
    letters = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.?"
    decode = lambda ids: "".join(letters[t] for t in ids)  # one character per token (vocab 64)
    prompt, other = [9, 9, 2, 6, 5], [2, 7, 1, 8, 2]
    greedy, greedy_other = (model.generate_batch([p], 12, temperature=0)[0] for p in (prompt, other))
    text = decode(greedy)
    stop = text[4:6]  # two characters: the stop string is completed by the token at index 5 (or earlier)
    n = next(k for k in range(1, 13) if stop in decode(greedy[:k]))
    assert stop not in decode(greedy_other), "pick another stop string"
    out = model.generate_batch([prompt, other], 12, temperature=0, stop_strings=[stop], decode=decode)
    assert out == [greedy[:n], greedy_other]  # up to AND including the token completing the string
    r = rollout(model, [prompt, other], 12, temperature=0, stop_strings=[stop, "never?"], decode=decode)
    assert r.responses == out and r.response_mask[0].sum() == n
    budgets = model.generate_batch([prompt, other], [3, 7], temperature=0)
    assert budgets == [greedy[:3], greedy_other[:7]]
    assert model.generate_batch([prompt, other], [0, 2], temperature=0) == [[], greedy_other[:2]]
    with pytest.raises(ValueError, match="decode"):
        model.generate_batch([prompt], 5, stop_strings=["x"])
    with pytest.raises(ValueError, match="one per prompt"):
        model.generate_batch([prompt, other], [3], temperature=0)


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["gpt2", "llama"])
def test_padded_batch_past_the_context_equals_each_prompt_alone(overrides):
    """Past block_size the cached loop slides a window over a padded batch (its mask cut to the window):
    every row must still generate what it generates alone (review of issue 12: untested path)."""
    model = lively_model(**overrides)
    block_size = model.config.block_size
    gen = torch.Generator().manual_seed(16)
    prompts = [torch.randint(0, 64, (n,), generator=gen).tolist() for n in (2, 9, 5)]
    n_new = block_size + 6 - 2  # the longest row runs 15 tokens past the context
    for use_cache in (True, False):
        alone = [model.generate_batch([p], n_new, temperature=0, use_cache=use_cache)[0] for p in prompts]
        assert model.generate_batch(prompts, n_new, temperature=0, use_cache=use_cache) == alone


@pytest.mark.parametrize("overrides", [{}, LLAMA], ids=["gpt2", "llama"])
def test_masked_prefill_in_chunks_equals_one_forward_pass(overrides):
    """hidden() with a KV cache and the mask of all positions so far (B, cached + T) gives, chunk by
    chunk, the logits of one full forward pass over the padded batch."""
    model = lively_model(**overrides)
    gen = torch.Generator().manual_seed(17)
    ids, mask, _ = left_pad([torch.randint(0, 64, (n,), generator=gen).tolist() for n in (11, 4, 8)])
    full, _ = model(ids, attention_mask=mask)
    kv_cache = KVCache(model.config.n_layer, max_len=ids.size(1))
    chunks = [model.lm_head(model.hidden(ids[:, a:b], attention_mask=mask[:, :b], kv_cache=kv_cache))
              for a, b in ((0, 5), (5, 6), (6, 11))]
    chunked = torch.cat(chunks, dim=1)
    assert torch.allclose(chunked[mask], full[mask], atol=1e-4)
