"""The reward model: the SFT model's body with a scalar head on the last real token, trained on pairs.

    rm = RewardModel(sft_model)                     # a deep copy of the body; the head starts at 0
    scores = rm(ids, attention_mask)                # (B,): one score per sequence
    batches = PairBatches(encode_pairs(pairs, tokenizer, block_size), batch_size=16)
    train.train(rm, batches.get_batch, config, loss_fn=reward_model_loss)   # chapter 03's loop

Bradley-Terry (1952) says a labeller prefers reply c over reply r with probability
sigmoid(r(x, c) - r(x, r)); maximizing the likelihood of the labels is minimizing

    loss = -log sigmoid(r_chosen - r_rejected)            (pairwise_loss)

which only ever sees differences: adding a constant to every score changes nothing, so the scale and
offset of a reward model are arbitrary (PPO can whiten them away). Why the last token: the model is
causal, so the final hidden state of the last real token is the only one that has read the whole reply
(and, for a reply that ended, the <|end|> that says "I am done").
"""
import copy
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from chat_format import END, render_chat  # noqa: E402  (chapter 04)
from model_loader import register_format, rebuild_gpt  # noqa: E402  (chapter 03: the one loader)
from padding import left_pad  # noqa: E402  (chapter 02)

from ppo import last_token_index  # noqa: E402, F401  (this chapter: the one place it is written)


class RewardModel(nn.Module):
    """score(x, y) = w . h_last + b, h_last = the body's final hidden state at the last real token.

    body: a chapter-02 GPT (deep-copied: training the reward model never touches the SFT model); its
    lm_head is kept but unused. self.config is the body's config, so train() saves and checks it.
    """

    def __init__(self, body):
        super().__init__()
        self.body = copy.deepcopy(body).requires_grad_(True)  # (the SFT model itself may be frozen)
        self.config = self.body.config
        self.score_head = nn.Linear(self.config.n_embd, 1)
        nn.init.zeros_(self.score_head.weight)  # every reply scores 0 at first: no preference before data
        nn.init.zeros_(self.score_head.bias)

    def forward(self, ids, attention_mask=None):
        """ids (B, T) int64, attention_mask (B, T) bool (None: no padding) -> scores (B,) float32."""
        if attention_mask is None:
            attention_mask = torch.ones_like(ids, dtype=torch.bool)
        hidden = self.body.hidden(ids, attention_mask=attention_mask)  # (B, T, C)
        last = hidden[torch.arange(ids.size(0), device=ids.device), last_token_index(attention_mask)]  # (B, C)
        return self.score_head(last).squeeze(-1).float()  # (B,)


def rebuild_reward_model(meta, state_dict):
    """The reward model of a checkpoint (chapter 03's loader calls it: load_model(path, stage="reward_model"))."""
    reward_model = RewardModel(rebuild_gpt(meta, None))
    reward_model.load_state_dict(state_dict)
    return reward_model


register_format("reward_model", rebuild_reward_model, recognize=lambda meta: meta.get("stage") == "reward_model")


def pairwise_loss(chosen_scores, rejected_scores):
    """Bradley-Terry's negative log-likelihood: mean over pairs of -log sigmoid(r_c - r_r).

    chosen_scores, rejected_scores: (B,) -> 0-dim tensor. logsigmoid is the stable form of
    log(1 / (1 + exp(-(r_c - r_r)))). Equal scores give log 2 = 0.693 (a coin flip).
    """
    # --- student part: the Bradley-Terry loss (lesson: "3. The reward model (`reward_model.py`)") ---
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()
    # --- end of student part ---


def reward_model_loss(model, batch):
    """The loss hook for train(): batch = (ids, attention_mask, response_mask) of 2B rows, the B chosen
    replies first, then their B rejected ones (PairBatches). Returns (loss, {"accuracy": share of pairs
    with r_c > r_r, "margin": mean r_c - r_r})."""
    ids, attention_mask = batch[0], batch[1]
    scores = model(ids, attention_mask)  # (2B,): one forward pass for both halves
    chosen, rejected = scores.chunk(2)
    return pairwise_loss(chosen, rejected), {"accuracy": (chosen > rejected).float().mean(),
                                             "margin": (chosen - rejected).mean()}


# ----------------------------------------------------------------------------------------------------
# Pairs -> token ids -> padded batches


