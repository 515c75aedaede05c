"""PPO for language models, written out: every formula one small function, every shape in its docstring.

Shapes: B rows (responses), T columns lining up with Rollout.ids (prompt left-padded, response
right-padded). mask (B, T) bool is Rollout.response_mask: True on the sampled tokens only. Per-token
tensors hold, at column t, the quantity of the ACTION ids[:, t] (the token sampled there):
logprob_t = log pi(ids_t | ids_<t), value_t = V(state before ids_t), reward_t, advantage_t.

One PPO step (InstructGPT's step 3; Ouyang et al. 2022, Ziegler et al. 2019):
    1. roll out responses y to prompts x with the policy pi (rl_loop.py)
    2. per_token_rewards: r_t = -beta * KL_t(pi || pi_ref), plus the reward model's score at the last token
    3. gae_advantages: A_t and the returns R_t = A_t + V_t from the value head's V_t; whiten A over the batch
    4. for a few epochs of minibatches: ppo_clipped_loss + vf_coef * value_loss (the entropy is logged only)
    5. AdaptiveKLController (optional) moves beta toward a target KL
"""
import torch
import torch.nn as nn


# ----------------------------------------------------------------------------------------------------
# Means over response tokens only, and where a row's last real token is


def last_token_index(attention_mask):
    """Column of each row's last real token: (B, T) bool -> (B,) int64.

    >>> last_token_index(torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]]).bool()).tolist()
    [2, 3]
    """
    T = attention_mask.size(1)
    columns = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask, columns, -1).max(dim=1).values


def masked_mean(values, mask, dim=None):
    """sum(values * mask) / sum(mask), over everything (dim=None) or along dim. Padding and prompt tokens
    (mask False) count for nothing, however many there are.

    values (B, T) float, mask (B, T) bool -> 0-dim (or (B,) with dim=1). An empty mask gives 0, not nan.
    >>> masked_mean(torch.tensor([[1., 2., 99.]]), torch.tensor([[True, True, False]])).item()
    1.5
    """
    # --- student part: the masked mean (lesson: "4. PPO, written out (`ppo.py`, `rl_loop.py`)") ---
    mask = mask.to(values.dtype)
    return (values * mask).sum(dim=dim) / mask.sum(dim=dim).clamp(min=1)
    # --- end of student part ---


def masked_var(values, mask):
    """The variance of the masked values (population, divide by N): masked_mean((v - mean)^2)."""
    mean = masked_mean(values, mask)
    return masked_mean((values - mean) ** 2, mask)


