"""Quantized drop-in replacements for nn.Linear, and the swap that puts them into a model.

    Int8Linear.from_linear(linear, "llm_int8", threshold=6.0)   int8 weights AND int8 activations
    QuantLinear.from_linear(linear, bits=4, group_size=64)       weight-only RTN (GPTQ: from_result)
    swap_linears(model, lambda name, linear: Int8Linear.from_linear(linear, "vectorwise"))
    linear_weight_bytes(model)                                   what the Linear weights take in memory

What is swapped: every nn.Linear of the Transformer blocks (attention c_attn, c_proj; MLP c_fc, c_proj,
or SwiGLU's w_gate, w_up, c_proj). What is not: lm_head, the embeddings and the norms. Our GPT ties
lm_head to the token embedding (one matrix read in and out): quantizing the head would either untie it
(a second vocab x C matrix, more bytes, not fewer) or force the embedding lookup through the quantized
matrix too. LLM.int8() and GPTQ both keep the embeddings and the head in 16 bits, and so do we (in the
checkpoint's float dtype); the tie survives the swap, so a quantized model saves and loads as one matrix.
An untied head (llama-tiny) is kept in float as well, for the same accuracy reason: the last layer's
errors go straight into the logits.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from int8_matmul import int8_matmul, llm_int8_matmul, vectorwise_int8_matmul
from quantizers import (absmax_quantize, check_bits, check_group_size, pack_bits, unpack_bits, zeropoint_dequantize,
                        zeropoint_quantize)

INT8_MODES = ("absmax", "zeropoint", "rowwise", "vectorwise", "llm_int8")


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored in int8 and x quantized to int8 on the fly, per `mode`:

        absmax      W and X each with ONE absmax scale per tensor        (LLM.int8() Table 1: "absmax")
        zeropoint   W and X each with one scale and zero-point per tensor ("zeropoint")
        rowwise     W per row (output feature), X per tensor              ("row-wise")
        vectorwise  W per row, X per row (token): the outer-product rescale ("vector-wise")
        llm_int8    vector-wise, plus the outlier feature dims of X in float (threshold, default 6.0)
    Stored: int8_weight (M, K) (uint8 for zeropoint), weight_scale (M,) or (1,), weight_zero (1,) for
    zeropoint, the bias in float. llm_int8 may also keep the weight columns of known outlier dims
    (float_dims (k,), found on calibration inputs) in float16, float_weight (M, k), as the paper's
    decomposition multiplies W[:, O] in 16 bits: those columns are 0 in int8_weight (so they set no row
    scale) and their product x[:, float_dims] W_f16^T is always added in float. Without them the
    decomposition dequantizes the int8 columns, as bitsandbytes' inference does. The integer product goes through int8_matmul (int32 sums); zeropoint's
    (Xq - z_x)(Wq - z_w) does not fit int8 x int8 (the differences need 9 bits; the paper's kernel
    expands the product into four terms), so it is computed as the float product of the dequantized
    tensors: the same values, not the same speed.
    """

    def __init__(self, in_features, out_features, bias=True, mode="vectorwise", threshold=6.0, n_float_dims=0):
        super().__init__()
        if mode not in INT8_MODES:
            raise ValueError(f"Int8Linear mode {mode!r}: choose one of {INT8_MODES}")
        if n_float_dims and mode != "llm_int8":
            raise ValueError(f"Int8Linear mode {mode!r} has no float columns: only llm_int8 keeps outlier dims in float")
        self.in_features, self.out_features, self.mode, self.threshold = in_features, out_features, mode, threshold
        per_row = mode in ("rowwise", "vectorwise", "llm_int8")
        self.register_buffer("int8_weight", torch.zeros(out_features, in_features,
                                                        dtype=torch.uint8 if mode == "zeropoint" else torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features if per_row else 1))
        self.register_buffer("weight_zero", torch.zeros(1) if mode == "zeropoint" else None)
        self.register_buffer("float_dims", torch.zeros(n_float_dims, dtype=torch.long) if n_float_dims else None)
        self.register_buffer("float_weight", torch.zeros(out_features, n_float_dims, dtype=torch.float16)
                             if n_float_dims else None)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear, mode="vectorwise", threshold=6.0, float_dims=None):
        """float_dims (llm_int8 only): input dims whose weight columns stay in float16 (see the class)."""
        float_dims = [] if float_dims is None else [int(d) for d in float_dims]
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, mode, threshold, len(float_dims))
        weight = linear.weight.detach().float()
        if float_dims:
            module.float_dims.copy_(torch.tensor(float_dims))
            module.float_weight.copy_(weight[:, float_dims].half())
            weight = weight.clone()
            weight[:, float_dims] = 0.0  # the int8 part holds the other columns; theirs set the row scales
        if mode == "zeropoint":
            q, scale, zero = zeropoint_quantize(weight, 8, "tensor")
            module.weight_zero.copy_(zero.reshape(1))
        else:
            q, scale = absmax_quantize(weight, 8, "tensor" if mode == "absmax" else "row")
        module.int8_weight.copy_(q)
        module.weight_scale.copy_(scale.reshape(-1))
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach().float())
        return module.to(linear.weight.device)

    def forward(self, x):  # (..., K) -> (..., M)
        x2 = x.reshape(-1, self.in_features).float()  # (N, K)
        if self.mode == "llm_int8":
            y = llm_int8_matmul(x2, self.int8_weight, self.weight_scale, self.threshold)
            if self.float_dims is not None:  # the known outlier dims, through their float16 weight columns
                y = y + x2[:, self.float_dims] @ self.float_weight.float().t()
        elif self.mode == "vectorwise":
            y = vectorwise_int8_matmul(x2, self.int8_weight, self.weight_scale)
        elif self.mode == "zeropoint":
            xq, x_scale, x_zero = zeropoint_quantize(x2, 8, "tensor")
            weight = zeropoint_dequantize(self.int8_weight, self.weight_scale[0], self.weight_zero[0])
            y = zeropoint_dequantize(xq, x_scale, x_zero) @ weight.t()
        else:  # absmax, rowwise: X with one scale
            xq, x_scale = absmax_quantize(x2, 8, "tensor")
            y = int8_matmul(xq, self.int8_weight.t()).float() * (x_scale * self.weight_scale)[None, :]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def weight_bytes(self):
        """Bytes of the stored weight: 1 per int8 value, plus the scales (and zero), plus float columns if any."""
        return sum(t.numel() * t.element_size() for t in (self.int8_weight, self.weight_scale, self.weight_zero,
                                                          self.float_dims, self.float_weight) if t is not None)

    def spec(self):
        spec = {"kind": "int8", "mode": self.mode, "threshold": self.threshold}
        if self.float_dims is not None:
            spec["float_dims"] = len(self.float_dims)
        return spec

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}, mode={self.mode}" + \
            (f", threshold={self.threshold}" if self.mode == "llm_int8" else "") + \
            (f", float16 columns={len(self.float_dims)}" if self.float_dims is not None else "")


