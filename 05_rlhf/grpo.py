"""GRPO (Shao et al. 2024, DeepSeekMath): PPO without a value network, for verifiable rewards.

For each prompt, sample a GROUP of G replies and score each with the gold reward directly (a world
answer is right or wrong: no reward model to fool). The group is its own baseline:

    A_i = (r_i - mean(r_group)) / (std(r_group) + eps)       (group_normalized_advantages)

and every token of reply i gets A_i. The loss is PPO's clipped objective with per-token ratios
(ppo.ppo_clipped_loss), optionally with DeepSeekMath's k3 KL to the reference in the loss rather than in
the reward. No critic: nothing to train but the policy, and the baseline is exact for the group.
A group whose replies all score the same has A = 0: it teaches nothing (all right or all wrong).
"""
import torch

from ppo import kl_k3, masked_mean, ppo_clipped_loss


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


def grpo_loss(logprobs, old_logprobs, advantages, mask, clip_range=0.2, ref_logprobs=None, kl_coef=0.0):
    """The GRPO loss to minimize: the clipped objective with per-token ratios, each token of reply i
    weighted by the reply's advantage A_i, plus kl_coef * k3 KL to the reference:

        loss = -masked_mean( min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps) A_i) ) + kl_coef * masked_mean(k3_t)

    logprobs (B, T) with gradients; old_logprobs (B, T); advantages (B,) one per reply; mask (B, T) bool;
    ref_logprobs (B, T) or None. Returns (loss, clip_fraction, approx_kl, kl_to_ref).
    """
    # --- student part: GRPO's loss (lesson: "7. GRPO and verifiable rewards (`grpo.py`)") ---
    token_advantages = advantages[:, None].expand_as(logprobs)
    loss, clip_fraction, approx_kl = ppo_clipped_loss(logprobs, old_logprobs, token_advantages, mask, clip_range)
    kl_to_ref = torch.zeros((), device=logprobs.device)
    if ref_logprobs is not None:
        kl_to_ref = masked_mean(kl_k3(logprobs, ref_logprobs), mask)
        loss = loss + kl_coef * kl_to_ref
    return loss, clip_fraction, approx_kl, kl_to_ref.detach()
    # --- end of student part ---
