"""GRPO (Shao et al. 2024, DeepSeekMath): PPO without a value network, for verifiable rewards.

For each prompt, sample a GROUP of G replies and score each with the gold reward directly (a world
answer is right or wrong: no reward model to fool). The group is its own baseline:

    A_i = (r_i - mean(r_group)) / (std(r_group) + eps)       (group_normalized_advantages)

and every token of reply i gets A_i. The loss is PPO's clipped objective with per-token ratios
(ppo.ppo_clipped_loss's terms), optionally with DeepSeekMath's k3 KL to the reference in the loss rather
than in the reward. No critic: nothing to train but the policy, and the baseline is exact for the group.
A group whose replies all score the same has A = 0: it teaches nothing (all right or all wrong).

The ladder to GRPO, one function per rung, each a loss to minimize over B = n_prompts x G replies
(y_i = reply i, |y_i| its length, pi = the policy, r_i its reward):

    1. reinforce_loss                 A_i = r_i                       (Williams 1992: unbiased, noisy)
    2. reinforce_with_baseline_loss   A_i = r_i - mean_group(r)        (the same mean, far less variance)
    3. grpo_loss                      A_i normalized by the group's std, pi / pi_old clipped (several
                                      updates per batch stay near the policy that sampled)

Each sums its per-token terms A_i * (log-prob or clipped ratio) in one of three ways (aggregate):

    "sequence"  DeepSeekMath:  1/B sum_i 1/|y_i| sum_t      (a mean over each reply, then over replies)
    "token"     DAPO:          1/sum_i |y_i| sum_i sum_t    (a mean over every token of the batch)
    "constant"  Dr. GRPO:      1/(B L) sum_i sum_t          (a masked sum divided by a constant, L =
                                                             the most tokens a reply may have)

"sequence" gives every reply the same total weight, so a long wrong reply is pushed down less per token
than a short one: it leans toward long wrong replies. "token" and "constant" weight every token alike.
"""
import torch

from ppo import kl_k3, masked_mean

NORMALIZATIONS = ("sequence", "token", "constant")


def masked_sum_over_constant(values, mask, constant, dim=None):
    """sum(values * mask) / constant: the masked mean's sibling whose divisor does not depend on the mask
    (CS336's masked_normalize; Dr. GRPO divides by the longest reply allowed).

    values (B, T), mask (B, T) bool -> 0-dim (or (B,) with dim=1).
    >>> masked_sum_over_constant(torch.tensor([[1., 2., 99.]]), torch.tensor([[True, True, False]]), 4.0).item()
    0.75
    """
    return (values * mask.to(values.dtype)).sum(dim=dim) / constant


