"""GPTQ (Frantar et al. 2022, "OPTQ"): quantize one weight column at a time and let the columns not yet
quantized absorb its error, guided by the inputs the layer really sees.

    H = hessian(inputs)                                   2 X X^T / n from calibration inputs (K, K)
    result = gptq_quantize(weight, H, bits=4, group_size=64, act_order=True)
    results = gptq_model(model, calibration_tokens, bits=4)   every Linear, in order, each on the
                                                              outputs of the layers already quantized
The problem for one layer W (M, K) with inputs X (K, n): find integer-grid weights Q minimising the
layer's output error ||W X - Q X||^2, row by row: its Hessian is H = 2 X X^T, the same for every row.
"""
import torch

from quant_modules import linear_names
from quantizers import check_bits, check_group_size, quantize_with, zeropoint_params


def add_to_hessian(hessian, n_seen, inputs):
    """Running H = 2/n sum_i x_i x_i^T over every input vector seen so far: inputs (..., K).

    Returns (hessian (K, K) float32, n_seen + rows). Pass hessian=None the first time."""
    # --- student part: the running Hessian H = 2/n sum x x^T (lesson: "4. GPTQ: quantize one column, let the others compensate") ---
    x = inputs.reshape(-1, inputs.size(-1)).float()  # (rows, K)
    rows = x.size(0)
    if hessian is None:
        hessian = torch.zeros(x.size(1), x.size(1), device=x.device)
    hessian *= n_seen / (n_seen + rows)
    hessian += (2.0 / (n_seen + rows)) * (x.t() @ x)
    return hessian, n_seen + rows
    # --- end of student part ---


def inverse_hessian_cholesky(hessian, damp=0.01):
    """U, the upper Cholesky factor of H^-1 (H^-1 = U^T U), after damping H += damp * mean(diag H) * I.

    Why the Cholesky form: the column-by-column algorithm needs, at step q, the inverse Hessian of the
    columns not yet quantized, H_F^-1, and only its row q: [H_F^-1]_{q,:} / [H_F^-1]_{qq}. Removing one
    column from the inverse is one step of Gaussian elimination, so all K of them together are exactly
    the rows of the Cholesky factor of H^-1 (row q of U, divided by U_qq, is that vector). Computing it
    once avoids K rank-1 updates whose rounding errors pile up (in float32 the repeated updates can turn
    H_F^-1 indefinite at large scale); the damping keeps H positive definite when inputs are collinear.
    """
    hessian = hessian.clone()
    hessian += damp * hessian.diagonal().mean() * torch.eye(hessian.size(0), device=hessian.device)
    try:
        lower = torch.linalg.cholesky(hessian)  # H = L L^T
    except RuntimeError:  # torch.linalg.LinAlgError
        raise ValueError(f"the Hessian ({hessian.size(0)} x {hessian.size(0)}) is not positive definite with "
                         f"damp={damp}: give more calibration tokens than the layer's input width, or more "
                         f"damping (GPTQ uses 0.01)") from None
    inverse = torch.cholesky_inverse(lower)  # H^-1
    return torch.linalg.cholesky(inverse, upper=True)  # H^-1 = U^T U