class QuantLinear(nn.Module):
    """Weight-only quantization (RTN or GPTQ): y = x W_hat^T + b, W_hat = (codes - zero) * scale.

    Stored: `packed`, the (M, K) codes of `bits` bits packed densely (4 bits: two per byte); `scale`
    (M, G) float16 and `zero` (M, G) uint8, one per group of group_size columns (G = 1: per row); `perm`
    (K,) int32 when GPTQ ran with act-order: the codes are stored in that column order, and the input is
    permuted to match (x[..., perm] W_perm^T = x W^T), so each group is a contiguous run of columns.
    The forward pass dequantizes the whole weight, then runs an ordinary float matmul: memory is saved,
    time is not (a fused kernel dequantizes inside the matmul, from registers; see the lesson's appendix).
    """

    def __init__(self, in_features, out_features, bias=True, bits=4, group_size=None, has_perm=False):
        super().__init__()
        check_bits(bits)
        if group_size:
            check_group_size(in_features, group_size)
        self.in_features, self.out_features, self.bits, self.group_size = in_features, out_features, bits, group_size
        n_groups = in_features // group_size if group_size else 1
        self.register_buffer("packed", torch.zeros((out_features * in_features * bits + 7) // 8, dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(out_features, n_groups, dtype=torch.float16))
        self.register_buffer("zero", torch.zeros(out_features, n_groups, dtype=torch.uint8))
        self.register_buffer("perm", torch.arange(in_features, dtype=torch.int32) if has_perm else None)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    @torch.no_grad()
    def from_result(cls, linear, codes, scale, zero, bits, group_size=None, perm=None):
        """From quantized codes (M, K) with their scale and zero (M, G), e.g. gptq_quantize's result."""
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, bits, group_size,
                     perm is not None)
        module.packed.copy_(pack_bits(codes, bits))
        module.scale.copy_(scale.reshape(module.scale.shape).half())
        module.zero.copy_(zero.reshape(module.zero.shape).to(torch.uint8))
        if perm is not None:
            module.perm.copy_(perm.to(torch.int32))
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach().float())
        return module.to(linear.weight.device)

    @classmethod
    def from_linear(cls, linear, bits=4, group_size=None):
        """Round-to-nearest: zero-point quantization per row or per group, no calibration."""
        granularity = "group" if group_size else "row"
        codes, scale, zero = zeropoint_quantize(linear.weight.detach(), bits, granularity, group_size)
        return cls.from_result(linear, codes, scale, zero, bits, group_size)

    def dequantized_weight(self):
        """W_hat (M, K) float32, in stored column order (permuted if perm is set)."""
        codes = unpack_bits(self.packed, self.bits, self.out_features * self.in_features)
        codes = codes.reshape(self.out_features, self.in_features).float()
        repeat = self.group_size or self.in_features
        scale = self.scale.float().repeat_interleave(repeat, dim=1)
        zero = self.zero.float().repeat_interleave(repeat, dim=1)
        return (codes - zero) * scale

    def forward(self, x):  # (..., K) -> (..., M)
        if self.perm is not None:
            x = x[..., self.perm.long()]
        return F.linear(x, self.dequantized_weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def weight_bytes(self):
        """Bytes of the stored weight: the packed codes, the scales and zeros, the permutation."""
        return sum(t.numel() * t.element_size() for t in (self.packed, self.scale, self.zero, self.perm)
                   if t is not None)

    def spec(self):
        return {"kind": "quant", "bits": self.bits, "group_size": self.group_size, "has_perm": self.perm is not None}

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}, bits={self.bits}, group_size={self.group_size}" + \
            (", act_order" if self.perm is not None else "")


