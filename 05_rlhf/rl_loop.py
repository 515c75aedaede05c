"""The loop PPO and GRPO share: roll out, score, compute advantages, update; log, checkpoint, resume.

    summary = train_policy(policy, ref_model, examples, tokenizer, RLConfig(algorithm="ppo", ...),
                           reward_model=rm, out_dir="runs/05_rlhf/ppo")

One step:
    1. draw prompts_per_step training prompts (seeded by the step), each repeated group_size times
    2. rollout(): batched sampling with the KV cache, prompts of different lengths left-padded
    3. score every reply: the gold reward (always, for the logs) and the reward model's score (if given);
       config.reward says which one the policy is trained on
    4. one forward pass without gradients: the policy's log-probs (pi_old) and values, the reference's
       log-probs (the frozen SFT model)
    5. PPO: per-token rewards (KL penalty + score at the last token), GAE, whitened advantages;
       GRPO: group-normalized advantages of the replies, no value head
    6. epochs x minibatches of clipped-loss updates (our AdamW, gradient clipping)
Each step's numbers go to metrics.jsonl (see LOGGED); a checkpoint every checkpoint_interval steps and
at the end holds everything resuming needs (policy, value head, optimizer, the KL coefficient, step):
the prompts, the sampling seeds and the minibatch order depend only on (seed, step), so a resumed run
continues exactly as the uninterrupted one would.
"""
import dataclasses
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from chat_format import END, render_chat, reply_text  # noqa: E402  (chapter 04)
from checkpoint import model_config_dict, read_checkpoint, save_checkpoint  # noqa: E402  (chapter 03)
from generation import rollout  # noqa: E402  (chapter 02)
from hardware import autocast  # noqa: E402  (chapter 03)
from logprobs import logprobs_from_logits, sequence_logprobs  # noqa: E402  (chapter 02)
from optimizer import clip_grad_norm, make_optimizer  # noqa: E402  (chapter 03)
from train_log import append_record, keep_records_until  # noqa: E402  (chapter 03)

from grpo import NORMALIZATIONS, group_normalized_advantages, grpo_loss, reinforce_loss  # noqa: E402  (this chapter)
from ppo import (AdaptiveKLController, ValueHead, gae_advantages, kl_per_reply, masked_mean,  # noqa: E402
                 masked_whiten, per_token_rewards, ppo_clipped_loss, value_loss, whiten_and_clip_scores)
from preferences import gold_reward, task_score  # noqa: E402

# What every step logs (TRL's names in brackets), documented once here and in the lesson:
LOGGED = {
    "gold_reward": "mean gold reward of the sampled replies (what we really want; never trained on by PPO)",
    "rm_score": "mean reward-model score of the sampled replies [env/reward_mean]",
    "kl": "mean over replies of sum_t (log pi - log ref): the KL from the SFT model, in nats per reply [objective/kl]",
    "kl_coef": "beta, the KL coefficient (moves with the adaptive controller)",
    "entropy": "mean per-token entropy of the policy on its replies [objective/entropy]",
    "clip_fraction": "share of tokens where the clipped ratio was used [policy/clipfrac]",
    "approx_kl": "k3 estimate of KL(pi_old || pi) over the update: how far one step moved [policy/approxkl]",
    "policy_loss": "the clipped surrogate loss [loss/policy]",
    "value_loss": "the clipped value loss (PPO only) [loss/value]",
    "response_length": "mean reply length in tokens",
    "ended": "share of replies that ended their turn with <|end|>",
}


