"""Chapter 06 (quantization): the quantizers against hand-computed values, the int8 matmul against the integer
reference, LLM.int8's decomposition, GPTQ against RTN, packing, the swapped modules, the checkpoint, the script.

Everything builds its own tiny models and token files in temporary folders (nothing is read from runs/),
offline and deterministic.
"""
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

import bpe
import checkpoint
import world
from chat_format import END, add_chat_tokens, render_chat
from dataset import write_tokens
from gpt import GPT, GPTConfig
from gptq import add_to_hessian, gptq_model, gptq_quantize, inverse_hessian_cholesky, layer_output_error
from int8_matmul import (int8_matmul, int8_matmul_reference, llm_int8_matmul, outlier_dims,
                         vectorwise_int8_matmul)
from model_loader import load_model
from quant_checkpoint import save_quantized
from quant_eval import input_absmax_per_dim, outlier_dims_per_layer
from quant_modules import Int8Linear, QuantLinear, linear_names, linear_weight_bytes, swap_linears
from quantizers import (absmax_dequantize, absmax_quantize, check_bits, check_group_size, fake_quantize, pack_bits,
                        packed_bytes, quantization_error, rtn, unpack_bits, zeropoint_dequantize, zeropoint_quantize)


# ---- the quantizers, against hand-computed values


def test_absmax_int8_by_hand():
    q, scale = absmax_quantize(torch.tensor([0.5, -1.27, 0.01]), 8)
    assert float(scale) == pytest.approx(0.01) and q.tolist() == [50, -127, 1] and q.dtype == torch.int8
    q4, scale4 = absmax_quantize(torch.tensor([0.7, -0.35, 0.1]), 4)  # Q = 7: scale 0.1
    assert float(scale4) == pytest.approx(0.1) and q4.tolist() == [7, -4, 1]  # -3.5 rounds to even: -4


def test_zeropoint_int8_by_hand():
    q, scale, zero = zeropoint_quantize(torch.tensor([-1.0, 0.0, 3.0]), 8)
    assert float(scale) == pytest.approx(4 / 255, rel=1e-3) and float(zero) == 64 and q.tolist() == [0, 64, 255]
    x_hat = zeropoint_dequantize(q, scale, zero)
    assert x_hat[1] == 0.0 and x_hat.tolist() == pytest.approx([-1.004, 0.0, 2.996], abs=1e-3)


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
@pytest.mark.parametrize("granularity, group_size", [("tensor", None), ("row", None), ("group", 16)])
def test_round_trips_err_by_at_most_half_a_step(bits, granularity, group_size):
    torch.manual_seed(bits)
    x = torch.randn(12, 64) * torch.rand(12, 1) * 3
    q, scale = absmax_quantize(x, bits, granularity, group_size)
    step = absmax_dequantize(torch.ones_like(q), scale, granularity, group_size)  # the scale at every position
    assert ((absmax_dequantize(q, scale, granularity, group_size) - x).abs() <= step / 2 + 1e-6).all()
    assert q.abs().max() <= 2 ** (bits - 1) - 1
    q, scale, zero = zeropoint_quantize(x, bits, granularity, group_size)
    step = zeropoint_dequantize(torch.ones_like(q), scale, torch.zeros_like(zero), granularity, group_size)
    assert ((zeropoint_dequantize(q, scale, zero, granularity, group_size) - x).abs() <= step / 2 + 1e-6).all()
    assert int(q.max()) <= 2 ** bits - 1


def test_finer_granularity_and_more_bits_err_less():
    torch.manual_seed(0)
    x = torch.randn(32, 128)
    x[3, 5] = 40.0  # one outlier: it sets the per-tensor scale for everybody
    errors = {g: quantization_error(x, fake_quantize(x, 8, g, 32)) for g in ("tensor", "row", "group")}
    assert errors["group"] < errors["row"] < errors["tensor"]
    assert quantization_error(x, fake_quantize(x, 4, "row")) > errors["row"]


def test_rtn_is_zeropoint_per_row_or_group():
    torch.manual_seed(0)
    w = torch.randn(8, 32)
    assert torch.equal(rtn(w, 4), zeropoint_dequantize(*zeropoint_quantize(w, 4, "row"), "row"))
    assert torch.equal(rtn(w, 3, 8), zeropoint_dequantize(*zeropoint_quantize(w, 3, "group", 8), "group", 8))


