"""The quantizers: a float tensor -> small integers and the scales (and zeros) that map them back.

    q, scale = absmax_quantize(w, bits=8)                         symmetric:  q = round(w / scale)
    q, scale, zero = zeropoint_quantize(w, bits=4, group_size=64) asymmetric: q = round(w / scale) + zero
    w_hat = absmax_dequantize(q, scale)  /  zeropoint_dequantize(q, scale, zero, group_size)
    codes = pack_bits(q, 4)                                        4-bit codes, two per byte

Granularity: which values share one scale. "tensor": the whole tensor; "row": each row (for a
weight (out, in), each output channel; for activations (tokens, features), each token); "group":
each run of `group_size` consecutive columns of a row, so a (M, K) tensor has M x K/group_size scales.
Round-to-nearest (RTN) is simply: pick the scale from the values, round every value on its own.
"""
import torch

GRANULARITIES = ("tensor", "row", "group")


def check_bits(bits):
    """ValueError unless 2 <= bits <= 8 (1 bit leaves no room for a zero; more than 8 is not int8)."""
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits={bits!r}: choose an integer from 2 to 8 (8 = int8, 4 and 3 = GPTQ's settings)")


def check_group_size(width, group_size):
    """ValueError unless group_size divides the row width (every group must be whole)."""
    if not isinstance(group_size, int) or group_size < 1 or width % group_size:
        divisors = [g for g in (32, 64, 128, 256) if width % g == 0]
        raise ValueError(f"group size {group_size!r} does not divide the width {width}: choose a divisor of "
                         f"{width}" + (f" such as {divisors}" if divisors else "") + ", or no groups")


def _grouped(x, granularity, group_size):
    """View x as (n_scales, values per scale): one row per set of values that share a scale."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r}: choose one of {GRANULARITIES}")
    if granularity == "tensor":
        return x.reshape(1, -1)
    if x.dim() != 2:
        raise ValueError(f"per-row and per-group scales need a 2-D tensor (rows, columns), got shape {tuple(x.shape)}")
    if granularity == "row":
        return x
    check_group_size(x.size(1), group_size)
    return x.reshape(-1, group_size)


def _scale_shape(x, granularity, group_size):
    """The shape the scales are returned in: () per tensor, (M,) per row, (M, K // group_size) per group."""
    if granularity == "tensor":
        return ()
    if granularity == "row":
        return (x.size(0),)
    return (x.size(0), x.size(1) // group_size)


def _expand(scale, x_shape, granularity, group_size):
    """Broadcast scales back over the values they cover: (M,) -> (M, 1); (M, G) -> (M, K)."""
    if granularity == "tensor":
        return scale
    if granularity == "row":
        return scale.reshape(-1, 1)
    return scale.repeat_interleave(group_size, dim=1)


# ----------------------------------------------------------------------------------------------------
# absmax (symmetric): zero maps to zero, the range is [-absmax, absmax]


def absmax_quantize(x, bits=8, granularity="tensor", group_size=None):
    """Symmetric quantization to signed `bits`-bit integers.

        Q = 2^(bits-1) - 1   (127 for int8, 7 for 4 bits)
        scale = max|x| / Q          over each tensor / row / group
        q = round(x / scale)        in [-Q, Q]
    Returns (q int8 of x's shape, scale float32 of shape () / (M,) / (M, K/g)).

    Example, 8 bits: x = [0.5, -1.27, 0.01] -> scale 0.01, q = [50, -127, 1].
    An all-zero set gets scale 1 (every q is 0 anyway), never a division by zero.
    """
    check_bits(bits)
    # --- student part: absmax (symmetric) quantization (lesson: "2. Absmax and zero-point, on one number line") ---
    x = x.float()
    levels = 2 ** (bits - 1) - 1
    grouped = _grouped(x, granularity, group_size)
    absmax = grouped.abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / levels, torch.ones_like(absmax)).reshape(_scale_shape(x, granularity, group_size))
    q = torch.round(x / _expand(scale, x.shape, granularity, group_size)).clamp(-levels, levels)
    return q.to(torch.int8), scale
    # --- end of student part ---


def absmax_dequantize(q, scale, granularity="tensor", group_size=None):
    """x_hat = q * scale (scale broadcast over its row / group). Float32, q's shape."""
    return q.float() * _expand(scale, q.shape, granularity, group_size)


# ----------------------------------------------------------------------------------------------------
# zero-point (asymmetric): the range [min, max] is mapped onto all 2^bits levels


def zeropoint_params(x, bits, granularity="tensor", group_size=None):
    """The scale and zero-point of asymmetric `bits`-bit quantization:

        scale = (max - min) / (2^bits - 1),  zero = round(-min / scale)
    with min <= 0 <= max (the range always holds 0, so 0.0 is stored exactly: padding and ReLU zeros
    stay zero). The scale is rounded to float16, the precision it is stored in, so what the quantizer
    computes is what a saved checkpoint reproduces. Returns (scale float32, zero float32 holding ints).
    """
    check_bits(bits)
    # --- student part: zero-point quantization's scale and zero (lesson: "2. Absmax and zero-point, on one number line") ---
    grouped = _grouped(x.float(), granularity, group_size)
    low = grouped.amin(dim=1).clamp(max=0)
    high = grouped.amax(dim=1).clamp(min=0)
    scale = ((high - low) / (2 ** bits - 1)).clamp(min=1e-5).half().float()
    zero = torch.round(-low / scale).clamp(0, 2 ** bits - 1)
    shape = _scale_shape(x, granularity, group_size)
    return scale.reshape(shape), zero.reshape(shape)
    # --- end of student part ---


def zeropoint_quantize(x, bits=8, granularity="tensor", group_size=None):
    """Asymmetric quantization to unsigned `bits`-bit integers.

        q = clamp(round(x / scale) + zero, 0, 2^bits - 1)      (scale, zero from zeropoint_params)
    Returns (q uint8 of x's shape, scale, zero).

    Example, 8 bits, x = [-1.0, 0.0, 3.0]: scale = 4/255 = 0.01569, zero = round(63.75) = 64,
    q = [0, 64, 255]; dequantized [-1.004, 0.0, 2.996].
    """
    scale, zero = zeropoint_params(x, bits, granularity, group_size)
    q = quantize_with(x, scale, zero, bits, granularity, group_size)
    return q.to(torch.uint8), scale, zero


def quantize_with(x, scale, zero, bits, granularity="tensor", group_size=None):
    """q = clamp(round(x / scale) + zero, 0, 2^bits - 1) with given scale and zero (float32 result)."""
    # --- student part: zero-point quantization with a given scale and zero (lesson: "2. Absmax and zero-point, on one number line") ---
    scale = _expand(scale, x.shape, granularity, group_size)
    zero = _expand(zero, x.shape, granularity, group_size)
    return torch.clamp(torch.round(x.float() / scale) + zero, 0, 2 ** bits - 1)
    # --- end of student part ---


def zeropoint_dequantize(q, scale, zero, granularity="tensor", group_size=None):
    """x_hat = (q - zero) * scale. Float32, q's shape."""
    scale = _expand(scale, q.shape, granularity, group_size)
    zero = _expand(zero, q.shape, granularity, group_size)
    return (q.float() - zero) * scale


def rtn(weight, bits, group_size=None):
    """Round-to-nearest weight quantization as GPTQ's baseline does it: zero-point, per row, or per group
    of `group_size` columns. Returns the dequantized weight (what the layer multiplies with), float32."""
    granularity = "group" if group_size else "row"
    q, scale, zero = zeropoint_quantize(weight, bits, granularity, group_size)
    return zeropoint_dequantize(q, scale, zero, granularity, group_size)


def fake_quantize(x, bits=8, granularity="tensor", group_size=None, symmetric=True):
    """Quantize then dequantize: x_hat, the value the integers stand for (the error is x_hat - x)."""
    if symmetric:
        return absmax_dequantize(*absmax_quantize(x, bits, granularity, group_size), granularity, group_size)
    return zeropoint_dequantize(*zeropoint_quantize(x, bits, granularity, group_size), granularity, group_size)


def quantization_error(x, x_hat):
    """Relative error ||x_hat - x|| / ||x|| (Frobenius), a float: 0 is exact."""
    return float((x_hat.float() - x.float()).norm() / x.float().norm().clamp(min=1e-12))


# ----------------------------------------------------------------------------------------------------
# bit packing: k-bit codes stored densely, e.g. two 4-bit codes per byte


def pack_bits(codes, bits):
    """Pack unsigned codes (each in [0, 2^bits)) into a flat uint8 tensor, `bits` bits per code.

    Code i occupies bits [i*bits, (i+1)*bits) of the byte stream, least significant bit first; the last
    byte is padded with zeros. 4 bits: two codes per byte, the first in the low nibble; 3 bits: 8 codes
    in 3 bytes. Example: pack_bits(tensor([1, 2]), 4) -> tensor([0x21]) = tensor([33]).
    How: 8 codes always fill exactly `bits` bytes, so each run of 8 codes becomes one integer word
    sum_j code_j << (bits * j), which is then cut into its `bits` bytes.
    """
    check_bits(bits)
    codes = codes.reshape(-1).long()
    n = len(codes)
    if n and (int(codes.min()) < 0 or int(codes.max()) >= 2 ** bits):
        raise ValueError(f"codes must lie in [0, {2 ** bits - 1}] to pack them in {bits} bits")
    codes = torch.cat([codes, codes.new_zeros(-n % 8)]).reshape(-1, 8)  # (n/8, 8)
    words = (codes << (bits * torch.arange(8, device=codes.device))).sum(dim=1)  # (n/8,) 8 * bits bits each
    packed = (words[:, None] >> (8 * torch.arange(bits, device=codes.device))) & 255  # (n/8, bits) bytes
    return packed.reshape(-1)[:packed_bytes(n, bits)].to(torch.uint8)


def unpack_bits(packed, bits, n):
    """The inverse of pack_bits: the first `n` codes, as uint8 (values in [0, 2^bits)).

    4 bits: code 2i is the low nibble of byte i, code 2i + 1 the high one."""
    check_bits(bits)
    if bits == 8:
        return packed[:n].clone()
    packed = torch.cat([packed, packed.new_zeros(-len(packed) % bits)]).reshape(-1, bits)  # (n/8, bits) bytes
    mask = 2 ** bits - 1
    codes = []
    for j in range(8):  # code j of each run of 8 starts at bit bits*j: in byte b, from bit s, maybe into b + 1
        b, s = divmod(bits * j, 8)
        code = packed[:, b] >> s
        if s + bits > 8:
            code = code | (packed[:, b + 1] << (8 - s))  # uint8 arithmetic: the bits shifted past 8 fall off
        codes.append(code & mask)
    return torch.stack(codes, dim=1).reshape(-1)[:n]  # (n,) uint8; all in uint8, as fast as bytes go


def packed_bytes(n, bits):
    """Bytes pack_bits uses for n codes: ceil(n * bits / 8)."""
    return (n * bits + 7) // 8