@dataclass
class RLConfig:
    """Settings of a PPO or GRPO run (saved in its checkpoint)."""
    algorithm: str = "ppo"         # "ppo" | "grpo"
    reward: str = "rm"             # what the policy is trained on: "rm" (the reward model) | "gold"
    steps: int = 40
    prompts_per_step: int = 32
    group_size: int = 1            # replies per prompt (GRPO: G >= 2)
    max_new_tokens: int = 48
    temperature: float = 1.0
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    epochs: int = 1                # passes over each rollout batch (DeepSpeed-Chat: 1 was the stable choice)
    minibatches: int = 1           # optimizer steps per pass
    clip_range: float = 0.2
    kl_coef: float = 0.05          # beta of the per-token KL penalty (PPO) or of the k3 loss term (GRPO)
    kl_estimator: str = "k1"       # "k1" | "k3"
    adaptive_kl_target: float | None = None   # a KL (nats per reply) for Ziegler's controller; None: fixed beta
    adaptive_kl_horizon: int = 10000
    whiten_scores: bool = False    # PPO: divide the scores by their std over the batch (before the KL term)
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.1
    value_clip: float = 0.2        # PPO: the value loss's clip range (TRL's cliprange_value)
    normalize_std: bool = True     # GRPO: divide by the group's std
    pg_loss: str = "grpo"          # GRPO's rung of the ladder: "reinforce" (raw score) | "baseline" (minus the group mean) | "grpo"
    loss_normalization: str = "token"  # GRPO: "sequence" (DeepSeekMath) | "token" (DAPO) | "constant" (Dr. GRPO)
    seed: int = 0
    checkpoint_interval: int = 20
    log_interval: int = 5
    precision: str = "fp32"        # fp16: the losses are scaled (a GradScaler), as in chapter 03's loop
    score_chunk: int = 32          # rows per pass when scoring a rollout (bounds the (rows, T, vocab) logits)
    stop_at: int | None = None     # stop after this step as if interrupted


def check_rl_config(config):
    """ValueError for settings the loop cannot run."""
    if config.algorithm not in ("ppo", "grpo"):
        raise ValueError(f"algorithm must be 'ppo' or 'grpo', got {config.algorithm!r}")
    if config.reward not in ("rm", "gold"):
        raise ValueError(f"reward must be 'rm' or 'gold', got {config.reward!r}")
    if config.pg_loss not in ("reinforce", "baseline", "grpo"):
        raise ValueError(f"pg_loss must be 'reinforce', 'baseline' or 'grpo', got {config.pg_loss!r}")
    if config.loss_normalization not in NORMALIZATIONS:
        raise ValueError(f"loss_normalization must be one of {NORMALIZATIONS}, got {config.loss_normalization!r}")
    if config.algorithm == "grpo" and config.group_size < 2:
        raise ValueError("GRPO needs group_size >= 2: its baseline is the mean of the group")
    if min(config.steps, config.prompts_per_step, config.group_size, config.max_new_tokens, config.epochs,
           config.minibatches, config.score_chunk) < 1:
        raise ValueError("steps, prompts_per_step, group_size, max_new_tokens, epochs, minibatches and score_chunk "
                         "must be >= 1")
    if config.minibatches > config.prompts_per_step * config.group_size:
        raise ValueError("more minibatches than replies per step")


def policy_forward(policy, value_head, ids, attention_mask, response_mask, temperature=1.0):
    """One pass of the policy over a rollout: (token_logprobs, entropy, values), each (B, T) aligned with
    ids (column t: the token ids[:, t] and the state before it; column 0 is 0). values is None without
    a value head. The value of the state before token t is read off the hidden state at t - 1, the same
    one whose logits predicted token t. Log-probs at the sampling temperature, as the rollout's."""
    hidden = policy.hidden(ids[:, :-1], attention_mask=attention_mask[:, :-1])  # (B, T-1, C)
    out = logprobs_from_logits(policy.lm_head(hidden), ids[:, 1:], response_mask[:, 1:], temperature)
    pad = lambda x: torch.cat([x.new_zeros(x.size(0), 1), x], dim=1)  # (B, T-1) -> (B, T)
    values = None if value_head is None else pad(value_head(hidden))
    return pad(out.token_logprobs), pad(out.entropy), values


def prompts_of_step(examples, config, step):
    """The examples of one step: prompts_per_step of them (a seeded draw), each repeated group_size times."""
    rng = random.Random(f"rl-prompts:{config.seed}:{step}")
    chosen = rng.sample(range(len(examples)), min(config.prompts_per_step, len(examples)))
    return [examples[i] for i in chosen for _ in range(config.group_size)]


