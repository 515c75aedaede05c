"""Per-token log-probabilities, sequence log-probabilities and entropy, from one forward pass.

    out = sequence_logprobs(model, ids, response_mask, attention_mask)   # ids (B, T)
    out.token_logprobs   (B, T)  log p(ids[:, t] | ids[:, :t]) on the response tokens, 0 elsewhere
    out.sequence_logprob (B,)    their sum: log p(response | prompt)
    out.entropy          (B, T)  entropy of the distribution that predicted ids[:, t], on the response tokens

What reads it: PPO's ratio exp(log pi(y) - log pi_old(y)) and its KL penalty log pi(y) - log pi_ref(y)
(per token), DPO's loss (sequence log-probs of the chosen and the rejected reply under the policy and
the reference), GRPO (per token, like PPO), multiple-choice evaluation (the sequence log-prob of each
choice; the likeliest wins), and the entropy bonus or diagnostic of RL. Gradients flow: call it under
torch.no_grad() for a frozen reference model, without it for the policy being trained.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F


class SequenceLogProbs(NamedTuple):
    token_logprobs: torch.Tensor  # (B, T) float32, 0 where the mask is False
    sequence_logprob: torch.Tensor  # (B,) float32, the masked sum of token_logprobs
    entropy: torch.Tensor  # (B, T) float32, 0 where the mask is False


def logprobs_from_logits(logits, targets, mask=None, temperature=1.0):
    """Log-prob of each target under softmax(logits / temperature), their masked sum, and the entropy.

    logits (B, T, V): logits[:, t] is the distribution that predicts targets[:, t] (B, T) (int64).
    mask (B, T) bool (None = every position) says which targets count (the response tokens).
        p_t = softmax(logits_t / temperature)      (temperature 0, greedy decoding, is read as 1)
        token_logprobs[b, t] = log p_t[targets[b, t]] * mask[b, t]
        sequence_logprob[b]  = sum_t token_logprobs[b, t]
        entropy[b, t]        = -sum_v p_t[v] log p_t[v] * mask[b, t]
    All float32 (computed in float32 whatever the logits' dtype). Returns a SequenceLogProbs.
    A target may be any id where the mask is False (e.g. -1 or a pad): it is never read there.
    """
    # --- student part: log-probs, their masked sum, and the entropy (lesson: "11. Log-probabilities and entropy") ---
    scale = temperature if temperature > 0 else 1.0
    log_p = F.log_softmax(logits.float() / scale, dim=-1)  # (B, T, V)
    token = log_p.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    entropy = -(log_p.exp() * log_p).sum(dim=-1)  # (B, T)
    if mask is not None:
        token = torch.where(mask, token, 0.0)
        entropy = torch.where(mask, entropy, 0.0)
    return SequenceLogProbs(token, token.sum(dim=-1), entropy)
    # --- end of student part ---


def sequence_logprobs(model, ids, response_mask=None, attention_mask=None, temperature=1.0):
    """One forward pass over ids (B, T) -> SequenceLogProbs whose (B, T) tensors line up with ids.

    token_logprobs[:, t] = log p(ids[:, t] | ids[:, :t]) and entropy[:, t] is the entropy of that
    distribution; column 0 is always 0 (nothing predicts the first token). Counted where response_mask
    (B, T) bool is True (e.g. Rollout.response_mask, or the answer tokens of a multiple-choice item);
    None counts every real token that follows a real token. attention_mask (B, T) bool marks the real
    tokens of a padded batch (padding.left_pad, Rollout.attention_mask); None = no padding.
    temperature: as in logprobs_from_logits; pass the sampling temperature to reproduce a rollout's
    log-probs. The model runs on ids[:, :-1] (T - 1 positions): the last token predicts nothing.
    """
    if ids.size(1) < 2:
        raise ValueError("sequence_logprobs needs at least 2 tokens per row (a context and a target)")
    inputs_mask = None if attention_mask is None else attention_mask[:, :-1]
    logits, _ = model(ids[:, :-1], attention_mask=inputs_mask)  # (B, T - 1, V)
    if response_mask is not None:
        mask = response_mask[:, 1:]
    elif attention_mask is not None:
        mask = attention_mask[:, 1:] & attention_mask[:, :-1]
    else:
        mask = None
    out = logprobs_from_logits(logits, ids[:, 1:], mask, temperature)
    first = out.token_logprobs.new_zeros(ids.size(0), 1)  # column 0: no prediction
    return SequenceLogProbs(torch.cat([first, out.token_logprobs], dim=1), out.sequence_logprob,
                            torch.cat([first, out.entropy], dim=1))