@pytest.mark.parametrize("bits", [1, 9, 0, 16, 4.0])
def test_bits_outside_2_to_8_are_refused(bits):
    with pytest.raises(ValueError, match="choose an integer from 2 to 8"):
        check_bits(bits)
    with pytest.raises(ValueError, match="2 to 8"):
        absmax_quantize(torch.ones(4), bits)


def test_a_group_size_that_does_not_divide_the_width_is_refused():
    with pytest.raises(ValueError, match=r"group size 128 does not divide the width 192.*\[32, 64\]"):
        check_group_size(192, 128)
    with pytest.raises(ValueError, match="does not divide"):
        zeropoint_quantize(torch.ones(4, 192), 4, "group", 128)
    with pytest.raises(ValueError, match="does not divide"):
        QuantLinear(192, 8, bits=4, group_size=128)


# ---- packing


def test_pack_two_4bit_codes_per_byte_by_hand():
    assert pack_bits(torch.tensor([1, 2]), 4).tolist() == [0x21]
    assert pack_bits(torch.tensor([15, 0, 3]), 4).tolist() == [0x0F, 0x03]
    assert pack_bits(torch.tensor([5, 7, 1]), 3).tolist() == [0b01_111_101, 0b0]  # 8 codes per 3 bytes


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_pack_unpack_round_trip(bits):
    torch.manual_seed(bits)
    codes = torch.randint(0, 2 ** bits, (1001,))
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and len(packed) == packed_bytes(1001, bits) == math.ceil(1001 * bits / 8)
    assert torch.equal(unpack_bits(packed, bits, 1001).long(), codes)
    with pytest.raises(ValueError, match="must lie in"):
        pack_bits(torch.tensor([2 ** bits]), bits)


# ---- int8 matmul and LLM.int8()


@pytest.mark.parametrize("k", [7, 1024, 3000])
def test_int8_matmul_equals_the_integer_reference(k):
    torch.manual_seed(k)
    a = torch.randint(-128, 128, (19, k), dtype=torch.int8)
    b = torch.randint(-128, 128, (k, 23), dtype=torch.int8)
    assert torch.equal(int8_matmul(a, b), int8_matmul_reference(a, b))
    for value in (-128, 127):  # the largest sums there are (127^2 is odd: float32 rounds such sums past 2^24)
        worst = torch.full((2, k), value, dtype=torch.int8)
        assert int(int8_matmul(worst, worst.t().contiguous())[0, 0]) == k * value ** 2


def test_vectorwise_int8_matmul_is_the_rescaled_integer_product():
    torch.manual_seed(0)
    x, w = torch.randn(5, 64), torch.randn(6, 64)
    wq, w_scale = absmax_quantize(w, 8, "row")
    xq, x_scale = absmax_quantize(x, 8, "row")
    expected = int8_matmul_reference(xq, wq.t()).double() * (x_scale[:, None] * w_scale[None, :]).double()
    assert torch.allclose(vectorwise_int8_matmul(x, wq, w_scale).double(), expected, rtol=1e-6)
    assert quantization_error(x @ w.t(), vectorwise_int8_matmul(x, wq, w_scale)) < 0.02


def test_outlier_decomposition_is_full_precision_when_every_dim_is_an_outlier():
    torch.manual_seed(0)
    x, w = torch.randn(7, 32), torch.randn(5, 32)
    wq, w_scale = absmax_quantize(w, 8, "row")
    w_stored = absmax_dequantize(wq, w_scale, "row")  # the weight as stored: int8 x its scale
    assert outlier_dims(x, 0.0).all()
    assert torch.allclose(llm_int8_matmul(x, wq, w_scale, threshold=0.0), x @ w_stored.t(), atol=1e-5)
    # no outliers at all: plain vector-wise int8
    assert torch.equal(llm_int8_matmul(x, wq, w_scale, float("inf")), vectorwise_int8_matmul(x, wq, w_scale))


def test_outlier_decomposition_rescues_a_row_with_an_outlier():
    torch.manual_seed(0)
    x, w = torch.randn(16, 64), torch.randn(8, 64) * 0.1
    x[:, 9] = 60.0  # one systematic outlier feature, as LLM.int8() describes
    assert outlier_dims(x, 6.0).nonzero().flatten().tolist() == [9]
    wq, w_scale = absmax_quantize(w, 8, "row")
    exact = x @ absmax_dequantize(wq, w_scale, "row").t()
    split = (llm_int8_matmul(x, wq, w_scale, 6.0) - exact).abs().max()
    plain = (vectorwise_int8_matmul(x, wq, w_scale) - exact).abs().max()
    assert split < plain / 5