def decode_replies(responses, tokenizer):
    """Sampled token lists -> [(text, ended)]: ended when the last token is <|end|> (not part of the text)."""
    end_id = tokenizer.special_tokens[END]
    out = []
    for tokens in responses:
        ended = bool(tokens) and tokens[-1] == end_id
        out.append((reply_text(tokenizer, tokens[:-1] if ended else tokens), ended))
    return out


@torch.no_grad()
def sample_replies(model, tokenizer, examples, max_new_tokens, seed, precision, n_samples=1, batch_size=256):
    """(For the preference pairs of rlhf.py, outside the loop.) n_samples replies per example at temperature 1 -> list (per sample) of lists of (text, ended)."""
    end_id = tokenizer.special_tokens[END]
    prompts = [render_chat(e["messages"][:-1], tokenizer, add_generation_prompt=True)[0] for e in examples]
    device = next(model.parameters()).device
    out = []
    for k in range(n_samples):
        replies = []
        for start in range(0, len(prompts), batch_size):
            with autocast(device.type, precision):
                r = rollout(model, prompts[start:start + batch_size], max_new_tokens, temperature=1.0,
                            stop_tokens=[end_id], seed=seed * 7919 + k * 104729 + start)
            replies += decode_replies(r.responses, tokenizer)
        out.append(replies)
    return out


def sometimes_solved(model, tokenizer, examples, n_samples, max_new_tokens, seed, precision):
    """The curriculum "problems the model solves sometimes": the examples whose n_samples sampled replies
    (temperature 1) hold at least one right answer and at least one wrong -> (kept examples, right counts).

    Where every reply of a group scores the same, GRPO's group-normalized advantage is 0 on every token: that
    prompt teaches nothing, and a step whose prompts are mostly such is a step of noise. DAPO drops those groups
    during training and samples more prompts (dynamic sampling); this drops them once, before training, with
    the SFT model as the judge of "sometimes": cheaper, and the same idea while the policy stays near SFT."""
    samples = sample_replies(model, tokenizer, examples, max_new_tokens, seed, precision, n_samples)
    right = [sum(task_score(example, replies[i][0]) > 0 for replies in samples) for i, example in enumerate(examples)]
    return [e for e, r in zip(examples, right) if 0 < r < n_samples], right


@dataclass
class Experience:
    """One step's rollout, scored: every tensor is (B, T) aligned with ids unless noted (B = prompts x group)."""
    examples: list             # the B examples (sft_data dicts with grading fields)
    replies: list              # [(text, ended)]
    ids: torch.Tensor          # prompt + reply tokens, left-padded
    attention_mask: torch.Tensor
    response_mask: torch.Tensor  # True on the reply's tokens
    old_logprobs: torch.Tensor   # pi_old: the policy that sampled
    ref_logprobs: torch.Tensor   # the frozen SFT model
    old_values: torch.Tensor | None  # PPO's value head (None for GRPO)
    gold: torch.Tensor         # (B,) the gold reward
    rm_scores: torch.Tensor    # (B,) the reward model's score (0 without one)
    scores: torch.Tensor       # (B,) what the policy is trained on: rm_scores or gold (config.reward)
    rollout_seconds: float


def roll_out(policy, examples, tokenizer, config, step):
    """Steps 1-2: the step's prompts, and the policy's sampled replies -> (batch, rollout result, replies, s)."""
    batch = prompts_of_step(examples, config, step)
    prompts = [render_chat(e["messages"][:-1], tokenizer, add_generation_prompt=True)[0] for e in batch]
    t0 = time.time()
    with autocast(next(policy.parameters()).device.type, config.precision):
        r = rollout(policy, prompts, config.max_new_tokens, temperature=config.temperature,
                    stop_tokens=[tokenizer.special_tokens[END]], seed=config.seed * 1_000_003 + step,
                    pad_id=tokenizer.special_tokens.get("<|endoftext|>", 0))
    return batch, r, decode_replies(r.responses, tokenizer), time.time() - t0