def masked_whiten(values, mask, shift_mean=True, eps=1e-8):
    """(values - mean) / sqrt(var + eps), mean and var over the masked entries; 0 where mask is False.

    shift_mean=False keeps the mean (only divides by the std): used for rewards, whose sign matters.
    values, mask (B, T) -> (B, T).
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, 0.0)


# ----------------------------------------------------------------------------------------------------
# The KL penalty and the per-token reward


def kl_k1(logprobs, ref_logprobs):
    """k1 = log pi(y_t) - log pi_ref(y_t): unbiased for KL(pi || pi_ref) when y_t ~ pi, but negative
    for some tokens (high variance). (B, T), (B, T) -> (B, T). Schulman, "Approximating KL divergence"."""
    return logprobs - ref_logprobs


def kl_per_reply(logprobs, ref_logprobs, mask):
    """sum over a reply's tokens of k1: the KL from the reference in nats per reply (what "kl" logs).
    (B, T), (B, T), mask (B, T) bool -> (B,)."""
    return torch.where(mask, kl_k1(logprobs, ref_logprobs), 0.0).sum(dim=1)


def kl_k3(logprobs, ref_logprobs):
    """k3 = (rho - 1) - log rho with rho = pi_ref(y_t) / pi(y_t): also unbiased, and >= 0 for every token
    (log x <= x - 1), so a sum of them never rewards moving away. (B, T), (B, T) -> (B, T).
    >>> round(kl_k3(torch.tensor(0.0), torch.log(torch.tensor(0.5))).item(), 4)   # rho = 0.5: -0.5 + log 2
    0.1931
    """
    log_ratio = ref_logprobs - logprobs
    return torch.expm1(log_ratio) - log_ratio


def per_token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef, kl_estimator="k1"):
    """r_t = -beta * KL_t  at every response token, plus the reward model's score at the last one.

    scores (B,) the reward model's score of each response; logprobs, ref_logprobs (B, T) of the sampled
    tokens under the policy and the frozen SFT model; mask (B, T) bool; kl_coef = beta; kl_estimator
    "k1" or "k3". Returns (rewards (B, T), kl (B, T)), both 0 off the mask. The last response token of
    a row is the last True of its mask (responses are contiguous).
    """
    estimator = {"k1": kl_k1, "k3": kl_k3}.get(kl_estimator)
    if estimator is None:
        raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {kl_estimator!r}")
    # --- student part: the per-token reward with the KL penalty (lesson: "4. PPO, written out (`ppo.py`, `rl_loop.py`)") ---
    kl = torch.where(mask, estimator(logprobs, ref_logprobs), 0.0)
    rewards = -kl_coef * kl
    last = last_token_index(mask)  # (B,): -1 for a row with no response token
    has_response = last >= 0
    rows = torch.arange(mask.size(0), device=mask.device)[has_response]
    rewards[rows, last[has_response]] += scores[has_response].to(rewards.dtype)
    return rewards, kl
    # --- end of student part ---


def whiten_and_clip_scores(scores, whiten=False, clip=None):
    """Optional reward normalization before the KL term: scores (B,) divided by their std over the batch
    (the mean is kept), then clipped to [-clip, clip]. -> (B,)."""
    if whiten and scores.numel() > 1:
        scores = scores / (scores.std(unbiased=False) + 1e-8)
    if clip is not None:
        scores = scores.clamp(-clip, clip)
    return scores


# ----------------------------------------------------------------------------------------------------
# Generalized advantage estimation (Schulman et al. 2016)


def gae_advantages(rewards, values, mask, gamma=1.0, lam=0.95):
    """GAE over each row's response tokens, from its last token back to its first:

        delta_t = r_t + gamma * V_{t+1} - V_t           (V after the last token = 0: the episode ended)
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V_t                              (the value head's regression target)

    lam = 0: A_t = delta_t (one-step TD: low variance, biased by V); lam = 1: A_t = sum of rewards from
    t on minus V_t (Monte Carlo: unbiased, high variance). rewards, values (B, T) float, mask (B, T)
    bool with the response tokens contiguous. Returns (advantages, returns), (B, T), 0 off the mask.
    """
    # --- student part: GAE's advantages and returns (lesson: "4. PPO, written out (`ppo.py`, `rl_loop.py`)") ---
    B, T = rewards.shape
    maskf = mask.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_advantage = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = advantage * maskf[:, t]
        # off the mask (padding after the response, or the prompt before it) nothing flows back
        next_value = values[:, t] * maskf[:, t]
        next_advantage = advantages[:, t]
    returns = (advantages + values) * maskf
    return advantages, returns
    # --- end of student part ---


# ----------------------------------------------------------------------------------------------------
# The losses


def ppo_clipped_loss(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    """PPO's clipped surrogate (Schulman et al. 2017), to minimize:

        rho_t = exp(log pi(y_t) - log pi_old(y_t))
        loss  = -masked_mean( min(rho_t * A_t, clip(rho_t, 1 - eps, 1 + eps) * A_t) )

    The min makes the objective pessimistic: once rho has moved eps past 1 in the direction A favours,
    the gradient is 0, so one batch cannot push the policy far. logprobs (B, T) with gradients,
    old_logprobs and advantages (B, T) without, mask (B, T) bool. Returns (loss, clip_fraction: share of
    tokens where the clipped term was the smaller, approx_kl: masked_mean((rho - 1) - log rho), the k3
    estimate of KL(pi_old || pi)).
    """
    # --- student part: PPO's clipped surrogate loss (lesson: "4. PPO, written out (`ppo.py`, `rl_loop.py`)") ---
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages
    loss = -masked_mean(torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped < unclipped).float(), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return loss, clip_fraction, approx_kl
    # --- end of student part ---


def value_loss(values, old_values, returns, mask, clip_range=0.2):
    """The clipped value loss (PPO2, as in InstructGPT-era TRL):

        V_clip = old_V + clip(V - old_V, -eps, eps)
        loss   = 0.5 * masked_mean( max((V - R)^2, (V_clip - R)^2) )

    values (B, T) with gradients; old_values, returns (B, T) without; mask (B, T) bool -> 0-dim.
    """
    # --- student part: the clipped value loss (lesson: "4. PPO, written out (`ppo.py`, `rl_loop.py`)") ---
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)
    # --- end of student part ---


# ----------------------------------------------------------------------------------------------------
# The value head and the KL controller


class ValueHead(nn.Module):
    """V_t = w . h_t + b on the policy's final hidden states h (B, T, C) -> (B, T): a scalar per token.

    It shares the policy's body (one forward pass gives logits and values, as InstructGPT-era TRL did);
    the weight starts at 0, so V = 0 until the value loss has taught it something."""

    def __init__(self, n_embd):
        super().__init__()
        self.linear = nn.Linear(n_embd, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden):
        return self.linear(hidden).squeeze(-1).float()


class AdaptiveKLController:
    """Ziegler et al. (2019): move beta so that the measured KL tracks a target.

        e    = clip(KL / target - 1, -0.2, 0.2)          (proportional error, clipped)
        beta = beta * (1 + e * n_steps / horizon)

    KL above target -> beta grows (a stronger leash); below -> beta shrinks."""

    def __init__(self, init_kl_coef, target, horizon):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl, n_steps):
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
