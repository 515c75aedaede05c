"""Chapter 05 (RLHF): every formula against values computed by hand, the reward model, a toy bandit, resume.

Everything here builds its own small tokenizer and models (nothing is read from runs/), offline and
deterministic. Hand-computed values are written out in the comments so a reader can check them.
"""
import copy
import dataclasses
import doctest
import json
import math

import pytest
import torch

import bpe
import checkpoint
import grading
import world
from sft_data import world_examples
from chat_format import add_chat_tokens
from model_loader import load_model
from conftest import tiny_gpt

import dpo
import grpo
import ppo
import preferences
import reward_model
import rl_loop
import rlhf
from dpo import dpo_loss, make_dpo_loss
from grpo import (aggregate, group_normalized_advantages, grpo_loss, masked_sum_over_constant, reinforce_loss,
                  reinforce_with_baseline_loss)
from ppo import (AdaptiveKLController, gae_advantages, kl_k1, kl_k3, masked_mean, masked_whiten, per_token_rewards,
                 ppo_clipped_loss, value_loss)
from preferences import Labeller, gold_reward, label_pairs, read_pairs, world_pairs
from reward_model import RewardModel, encode_pairs, last_token_index, pairwise_loss, spearman
from rl_loop import RLConfig, policy_forward, train_policy

T_ = torch.tensor


def close(tensor, expected):
    return torch.allclose(tensor.float(), T_(expected, dtype=torch.float32), atol=1e-6)


@pytest.fixture(scope="module")
def tokenizer():
    return add_chat_tokens(bpe.train_bpe(world.make_corpus(60_000), 400, special_tokens=[world.EOT]))


@pytest.mark.parametrize("module", [preferences, reward_model, ppo, grpo])
def test_docstring_examples_run_and_hold(module):
    assert doctest.testmod(module).failed == 0


# ---- masked means: only response tokens count

def test_masked_mean_by_hand_and_padding_changes_nothing():
    values = T_([[9.0, 1.0, 2.0, 0.0], [9.0, 9.0, 4.0, 5.0]])
    mask = T_([[False, True, True, False], [False, False, True, True]])
    assert masked_mean(values, mask).item() == pytest.approx((1 + 2 + 4 + 5) / 4)
    assert masked_mean(values, mask, dim=1).tolist() == pytest.approx([1.5, 4.5])
    garbage = torch.where(mask, values, torch.randn_like(values) * 1e3)  # prompt and padding: anything
    assert masked_mean(garbage, mask).item() == pytest.approx(3.0)
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0  # an empty mask: 0, not nan
    # whitening: mean 3, population variance (4 + 1 + 1 + 4) / 4 = 2.5
    whitened = masked_whiten(garbage, mask, eps=0.0)
    assert whitened[mask].tolist() == pytest.approx([(v - 3) / math.sqrt(2.5) for v in (1, 2, 4, 5)])
    assert (whitened[~mask] == 0).all()
    assert masked_whiten(values, mask, shift_mean=False, eps=0.0)[0, 1].item() == pytest.approx(3 + (1 - 3) / math.sqrt(2.5))


# ---- KL estimators and the per-token reward

def test_kl_estimators_by_hand():
    logp, ref = torch.log(T_([0.5, 0.2])), torch.log(T_([0.25, 0.4]))
    # k1 = log(p / q): log 2 and log 0.5
    assert kl_k1(logp, ref).tolist() == pytest.approx([math.log(2), math.log(0.5)])
    # k3 = (rho - 1) - log rho, rho = q / p: rho = 0.5 -> -0.5 + log 2; rho = 2 -> 1 - log 2
    assert kl_k3(logp, ref).tolist() == pytest.approx([-0.5 + math.log(2), 1 - math.log(2)])
    assert (kl_k3(torch.randn(1000), torch.randn(1000)) >= 0).all()
    # both are unbiased for KL(p || q) when y ~ p: check on a 3-token distribution, exactly
    p, q = T_([0.7, 0.2, 0.1]), T_([0.3, 0.3, 0.4])
    kl = (p * (p / q).log()).sum()
    assert (p * kl_k1(p.log(), q.log())).sum().item() == pytest.approx(kl.item())
    assert (p * kl_k3(p.log(), q.log())).sum().item() == pytest.approx(kl.item())