def aggregate(per_token, mask, normalization="token", max_tokens=None):
    """Per-token terms (B, T) -> one number, as `normalization` says (see the module docstring):

        "sequence":  1/B sum_i ( sum_t m_it x_it / sum_t m_it )
        "token":     sum_it m_it x_it / sum_it m_it
        "constant":  sum_it m_it x_it / (B * max_tokens)

    >>> x, m = torch.tensor([[1., 1., 1., 1.], [3., 0., 0., 0.]]), torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]]).bool()
    >>> [round(aggregate(x, m, n, max_tokens=4).item(), 4) for n in NORMALIZATIONS]
    [2.0, 1.4, 0.875]
    """
    if normalization == "sequence":
        return masked_mean(per_token, mask, dim=1).mean()
    if normalization == "token":
        return masked_mean(per_token, mask)
    if normalization == "constant":
        if not max_tokens:
            raise ValueError("normalization='constant' needs max_tokens (the most tokens a reply may have)")
        return masked_sum_over_constant(per_token, mask, per_token.size(0) * max_tokens)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def group_normalized_advantages(rewards, group_size, normalize_std=True, eps=1e-6):
    """rewards (N,) with N = n_prompts * group_size, each prompt's replies consecutive -> advantages (N,).

        A_i = r_i - mean_group(r)                          (normalize_std=False: Dr. GRPO's choice)
        A_i = (r_i - mean_group(r)) / (std_group(r) + eps)  (normalize_std=True: DeepSeekMath's)

    std is the unbiased sample std of the group (torch.std's default), as DeepSeekMath and CS336 use.
    >>> group_normalized_advantages(torch.tensor([1., 0., 0., 1.]), 2, normalize_std=False).tolist()
    [0.5, -0.5, -0.5, 0.5]
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    # --- student part: GRPO's group-normalized advantages (lesson: "7. GRPO and verifiable rewards (`grpo.py`)") ---
    grouped = rewards.view(-1, group_size)  # (n_prompts, G)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    if normalize_std:
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + eps)
    return advantages.reshape(-1)
    # --- end of student part ---


def reinforce_loss(logprobs, rewards, mask, normalization="token", max_tokens=None):
    """Rung 1, the naive policy gradient (REINFORCE), to minimize:

        loss = -aggregate( r_i * log pi(y_it) )        gradient: -E[ r * grad log pi(y) ]

    The raw reward weights every token of its reply: with rewards in [-2, 1] that are mostly -1, every
    sampled reply is pushed down and only its share of the push tells right from wrong (high variance).
    logprobs (B, T) with gradients, rewards (B,), mask (B, T) bool -> 0-dim.
    """
    return -aggregate(rewards[:, None] * logprobs, mask, normalization, max_tokens)


def reinforce_with_baseline_loss(logprobs, rewards, group_size, mask, normalization="token", max_tokens=None):
    """Rung 2, REINFORCE with a baseline b = the mean reward of the reply's group (same prompt):

        loss = -aggregate( (r_i - mean_group(r)) * log pi(y_it) )

    E[b * grad log pi] = 0 for any b that does not depend on the reply, so the gradient stays unbiased
    while a right reply among wrong ones is pushed up and the wrong ones down. Shapes as reinforce_loss.
    """
    advantages = group_normalized_advantages(rewards, group_size, normalize_std=False)
    return reinforce_loss(logprobs, advantages, mask, normalization, max_tokens)


def grpo_loss(logprobs, old_logprobs, advantages, mask, clip_range=0.2, ref_logprobs=None, kl_coef=0.0,
              normalization="token", max_tokens=None):
    """Rung 3, the GRPO loss to minimize: the clipped objective with per-token ratios, each token of reply i
    weighted by the reply's advantage A_i (group_normalized_advantages), plus kl_coef * k3 KL to the reference:

        rho_it = exp(log pi(y_it) - log pi_old(y_it))
        loss   = -aggregate( min(rho_it A_i, clip(rho_it, 1 - eps, 1 + eps) A_i) ) + kl_coef * aggregate(k3_it)

    aggregate is "sequence" (DeepSeekMath), "token" (DAPO) or "constant" (Dr. GRPO; needs max_tokens).
    logprobs (B, T) with gradients; old_logprobs (B, T); advantages (B,) one per reply; mask (B, T) bool;
    ref_logprobs (B, T) or None. Returns (loss, clip_fraction, approx_kl, kl_to_ref); the last three are
    token means (what the logs show), whatever the normalization.
    """
    # --- student part: GRPO's loss (lesson: "7. GRPO and verifiable rewards (`grpo.py`)") ---
    token_advantages = advantages[:, None].expand_as(logprobs)
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = ratio * token_advantages
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * token_advantages
    loss = -aggregate(torch.minimum(unclipped, clipped), mask, normalization, max_tokens)
    kl_to_ref = torch.zeros((), device=logprobs.device)
    if ref_logprobs is not None:
        kl_per_token = kl_k3(logprobs, ref_logprobs)
        loss = loss + kl_coef * aggregate(kl_per_token, mask, normalization, max_tokens)
        kl_to_ref = masked_mean(kl_per_token, mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped < unclipped).float(), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return loss, clip_fraction, approx_kl, kl_to_ref.detach()
    # --- end of student part ---