def in_chunks(score, n_rows, chunk):
    """score(rows) for consecutive row slices of at most `chunk` rows, the (B, ...) results concatenated: what
    one call on every row returns, with the memory of one chunk. The (rows, T, vocab) logits are the big tensor:
    at gpt2 size GRPO's 256 replies of ~300 tokens would hold 256 x 300 x 50304 x 4 bytes = 15 GB at once.
    A score that returns a tuple gets a tuple of concatenations (None stays None)."""
    results = [score(slice(start, start + chunk)) for start in range(0, n_rows, chunk)]
    if isinstance(results[0], tuple):
        return tuple(None if parts[0] is None else torch.cat(parts) for parts in zip(*results))
    return torch.cat(results)


@torch.no_grad()
def score_rollout(policy, value_head, ref_model, reward_model, examples, tokenizer, config, step):
    """Steps 1-4: roll out, then the gold reward, the reward model's score, pi_old's and the reference's
    log-probs and (PPO) the values, without gradients, config.score_chunk rows at a time -> Experience."""
    batch, r, replies, seconds = roll_out(policy, examples, tokenizer, config, step)
    device = next(policy.parameters()).device
    gold = torch.tensor([gold_reward(e, text, ended) for e, (text, ended) in zip(batch, replies)], device=device)
    ids, attention_mask, mask = r.ids, r.attention_mask, r.response_mask
    B, chunk = ids.size(0), config.score_chunk
    with autocast(device.type, config.precision):
        # pi_old (and PPO's values) from one pass of the policy, the computation the update repeats with
        # gradients: the ratio is exactly 1 at the first update. (The rollout's own log-probs come from the
        # KV-cache path and differ by float rounding, more under bf16: a ratio that starts off 1.)
        old_logprobs, _, old_values = in_chunks(lambda rows: policy_forward(
            policy, value_head, ids[rows], attention_mask[rows], mask[rows], config.temperature), B, chunk)
        ref_logprobs = in_chunks(lambda rows: sequence_logprobs(ref_model, ids[rows], mask[rows], attention_mask[rows],
                                                                config.temperature).token_logprobs, B, chunk)
        rm_scores = in_chunks(lambda rows: reward_model(ids[rows], attention_mask[rows]), B, chunk) \
            if reward_model is not None else torch.zeros_like(gold)
    return Experience(batch, replies, ids, attention_mask, mask, old_logprobs, ref_logprobs, old_values, gold,
                      rm_scores, rm_scores if config.reward == "rm" else gold, seconds)


def ppo_advantages(exp, config, kl_coef):
    """Step 5, PPO: per-token rewards (the KL penalty, the score at the last token), GAE, whitened
    advantages -> (advantages, returns), each (B, T)."""
    scores = whiten_and_clip_scores(exp.scores, config.whiten_scores)
    rewards, _ = per_token_rewards(scores, exp.old_logprobs, exp.ref_logprobs, exp.response_mask, kl_coef,
                                   config.kl_estimator)
    advantages, returns = gae_advantages(rewards, exp.old_values, exp.response_mask, config.gamma, config.lam)
    return masked_whiten(advantages, exp.response_mask), returns


def grpo_advantages(exp, config):
    """Step 5, GRPO: each reply's score normalized within its group -> (advantages (B,), no returns).
    The lower rungs (config.pg_loss): "reinforce" the raw score, "baseline" the score minus its group's mean
    (computed here, before the minibatches shuffle the groups apart)."""
    if config.pg_loss == "reinforce":
        return exp.scores.float(), None
    normalize_std = config.normalize_std and config.pg_loss == "grpo"
    return group_normalized_advantages(exp.scores, config.group_size, normalize_std), None