# ----------------------------------------------------------------------------------------------------
# Swapping modules in a model


def linear_names(model, skip=("lm_head",)):
    """Names of the nn.Linear modules to quantize, in forward order (lm_head left out: see above)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and name not in skip]


def set_module(model, name, module):
    """model.<name> = module, for a dotted name like 'transformer.h.0.attn.c_attn'."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def swap_linears(model, make, skip=("lm_head",)):
    """Replace every nn.Linear (but `skip`) by make(name, linear). Returns the model (changed in place)."""
    for name in linear_names(model, skip):
        set_module(model, name, make(name, model.get_submodule(name)))
    return model


def quantization_specs(model):
    """{module name: spec} of every quantized module: what load needs to rebuild the empty modules."""
    return {name: module.spec() for name, module in model.named_modules() if isinstance(module, (Int8Linear, QuantLinear))}


def empty_quantized(spec, in_features, out_features, bias):
    """A quantized module of the right shape and kind, to load a state dict into."""
    if spec.get("kind") == "int8":
        return Int8Linear(in_features, out_features, bias, spec["mode"], spec["threshold"], spec.get("float_dims", 0))
    if spec.get("kind") == "quant":
        return QuantLinear(in_features, out_features, bias, spec["bits"], spec["group_size"], spec["has_perm"])
    raise ValueError(f"unknown quantized module spec {spec!r}")


def apply_specs(model, specs):
    """Swap the nn.Linear named in specs for empty quantized modules (then load_state_dict fills them)."""
    for name, spec in specs.items():
        try:
            linear = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"the quantized checkpoint names a layer {name!r} this model does not have") from None
        set_module(model, name, empty_quantized(spec, linear.in_features, linear.out_features, linear.bias is not None))
    return model


def linear_weight_bytes(model, skip=("lm_head",)):
    """Bytes of the weights of every Linear layer that is (or would be) quantized: codes, scales, zeros;
    a float nn.Linear counts numel x bytes per element. Biases are left out (a few hundred floats)."""
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, (Int8Linear, QuantLinear)):
            total += module.weight_bytes()
        elif isinstance(module, nn.Linear) and name not in skip:
            total += module.weight.numel() * module.weight.element_size()
    return total
