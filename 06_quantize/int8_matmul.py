"""Int8 matrix multiplication: int8 inputs, int32 sums, one float rescale; and LLM.int8()'s outlier split.

    acc = int8_matmul(a_int8, b_int8)                    (N, K) @ (K, M) -> (N, M) int32, exact
    y = vectorwise_int8_matmul(x, int8_weight, w_scale)  X W^T with X quantized per row (token)
    y = llm_int8_matmul(x, int8_weight, w_scale, 6.0)    outlier feature dims in float, the rest in int8
    dims = outlier_dims(x, 6.0)                          the feature dims that hold any |x| >= threshold

Why int32: a product of two int8 values has magnitude at most 128 * 128 = 2^14; a sum of K of them
needs 14 + log2(K) bits, 24 bits at K = 1024, so the accumulator must be wider than int16.
"""
import torch

from quantizers import absmax_quantize

# K-chunk of the CPU path: float32 holds every integer up to 2^24 exactly, and 1024 products of int8
# values sum to at most 1024 * 2^14 = 2^24, so each chunk's float32 matmul is exact (in any order of
# summation: every partial sum is an integer the format holds); chunks are then added in int32.
EXACT_FLOAT32_CHUNK = 1024


def int8_matmul_reference(a, b):
    """The definition, for tests: cast to int64 and multiply (exact, slow). (N, K) @ (K, M) -> int32."""
    return (a.cpu().long() @ b.cpu().long()).to(torch.int32).to(a.device)


def int8_matmul(a, b):
    """acc[n, m] = sum_k a[n, k] * b[k, m], computed exactly: a (N, K) int8, b (K, M) int8 -> (N, M) int32.

    On CUDA: torch._int_mm, the tensor cores' int8 GEMM with int32 accumulation (it wants N > 16 and
    K, M multiples of 8: the rows are zero-padded up to 32 when needed; other shapes take the exact
    float path). Elsewhere: float32 matmuls over chunks of K <= 1024, exact by the argument above, summed
    in int32. A fast CPU kernel would instead use the VNNI / AMX int8 dot-product instructions (what
    oneDNN and FBGEMM do); torch exposes no such public op, and this path is as fast as float32.
    """
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"int8_matmul needs int8 tensors, got {a.dtype} and {b.dtype}")
    if a.dim() != 2 or b.dim() != 2 or a.size(1) != b.size(0):
        raise ValueError(f"int8_matmul: shapes {tuple(a.shape)} @ {tuple(b.shape)} do not multiply")
    n, k = a.shape
    if a.device.type == "cuda" and k % 8 == 0 and b.size(1) % 8 == 0 and k >= 16:
        rows = max(32, n)
        if rows != n:
            a = torch.cat([a, a.new_zeros(rows - n, k)])
        return torch._int_mm(a, b)[:n]
    acc = torch.zeros(n, b.size(1), dtype=torch.int32, device=a.device)
    for start in range(0, k, EXACT_FLOAT32_CHUNK):
        end = start + EXACT_FLOAT32_CHUNK
        acc += (a[:, start:end].float() @ b[start:end].float()).to(torch.int32)
    return acc


def vectorwise_int8_matmul(x, int8_weight, weight_scale):
    """Y = X W^T with vector-wise quantization (LLM.int8(), section 3.1):

        X ≈ c_x * Xq   (c_x (N,) : one absmax scale per row of X, i.e. per token)
        W ≈ c_w * Wq   (c_w (M,) : one absmax scale per row of W, i.e. per output feature)
        Y ≈ (c_x c_w^T) ∘ (Xq Wq^T)      the int32 product rescaled by the outer product of the scales
    x (N, K) float, int8_weight (M, K) int8, weight_scale (M,) float32 -> (N, M) float32.
    """
    # --- student part: the vector-wise int8 matmul (lesson: "3. One outlier ruins a scale; smaller groups and the decomposition fix it") ---
    xq, x_scale = absmax_quantize(x, 8, "row")  # (N, K) int8, (N,)
    acc = int8_matmul(xq, int8_weight.t())  # (N, M) int32
    return acc.float() * (x_scale[:, None] * weight_scale[None, :])
    # --- end of student part ---


def outlier_dims(x, threshold=6.0):
    """The feature dimensions (columns of x (N, K)) that hold at least one |value| >= threshold: (K,) bool."""
    return (x.abs() >= threshold).any(dim=0)


def llm_int8_matmul(x, int8_weight, weight_scale, threshold=6.0):
    """LLM.int8()'s mixed-precision decomposition (Dettmers et al. 2022, eq. 7):

        O = {k : some |X[:, k]| >= threshold}                       the outlier feature dimensions
        Y = X[:, O] W[:, O]^T  +  vectorwise_int8( X[:, ~O], W[:, ~O] )
    The few outlier columns of X (and the matching columns of W) are multiplied in full precision, so
    no outlier sets the scale of a row; everything else goes through int8. W is stored in int8 (as
    bitsandbytes does): its outlier columns are dequantized, W[:, O] = c_w * Wq[:, O], for the float part.
    x (N, K) float, int8_weight (M, K), weight_scale (M,) -> (N, M) float32. threshold 0 makes every
    dimension an outlier (all float); threshold inf none (plain vector-wise int8).
    """
    # --- student part: LLM.int8()'s outlier decomposition (lesson: "3. One outlier ruins a scale; smaller groups and the decomposition fix it") ---
    x = x.float()
    outliers = outlier_dims(x, threshold)  # (K,)
    # the int8 part: X with its outlier columns set to 0 contributes exactly X[:, ~O] W[:, ~O]^T, and its
    # row scales now come from the regular values only (slicing W instead would copy it on every call)
    y = vectorwise_int8_matmul(x.masked_fill(outliers, 0.0), int8_weight, weight_scale)
    if bool(outliers.any()):
        float_weight = int8_weight[:, outliers].float() * weight_scale[:, None]  # (M, |O|)
        y += x[:, outliers] @ float_weight.t()
    return y
    # --- end of student part ---