def minibatch_loss(policy, value_head, exp, advantages, returns, rows, config, kl_coef):
    """The loss of one minibatch (row indices `rows`) -> (loss, {logged name: 0-dim tensor})."""
    with autocast(next(policy.parameters()).device.type, config.precision):
        logprobs, entropy, values = policy_forward(policy, value_head, exp.ids[rows], exp.attention_mask[rows],
                                                   exp.response_mask[rows], config.temperature)
    m = exp.response_mask[rows]
    if config.algorithm == "ppo":
        pg_loss, clip_fraction, approx_kl = ppo_clipped_loss(logprobs, exp.old_logprobs[rows], advantages[rows], m,
                                                             config.clip_range)
        v_loss = value_loss(values, exp.old_values[rows], returns[rows], m, config.value_clip)
        loss = pg_loss + config.vf_coef * v_loss
    elif config.pg_loss == "grpo":
        pg_loss, clip_fraction, approx_kl, _ = grpo_loss(logprobs, exp.old_logprobs[rows], advantages[rows], m,
                                                         config.clip_range, exp.ref_logprobs[rows], kl_coef,
                                                         config.loss_normalization, config.max_new_tokens)
        v_loss, loss = torch.zeros(()), pg_loss
    else:  # the ladder's lower rungs: no ratio, no clip (grpo.reinforce_loss)
        pg_loss = reinforce_loss(logprobs, advantages[rows], m, config.loss_normalization, config.max_new_tokens)
        clip_fraction = approx_kl = v_loss = torch.zeros(())
        loss = pg_loss
    return loss, {"policy_loss": pg_loss, "value_loss": v_loss, "clip_fraction": clip_fraction,
                  "approx_kl": approx_kl, "entropy": masked_mean(entropy, m)}


def update_policy(policy, value_head, optimizer, exp, advantages, returns, config, step, kl_coef, scaler=None):
    """Step 6: epochs x minibatches of clipped-loss updates (the row order seeded by the step) -> the mean
    of each logged loss over the updates. GRPO updates on the replies with A != 0 only. scaler: fp16's
    GradScaler (chapter 03's loop explains it): the loss is scaled up before backward so small gradients do not
    underflow to 0 in fp16, the gradients are scaled back before clipping, and a step whose gradients overflowed
    is skipped. None (or disabled): no scaling."""
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    sums, n_updates = {}, 0
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    learning_rows = torch.arange(exp.ids.size(0), device=exp.ids.device)
    if config.algorithm == "grpo":  # DAPO's filter: a group whose replies all scored the same has A = 0 on
        learning_rows = learning_rows[advantages != 0]  # every token and teaches nothing, so skip its compute
    if learning_rows.numel() == 0:
        return {name: 0.0 for name in ("policy_loss", "value_loss", "clip_fraction", "approx_kl", "entropy")}
    for epoch in range(config.epochs):
        order = learning_rows[torch.randperm(learning_rows.numel(), generator=generator).to(exp.ids.device)]
        for rows in order.chunk(min(config.minibatches, learning_rows.numel())):
            loss, logged = minibatch_loss(policy, value_head, exp, advantages, returns, rows, config, kl_coef)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # (no-op unless fp16) so clipping sees the true gradients
            clip_grad_norm([p for group in optimizer.param_groups for p in group["params"]],
                           config.grad_clip or float("inf"))
            scaler.step(optimizer)  # skipped when a gradient is inf or nan (fp16 overflow); the scale then drops
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            for name, value in logged.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            n_updates += 1
    return {name: total / n_updates for name, total in sums.items()}


def rl_step(policy, value_head, ref_model, reward_model, optimizer, examples, tokenizer, config, step, kl_coef,
            scaler=None):
    """One step, as numbered in the module docstring: rollout -> score -> advantages -> update; returns
    the step's log record (see LOGGED)."""
    exp = score_rollout(policy, value_head, ref_model, reward_model, examples, tokenizer, config, step)
    if config.algorithm == "ppo":
        advantages, returns = ppo_advantages(exp, config, kl_coef)
    else:
        advantages, returns = grpo_advantages(exp, config)
    losses = update_policy(policy, value_head, optimizer, exp, advantages, returns, config, step, kl_coef, scaler)
    mask = exp.response_mask
    return {"step": step + 1, "gold_reward": exp.gold.mean().item(), "rm_score": exp.rm_scores.float().mean().item(),
            "kl": kl_per_reply(exp.old_logprobs, exp.ref_logprobs, mask).mean().item(), "kl_coef": kl_coef,
            **losses, "response_length": mask.sum(dim=1).float().mean().item(),
            "ended": sum(ended for _, ended in exp.replies) / len(exp.replies),
            "rollout_seconds": exp.rollout_seconds}


