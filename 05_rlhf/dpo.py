"""DPO (Rafailov et al. 2023): preference learning with no reward model and no sampling.

    ref = reference_logprobs(sft_model, batches)       # once, before training: log ref(y) of every reply
    train.train(policy, batches.get_batch, config, loss_fn=make_dpo_loss(beta=0.1))   # chapter 03's loop

Why no reward model is needed. The KL-regularized objective of RLHF,

    max_pi  E_{y ~ pi}[ r(x, y) ] - beta * KL(pi(.|x) || ref(.|x)),

has a closed-form optimum: pi*(y|x) = ref(y|x) exp(r(x, y) / beta) / Z(x). Solved for the reward,
r(x, y) = beta log(pi*(y|x) / ref(y|x)) + beta log Z(x): every policy DEFINES a reward, its "implicit
reward". Put that into Bradley-Terry's likelihood of a pair (chosen y_w, rejected y_l): Z(x) cancels
in the difference, and what is left is a loss on log-probabilities alone:

    loss = -log sigmoid( beta * [ (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)) ] )

(dpo_loss). The sequence log-probs come from chapter 02's logprobs.sequence_logprobs over the reply's
tokens (the response mask); the reference's are computed once, with no gradient.
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from logprobs import logprobs_from_logits, sequence_logprobs  # noqa: E402  (chapter 02)
from reward_model import pad_pairs  # noqa: E402  (this chapter)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1):
    """The DPO loss of B pairs, each argument (B,) sequence log-probs (the sum over the reply's tokens):

        h    = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))
        loss = mean( -log sigmoid(beta * h) )

    Returns (loss, chosen_rewards, rejected_rewards): the implicit rewards beta * (log pi - log ref) of
    each reply (B,), detached. At the start pi = ref, so h = 0 and the loss is log 2 = 0.693.
    """
    # --- student part: DPO's loss and implicit rewards (lesson: "6. DPO: no reward model, no sampling (`dpo.py`)") ---
    chosen_log_ratio = policy_chosen - ref_chosen
    rejected_log_ratio = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_log_ratio - rejected_log_ratio)).mean()
    return loss, (beta * chosen_log_ratio).detach(), (beta * rejected_log_ratio).detach()
    # --- end of student part ---


def make_dpo_loss(beta):
    """The loss hook for train(): batch = (ids, attention_mask, response_mask, ref_logprobs) of 2B rows,
    chosen first (reward_model.PairBatches with ref_logprobs=the reference log-probs). Returns (loss,
    {"accuracy": share with implicit reward of y_w > y_l, "margin": mean reward difference})."""

    def dpo_loss_fn(model, batch):
        ids, attention_mask, response_mask, ref = batch
        # call model(...) (not sequence_logprobs(model, ...) on the raw module) so DDP sees the forward pass
        logits, _ = model(ids[:, :-1], attention_mask=attention_mask[:, :-1])
        logps = logprobs_from_logits(logits, ids[:, 1:], response_mask[:, 1:]).sequence_logprob  # (2B,)
        policy_chosen, policy_rejected = logps.chunk(2)
        ref_chosen, ref_rejected = ref.chunk(2)
        loss, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                                                          beta)
        return loss, {"accuracy": (chosen_rewards > rejected_rewards).float().mean(),
                      "margin": (chosen_rewards - rejected_rewards).mean()}

    return dpo_loss_fn


@torch.no_grad()
def reference_logprobs(ref_model, encoded, batch_size=64):
    """log ref(y) of the chosen and the rejected reply of every encoded pair: (N, 2) float32, one pass
    over the data before training (the reference never changes, so this is all DPO needs of it).
    The pairs go through in order of length, so a batch pads little."""
    device = next(ref_model.parameters()).device
    out = torch.zeros(len(encoded), 2)
    order = sorted(range(len(encoded)), key=lambda i: max(len(encoded[i][0]), len(encoded[i][2])))
    for start in range(0, len(encoded), batch_size):
        rows = order[start:start + batch_size]
        ids, attention_mask, response_mask = (t.to(device) for t in pad_pairs([encoded[i] for i in rows]))
        logps = sequence_logprobs(ref_model, ids, response_mask, attention_mask).sequence_logprob
        chosen, rejected = logps.chunk(2)
        out[rows] = torch.stack([chosen, rejected], dim=1).float().cpu()
    return out