def prepare_columns(weight, hessian, act_order):
    """Float32 copies of weight (M, K) and H (K, K) ready for the column loop -> (W, H, perm (K,) long or None).
    Dead inputs (H_qq = 0: a feature that is always 0) get weight 0 and H_qq = 1, so H stays invertible;
    act_order permutes the columns (of W, and rows and columns of H) by decreasing H_qq."""
    W = weight.detach().float().clone()
    H = hessian.float().clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = None
    if act_order:
        perm = torch.argsort(H.diagonal(), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
    return W, H, perm


@torch.no_grad()
def gptq_quantize(weight, hessian, bits=4, group_size=None, act_order=False, block_size=128, damp=0.01):
    """Quantize weight (M, K) to `bits` bits (zero-point, per row or per group of columns) with GPTQ.

    For each column q in order (OBQ's update, with U the Cholesky factor of H^-1):
        Q[:, q] = quant(W[:, q])
        e       = (W[:, q] - Q[:, q]) / U_qq                      (M,)
        W[:, q+1:] -= e U_{q, q+1:}                                the remaining columns compensate
    Lazy batches: the update is applied at once only inside a block of `block_size` columns; the
    columns after the block get the whole block's errors in one matmul, W[:, end:] -= E U[block, end:],
    which is the same arithmetic done as one large, cache-friendly product.
    group_size: each run of g columns gets its own scale and zero, fitted when quantization reaches
    its first column (so they see the updates of the columns before). act_order: quantize columns in
    order of decreasing H_qq (the inputs with the most energy first, while many columns remain to
    compensate); the codes are then stored in that order with the permutation.
    Dead inputs get weight 0 (prepare_columns).

    Returns {"codes": (M, K) uint8 in stored column order, "scale", "zero": (M, K/g) or (M, 1) float32,
    "perm": (K,) long or None, "weight": (M, K) float32 the dequantized weight in the original order}.
    """
    check_bits(bits)
    M, K = weight.shape
    if group_size:
        check_group_size(K, group_size)
        block_size = group_size * max(1, block_size // group_size)  # every group inside one block
    W, H, perm = prepare_columns(weight, hessian, act_order)
    U = inverse_hessian_cholesky(H, damp)

    n_groups = K // group_size if group_size else 1
    scales = torch.zeros(M, n_groups, device=W.device)
    zeros = torch.zeros(M, n_groups, device=W.device)
    if not group_size:  # one scale and zero per row, from the whole original row
        scales[:, 0], zeros[:, 0] = zeropoint_params(W, bits, "row")
    codes = torch.zeros(M, K, device=W.device)
    Q = torch.zeros_like(W)
    # --- student part: GPTQ's column-by-column update (lesson: "4. GPTQ: quantize one column, let the others compensate") ---
    for start in range(0, K, block_size):
        end = min(start + block_size, K)
        W_block = W[:, start:end].clone()
        errors = torch.zeros_like(W_block)
        U_block = U[start:end, start:end]
        for i in range(end - start):
            column = start + i
            group = column // group_size if group_size else 0
            if group_size and column % group_size == 0:
                scales[:, group], zeros[:, group] = zeropoint_params(W_block[:, i:i + group_size], bits, "row")
            w = W_block[:, i]  # (M,)
            code = quantize_with(w, scales[:, group], zeros[:, group], bits)
            q = (code - zeros[:, group]) * scales[:, group]
            codes[:, column], Q[:, column] = code, q
            error = (w - q) / U_block[i, i]
            W_block[:, i:] -= error[:, None] * U_block[i, i:][None, :]
            errors[:, i] = error
        W[:, end:] -= errors @ U[start:end, end:]  # the lazy batch update of every later column
    # --- end of student part ---

    weight_hat = Q if perm is None else Q[:, torch.argsort(perm)]
    return {"codes": codes.to(torch.uint8), "scale": scales, "zero": zeros, "perm": perm, "weight": weight_hat}


def layer_output_error(inputs, weight, weight_hat):
    """||X W^T - X W_hat^T||^2 summed over every input vector: what GPTQ minimises. inputs (n, K)."""
    return float(((inputs.float() @ (weight.float() - weight_hat.float()).t()) ** 2).sum())


# ----------------------------------------------------------------------------------------------------
# A whole model, layer after layer


class _StopForward(Exception):
    """Raised by the hook once it has the layer's input: the rest of the forward pass is not needed."""


@torch.no_grad()
def collect_hessian(model, layer, calibration_tokens, batch_size=8):
    """H = 2 X X^T / n of `layer`'s inputs when `model` reads calibration_tokens (S, T), as the model is
    now (earlier layers already quantized). The forward pass stops at the layer."""
    state = {"H": None, "n": 0}

    def hook(module, args):
        state["H"], state["n"] = add_to_hessian(state["H"], state["n"], args[0])
        raise _StopForward

    handle = layer.register_forward_pre_hook(hook)
    try:
        for start in range(0, len(calibration_tokens), batch_size):
            try:
                model(calibration_tokens[start:start + batch_size])
            except _StopForward:
                pass
    finally:
        handle.remove()
    return state["H"]


@torch.no_grad()
def gptq_model(model, calibration_tokens, bits=4, group_size=None, act_order=False, block_size=128, damp=0.01,
               skip=("lm_head",), log=None):
    """Quantize every nn.Linear of `model` (but `skip`) with GPTQ, in forward order: each layer's Hessian
    comes from running the model with the layers before it ALREADY quantized, so each layer also corrects
    for the errors of the earlier ones. The model's weights are replaced by their dequantized values as
    it goes (to swap in packed QuantLinear modules, pass the results to quant_modules.swap_quantized).

    calibration_tokens: (S, T) token ids from the TRAINING split. Returns {name: gptq_quantize result}.
    """
    model.eval()
    results = {}
    for name in linear_names(model, skip):  # the order the forward pass runs them
        layer = model.get_submodule(name)
        hessian = collect_hessian(model, layer, calibration_tokens)
        result = gptq_quantize(layer.weight, hessian, bits, group_size, act_order, block_size, damp)
        layer.weight.copy_(result["weight"].to(layer.weight.dtype))
        results[name] = result
        if log:
            log(name)
    return results
