"""The optimizer pieces of training, each paper formula in one function: chapter 03's train.py uses them.

    AdamW             Adam with decoupled weight decay (Loshchilov & Hutter), our own step()
    param_groups      which tensors decay: the weight matrices of nn.Linear only
    make_optimizer    our AdamW, or torch's fused AdamW (the fast path), over param_groups
    lr_at             linear warmup, then cosine decay to min_lr
    clip_grad_norm    scale all gradients so their global L2 norm is <= max_norm

Example, one hand-written training step:

    optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    loss.backward()
    clip_grad_norm(model.parameters(), max_norm=1.0)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, max_lr=1e-3, min_lr=1e-4, warmup_steps=100, decay_end=2000)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
"""
import math

import torch
import torch.nn as nn


# ----------------------------------------------------------------------------------------------------
# AdamW


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization").

    For every parameter θ with gradient g, at step t = 1, 2, 3, ...:

        m ← β1·m + (1 − β1)·g                      running mean of the gradient (first moment)
        v ← β2·v + (1 − β2)·g²                     running mean of its square (second moment)
        m̂ = m / (1 − β1^t),   v̂ = v / (1 − β2^t)   bias correction: m and v start at 0
        θ ← θ − lr·λ·θ                             weight decay, decoupled from the gradient
        θ ← θ − lr · m̂ / (√v̂ + ε)                  the Adam step: about lr per coordinate

    "Decoupled" means λ·θ is not added to g (that would be L2 regularisation, which Adam rescales by
    1/√v̂ and so weakens exactly for the weights with large gradients); it shrinks θ directly.
    State per parameter: "step" (int), "exp_avg" (m), "exp_avg_sq" (v), each m and v shaped like θ.
    torch.optim.AdamW computes the same thing; tests/test_03_pretrain.py checks it over 1000 steps.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"AdamW: need lr, eps, weight_decay >= 0 and 0 <= betas < 1; got "
                             f"lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2) = group["lr"], group["betas"]
            eps, weight_decay = group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                # --- student part: AdamW's update of one parameter (lesson: "AdamW") ---
                grad = param.grad
                state = self.state[param]
                if not state:  # first step for this parameter: the moments start at zero
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grad, 1 - beta1)  # m + (1 − β1)(g − m) = β1·m + (1 − β1)·g
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if weight_decay:
                    param.mul_(1 - lr * weight_decay)
                bias_correction1 = 1 - beta1**t
                bias_correction2 = 1 - beta2**t
                # √v̂ + ε = √v / √(1 − β2^t) + ε; the 1/(1 − β1^t) of m̂ goes into the step size
                denom = v.sqrt().div_(math.sqrt(bias_correction2)).add_(eps)
                param.addcdiv_(m, denom, value=-lr / bias_correction1)
                # --- end of student part ---
        return loss


def param_groups(model, weight_decay):
    """Split the trainable parameters into [decayed, not decayed] optimizer groups.

    Only the weight matrices of nn.Linear layers decay. Biases, norm gains and embeddings do not:
    shrinking a norm's gain or a bias toward 0 is not a sensible prior, and an embedding row only
    gets gradient when its token appears, so decay would wipe out rare tokens. A matrix shared by an
    embedding and the output layer (tied weights) counts as an embedding. Shared tensors appear once.
    """
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    linear_weight_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    decay, no_decay = [], []
    for param in model.parameters():  # yields each shared (tied) tensor once
        if not param.requires_grad:
            continue
        if id(param) in linear_weight_ids and id(param) not in embedding_ids:
            decay.append(param)
        else:
            no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model, lr, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, kind="ours"):
    """Our AdamW (kind="ours"), or torch's fused AdamW (kind="torch", the fast path), over param_groups."""
    groups = param_groups(model, weight_decay)
    if kind == "ours":
        return AdamW(groups, lr=lr, betas=betas, eps=eps)
    if kind == "torch":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    raise ValueError(f"unknown optimizer {kind!r}: use 'ours' or 'torch'")


# ----------------------------------------------------------------------------------------------------
# the learning-rate schedule and gradient clipping


def lr_at(step, max_lr, min_lr, warmup_steps, decay_end):
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine decay to min_lr.

        step < warmup_steps:               lr = max_lr · (step + 1) / warmup_steps
        warmup_steps <= step < decay_end:  p = (step − warmup_steps) / (decay_end − warmup_steps)
                                           lr = min_lr + ½ · (1 + cos(π·p)) · (max_lr − min_lr)
        step >= decay_end:                 lr = min_lr

    decay_end is an absolute step (usually the last step of the run), not a count after warmup.
    Example: max_lr=1, min_lr=0.1, warmup_steps=10, decay_end=110 gives 0.1 at step 0, 1.0 at steps 9
    and 10, 0.55 at step 60 (halfway down the cosine), 0.1 from step 110 on.
    """
    # --- student part: the warmup + cosine schedule (lesson: "The schedule, and why warmup") ---
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= decay_end:
        return min_lr
    progress = (step - warmup_steps) / (decay_end - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
    # --- end of student part ---


@torch.no_grad()
def clip_grad_norm(params, max_norm, eps=1e-6):
    """Scale every gradient by min(1, max_norm / (‖g‖ + eps)), where ‖g‖ = √(Σ over all params of Σ g²).

    One norm over all parameters together (the "global" L2 norm), so the update keeps its direction
    and only its length is capped. Parameters without a gradient are skipped. Returns ‖g‖ before
    clipping (a 0-dim tensor), the number the progress line shows as "grad". Same as
    torch.nn.utils.clip_grad_norm_(params, max_norm).
    """
    # --- student part: gradient clipping by the global L2 norm (lesson: "The schedule, and why warmup") ---
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # ‖g‖ = ‖(‖g_1‖, ‖g_2‖, ...)‖: the norm of the per-parameter norms, in fp32
    total_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]))
    scale = torch.clamp(max_norm / (total_norm + eps), max=1.0)  # a tensor: no GPU->CPU sync here
    for g in grads:
        g.mul_(scale)
    return total_norm
    # --- end of student part ---