def steps_done(meta):
    """(step reached, steps planned) of a stage's checkpoint (chapter 03's train() or rl_loop's)."""
    planned = (meta.get("train_config") or meta.get("rl_config") or {}).get("steps", 0)
    return meta.get("step", 0), planned


def trainable_parts(policy, config):
    """The value head (PPO only, else None), one AdamW over the policy and the value head, and the GradScaler
    (enabled for fp16 only)."""
    policy.requires_grad_(True)  # (a deep copy of the frozen reference model arrives frozen)
    device = next(policy.parameters()).device
    value_head = ValueHead(policy.config.n_embd).to(device) if config.algorithm == "ppo" else None
    trained = nn.ModuleDict({"policy": policy, **({"value_head": value_head} if value_head is not None else {})})
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    return value_head, make_optimizer(trained, config.lr, config.weight_decay, betas=(0.9, 0.95)), scaler


# Settings a resumed run may change: how long it runs, how often it logs and saves, and what the machine
# decides (precision "auto" follows the device; score_chunk bounds memory), not what it learns from.
RESUMABLE_CHANGES = ("steps", "stop_at", "checkpoint_interval", "log_interval", "precision", "score_chunk")


def prompts_digest(examples):
    """A short sha256 of the training prompts (their tasks and messages, in order): a checkpoint records it, so
    that a run is never resumed on prompts other than the ones it started on (another mix, another design)."""
    text = json.dumps([[e["task"], e["messages"]] for e in examples], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_resumable(saved, policy, config, digest, ckpt_path):
    """ValueError unless the checkpoint was saved by this run: the same model config, RL settings (those both
    know, but RESUMABLE_CHANGES) and training prompts. A checkpoint without a prompts digest (saved by a version
    before it was recorded) is refused too: its prompts cannot be checked."""
    fix = "start a fresh run (--overwrite)"
    if saved.get("model_config") != model_config_dict(policy):
        raise ValueError(f"{ckpt_path} was saved from another model config: {fix}")
    mine, theirs = dataclasses.asdict(config), saved.get("rl_config", {})
    changed = sorted(k for k in mine.keys() & theirs.keys() if k not in RESUMABLE_CHANGES and mine[k] != theirs[k])
    if changed:
        raise ValueError(f"{ckpt_path} was saved with other settings ({', '.join(changed)}): {fix}")
    if "prompts_digest" not in saved:
        raise ValueError(f"{ckpt_path} was saved before checkpoints recorded their prompts: {fix}")
    if saved["prompts_digest"] != digest:
        raise ValueError(f"{ckpt_path} was trained on other prompts (another mix or version): {fix}")


def resume_rl(ckpt_path, metrics_path, policy, value_head, optimizer, scaler, log, config, digest):
    """Load what a checkpoint saved (policy, value head, optimizer, fp16's loss scale), cut metrics.jsonl back
    to its step -> (step, kl_coef). ValueError for a checkpoint of another run (check_resumable)."""
    saved = read_checkpoint(ckpt_path)
    check_resumable(saved, policy, config, digest, ckpt_path)
    policy.load_state_dict(saved["model"])
    if value_head is not None:
        value_head.load_state_dict(saved["value_head"])
    optimizer.load_state_dict(saved["optimizer"])
    if saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    keep_records_until(metrics_path, saved["step"])
    log(f"resuming {config.algorithm} from {ckpt_path} at step {saved['step']}")
    return saved["step"], saved["kl_coef"]


def freeze_for_rollouts(policy, ref_model, reward_model):
    """Eval mode everywhere (no dropout: the log-probs of the rollout and of the update must agree); the
    reference and the reward model get no gradients."""
    for model in (policy, ref_model, reward_model):
        if model is not None:
            model.eval()
    ref_model.requires_grad_(False)
    if reward_model is not None:
        reward_model.requires_grad_(False)


def save_rl_checkpoint(ckpt_path, policy, value_head, optimizer, scaler, step, kl_coef, config, checkpoint_extra,
                       digest):
    """A chat checkpoint (stage config.algorithm) plus what resuming needs: value head, optimizer, fp16's loss
    scale, step, beta, and what it checks (the settings, the prompts' digest)."""
    save_checkpoint(ckpt_path, {
        "model": policy.state_dict(), "model_config": model_config_dict(policy), "stage": config.algorithm,
        "value_head": value_head.state_dict() if value_head is not None else {},
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step, "kl_coef": kl_coef,
        "rl_config": dataclasses.asdict(config), "prompts_digest": digest, **(checkpoint_extra or {})})


def log_rl_step(log, config, record, step, stop, per_step):
    log(f"{config.algorithm} step {step}/{config.steps}: gold {record['gold_reward']:+.3f}, "
        f"rm {record['rm_score']:+.3f}, kl {record['kl']:.3f}, entropy {record['entropy']:.3f}, "
        f"clip {record['clip_fraction']:.3f}, value loss {record['value_loss']:.4f}, "
        f"length {record['response_length']:.1f}, {per_step:.2f} s/step "
        f"(rollout {record['rollout_seconds']:.2f} s), ETA {per_step * (stop - step):.0f} s")


def train_policy(policy, ref_model, examples, tokenizer, config, out_dir, reward_model=None, resume=False,
                 checkpoint_extra=None, log=print):
    """Train `policy` in place with PPO or GRPO on the training `examples` (sft_data dicts with grading
    fields); returns a summary dict. Writes out_dir/ckpt.pt (a chat checkpoint, stage config.algorithm,
    plus "value_head" and "optimizer") and out_dir/metrics.jsonl (one record per step)."""
    check_rl_config(config)
    if config.reward == "rm" and reward_model is None:
        raise ValueError("reward='rm' needs a reward model")
    if not examples:
        raise ValueError("no training prompts for the RL stage")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out_dir / "ckpt.pt", out_dir / "metrics.jsonl"
    value_head, optimizer, scaler = trainable_parts(policy, config)
    kl_controller = AdaptiveKLController(config.kl_coef, config.adaptive_kl_target, config.adaptive_kl_horizon) \
        if config.adaptive_kl_target else None
    kl_coef, step, digest = config.kl_coef, 0, prompts_digest(examples)
    if resume and ckpt_path.exists():
        step, kl_coef = resume_rl(ckpt_path, metrics_path, policy, value_head, optimizer, scaler, log, config, digest)
        if kl_controller is not None:
            kl_controller.value = kl_coef
    else:
        metrics_path.unlink(missing_ok=True)
    freeze_for_rollouts(policy, ref_model, reward_model)

    def save():  # the step and kl_coef of the moment it is called
        save_rl_checkpoint(ckpt_path, policy, value_head, optimizer, scaler, step, kl_coef, config, checkpoint_extra,
                           digest)

    stop = min(config.steps, config.stop_at) if config.stop_at is not None else config.steps
    t_start, start_step, record = time.time(), step, None
    while step < stop:
        for group in optimizer.param_groups:
            group["lr"] = config.lr
        record = rl_step(policy, value_head, ref_model, reward_model, optimizer, examples, tokenizer, config, step,
                         kl_coef, scaler)
        step += 1
        if kl_controller is not None:
            kl_coef = kl_controller.update(record["kl"], config.prompts_per_step * config.group_size)
        record["time"] = time.time() - t_start
        append_record(metrics_path, record)
        if step % config.log_interval == 0 or step == stop:
            log_rl_step(log, config, record, step, stop, (time.time() - t_start) / (step - start_step))
        if step % config.checkpoint_interval == 0 or step == stop:
            save()
    if record is None and not ckpt_path.exists():
        save()
    return {"step": step, "wall_seconds": time.time() - t_start, "kl_coef": kl_coef, "last": record}