def encode_reply(messages, reply, ended, tokenizer):
    """(ids, response_mask) of the conversation `messages` + the assistant's reply, as lists of ints.

    The reply closes with <|end|> if it ended its turn, and stops where it was cut if it did not.
    reply may be text or the token ids the model sampled (render_chat takes both).
    """
    ids, loss_mask = render_chat(list(messages) + [{"role": "assistant", "content": reply}], tokenizer)
    if not ended and ids[-1] == tokenizer.special_tokens[END]:
        ids, loss_mask = ids[:-1], loss_mask[:-1]
    return ids, loss_mask


def encode_pairs(pairs, tokenizer, block_size):
    """[(chosen_ids, chosen_mask, rejected_ids, rejected_mask), ...] for the pairs that fit in block_size.

    A pair whose prompt alone does not fit raises ValueError (it can never be scored); a pair whose
    reply runs past the context is dropped (as SFT drops conversations that do not fit). Returns
    (encoded, kept): kept[i] is the index in `pairs` of encoded[i].
    """
    encoded, kept = [], []
    for i, pair in enumerate(pairs):
        prompt, _ = render_chat(pair["messages"], tokenizer, add_generation_prompt=True)
        if len(prompt) >= block_size:
            raise ValueError(f"pair {i}: its prompt is {len(prompt)} tokens, the model's context holds {block_size}: "
                             f"shorten the prompt")
        chosen = encode_reply(pair["messages"], pair["chosen"], pair.get("chosen_ended", True), tokenizer)
        rejected = encode_reply(pair["messages"], pair["rejected"], pair.get("rejected_ended", True), tokenizer)
        if max(len(chosen[0]), len(rejected[0])) <= block_size:
            encoded.append((*chosen, *rejected))
            kept.append(i)
    return encoded, kept


def pad_pairs(encoded):
    """Left-pad B encoded pairs into one (2B, T) batch: (ids, attention_mask, response_mask), chosen rows
    first. Left padding puts every row's last token in the last column."""
    sequences = [e[0] for e in encoded] + [e[2] for e in encoded]
    masks = [e[1] for e in encoded] + [e[3] for e in encoded]
    ids, attention_mask, _ = left_pad(sequences)
    response_mask, _, _ = left_pad([[m + 1 for m in mask] for mask in masks])  # shifted so a pad (0) is False
    return ids, attention_mask, response_mask == 2


class PairBatches:
    """get_batch(split, generator) for train(): B random pairs of a split -> (ids, attention_mask,
    response_mask[, ref_logprobs]) of 2B rows (chosen first). ref_logprobs: optional {split: (N, 2)
    tensor}, DPO's reference log-probs of each pair's chosen and rejected reply, appended as (2B,)."""

    def __init__(self, encoded, batch_size, ref_logprobs=None):
        for split in ("train", "val"):
            if not encoded.get(split):
                raise ValueError(f"no {split} preference pairs fit the model's context: nothing to train on")
        self.encoded, self.batch_size, self.ref_logprobs = encoded, batch_size, ref_logprobs

    def get_batch(self, split, generator):
        index = torch.randint(len(self.encoded[split]), (self.batch_size,), generator=generator).tolist()
        batch = pad_pairs([self.encoded[split][i] for i in index])
        if self.ref_logprobs is not None:
            values = self.ref_logprobs[split][index]  # (B, 2)
            batch = (*batch, torch.cat([values[:, 0], values[:, 1]]))
        return batch


@torch.no_grad()
def score_replies(reward_model, conversations, replies, tokenizer, batch_size=64):
    """The reward model's score of each (messages, (reply, ended)): a list of floats."""
    device = next(reward_model.parameters()).device
    scores = []
    was_training = reward_model.training
    reward_model.eval()
    for start in range(0, len(replies), batch_size):
        encoded = [encode_reply(m, r, e, tokenizer)[0][-reward_model.config.block_size:]
                   for m, (r, e) in zip(conversations[start:start + batch_size], replies[start:start + batch_size])]
        ids, attention_mask, _ = left_pad(encoded, device=device)
        scores += reward_model(ids, attention_mask).tolist()
    reward_model.train(was_training)
    return scores


def spearman(x, y):
    """Spearman's rank correlation: the Pearson correlation of the ranks (ties get their mean rank).

    >>> round(spearman([1, 2, 3, 4], [10, 20, 30, 25]), 3)
    0.8
    """
    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return torch.tensor(out)
    rx, ry = ranks(list(x)), ranks(list(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = (rx.norm() * ry.norm()).item()
    return float((rx @ ry).item() / denominator) if denominator > 0 else 0.0