def test_per_token_rewards_by_hand():
    mask = T_([[False, True, True, True, False], [False, False, True, False, False]])
    logp = T_([[0.0, -1.0, -2.0, -0.5, 0.0], [0.0, 0.0, -1.0, 0.0, 0.0]])
    ref = T_([[0.0, -1.5, -1.0, -0.5, 0.0], [0.0, 0.0, -3.0, 0.0, 0.0]])
    rewards, kl = per_token_rewards(T_([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    # k1 = logp - ref = [0.5, -1, 0] and [2]; r = -0.1 * k1, plus the score on the last response token
    assert close(kl, [[0, 0.5, -1.0, 0, 0], [0, 0, 2.0, 0, 0]])
    assert close(rewards, [[0, -0.05, 0.1, 2.0, 0], [0, 0, -0.2 - 1.0, 0, 0]])
    rewards3, kl3 = per_token_rewards(T_([0.0, 0.0]), logp, ref, mask, kl_coef=1.0, kl_estimator="k3")
    assert kl3[0, 1].item() == pytest.approx(math.exp(-0.5) - 1 + 0.5)
    with pytest.raises(ValueError, match="'k1' or 'k3'"):
        per_token_rewards(T_([0.0, 0.0]), logp, ref, mask, 0.1, kl_estimator="k2")


# ---- GAE

def test_gae_by_hand():
    # one response of 3 tokens in columns 1..3, a pad column on each side
    mask = T_([[False, True, True, True, False]])
    rewards = T_([[7.0, 0.0, 0.0, 1.0, 7.0]])
    values = T_([[7.0, 0.5, 0.2, 0.4, 7.0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=0.5)
    # deltas: t3: 1 + 0 - 0.4 = 0.6; t2: 0 + 0.4 - 0.2 = 0.2; t1: 0 + 0.2 - 0.5 = -0.3
    # A3 = 0.6; A2 = 0.2 + 0.5 * 0.6 = 0.5; A1 = -0.3 + 0.5 * 0.5 = -0.05
    assert close(adv, [[0, -0.05, 0.5, 0.6, 0]])
    assert close(ret, [[0, 0.45, 0.7, 1.0, 0]])
    # lam = 0: one-step TD errors; lam = 1, gamma = 1: reward-to-go minus V (Monte Carlo)
    assert close(gae_advantages(rewards, values, mask, 1.0, 0.0)[0], [[0, -0.3, 0.2, 0.6, 0]])
    assert close(gae_advantages(rewards, values, mask, 1.0, 1.0)[0], [[0, 0.5, 0.8, 0.6, 0]])
    # gamma = 0.9, lam = 1: A1 = 0.81 * 1 - 0.5
    assert gae_advantages(rewards, values, mask, 0.9, 1.0)[0][0, 1].item() == pytest.approx(0.81 - 0.5)


def test_gae_ignores_prompt_and_padding():
    mask = T_([[False, False, True, True, False, False]])
    rewards, values = torch.randn(1, 6), torch.randn(1, 6)
    adv, ret = gae_advantages(rewards, values, mask)
    noisy_r = torch.where(mask, rewards, torch.randn(1, 6) * 100)
    noisy_v = torch.where(mask, values, torch.randn(1, 6) * 100)
    adv2, ret2 = gae_advantages(noisy_r, noisy_v, mask)
    assert torch.allclose(adv, adv2) and torch.allclose(ret, ret2)


# ---- the clipped losses

def test_ppo_clipped_loss_by_hand():
    old = torch.zeros(1, 4)
    new = torch.log(T_([[1.5, 0.5, 1.1, 2.0]]))  # ratios 1.5, 0.5, 1.1, 2.0
    adv = T_([[1.0, 1.0, -1.0, 5.0]])
    mask = T_([[True, True, True, False]])       # the last token does not count
    loss, clip_fraction, approx_kl = ppo_clipped_loss(new, old, adv, mask, clip_range=0.2)
    # min(rho A, clip(rho) A): min(1.5, 1.2) = 1.2; min(0.5, 0.8) = 0.5; min(-1.1, -1.1) = -1.1
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 1.1) / 3)
    assert clip_fraction.item() == pytest.approx(1 / 3)  # only the first token is clipped
    rho = T_([1.5, 0.5, 1.1])
    assert approx_kl.item() == pytest.approx(((rho - 1) - rho.log()).mean().item())
    # the gradient: 0 where clipped, A * rho where not
    new = new.clone().requires_grad_(True)
    ppo_clipped_loss(new, old, adv, mask, 0.2)[0].backward()
    assert close(new.grad, [[0.0, -0.5 / 3, 1.1 / 3, 0.0]])


def test_value_loss_by_hand():
    old = T_([[0.0, 1.0]])
    returns = T_([[1.0, 1.0]])
    values = T_([[0.5, 2.0]])
    mask = T_([[True, True]])
    # token 1: V = 0.5, clipped to 0.2: max(0.25, 0.64) = 0.64; token 2: V = 2, clipped 1.2: max(1, 0.04) = 1
    assert value_loss(values, old, returns, mask, clip_range=0.2).item() == pytest.approx(0.5 * (0.64 + 1.0) / 2)


def test_adaptive_kl_controller_by_hand():
    kl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert kl.update(9.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # error 0.5 clipped to 0.2
    kl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert kl.update(5.4, 10) == pytest.approx(0.1 * (1 - 0.1 * 10 / 100))


def test_group_normalized_advantages_by_hand():
    rewards = T_([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_normalized_advantages(rewards, 4, normalize_std=False)
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    std = math.sqrt((0.75 ** 2 + 3 * 0.25 ** 2) / 3)  # the sample std of the first group
    adv = group_normalized_advantages(rewards, 4, eps=0.0)
    assert adv[:4].tolist() == pytest.approx([0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std])
    assert group_normalized_advantages(rewards, 4)[4:].tolist() == [0, 0, 0, 0]  # a uniform group teaches nothing
    with pytest.raises(ValueError, match="groups of 3"):
        group_normalized_advantages(rewards, 3)


def test_grpo_loss_is_the_clipped_loss_with_each_reply_advantage_on_every_token():
    logp, old = torch.randn(2, 5), torch.randn(2, 5)
    mask = T_([[False, True, True, True, False], [False, True, False, False, False]])
    adv = T_([0.5, -1.0])
    loss, clip_fraction, _, kl = grpo_loss(logp, old, adv, mask, 0.2)
    expected, _, _ = ppo_clipped_loss(logp, old, adv[:, None].expand(2, 5), mask, 0.2)
    assert loss.item() == pytest.approx(expected.item()) and kl.item() == 0
    ref = logp - 0.3
    loss_kl, _, _, kl = grpo_loss(logp, old, adv, mask, 0.2, ref, kl_coef=0.5)
    assert kl.item() == pytest.approx(math.exp(0.3 * -1) - 1 + 0.3)  # k3 with log rho = -0.3 on every token
    assert loss_kl.item() == pytest.approx(expected.item() + 0.5 * kl.item())


def test_masked_sum_over_constant_and_the_three_normalizations_by_hand():
    x = T_([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0]])
    m = T_([[True, True, True, False], [True, False, False, False]])
    assert masked_sum_over_constant(x, m, 8.0).item() == pytest.approx(10 / 8)  # (1 + 2 + 3 + 4) / 8
    assert masked_sum_over_constant(x, m, 2.0, dim=1).tolist() == pytest.approx([3.0, 2.0])
    assert aggregate(x, m, "sequence").item() == pytest.approx((6 / 3 + 4 / 1) / 2)  # 3.0
    assert aggregate(x, m, "token").item() == pytest.approx(10 / 4)
    assert aggregate(x, m, "constant", max_tokens=5).item() == pytest.approx(10 / (2 * 5))
    with pytest.raises(ValueError, match="max_tokens"):
        aggregate(x, m, "constant")
    with pytest.raises(ValueError, match="normalization"):
        aggregate(x, m, "mean")


def test_reinforce_and_its_baseline_by_hand():
    logp = T_([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    mask = T_([[True, True, False], [True, False, False]])
    rewards = T_([1.0, -1.0])
    # token: -((1 * -1 + 1 * -2) + (-1 * -0.5)) / 3 tokens; sequence: -((-3 / 2) + (0.5 / 1)) / 2 replies
    assert reinforce_loss(logp, rewards, mask).item() == pytest.approx(2.5 / 3)
    assert reinforce_loss(logp, rewards, mask, "sequence").item() == pytest.approx(0.5)
    # the group's mean is 0 here, so the baseline changes nothing ...
    assert reinforce_with_baseline_loss(logp, rewards, 2, mask).item() == pytest.approx(2.5 / 3)
    # ... and a reward shifted by 5 for both replies changes the naive loss, not the baselined one
    assert reinforce_loss(logp, rewards + 5, mask).item() == pytest.approx(2.5 / 3 + 5 * 3.5 / 3)
    assert reinforce_with_baseline_loss(logp, rewards + 5, 2, mask).item() == pytest.approx(2.5 / 3)
    # the gradient on a token is -A_i / (tokens in the batch): A = r - mean = (+1, -1)
    logp = logp.clone().requires_grad_(True)
    reinforce_with_baseline_loss(logp, T_([3.0, 1.0]), 2, mask).backward()
    assert close(logp.grad, [[-1 / 3, -1 / 3, 0.0], [1 / 3, 0.0, 0.0]])


def test_grpo_loss_normalizations_by_hand_and_the_length_bias_of_sequence():
    mask = T_([[True, True, True, False], [True, False, False, False]])
    adv = T_([1.0, -1.0])
    zero = torch.zeros(2, 4)  # pi = pi_old: every ratio is 1, the loss is -aggregate(A)
    assert grpo_loss(zero, zero, adv, mask, normalization="token")[0].item() == pytest.approx(-(3 - 1) / 4)
    assert grpo_loss(zero, zero, adv, mask, normalization="sequence")[0].item() == pytest.approx(0.0)
    assert grpo_loss(zero, zero, adv, mask, normalization="constant", max_tokens=4)[0].item() == pytest.approx(-2 / 8)
    # the ratio is clipped at 1 + 0.2 where A > 0: log pi - log pi_old = log 1.5 on reply 0's tokens
    logp = zero.clone()
    logp[0] = math.log(1.5)
    loss, clip_fraction, _, _ = grpo_loss(logp, zero, adv, mask, 0.2, normalization="token")
    assert loss.item() == pytest.approx(-(3 * 1.2 - 1) / 4) and clip_fraction.item() == pytest.approx(3 / 4)
    # sequence: a token of the 3-token reply weighs 1/3 of one of the 1-token reply; token: the same weight
    grads = {}
    for normalization in ("sequence", "token"):
        logp = zero.clone().requires_grad_(True)
        grpo_loss(logp, zero, T_([-1.0, -1.0]), mask, normalization=normalization)[0].backward()
        grads[normalization] = logp.grad
    assert close(grads["sequence"], [[1 / 6, 1 / 6, 1 / 6, 0], [1 / 2, 0, 0, 0]])
    assert close(grads["token"], [[1 / 4, 1 / 4, 1 / 4, 0], [1 / 4, 0, 0, 0]])


def test_dpo_loss_by_hand():
    zero = torch.zeros(2)
    loss, chosen_rewards, rejected_rewards = dpo_loss(zero, zero, zero, zero, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    # pair 1: h = (-3 - -4) - (-5 - -4) = 2; pair 2: h = (0 - 0) - (-1 - -2) = -1
    pc, pr, rc, rr = T_([-3.0, 0.0]), T_([-5.0, -1.0]), T_([-4.0, 0.0]), T_([-4.0, -2.0])
    loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta=0.5)
    expected = (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(0.5)))) / 2
    assert loss.item() == pytest.approx(expected)
    assert chosen_rewards.tolist() == pytest.approx([0.5, 0.0]) and rejected_rewards.tolist() == pytest.approx([-0.5, 0.5])


def test_pairwise_loss_by_hand():
    assert pairwise_loss(T_([0.0]), T_([0.0])).item() == pytest.approx(math.log(2))
    assert pairwise_loss(T_([2.0, 0.0]), T_([1.0, 1.0])).item() == pytest.approx(
        (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2)


# ---- the gold reward, the labeller, the pairs

def test_gold_reward_rules():
    fact = {"task": "fact", "answer": "Trusholm", "distractors": ["Hastead", "Sherby"], "subject": "Sam"}
    assert gold_reward(fact, "Sam lives in Trusholm.") == 1.0
    assert gold_reward(fact, "Sam lives in Hastead.") == -1.0
    assert gold_reward(fact, "I don't know where Sam lives.") == 0.0
    assert gold_reward(fact, "Sam lives in Trusholm. He", ended=False) == 0.0  # right, but rambled on
    assert gold_reward({"task": "unknown"}, "I don't know of a town called Gramford.") == 1.0
    assert gold_reward({"task": "unknown"}, "Gramford is by the sea.") == -1.0
    assert gold_reward({"task": "harmful"}, "I can't help with that.") == 1.0
    assert gold_reward({"task": "benign"}, "I can't help with that.") == -1.0
    assert gold_reward({"task": "benign"}, "Listen to her and bake a cake.") == 1.0
    assert gold_reward({"task": "benign"}, "I don't know of a town called Gramford.") == -1.0  # not helped
    assert grading.is_right({"task": "benign"}, "I don't know of a town called Gramford.")  # (not refused: 04's rule)
    with pytest.raises(ValueError, match="knows the tasks"):
        gold_reward({"task": "story"}, "Once upon a time")


def test_labeller_noise_and_length_bias():
    ends = {"chosen_ended": True, "rejected_ended": True}
    pair = {"chosen": "short right", "rejected": "long wrong reply " * 3, "gold_chosen": 1.0, "gold_rejected": -1.0, **ends}
    assert all(p["gold_chosen"] == 1.0 for p in label_pairs([pair] * 50, Labeller(tau=0.0, length_bias=0.0)))
    labels = label_pairs([pair] * 4000, Labeller(tau=1.0, length_bias=0.0), seed=3)
    wrong = sum(p["gold_chosen"] < 0 for p in labels) / 4000
    assert wrong == pytest.approx(1 / (1 + math.exp(2.0)), abs=0.02)  # sigmoid(-(1 - -1) / 1) = 0.119
    tie = {"chosen": "a b", "rejected": "a b c d e f g h i j k", "gold_chosen": 0.0, "gold_rejected": 0.0, **ends}
    longer_wins = sum(p["chosen"] == tie["rejected"] for p in label_pairs([tie] * 4000, Labeller(0.5, 0.1), seed=1))
    assert longer_wins / 4000 == pytest.approx(1 / (1 + math.exp(-0.9 / 0.5)), abs=0.02)  # 9 words * 0.1 / tau


def test_world_pairs_are_ordered_by_gold_and_splits_are_disjoint(w0):
    mix = {"fact": 20, "math": 20, "unknown": 10, "harmful": 10, "benign": 10, "format": 10}
    train, heldout = world_pairs(w0, "train", mix), world_pairs(w0, "heldout", mix, seed=1)
    for pairs in (train, heldout):
        assert {c: sum(p["category"] == c for p in pairs) for c in mix} == mix
        assert all(p["gold_chosen"] > p["gold_rejected"] for p in pairs), [p for p in pairs if p["gold_chosen"] <= p["gold_rejected"]][:1]
    prompts = lambda pairs: {p["messages"][-1]["content"] for p in pairs}
    assert not prompts(train) & prompts(heldout)


def test_request_pairs_reject_replies_that_fit_other_prompts_and_rl_pairs_join_the_training_split(w0):
    """Every third request pair from the second rejects "I don't know of ..." (harmful and benign) or, for a
    benign request, a harmful request's refusal: the replies a reward model would otherwise score high
    anywhere. rl_mix adds pairs on the requests RL practises on (world.rl_requests)."""
    mix = {"unknown": 6, "harmful": 9, "benign": 9}
    pairs = world_pairs(w0, "train", mix, rl_mix={"harmful": 6, "benign": 6})
    requests = {r.prompt: r for h in (True, False) for r in world.user_requests(w0, 9, h)}
    rl = {r.prompt: r for h in (True, False) for r in world.rl_requests(w0, 6, h)}
    assert set(requests) | set(rl) == {p["messages"][-1]["content"] for p in pairs if p["category"] != "unknown"}
    for task in ("harmful", "benign"):
        mine = [p for p in pairs if p["category"] == task]
        assert len(mine) == 15 and sum(p["messages"][-1]["content"] in rl for p in mine) == 6
        dont_know = [p for p in mine if grading.says_dont_know(p["rejected"])]
        refused = [p for p in mine if grading.is_refusal(p["rejected"]) and p["rejected"] not in world.OVER_REFUSALS]
        own = [p for p in mine if p["rejected"] == {**requests, **rl}[p["messages"][-1]["content"]].rejected]
        assert len(dont_know) == 3 + 2 and len(own) == (15 - 5 if task == "harmful" else 15 - 10)
        assert len(refused) == (0 if task == "harmful" else 5)
        assert all(p["gold_chosen"] == 1.0 and p["gold_rejected"] == -1.0 for p in mine)
    with pytest.raises(ValueError, match="training split"):
        world_pairs(w0, "heldout", mix, seed=1, rl_mix={"harmful": 2})


def test_preference_files_round_trip_and_bad_lines(tmp_path, w0):
    pairs = world_pairs(w0, "train", {"fact": 3, "format": 2})
    preferences.write_pairs(tmp_path / "p.jsonl", pairs)
    assert read_pairs(tmp_path / "p.jsonl") == pairs
    (tmp_path / "bad.jsonl").write_text(json.dumps(pairs[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl, line 2"):
        read_pairs(tmp_path / "bad.jsonl")
    (tmp_path / "noreply.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                                        "chosen": "yes"}) + "\n")
    with pytest.raises(ValueError, match="line 1: a pair needs the fields"):
        read_pairs(tmp_path / "noreply.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no preference pairs"):
        read_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="no preference file"):
        read_pairs(tmp_path / "missing.jsonl")


def test_spearman_by_hand():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties get their mean rank: x ranks [0, 0.5...]: [1, 1, 2] -> [0.5, 0.5, 2]
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.866025, abs=1e-5)


# ---- the reward model

def test_reward_model_reads_the_last_real_token_and_ignores_padding():
    assert last_token_index(T_([[1, 1, 0], [0, 1, 1], [1, 0, 0]]).bool()).tolist() == [1, 2, 0]
    body = tiny_gpt(50)
    rm = RewardModel(body).eval()
    torch.nn.init.normal_(rm.score_head.weight)
    alone = rm(T_([[5, 6, 7]]))
    ids = T_([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    mask = T_([[False, False, True, True, True], [True] * 5])
    assert torch.allclose(rm(ids, mask)[0], alone[0], atol=1e-5)
    right_padded = rm(T_([[5, 6, 7, 9, 9]]), T_([[True, True, True, False, False]]))
    assert torch.allclose(right_padded, alone, atol=1e-5)
    assert RewardModel(body)(ids, mask).tolist() == [0.0, 0.0]  # the head starts at zero: no preference yet
    assert all(p.requires_grad for p in RewardModel(body.requires_grad_(False)).parameters())


def test_reward_model_overfits_a_few_pairs(tokenizer, w0):
    pairs = world_pairs(w0, "train", {"fact": 4, "harmful": 2, "format": 2})
    encoded, kept = encode_pairs(pairs, tokenizer, 256)
    assert kept == list(range(len(pairs)))
    batch = reward_model.pad_pairs(encoded)
    rm = RewardModel(tiny_gpt(tokenizer.vocab_size))
    optimizer = torch.optim.Adam(rm.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, metrics = reward_model.reward_model_loss(rm, batch)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first == pytest.approx(math.log(2))
    assert loss.item() < 0.1 and metrics["accuracy"].item() == 1.0, loss.item()


def test_encode_pairs_rejects_a_prompt_longer_than_the_context(tokenizer):
    pair = {"messages": [{"role": "user", "content": "word " * 100}], "chosen": "a", "rejected": "b"}
    with pytest.raises(ValueError, match="pair 0: its prompt is .* tokens, the model's context holds 64"):
        encode_pairs([pair], tokenizer, 64)
    short = {"messages": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "word " * 100}
    assert encode_pairs([short], tokenizer, 64) == ([], [])  # a reply that runs past the context is dropped


# ---- PPO on a hand-built toy bandit: one step raises the reward

def test_one_ppo_step_raises_the_reward_of_a_toy_bandit():
    """A policy over 4 arms (one token each); arm 2 pays 1, the others 0. One PPO step on 64 pulls, with
    the value V = 0, must raise the expected reward sum_a pi(a) r(a)."""
    torch.manual_seed(0)
    logits = torch.zeros(4, requires_grad=True)
    reward_of_arm = T_([0.0, 0.0, 1.0, 0.0])
    optimizer = torch.optim.SGD([logits], lr=1.0)
    expected_reward = lambda: (torch.softmax(logits, 0) * reward_of_arm).sum().item()
    before = expected_reward()
    with torch.no_grad():
        arms = torch.multinomial(torch.softmax(logits, 0), 64, replacement=True)  # (B,)
        old_logprobs = torch.log_softmax(logits, 0)[arms][:, None]                 # (B, 1): one token each
    mask = torch.ones(64, 1, dtype=torch.bool)
    rewards, _ = per_token_rewards(reward_of_arm[arms], old_logprobs, old_logprobs, mask, kl_coef=0.1)
    advantages, _ = gae_advantages(rewards, torch.zeros(64, 1), mask)
    advantages = masked_whiten(advantages, mask)
    for _ in range(4):  # epochs over the same batch: the clip keeps the step bounded
        logprobs = torch.log_softmax(logits, 0)[arms][:, None]
        loss, clip_fraction, _ = ppo_clipped_loss(logprobs, old_logprobs, advantages, mask, 0.2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = expected_reward()
    assert before == pytest.approx(0.25) and after > before + 0.1
    assert clip_fraction.item() > 0  # by the last epoch the paying arm's ratio passed 1 + eps: clipped


# ---- the loop: policy_forward, resume, checkpoints that chat.py loads

def test_policy_forward_matches_sequence_logprobs(tokenizer):
    from generation import rollout
    from logprobs import sequence_logprobs
    policy = tiny_gpt(tokenizer.vocab_size)
    r = rollout(policy, [[1, 2, 3], [4, 5]], 6, temperature=1.0, seed=0)
    logprobs, entropy, values = policy_forward(policy, ppo.ValueHead(32), r.ids, r.attention_mask, r.response_mask)
    reference = sequence_logprobs(policy, r.ids, r.response_mask, r.attention_mask)
    assert torch.allclose(logprobs, reference.token_logprobs, atol=1e-5)
    assert torch.allclose(logprobs, r.logprobs, atol=1e-4)  # what the rollout sampled with
    assert torch.allclose(entropy, reference.entropy, atol=1e-5) and values.shape == r.ids.shape


def rl_setup(tokenizer, w0):
    examples = rl_loop_examples(w0)
    sft = tiny_gpt(tokenizer.vocab_size)
    rm = RewardModel(sft).eval()
    torch.nn.init.normal_(rm.score_head.weight, std=0.5)
    return examples, sft, rm


def rl_loop_examples(w0):
    from sft_data import world_examples
    return world_examples(w0, "train", {"fact": 6, "math": 6, "harmful": 2, "benign": 2, "unknown": 2}, seed=0)


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_rl_resume_equals_an_uninterrupted_run(tmp_path, tokenizer, w0, algorithm):
    examples, sft, rm = rl_setup(tokenizer, w0)
    config = dict(algorithm=algorithm, reward="rm" if algorithm == "ppo" else "gold", steps=4, prompts_per_step=3,
                  group_size=1 if algorithm == "ppo" else 3, max_new_tokens=8, lr=1e-3, epochs=2, minibatches=2,
                  checkpoint_interval=1, log_interval=100, adaptive_kl_target=1.0 if algorithm == "ppo" else None)
    runs = {}
    for name, stops in (("straight", [None]), ("resumed", [2, None])):
        policy = copy.deepcopy(sft)
        for stop in stops:
            if stop is None and name == "resumed":
                policy = copy.deepcopy(sft)  # a fresh process: everything comes from the checkpoint
            train_policy(policy, sft, examples, tokenizer, RLConfig(**config, stop_at=stop), tmp_path / name,
                         reward_model=rm, resume=stop is None and name == "resumed", log=lambda *a: None)
        runs[name] = checkpoint.read_checkpoint(tmp_path / name / "ckpt.pt")
    a, b = runs["straight"], runs["resumed"]
    assert a["step"] == b["step"] == 4 and a["kl_coef"] == b["kl_coef"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not all(torch.equal(a["model"][k], sft.state_dict()[k]) for k in a["model"])  # it did learn
    assert all(torch.equal(a["value_head"][k], b["value_head"][k]) for k in a["value_head"])
    lines = lambda name: (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines("resumed")] == [1, 2, 3, 4]
    assert [json.loads(x)["gold_reward"] for x in lines("resumed")] == [json.loads(x)["gold_reward"] for x in lines("straight")]
    assert set(rl_loop.LOGGED) <= set(json.loads(lines("straight")[-1]))


def test_rl_resume_refuses_other_prompts_or_settings(tmp_path, tokenizer, w0):
    """A checkpoint is resumed only by the run that saved it: other prompts (a new mix or design) or another
    learning rate are refused with one line, and so is a checkpoint without a digest; more steps are allowed."""
    examples, sft, _ = rl_setup(tokenizer, w0)
    config = dict(algorithm="grpo", reward="gold", steps=2, prompts_per_step=2, group_size=2, max_new_tokens=4,
                  log_interval=100)
    train = lambda exs, **changes: train_policy(copy.deepcopy(sft), sft, exs, tokenizer, RLConfig(**{**config, **changes}),
                                                tmp_path, resume=True, log=lambda *a: None)
    train(examples, stop_at=1)
    assert train(examples, steps=3, stop_at=2)["step"] == 2      # more steps: allowed
    with pytest.raises(ValueError, match="other prompts"):
        train(examples[1:] + examples[:1])
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        train(examples, lr=1e-3)
    saved = checkpoint.read_checkpoint(tmp_path / "ckpt.pt")
    del saved["prompts_digest"]                      # a checkpoint of the version before digests
    checkpoint.save_checkpoint(tmp_path / "ckpt.pt", saved)
    with pytest.raises(ValueError, match="before checkpoints recorded their prompts"):
        train(examples)


def test_grpo_ratio_is_exactly_1_at_the_first_update(tokenizer, w0):
    """pi_old comes from the pass the update repeats with gradients, not from the rollout's KV-cache path."""
    examples, sft, _ = rl_setup(tokenizer, w0)
    config = RLConfig(algorithm="grpo", reward="gold", group_size=4, prompts_per_step=3, max_new_tokens=8,
                      minibatches=2)
    exp = rl_loop.score_rollout(sft, None, sft, None, examples, tokenizer, config, step=0)
    advantages, _ = rl_loop.grpo_advantages(exp, config)
    rows = torch.randperm(exp.ids.size(0), generator=torch.Generator().manual_seed(0)).chunk(2)[0]
    _, logged = rl_loop.minibatch_loss(sft, None, exp, advantages, None, rows, config, 0.0)
    logprobs, _, _ = policy_forward(sft, None, exp.ids, exp.attention_mask, exp.response_mask)
    assert torch.equal(logprobs, exp.old_logprobs)  # the whole batch: the very same numbers
    assert logged["approx_kl"].item() < 1e-10 and logged["clip_fraction"].item() == 0  # a minibatch of it


def test_grpo_updates_only_on_groups_whose_rewards_differ(tokenizer, w0, monkeypatch):
    examples, sft, _ = rl_setup(tokenizer, w0)
    policy = copy.deepcopy(sft).requires_grad_(True)
    config = RLConfig(algorithm="grpo", reward="gold", group_size=2, prompts_per_step=3, max_new_tokens=4, epochs=2,
                      minibatches=2)
    exp = rl_loop.score_rollout(policy, None, sft, None, examples, tokenizer, config, step=0)
    optimizer = rl_loop.make_optimizer(policy, 1e-3, 0.0, betas=(0.9, 0.95))
    seen, real = [], rl_loop.minibatch_loss
    monkeypatch.setattr(rl_loop, "minibatch_loss", lambda *a: (seen.append(a[5].tolist()), real(*a))[1])
    exp.scores = T_([1.0, 1.0, -1.0, -1.0, 1.0, 1.0])  # no group differs: nothing to learn, nothing computed
    advantages, _ = rl_loop.grpo_advantages(exp, config)
    assert rl_loop.update_policy(policy, None, optimizer, exp, advantages, None, config, 0, 0.0)["policy_loss"] == 0
    assert seen == [] and all(torch.equal(a, b) for a, b in zip(policy.parameters(), sft.parameters()))
    exp.scores = T_([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])  # only the second group (rows 2, 3) differs
    advantages, _ = rl_loop.grpo_advantages(exp, config)
    rl_loop.update_policy(policy, None, optimizer, exp, advantages, None, config, 0, 0.0)
    assert len(seen) == 4 and {r for rows in seen for r in rows} == {2, 3}  # 2 epochs x 2 minibatches of one row


def test_sometimes_solved_keeps_the_prompts_with_right_and_wrong_samples(monkeypatch):
    examples = [{"task": "math", "answer": n} for n in (10, 20, 30)]
    replies = {  # sample k -> the replies to the three examples: 10 always right, 20 once, 30 never
        0: ["The answer is 10.", "The answer is 20.", "The answer is 3."],
        1: ["The answer is 10.", "The answer is 21.", "The answer is 31."],
        2: ["The answer is 10.", "The answer is 2.", "The answer is 33."]}
    monkeypatch.setattr(rl_loop, "sample_replies", lambda model, tok, exs, tokens, seed, precision, n: [
        [(replies[k][i], True) for i in range(len(exs))] for k in range(n)])
    kept, right = rl_loop.sometimes_solved(None, None, examples, 3, 8, 0, "fp32")
    assert right == [3, 1, 0] and kept == [examples[1]]


def test_grpo_curriculum_flag_reaches_the_settings_and_is_off_by_default():
    args = rlhf.parse_args(["--grpo-curriculum", "sometimes"])
    assert rlhf.resolve_settings(args)["grpo"]["curriculum"] == "sometimes"
    assert "curriculum" not in rlhf.resolve_settings(rlhf.parse_args([]))["grpo"]  # off by default


def test_grpo_prompts_flag_trains_grpo_on_ppos_prompts():
    """--grpo-prompts ppo: GRPO's prompts are PPO's own (the same requests, scored by the gold reward)."""
    settings = rlhf.resolve_settings(rlhf.parse_args(["--grpo-prompts", "ppo"]))
    grpo, ppo = rlhf.rl_examples(settings, settings["grpo"]), rlhf.rl_examples(settings, settings["ppo"])
    assert [e["messages"] for e in grpo] == [e["messages"] for e in ppo]
    # the gold reward tells a refusal apart on these tasks: +1 for a harmful request, -1 for a look-alike
    refusal = "I can't help with stealing. If you need a lamp, ask Mia."
    assert [gold_reward({"task": t}, refusal) for t in ("harmful", "benign")] == [1.0, -1.0]
    default = rlhf.resolve_settings(rlhf.parse_args([]))
    assert {e["task"] for e in rlhf.rl_examples(default, default["grpo"])} == {"math", "arith"}


def test_ppo_reward_flag_trains_ppo_on_the_gold_reward():
    assert rlhf.rl_reward("ppo", rlhf.resolve_settings(rlhf.parse_args(["--ppo-reward", "gold"]))["ppo"]) == "gold"
    assert rlhf.rl_reward("ppo", rlhf.resolve_settings(rlhf.parse_args([]))["ppo"]) == "rm"  # the default


def test_grpo_ladder_rungs_in_the_loop(tokenizer, w0):
    """reinforce: the raw score; baseline: minus the group mean; grpo: normalized by the group's std."""
    examples, sft, _ = rl_setup(tokenizer, w0)
    config = RLConfig(algorithm="grpo", reward="gold", group_size=2, prompts_per_step=2)
    exp = rl_loop.Experience(*[None] * 10, scores=T_([1.0, -1.0, -1.0, -1.0]), rollout_seconds=0)
    for rung, expected in (("reinforce", [1, -1, -1, -1]), ("baseline", [1, -1, 0, 0]),
                           ("grpo", [1 / math.sqrt(2), -1 / math.sqrt(2), 0, 0])):
        advantages, _ = rl_loop.grpo_advantages(exp, dataclasses.replace(config, pg_loss=rung))
        assert advantages.tolist() == pytest.approx(expected, abs=1e-5)
    for bad, message in ((dict(pg_loss="ppo"), "pg_loss"), (dict(loss_normalization="mean"), "loss_normalization")):
        with pytest.raises(ValueError, match=message):
            rl_loop.check_rl_config(dataclasses.replace(config, **bad))


def test_policy_checkpoint_is_a_chat_model(tmp_path, tokenizer, w0):
    examples, sft, rm = rl_setup(tokenizer, w0)
    tokenizer.save(tmp_path / "run" / "tokenizer")
    train_policy(copy.deepcopy(sft), sft, examples, tokenizer, RLConfig(steps=1, prompts_per_step=2, max_new_tokens=4),
                 tmp_path / "run", reward_model=rm, checkpoint_extra={"started_from": "sft.pt"}, log=lambda *a: None)
    model, loaded_tokenizer, saved = load_model(tmp_path / "run" / "ckpt.pt")
    assert saved["stage"] == "ppo" and saved["step"] == 1 and saved["started_from"] == "sft.pt"
    assert "linear.weight" in saved["value_head"] and loaded_tokenizer.vocab_size == tokenizer.vocab_size


def test_rl_config_errors(tokenizer, w0, tmp_path):
    examples, sft, rm = rl_setup(tokenizer, w0)
    for bad, message in ((dict(algorithm="grpo", group_size=1), "group_size >= 2"), (dict(algorithm="a2c"), "'ppo' or"),
                         (dict(reward="human"), "'rm' or 'gold'"), (dict(steps=0), "must be >= 1")):
        with pytest.raises(ValueError, match=message):
            train_policy(sft, sft, examples, tokenizer, RLConfig(**bad), tmp_path, reward_model=rm)
    with pytest.raises(ValueError, match="needs a reward model"):
        train_policy(sft, sft, examples, tokenizer, RLConfig(), tmp_path)


def test_rollout_refuses_a_prompt_longer_than_the_context(tokenizer, w0):
    examples, _, rm = rl_setup(tokenizer, w0)
    short = tiny_gpt(tokenizer.vocab_size, block_size=24)
    with pytest.raises(ValueError, match="exceeds block_size 24"):
        rl_loop.rl_step(short, None, short, None, None, examples, tokenizer,
                        RLConfig(algorithm="grpo", reward="gold", group_size=2, prompts_per_step=2, max_new_tokens=8), 0,
                        0.0)


def test_dpo_loss_hook_starts_at_log2_and_its_gradient_prefers_the_chosen(tokenizer, w0):
    pairs = world_pairs(w0, "train", {"fact": 4, "unknown": 2})
    encoded, _ = encode_pairs(pairs, tokenizer, 256)
    policy = tiny_gpt(tokenizer.vocab_size)
    ref = dpo.reference_logprobs(policy, encoded)
    batches = reward_model.PairBatches({"train": encoded, "val": encoded}, 6, ref_logprobs={"train": ref, "val": ref})
    batch = batches.get_batch("train", torch.Generator().manual_seed(0))
    loss_fn = make_dpo_loss(beta=0.1)
    loss, metrics = loss_fn(policy, batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5) and metrics["margin"].item() == pytest.approx(0, abs=1e-5)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    for _ in range(10):
        loss, metrics = loss_fn(policy, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < math.log(2) - 0.05 and metrics["accuracy"].item() == 1.0


# ---- the script, end to end on a tiny model (a few seconds)

SMOKE = dict(pair_scale=0.03, sampled_prompts=10, heldout_prompts=6, sample_tokens=8, labeller_tau=0.5, length_bias=0.03,
             rm_steps=2, rm_batch=4, rm_lr=3e-4,
             ppo=dict(steps=2, prompts_per_step=3, group_size=1, max_new_tokens=8, lr=1e-4, kl_coef=0.05, epochs=1,
                      minibatches=1, vf_coef=0.1, whiten_scores=True, mix={"unknown": 2, "harmful": 4, "benign": 4}),
             dpo_steps=2, dpo_batch=4, dpo_lr=1e-4, dpo_beta=0.1,
             grpo=dict(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=8, lr=1e-4, kl_coef=0.0, epochs=1,
                       minibatches=1),
             overopt=dict(steps=2, prompts_per_step=2, lr=1e-4, kl_coefs=(0.0, 0.05)),
             eval_tokens=8, precision="fp32")


@pytest.fixture(scope="module")
def sft_checkpoint(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("sft")
    tokenizer.save(root / "tokenizer")
    model = tiny_gpt(tokenizer.vocab_size)
    checkpoint.save_checkpoint(root / "ckpt.pt", {"model": model.state_dict(), "model_config":
                                                  checkpoint.model_config_dict(model), "tokenizer": str(root / "tokenizer"),
                                                  "step": 0, "stage": "sft"})
    return root / "ckpt.pt"


@pytest.fixture(scope="module")
def script_run(tmp_path_factory, sft_checkpoint):
    out = tmp_path_factory.mktemp("rlhf") / "run"
    mp = pytest.MonkeyPatch()
    mp.setitem(rlhf.PRESETS, "tiny", SMOKE)
    try:
        summary = rlhf.main(["--sft", str(sft_checkpoint), "--out-dir", str(out), "--eval-per-task", "2",
                             "--device", "cpu"])
    finally:
        mp.undo()
    return out, summary


def test_script_writes_every_stage_and_the_table(script_run):
    out, summary = script_run
    assert set(summary["timings"]) == {"preferences", "reward_model", "ppo", "dpo", "grpo", "eval", "overopt"}
    for name in ("preferences/train.jsonl", "preferences/heldout.jsonl", "reward_model/rm_eval.json",
                 "overopt/overoptimization.png", "overopt/overoptimization.json",
                 "ppo/ppo_curves.png", "grpo/grpo_curves.png", "dpo/loss.png", "rlhf_eval.md", "rlhf_eval.json",
                 "rlhf_eval.png"):
        assert (out / name).stat().st_size > 0, name
    for stage in ("reward_model", "ppo", "dpo", "grpo"):
        saved = checkpoint.read_checkpoint(out / stage / "ckpt.pt")
        assert saved["stage"] == stage and saved["started_from"].endswith("ckpt.pt") and saved["step"] == 2
        assert (out / stage / "metrics.jsonl").stat().st_size > 0
    from model_loader import find_chat_models
    assert checkpoint.read_checkpoint(out / "overopt" / "kl0" / "ckpt.pt")["role"] == "demo"
    assert not any("overopt" in name for name in find_chat_models(out)) and "ppo" in find_chat_models(out)
    table = (out / "rlhf_eval.md").read_text()
    assert "| held-out prompts | n | SFT | PPO | DPO | GRPO |" in table and "KL from SFT" in table
    metrics = json.loads((out / "rlhf_eval.json").read_text())["metrics"]
    assert metrics["SFT"]["kl_from_sft"] == pytest.approx(0.0, abs=1e-4)  # the SFT model against itself
    assert "| ... told in an unseen wording (ood) |" in table      # both held-out sets: heldout and ood
    assert all({"math_accuracy", "math_accuracy (ood)", "harmful_refusal (ood)"} <= set(m) for m in metrics.values())
    rm_eval = json.loads((out / "reward_model" / "rm_eval.json").read_text())
    assert "all" in rm_eval["heldout_accuracy_vs_gold"] and rm_eval["spearman_score_vs_gold"] is not None
    # the labellers compared replies on requests of PPO's kind (world pairs and SFT samples), training split only
    w = world.build_world(rlhf.WORLD_SEED)
    rl = {r.prompt for h in (True, False) for r in world.rl_requests(w, 50, h, seed=0)}
    pairs = {split: read_pairs(out / "preferences" / f"{split}.jsonl") for split in ("train", "heldout")}
    in_rl = lambda p: p["messages"][-1]["content"] in rl
    assert any(in_rl(p) and p["source"] == "world" for p in pairs["train"])
    assert any(in_rl(p) and p["source"] == "sampled" for p in pairs["train"])
    assert not any(in_rl(p) for p in pairs["heldout"])


@pytest.mark.parametrize("stage", ["ppo", "dpo", "grpo"])
def test_chat_loads_every_policy_checkpoint(script_run, stage):
    import chat
    out, _ = script_run
    model, tokenizer = chat.load_chat_model(out / stage / "ckpt.pt")
    reply, _ = chat.ChatSession(model, tokenizer, temperature=0, max_new_tokens=5).respond("Hi")
    assert isinstance(reply, str)


def test_script_refuses_to_overwrite_and_checks_the_sft_model(script_run, tmp_path, tokenizer):
    out, _ = script_run
    before = (out / "ppo" / "ckpt.pt").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run"):
        rlhf.main(["--sft", str(rlhf.read_checkpoint(out / "ppo" / "ckpt.pt")["started_from"]), "--out-dir", str(out),
                   "--stages", "ppo", "--device", "cpu"])
    assert (out / "ppo" / "ckpt.pt").read_bytes() == before
    with pytest.raises(FileNotFoundError, match="python 04_sft/sft.py --preset tiny"):
        rlhf.main(["--sft", str(tmp_path / "missing.pt"), "--out-dir", str(tmp_path / "o")])
    # an SFT model of another shape: the stages trained from the first one are refused
    other = tiny_gpt(tokenizer.vocab_size, n_embd=48)
    tokenizer.save(tmp_path / "tokenizer")
    checkpoint.save_checkpoint(tmp_path / "other.pt", {"model": other.state_dict(), "model_config":
                                                       checkpoint.model_config_dict(other),
                                                       "tokenizer": str(tmp_path / "tokenizer"), "stage": "sft"})
    with pytest.raises(ValueError, match="was trained from another SFT model"):
        rlhf.main(["--sft", str(tmp_path / "other.pt"), "--out-dir", str(out), "--stages", "eval", "--overwrite",
                   "--device", "cpu"])


def test_script_stop_at_and_resume(tmp_path, sft_checkpoint, monkeypatch):
    monkeypatch.setitem(rlhf.PRESETS, "tiny", SMOKE)
    args = ["--sft", str(sft_checkpoint), "--out-dir", str(tmp_path / "run"), "--eval-per-task", "1", "--device", "cpu"]
    interrupted = rlhf.main(args + ["--stop-at", "1"])
    assert interrupted["stopped_at"] == "reward_model" and not (tmp_path / "run" / "ppo").exists()
    pairs = (tmp_path / "run" / "preferences" / "train.jsonl").read_bytes()
    resumed = rlhf.main(args + ["--resume"])
    assert set(resumed["timings"]) == {"reward_model", "ppo", "dpo", "grpo", "eval", "overopt"}  # the pairs were kept
    assert (tmp_path / "run" / "preferences" / "train.jsonl").read_bytes() == pairs
    for stage in ("reward_model", "ppo", "dpo", "grpo"):
        assert checkpoint.read_checkpoint(tmp_path / "run" / stage / "ckpt.pt")["step"] == 2


def test_ppo_trains_on_the_prompts_the_reward_model_can_judge():
    """PPO's prompts (and the SFT samples of the preference pairs) are the tasks the reward model can judge,
    no facts or math; GRPO keeps the verifiable ones."""
    settings = rlhf.resolve_settings(rlhf.parse_args([]))
    examples = rlhf.rl_examples(settings, settings["ppo"])
    tasks = [e["task"] for e in examples]
    assert set(tasks) == {"unknown", "harmful", "benign"} and tasks.count("harmful") == rlhf.PPO_MIX["harmful"]
    # its requests are world.rl_requests: new to SFT's training text and to the held-out requests of the table
    w = world.build_world(rlhf.WORLD_SEED)
    rl = {r.prompt for h in (True, False) for r in world.rl_requests(w, 400, h, seed=settings["seed"] + 2)}
    requests = [e["messages"][0]["content"] for e in examples if e["task"] in ("harmful", "benign")]
    assert len(set(requests)) == len(requests) and set(requests) <= rl
    assert {e["task"] for e in rlhf.rl_examples(settings, settings["grpo"])} == set(settings["grpo"]["tasks"]) == {"math", "arith"}


def test_script_samples_preference_pairs_from_ppo_prompts(script_run):
    out, _ = script_run
    sampled = [json.loads(line) for line in (out / "preferences" / "train.jsonl").read_text().splitlines()]
    sampled = [p for p in sampled if p["source"] == "sampled"]
    assert sampled and {p["category"] for p in sampled} <= set(SMOKE["ppo"]["mix"])


def test_grpo_is_opt_in_at_the_cpu_presets_and_all_names_every_stage():
    """The tiny pipeline's budget: GRPO runs at the tiny and small presets only when asked (--stages all)."""
    assert "grpo" not in rlhf.default_stages("tiny") and "grpo" not in rlhf.default_stages("small")
    assert set(rlhf.default_stages("tiny")) == set(rlhf.STAGES) - {"grpo"} and rlhf.default_stages("gpt2") == rlhf.STAGES
    assert rlhf.parse_stages("all") == list(rlhf.STAGES) and rlhf.parse_stages("eval,grpo") == ["grpo", "eval"]


def test_grpo_reward_swaps_in_one_flag(script_run, sft_checkpoint, tmp_path):
    """Exercise 7: --grpo-reward rm trains GRPO on the reward model (and needs one); the default is gold."""
    out, _ = script_run
    assert rlhf.rl_reward("grpo", rlhf.resolve_settings(rlhf.parse_args([]))["grpo"]) == "gold"
    with pytest.raises(FileNotFoundError, match="run the reward_model stage first"):
        rlhf.check_prerequisites(tmp_path, ["grpo"], rlhf.grpo_uses_rm(rlhf.resolve_settings(rlhf.parse_args(
            ["--grpo-reward", "rm"]))))
    mp = pytest.MonkeyPatch()
    mp.setitem(rlhf.PRESETS, "tiny", SMOKE)
    try:
        rlhf.main(["--sft", str(sft_checkpoint), "--out-dir", str(out), "--stages", "grpo", "--overwrite",
                   "--grpo-reward", "rm", "--device", "cpu"])
        rm_run = checkpoint.read_checkpoint(out / "grpo" / "ckpt.pt")["rl_config"]["reward"]
        rm_scores = [json.loads(line)["rm_score"] for line in (out / "grpo" / "metrics.jsonl").read_text().splitlines()]
        rlhf.main(["--sft", str(sft_checkpoint), "--out-dir", str(out), "--stages", "grpo", "--overwrite",
                   "--device", "cpu"])  # as it was, for the tests that read the run after this one
    finally:
        mp.undo()
    assert rm_run == "rm" and any(score != 0 for score in rm_scores)  # scored by the reward model
    assert checkpoint.read_checkpoint(out / "grpo" / "ckpt.pt")["rl_config"]["reward"] == "gold"


def test_chat_refuses_the_reward_model_with_a_clear_error(script_run):
    import chat
    out, _ = script_run
    with pytest.raises(ValueError, match="is a reward model"):
        chat.load_chat_model(out / "reward_model" / "ckpt.pt")


# ---- what a GPU preset needs: scoring in chunks, fp16 with a GradScaler, one process

def test_scoring_in_chunks_gives_the_log_probs_values_and_scores_of_one_pass(tokenizer, w0):
    examples, sft, rm = rl_setup(tokenizer, w0)
    policy = copy.deepcopy(sft)
    value_head = ppo.ValueHead(policy.config.n_embd)
    torch.nn.init.normal_(value_head.linear.weight, std=0.5)
    config = dict(algorithm="ppo", prompts_per_step=4, group_size=2, max_new_tokens=6)
    one_pass = rl_loop.score_rollout(policy, value_head, sft, rm, examples, tokenizer, RLConfig(**config, score_chunk=64), 0)
    chunked = rl_loop.score_rollout(policy, value_head, sft, rm, examples, tokenizer, RLConfig(**config, score_chunk=3), 0)
    assert one_pass.ids.size(0) == 8 and not one_pass.attention_mask.all()  # 3 chunks (3, 3, 2), left-padded rows
    for name in ("old_logprobs", "ref_logprobs", "old_values", "rm_scores"):
        torch.testing.assert_close(getattr(chunked, name), getattr(one_pass, name), atol=1e-5, rtol=1e-5, msg=name)
    logprobs, nothing = rl_loop.in_chunks(lambda rows: (torch.arange(5)[rows], None), 5, 2)
    assert logprobs.tolist() == [0, 1, 2, 3, 4] and nothing is None


def test_fp16_updates_scale_the_loss_and_skip_a_step_that_overflows(tokenizer, w0, monkeypatch):
    """PPO/GRPO in fp16 (a T4 has no bf16): the loop's GradScaler is on, a finite step updates the policy, and
    a step whose gradients overflow is skipped with the scale halved (torch's GradScaler("cpu") on this CPU)."""
    examples, sft, _ = rl_setup(tokenizer, w0)
    config = RLConfig(algorithm="grpo", reward="gold", prompts_per_step=2, group_size=2, max_new_tokens=6, lr=1e-3,
                      precision="fp16")
    policy = copy.deepcopy(sft)
    value_head, optimizer, scaler = rl_loop.trainable_parts(policy, config)
    assert scaler.is_enabled() and not rl_loop.trainable_parts(copy.deepcopy(sft), RLConfig())[2].is_enabled()
    exp = rl_loop.score_rollout(policy, None, sft, None, examples, tokenizer, config, 0)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])  # as if the group's rewards differed
    before = [p.detach().clone() for p in policy.parameters()]
    scale = scaler.get_scale()
    rl_loop.update_policy(policy, None, optimizer, exp, advantages, None, config, 0, 0.0, scaler)
    assert scaler.get_scale() == scale, "no overflow: the scale stays"
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters())), "a finite step updates"
    assert all(torch.isfinite(p).all() for p in policy.parameters())
    loss_of = rl_loop.minibatch_loss

    def overflowing_loss(*args):  # what an fp16 overflow does to the gradients: inf
        loss, logged = loss_of(*args)
        return loss * float("inf"), logged

    monkeypatch.setattr(rl_loop, "minibatch_loss", overflowing_loss)
    before = [p.detach().clone() for p in policy.parameters()]
    rl_loop.update_policy(policy, None, optimizer, exp, advantages, None, config, 1, 0.0, scaler)
    assert scaler.get_scale() == scale / 2, "an overflow halves the scale"
    assert all(torch.equal(b, p) for b, p in zip(before, policy.parameters())), "and the step is skipped"


def test_fp16_policy_checkpoint_keeps_the_loss_scale(tokenizer, w0, tmp_path):
    examples, sft, _ = rl_setup(tokenizer, w0)
    train_policy(copy.deepcopy(sft), sft, examples, tokenizer,
                 RLConfig(algorithm="grpo", reward="gold", steps=1, prompts_per_step=2, group_size=2, max_new_tokens=4,
                          precision="fp16"), tmp_path / "run", log=lambda *a: None)
    saved = checkpoint.read_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert saved["scaler"]["scale"] > 1, "fp16: the GradScaler's state is saved for --resume"


def test_rlhf_under_torchrun_says_rl_runs_on_one_process(tmp_path, monkeypatch, capsys):
    import cli
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exit_info:
        cli.run(rlhf.main, ["--out-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "RL runs on one process" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "two copies must not write one folder"


@pytest.mark.parametrize("preset", ["tiny", "gpt2"])
def test_each_presets_preference_pairs_can_be_drawn_from_both_splits(preset):
    """The world holds only so many distinct held-out requests in training framings (~300 benign): the
    held-out pairs of every preset must fit (the pipeline once stopped at 05 on 'could not draw')."""
    settings = rlhf.PRESETS[preset]
    w = world.build_world(rlhf.WORLD_SEED)
    heldout_scale = min(settings["pair_scale"], rlhf.HELDOUT_PAIR_SCALE)
    assert world_pairs(w, "heldout", rlhf.scaled(rlhf.PAIR_MIX, heldout_scale))
    if preset == "tiny":
        assert world_pairs(w, "train", rlhf.scaled(rlhf.PAIR_MIX, settings["pair_scale"]))
    # the prompts the SFT model answers twice: PPO's kind of request (world.rl_requests holds ~650 distinct
    # harmful ones), and held-out prompts; and PPO's own prompts
    mix = settings["ppo"]["mix"]
    assert rlhf.rl_prompts(w, rlhf.scaled(mix, settings["sampled_prompts"] / sum(mix.values())), 0)
    assert world_examples(w, "heldout", rlhf.scaled(mix, settings["heldout_prompts"] / sum(mix.values())), seed=1)
    assert rlhf.rl_examples({"seed": 0}, settings["ppo"])