# ---- GPTQ


def correlated_layer(seed=0, n=2048, k=64, m=24):
    """Inputs with strong correlations between features (rank ~8 plus noise) and a weight."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g) @ torch.randn(8, k, generator=g) + 0.05 * torch.randn(n, k, generator=g)
    return x, torch.randn(m, k, generator=g) * 0.1


@pytest.mark.parametrize("group_size, act_order", [(None, False), (16, False), (None, True), (16, True)])
def test_gptq_layer_error_is_not_above_rtn_on_correlated_inputs(group_size, act_order):
    x, w = correlated_layer()
    hessian, n = add_to_hessian(None, 0, x)
    result = gptq_quantize(w, hessian, 3, group_size, act_order, block_size=16)
    # "not above RTN's" (the issue); on inputs this correlated it is far below, which a broken update is not
    assert layer_output_error(x, w, result["weight"]) < 0.5 * layer_output_error(x, w, rtn(w, 3, group_size))
    assert result["codes"].max() <= 7 and result["weight"].shape == w.shape


@pytest.mark.parametrize("bits, group_size", [(4, None), (3, 16)])
def test_gptq_equals_rtn_when_the_hessian_is_the_identity(bits, group_size):
    _, w = correlated_layer(1)
    result = gptq_quantize(w, torch.eye(w.size(1)), bits, group_size, block_size=16)
    assert torch.equal(result["weight"], rtn(w, bits, group_size))


def test_hessian_and_its_inverse_cholesky():
    x, _ = correlated_layer(2, n=300, k=12)
    hessian, n = add_to_hessian(None, 0, x[:100])
    hessian, n = add_to_hessian(hessian, n, x[100:])  # the running mean equals the one-shot formula
    assert n == 300 and torch.allclose(hessian, 2 * x.t() @ x / 300, rtol=1e-4)
    U = inverse_hessian_cholesky(hessian, damp=0.01)
    damped = hessian + 0.01 * hessian.diagonal().mean() * torch.eye(12)
    assert torch.allclose(U.t() @ U, torch.linalg.inv(damped), rtol=1e-3, atol=1e-5) and torch.equal(U, U.triu())


def test_gptq_without_damping_on_too_few_inputs_says_what_to_do():
    x, w = correlated_layer(5, n=16)  # 16 inputs of width 64: H has rank 16
    hessian, _ = add_to_hessian(None, 0, x)
    with pytest.raises(ValueError, match="not positive definite with damp=0.*more calibration tokens"):
        gptq_quantize(w, hessian, 4, damp=0)
    assert torch.isfinite(gptq_quantize(w, hessian, 4, damp=0.01)["weight"]).all()


def test_gptq_lazy_blocks_equal_one_block():
    x, w = correlated_layer(3)
    hessian, _ = add_to_hessian(None, 0, x)
    one = gptq_quantize(w, hessian, 4, block_size=64)
    blocks = gptq_quantize(w, hessian, 4, block_size=8)
    assert torch.allclose(one["weight"], blocks["weight"], atol=1e-6) or \
        (one["codes"] != blocks["codes"]).float().mean() < 0.01  # float reassociation may flip a rare tie


# ---- the modules and the swap


def tiny_gpt(vocab_size=300, seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64, attn_impl="sdpa")
    return GPT(GPTConfig(**{**config, **overrides})).eval()


def relative_logit_error(model, quantized, idx):
    with torch.no_grad():
        reference, _ = model(idx)
        logits, _ = quantized(idx)
    return float((logits - reference).norm() / reference.norm())


@pytest.mark.parametrize("make, tolerance", [
    (lambda n, l: Int8Linear.from_linear(l, "vectorwise"), 0.02),
    (lambda n, l: Int8Linear.from_linear(l, "llm_int8", 1.0), 0.02),
    (lambda n, l: Int8Linear.from_linear(l, "absmax"), 0.05),
    (lambda n, l: Int8Linear.from_linear(l, "zeropoint"), 0.05),
    (lambda n, l: QuantLinear.from_linear(l, 8), 0.02),
    (lambda n, l: QuantLinear.from_linear(l, 4, 32), 0.2),
])
def test_a_swapped_model_stays_close_and_keeps_its_tied_head(make, tolerance):
    import copy
    model = tiny_gpt()
    idx = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(0))
    quantized = swap_linears(copy.deepcopy(model), make)
    assert not any(isinstance(m, nn.Linear) for n, m in quantized.named_modules() if n != "lm_head")
    assert quantized.lm_head.weight is quantized.transformer.wte.weight  # the tie survives
    assert 0 < relative_logit_error(model, quantized, idx) < tolerance
    # generation with the KV cache equals generation without it
    with_cache = quantized.generate(idx[:1, :5], 8, temperature=0)
    without = quantized.generate(idx[:1, :5], 8, temperature=0, use_cache=False)
    assert torch.equal(with_cache, without)


def test_linear_weight_bytes_of_4_bit_storage():
    import copy
    model = tiny_gpt()
    fp32 = linear_weight_bytes(model)
    assert fp32 == 4 * sum(model.get_submodule(n).weight.numel() for n in linear_names(model))
    four = linear_weight_bytes(swap_linears(copy.deepcopy(model), lambda n, l: QuantLinear.from_linear(l, 4, 32)))
    assert four / fp32 == pytest.approx(4 / 32 + (2 + 1) / 32 / 4, rel=1e-9)  # codes + fp16 scale + uint8 zero
    assert four / fp32 <= 0.27  # the target


def test_quantlinear_with_act_order_permutation_computes_the_same_product():
    x, w = correlated_layer(4)
    linear = nn.Linear(64, 24)
    linear.weight.data = w
    hessian, _ = add_to_hessian(None, 0, x)
    result = gptq_quantize(w, hessian, 4, 16, act_order=True, block_size=16)
    assert result["perm"] is not None and not torch.equal(result["perm"], torch.arange(64))
    module = QuantLinear.from_result(linear, result["codes"], result["scale"], result["zero"], 4, 16, result["perm"])
    assert torch.allclose(module(x), x @ result["weight"].t() + linear.bias, atol=1e-4)


def test_gptq_model_quantizes_every_layer_in_order():
    model = tiny_gpt(seed=1)
    tokens = torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(1))
    order = []
    results = gptq_model(model, tokens, bits=4, group_size=32, log=order.append)
    assert order == linear_names(model) and "lm_head" not in results
    first = model.transformer.h[0].attn.c_attn.weight
    assert torch.equal(first, results["transformer.h.0.attn.c_attn"]["weight"])  # the model now holds W_hat


def test_outlier_dims_are_counted_per_layer():
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.wpe.weight[:, 7] = 50.0  # a feature that is huge at every position
    tokens = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    maxima = input_absmax_per_dim(model, tokens)
    counts = outlier_dims_per_layer(maxima, [6.0, float("inf"), 0.0])
    assert set(maxima) == set(linear_names(model))
    assert counts[float("inf")]["transformer.h.0.attn.c_attn"] == 0 and counts[0.0]["transformer.h.0.mlp.c_fc"] == 64
    assert counts[6.0]["transformer.h.0.attn.c_attn"] >= 1  # layer norm keeps a share of the outlier
    largest = float(maxima["transformer.h.0.mlp.c_fc"].max())  # |x| >= threshold counts, equality included
    assert outlier_dims_per_layer(maxima, [largest])[largest]["transformer.h.0.mlp.c_fc"] >= 1


# ---- injected outliers (outlier_injection.py)

LLAMA_STYLE = dict(norm="rmsnorm", pos="rope", mlp="swiglu", tie_weights=False, bias=False)


def gpt_with_trained_looking_norms(seed=0, **overrides):
    """tiny_gpt with norm gains around 1 and biases around 0 that are not exactly 1 and 0 (as after training),
    so that a wrong gain or a forgotten bias changes the logits."""
    model = tiny_gpt(seed=seed, **overrides)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".ln_" in name:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return model


@pytest.mark.parametrize("overrides", [{}, LLAMA_STYLE], ids=["gpt2", "llama"])
def test_injected_outliers_leave_the_logits_unchanged(overrides):
    import copy
    from outlier_injection import inject_outliers
    model = gpt_with_trained_looking_norms(**overrides)
    idx = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    injected = inject_outliers(copy.deepcopy(model), [3, 17, 40], 30.0)
    assert not torch.equal(injected.transformer.h[0].ln_1.weight, model.transformer.h[0].ln_1.weight)
    with torch.no_grad():
        reference, logits = model(idx)[0], injected(idx)[0]
    assert reference.abs().max() > 0.1 and torch.allclose(logits, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, LLAMA_STYLE], ids=["gpt2", "llama"])
def test_injected_dims_carry_activations_alpha_times_larger(overrides):
    import copy
    from outlier_injection import inject_outliers, typical_dims
    model = gpt_with_trained_looking_norms(**overrides)
    tokens = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    dims = typical_dims(model, tokens, n=3)
    assert len(dims) == 3 and dims == sorted(dims)
    natural = input_absmax_per_dim(model, tokens)
    injected = input_absmax_per_dim(inject_outliers(copy.deepcopy(model), dims, 10.0), tokens)
    others = [d for d in range(64) if d not in dims]
    for name in natural:
        reads_a_norm = name.endswith(("c_attn", "c_fc", "w_gate", "w_up"))
        expected = 10.0 if reads_a_norm else 1.0  # c_proj reads attention's or the MLP's output: unchanged
        assert torch.allclose(injected[name][dims], expected * natural[name][dims], rtol=1e-4), name
        assert torch.allclose(injected[name][others], natural[name][others], rtol=1e-4), name
    assert max(float(m.max()) for m in injected.values()) > 6 > max(float(m.max()) for m in natural.values())


def test_llm_int8_catches_the_injected_outliers_that_absmax_and_vectorwise_int8_do_not():
    """The paper's order, on a small deterministic model: with outliers of ~30x, one absmax scale per tensor
    and one per token both lose the other dims' precision; the decomposition with W's outlier columns in
    float16 does not. Dequantizing those columns from int8 (bitsandbytes' inference) loses some: injected,
    they are alpha times smaller than the rest of their row, so int8 rounds them coarsely."""
    import copy
    from outlier_injection import inject_outliers, typical_dims
    model = gpt_with_trained_looking_norms(seed=2)
    idx = torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(2))
    errors = {}
    for alpha in (1.0, 30.0):
        injected = inject_outliers(copy.deepcopy(model), typical_dims(model, idx), alpha)
        float_dims = {n: (m >= 6.0).nonzero().flatten().tolist() for n, m in input_absmax_per_dim(injected, idx).items()}
        makers = {mode: lambda n, l, mode=mode: Int8Linear.from_linear(l, mode, 6.0)
                  for mode in ("absmax", "vectorwise", "llm_int8")}
        makers["fp16_cols"] = lambda n, l: Int8Linear.from_linear(l, "llm_int8", 6.0, float_dims[n])
        for name, make in makers.items():
            errors[alpha, name] = relative_logit_error(injected, swap_linears(copy.deepcopy(injected), make), idx)
    assert errors[1.0, "fp16_cols"] == errors[1.0, "llm_int8"]  # no input reaches 6 in the natural model
    for name in ("absmax", "vectorwise"):
        assert errors[30.0, name] > 5 * errors[1.0, name] and errors[30.0, name] > 5 * errors[30.0, "fp16_cols"]
    assert errors[30.0, "fp16_cols"] < 1.2 * errors[1.0, "fp16_cols"] < 1.2 * errors[30.0, "llm_int8"]


def test_int8linear_float_columns_are_exact_and_cost_their_bytes():
    torch.manual_seed(0)
    linear = nn.Linear(32, 8)
    x = torch.randn(5, 32)
    x[:, 3] *= 40.0
    module = Int8Linear.from_linear(linear, "llm_int8", 6.0, float_dims=[3, 9])
    plain = Int8Linear.from_linear(linear, "llm_int8", 6.0)
    assert module.spec() == {"kind": "int8", "mode": "llm_int8", "threshold": 6.0, "float_dims": 2}
    assert (module.int8_weight[:, [3, 9]] == 0).all() and torch.equal(module.float_weight, linear.weight[:, [3, 9]].half())
    assert module.weight_bytes() == plain.weight_bytes() + 2 * (8 * 2 + 8)
    reference = linear(x)
    assert (module(x) - reference).abs().max() < (plain(x) - reference).abs().max()
    with pytest.raises(ValueError, match="only llm_int8"):
        Int8Linear.from_linear(linear, "vectorwise", float_dims=[1])


def test_a_non_positive_alpha_is_refused():
    from outlier_injection import inject_outliers
    with pytest.raises(ValueError, match="alpha=0 must be positive"):
        inject_outliers(tiny_gpt(), [1], 0)


# ---- the checkpoint


@pytest.fixture(scope="module")
def chat_model_run(tmp_path_factory):
    """A tiny chat model (random weights, chat tokens), its tokenizer, and chapter 03 style token files."""
    root = tmp_path_factory.mktemp("quant")
    corpus = world.make_corpus(60_000)
    tokenizer = add_chat_tokens(bpe.train_bpe(corpus, 400, special_tokens=[world.EOT]))
    tokenizer.save(root / "sft" / "tokenizer")
    model = tiny_gpt(tokenizer.vocab_size, block_size=256)
    ids = np.array(tokenizer.encode_ordinary(corpus[:40_000]))
    write_tokens(ids[:-4000], root / "data" / "train.bin", tokenizer.vocab_size)
    write_tokens(ids[-4000:], root / "data" / "val.bin", tokenizer.vocab_size)
    checkpoint.save_checkpoint(root / "sft" / "ckpt.pt", {
        "model": model.state_dict(), "model_config": checkpoint.model_config_dict(model),
        "tokenizer": str(root / "sft" / "tokenizer"), "step": 3, "stage": "sft"})
    return root, model, tokenizer


@pytest.mark.parametrize("stage, make", [
    ("llm_int8", lambda n, l: Int8Linear.from_linear(l, "llm_int8", 6.0)),
    ("llm_int8", lambda n, l: Int8Linear.from_linear(l, "llm_int8", 6.0, float_dims=[0, 5])),
    ("gptq4_g32", lambda n, l: QuantLinear.from_result(l, *_act_order_codes(l), 4, 32, torch.randperm(l.in_features))),
    ("rtn3", lambda n, l: QuantLinear.from_linear(l, 3)),
])
def test_save_and_load_a_quantized_checkpoint(chat_model_run, tmp_path, stage, make):
    import copy
    root, model, tokenizer = chat_model_run
    quantized = swap_linears(copy.deepcopy(model), make)
    path = tmp_path / stage / "ckpt.pt"
    size = save_quantized(path, quantized, stage, root / "sft" / "ckpt.pt", tokenizer, {"bits": 4})
    assert size == path.stat().st_size
    loaded, loaded_tokenizer, saved = load_model(path)
    assert saved["stage"] == stage and saved["source"] == str(root / "sft" / "ckpt.pt")
    assert (tmp_path / stage / "tokenizer.tiktoken").is_file() and loaded_tokenizer.vocab_size == tokenizer.vocab_size
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    idx = torch.randint(0, tokenizer.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], quantized(idx)[0])
    for key, value in quantized.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def _act_order_codes(linear):
    codes = torch.randint(0, 16, (linear.out_features, linear.in_features), generator=torch.Generator().manual_seed(0))
    n_groups = linear.in_features // 32
    return codes, torch.rand(linear.out_features, n_groups) * 0.01, torch.randint(0, 16, (linear.out_features, n_groups))


def test_a_4bit_checkpoint_is_smaller_on_disk(chat_model_run, tmp_path):
    import copy
    root, model, tokenizer = chat_model_run
    fp32 = save_quantized(tmp_path / "fp32" / "ckpt.pt", model, "fp32")
    four = save_quantized(tmp_path / "rtn4" / "ckpt.pt", swap_linears(
        copy.deepcopy(model), lambda n, l: QuantLinear.from_linear(l, 4, 32)), "rtn4")
    saved_linear = 4 * sum(model.get_submodule(n).weight.numel() for n in linear_names(model))
    # the file shrinks by the Linear weights' savings (the embedding stays in fp32), within headers
    assert fp32 - four == pytest.approx(saved_linear - linear_weight_bytes(swap_linears(
        copy.deepcopy(model), lambda n, l: QuantLinear.from_linear(l, 4, 32))), rel=0.05)


def test_a_checkpoint_that_is_not_a_model_is_refused(tmp_path):
    torch.save({"step": 3, "weights": torch.zeros(2)}, tmp_path / "not_a_model.pt")
    with pytest.raises(ValueError, match="is not a bytes2chat checkpoint"):
        load_model(tmp_path / "not_a_model.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="is not a checkpoint written by save_checkpoint"):
        load_model(tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


# ---- the script, on the tiny chat model


@pytest.fixture(scope="module")
def quantize_run(chat_model_run):
    import quantize
    root, _, _ = chat_model_run
    out = root / "runs" / "06_quantize"
    summary = quantize.main([
        "--ckpt", str(root / "sft" / "ckpt.pt"), "--data-dir", str(root / "data"), "--out-dir", str(out),
        "--methods", "bf16,int8_vectorwise,llm_int8,rtn4,gptq4,gptq3_g64", "--calib-samples", "4",
        "--eval-per-task", "2", "--max-new-tokens", "6", "--ppl-batches", "1", "--device", "cpu"])
    return root, out, summary


def test_quantize_script_writes_the_table_and_the_checkpoints(quantize_run):
    import quantize
    root, out, summary = quantize_run
    methods = [row["method"] for row in summary["rows"]]
    assert methods == ["fp32", "bf16", "int8_vectorwise", "llm_int8", "rtn4", "gptq4", "gptq3_g64"]
    for name in ("results.md", "results.json", "settings.json", "ppl_vs_bits.png", "error_hist.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "fp32").exists()
    rows = {row["method"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    for stage in methods[1:]:
        path = out / stage / "ckpt.pt"
        assert rows[stage]["checkpoint_bytes"] == path.stat().st_size
        model, tokenizer, saved = load_model(path)
        assert saved["stage"] == stage and END in tokenizer.special_tokens
    assert rows["rtn4"]["linear_bytes"] / rows["fp32"]["linear_bytes"] < 0.27
    assert 0.25 < rows["int8_vectorwise"]["linear_bytes"] / rows["fp32"]["linear_bytes"] <= 0.25 + 1 / 64  # + scales
    assert rows["fp32"]["perplexity"] > 1 and rows["fp32"]["chat_perplexity"] > 1
    assert all(0 < r["tokens_per_s"] for r in rows.values())
    sweep = json.loads((out / "results.json").read_text())["threshold_sweep"]
    assert [s["threshold"] for s in sweep] == quantize.PRESETS["tiny"]["sweep"]
    low = sweep[-1]  # threshold 1: many dims in float, closer to fp32 than plain vector-wise int8
    assert abs(low["perplexity"] / rows["fp32"]["perplexity"] - 1) <= abs(
        rows["int8_vectorwise"]["perplexity"] / rows["fp32"]["perplexity"] - 1) + 1e-4
    assert "| method | bits/weight |" in (out / "results.md").read_text()
    study = json.loads((out / "results.json").read_text())["injected_outliers"]
    assert [a["alpha"] for a in study["alphas"]] == [1.0, 10.0, 30.0] and len(study["dims"]) == 3
    assert [r["method"] for r in study["alphas"][0]["rows"]] == ["fp32", "int8_absmax", "int8_vectorwise", "llm_int8",
                                                                "llm_int8_fp16_cols"]
    assert all(a["max_logit_change"] < 1e-4 for a in study["alphas"])  # the same function at every alpha
    natural = {r["method"]: r["perplexity"] for r in study["alphas"][0]["rows"]}
    assert natural["int8_absmax"] != study["alphas"][2]["rows"][1]["perplexity"]
    assert natural["llm_int8"] == rows["llm_int8"]["perplexity"]  # alpha 1 is the main table's model
    assert study["alphas"][0]["max_abs_input"] < study["alphas"][2]["max_abs_input"]
    assert "## Injected outliers" in (out / "results.md").read_text()


def test_worker_processes_give_the_figures_of_one_process(quantize_run, tmp_path):
    """The fixture ran the tiny preset's 2 workers; the same run in this process gives the same figures."""
    import quantize
    root, out, summary = quantize_run
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: the fixture ran in one process too, so there is nothing to compare")
    assert quantize.PRESETS["tiny"]["workers"] == 2  # the fixture used the workers
    here = quantize.main([
        "--ckpt", str(root / "sft" / "ckpt.pt"), "--data-dir", str(root / "data"), "--out-dir", str(tmp_path / "q"),
        "--methods", "bf16,llm_int8,gptq3_g64", "--calib-samples", "4", "--eval-per-task", "2", "--max-new-tokens", "6",
        "--ppl-batches", "1", "--device", "cpu", "--workers", "1"])
    timing = ("tokens_per_s", "checkpoint_bytes")  # a timing, and a few bytes of the saved paths' lengths
    rows = {r["method"]: {k: v for k, v in r.items() if k not in timing} for r in summary["rows"]}
    assert [{k: v for k, v in r.items() if k not in timing} for r in here["rows"]] == [
        rows[m] for m in ("fp32", "bf16", "llm_int8", "gptq3_g64")]
    assert here["sweep"] == summary["sweep"]


def test_chat_with_a_quantized_model_equals_greedy_generation(quantize_run, capsys):
    import chat_quantized
    _, out, _ = quantize_run
    reply = chat_quantized.main(["--ckpt", str(out / "gptq4" / "ckpt.pt"), "--prompt", "Where does Mia live?",
                                 "--temp", "0", "--max-new-tokens", "8"])
    model, tokenizer, _ = load_model(out / "gptq4" / "ckpt.pt")
    prompt, _ = render_chat([{"role": "user", "content": "Where does Mia live?"}], tokenizer, add_generation_prompt=True)
    expected = model.generate_batch([prompt], 8, temperature=0, stop_tokens=[tokenizer.special_tokens[END]])[0]
    expected = expected[:-1] if expected and expected[-1] == tokenizer.special_tokens[END] else expected
    assert reply == tokenizer.decode(expected) and capsys.readouterr().out == reply + "\n"


def test_chat_page_serves_the_quantized_models_through_this_chapters_loader(quantize_run, monkeypatch):
    """chat_quantized.py --web hands chapter 04's page the quantized checkpoints with its own loader."""
    import threading
    import urllib.request

    import chat_quantized
    import chat_web
    root, out, _ = quantize_run
    handed = {}
    monkeypatch.setattr(chat_quantized, "RUNS", root / "runs")  # runs/06_quantize/* only: no 04 or 05 model
    monkeypatch.setattr(chat_quantized, "serve_web", lambda models, args, device: handed.update(models))
    chat_quantized.main(["--web", "--port", "0"])
    stages = ["bf16", "gptq3_g64", "gptq4", "int8_vectorwise", "llm_int8", "rtn4"]
    assert list(handed) == [f"06_quantize/{stage}" for stage in stages]
    assert all(load is chat_quantized.load_quantized_chat_model for _, load in handed.values())

    server = chat_web.ChatServer(handed, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request = {"model": "06_quantize/gptq4", "messages": [{"role": "user", "content": "Where does Mia live?"}],
                   "temperature": 0, "max_new_tokens": 8}
        url = f"http://127.0.0.1:{server.server_address[1]}/chat"
        with urllib.request.urlopen(urllib.request.Request(url, json.dumps(request).encode()), timeout=60) as response:
            events = [json.loads(e.removeprefix("data: ")) for e in response.read().decode().split("\n\n")[:-1]]
    finally:
        server.shutdown()
        server.server_close()
    model, tokenizer, _ = load_model(out / "gptq4" / "ckpt.pt")
    prompt, _ = render_chat(request["messages"], tokenizer, add_generation_prompt=True)
    expected = model.generate_batch([prompt], 8, temperature=0, stop_tokens=[tokenizer.special_tokens[END]])[0]
    expected = expected[:-1] if expected and expected[-1] == tokenizer.special_tokens[END] else expected
    assert "".join(e.get("text", "") for e in events) == tokenizer.decode(expected) and events[-1]["done"]


def test_overwrite_removes_only_the_folders_a_run_writes():
    import quantize
    for group in (32, 64, 128):
        for stage, _ in quantize.method_table(group, [8, 4, 3, 2]):
            assert quantize.STAGE_NAME.fullmatch(stage), stage
    for foreign in ("04_sft", "05_rlhf", "ppo", "gptq4_backup", "my_int8"):
        assert not quantize.STAGE_NAME.fullmatch(foreign)


def test_chat_perplexity_is_the_assistant_tokens_loss(chat_model_run):
    from chat_format import to_inputs_and_targets
    from quant_eval import chat_perplexity
    _, model, tokenizer = chat_model_run
    conversations = [[{"role": "user", "content": "Where does Mia live?"}, {"role": "assistant", "content": "In Sherby."}],
                     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"}]]
    total, count = 0.0, 0
    for conversation in conversations:  # one at a time, no padding: the definition
        x, y = to_inputs_and_targets(*render_chat(conversation, tokenizer))
        with torch.no_grad():
            _, loss = model(torch.tensor([x]), torch.tensor([y]))
        n = sum(t != -1 for t in y)
        total, count = total + float(loss) * n, count + n
    assert chat_perplexity(model, tokenizer, conversations, batch_size=2) == pytest.approx(math.exp(total / count),
                                                                                          rel=1e-5)
