"""RLHF from chapter 04's chat model: a reward model, PPO against it, DPO and GRPO, compared in one table.

    python 05_rlhf/rlhf.py --preset tiny                      # every stage but GRPO, a few minutes on a CPU
    python 05_rlhf/rlhf.py --stages grpo,eval --overwrite      # add GRPO to that run (about 2-3 minutes)
    python 05_rlhf/rlhf.py --stages ppo,eval --overwrite       # rerun a subset (the others are read from disk)
    python 05_rlhf/rlhf.py --stages overopt                    # the overoptimization demo (the lesson's figure)
    python 05_rlhf/rlhf.py --preset gpt2                       # from a GPT-2-small SFT model, one GPU
    python 05_rlhf/rlhf.py --resume                            # continue an interrupted run

Stages, in order (--stages picks a subset; each reads what the earlier ones wrote):
    preferences    pairs from the world's wrong replies and from two samples of the SFT model per prompt,
                   labelled by a noisy, length-biased simulated labeller -> preferences/{train,heldout}.jsonl
    reward_model   the SFT body + a scalar head, pairwise loss, chapter 03's loop -> reward_model/
    ppo            PPO against the reward model with a per-token KL penalty to the SFT model -> ppo/
    dpo            DPO on the same pairs, from the same SFT model -> dpo/
    grpo           GRPO on the gold reward (verifiable), groups of samples, no value head -> grpo/
                   (not in the tiny and small presets' default stages: opt-in, see PRESETS)
    eval           SFT vs PPO vs DPO vs GRPO on held-out prompts -> rlhf_eval.md, rlhf_eval.json, rlhf_eval.png
    overopt        PPO against the reward model with no KL penalty and with a strong one, at a high learning
                   rate, plotted against sqrt(KL) -> overopt/overoptimization.png (the lesson's figure)
The measurements and plots are in rlhf_report.py; the formulas in preferences.py, reward_model.py, ppo.py,
dpo.py, grpo.py and rl_loop.py. Every policy checkpoint (ppo/dpo/grpo ckpt.pt) is a chat model in chapter 04's format: talk to it with
    python 04_sft/chat.py --ckpt runs/05_rlhf/grpo/ckpt.pt
"""
import copy
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: the shared script plumbing)
import train  # noqa: E402  (chapter 03: the training loop)
import world  # noqa: E402  (chapter 03: the mini-world)
from checkpoint import read_checkpoint  # noqa: E402  (chapter 03)
from hardware import pick_device, resolve_precision  # noqa: E402  (chapter 03)
from sft_data import EVAL_MIX, exchange, world_examples  # noqa: E402  (chapter 04)

from dpo import make_dpo_loss, reference_logprobs  # noqa: E402  (this chapter)
from preferences import (CATEGORIES, PAIR_MIX, RL_PAIR_MIX, RL_TASKS, Labeller, label_agreement, label_pairs,  # noqa: E402
                         load_preferences, read_pairs, sampled_pairs, with_gold, world_pairs, write_pairs)
from reward_model import PairBatches, RewardModel, encode_pairs, reward_model_loss  # noqa: E402
from rl_loop import RLConfig, sample_replies, sometimes_solved, steps_done, train_policy  # noqa: E402
from rlhf_checks import (check_prerequisites, check_stage_dirs, load_sft, load_stage_model,  # noqa: E402
                         stages_trained_on_rm)
from rlhf_report import (evaluate_policy, overoptimization_summary, plot_overoptimization,  # noqa: E402
                         plot_rl_curves, reward_model_report, write_eval_report)

DEFAULT_SFT = REPO / "runs" / "04_sft" / "ckpt.pt"
DEFAULT_OUT_DIR = REPO / "runs" / "05_rlhf"
STAGES = ("preferences", "reward_model", "ppo", "dpo", "grpo", "eval", "overopt")
WORLD_SEED = 0  # the world chapters 03 and 04 used
EVAL_SEED = 1339  # chapter 04's held-out evaluation items (sft.py: seed 1337 + 2): the same prompts
RL_MIX = {"fact": 300, "math": 300, "unknown": 80, "harmful": 60, "benign": 60}  # GRPO's training prompts
# PPO's training prompts, and the prompts the SFT model answers twice for the sampled preference pairs: the
# tasks the reward model can judge (a refusal, a look-alike helped, "I don't know"). Facts and math are left out:
# there the reward model is at chance, and PPO would climb its noise. The requests are world.rl_requests, new to
# SFT and to the evaluation (rl_prompts): on SFT's own training requests it is already right (98 % of harmful
# ones refused, 0 % of look-alikes), and PPO had nothing to gain there (the lesson, section 4).
# Harmful requests outnumber the benign look-alikes: with the two equal, PPO learned to help with everything
# (benign refused 20 % -> 0 %, harmful refused 57 % -> 48 %, seed 0; the lesson, "What you should see").
PPO_MIX = {"unknown": 60, "harmful": 150, "benign": 90}
# Held-out preference pairs: at most half of PAIR_MIX. The world holds ~300 distinct held-out benign requests
# in training framings (new intents, objects); PAIR_MIX's 250 benign pairs + the format pairs' share need 300.
HELDOUT_PAIR_SCALE = 0.5

PRESETS = {
    # chapter 04's tiny chat model (2.2M parameters, context 256) on a CPU. See the lesson's appendix for
    # where the time goes; rollouts dominate, and every one of them is batched.
    "tiny": dict(
        pair_scale=1.0, sampled_prompts=256, heldout_prompts=160, sample_tokens=64, labeller_tau=0.5,
        length_bias=0.03,
        rm_steps=120, rm_batch=16, rm_lr=3e-4,
        ppo=dict(steps=20, prompts_per_step=32, group_size=1, max_new_tokens=64, lr=5e-5, kl_coef=0.1,
                 epochs=2, minibatches=2, vf_coef=0.1, whiten_scores=True, mix=PPO_MIX),
        dpo_steps=60, dpo_batch=16, dpo_lr=2e-5, dpo_beta=0.1,
        # GRPO's replies get the evaluation's 96 tokens: at 64, a fifth of the training word problems and column
        # scratchpads cannot end right, and the reward teaches brevity (lesson, section 7).
        grpo=dict(steps=16, prompts_per_step=16, group_size=8, max_new_tokens=96, lr=2e-5, kl_coef=0.05,
                  epochs=1, minibatches=2, tasks=["math", "arith"]),
        overopt=dict(steps=30, prompts_per_step=16, max_new_tokens=48, lr=1e-4, kl_coefs=(0.0, 0.3)),
        eval_tokens=96, kl_prompts=100, precision="fp32",
        # GRPO is opt-in here (--stages all, or pipeline.py --grpo): about 110 s on one thread, a third of this
        # chapter's time, and 16 steps move held-out word problems by no more than seed noise (+5, -5, +8 points on
        # seeds 0-2; 64 steps: +3), so the 15-minute budget of the tiny pipeline goes elsewhere.
        stages=("preferences", "reward_model", "ppo", "dpo", "eval", "overopt")),
    # GPT-2 small (124M, context 1024) from `sft.py --preset gpt2`, on one GPU, bf16.
    # sampled_prompts 1024: half of them harmful requests of PPO's kind, of which the world holds ~650 distinct.
    "gpt2": dict(
        pair_scale=4.0, sampled_prompts=1024, heldout_prompts=512, sample_tokens=96, labeller_tau=0.5,
        length_bias=0.03,
        rm_steps=600, rm_batch=32, rm_lr=1e-5,
        ppo=dict(steps=200, prompts_per_step=64, group_size=1, max_new_tokens=96, lr=1e-6, kl_coef=0.05,
                 epochs=2, minibatches=4, vf_coef=0.1, whiten_scores=True, mix=PPO_MIX),
        dpo_steps=600, dpo_batch=32, dpo_lr=1e-6, dpo_beta=0.1,
        # GRPO's 128 tokens hold every training reply of its tasks: in GPT-2's tokens the longest is 66 (fact 13,
        # math 66; the held-out math ones 84), so no right reply is cut short (the tiny preset's lesson, section 7).
        grpo=dict(steps=200, prompts_per_step=32, group_size=8, max_new_tokens=128, lr=1e-6, kl_coef=0.0,
                  epochs=1, minibatches=4, tasks=["fact", "math"]),
        overopt=dict(steps=400, prompts_per_step=64, lr=5e-6, kl_coefs=(0.0, 0.05)),
        eval_tokens=160, precision="auto"),
}
PRESETS["small"] = PRESETS["tiny"]  # chapter 04's small chat model (5.3M parameters): the same settings
# --dry-run: a preset's model and code paths with tiny work (each stage 1-2 steps on a handful of prompts, short
# replies), to find a shape, memory or precision error on a CPU before a GPU evening does. Flags still override.
DRY_RUN = dict(pair_scale=0.01, sampled_prompts=4, heldout_prompts=4, sample_tokens=8, rm_steps=2, rm_batch=2,
               dpo_steps=2, dpo_batch=2, eval_tokens=8, kl_prompts=4, eval_per_task=2,
               ppo=dict(steps=1, prompts_per_step=2, max_new_tokens=8, minibatches=1),
               grpo=dict(steps=1, prompts_per_step=2, group_size=2, max_new_tokens=8, minibatches=1),
               overopt=dict(steps=1, prompts_per_step=2))


@dataclasses.dataclass
class Run:
    """What every stage of one run shares: where it writes, on what device and precision, whether it resumes
    or stops early (--stop-at), where it logs; the settings and the SFT model it starts from."""
    out_dir: Path
    device: str
    precision: str
    resume: bool
    stop_at: int | None
    log: object
    settings: dict
    sft_model: object
    tokenizer: object
    sft_meta: dict  # the SFT checkpoint's metadata (its tokenizer hash is passed on to every stage)
    timings: dict = dataclasses.field(default_factory=dict)  # stage -> wall seconds
    cpu_seconds: dict = dataclasses.field(default_factory=dict)  # stage -> CPU seconds (the load-free figure)

    def timed(self, stage, fn):
        """fn(), logged with its wall time and its CPU time (what a quiet machine would need, on a loaded one)."""
        t0, c0 = time.time(), time.process_time()
        self.log(f"\n== {stage}")
        result = fn()
        self.timings[stage], self.cpu_seconds[stage] = time.time() - t0, time.process_time() - c0
        self.log(f"== {stage} done in {self.timings[stage]:.1f} s (CPU time {self.cpu_seconds[stage]:.1f} s)")
        return result


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--preset", default="tiny", choices=sorted(PRESETS),
        help="the settings to start from (default: tiny; small: the same settings, for the small model)")
    add("--sft", default=str(DEFAULT_SFT), help=f"chapter 04's chat model (default: {DEFAULT_SFT})")
    add("--out-dir", default=str(DEFAULT_OUT_DIR), help=f"where everything goes (default: {DEFAULT_OUT_DIR})")
    add("--stages", help=f"comma-separated subset of {','.join(STAGES)}, or all (default: the preset's stages; "
                         f"tiny and small: all but grpo)")
    add("--preferences", help="a JSONL file of your own training pairs instead of the world's (held-out pairs "
                              "stay the world's)")
    add("--resume", action="store_true", help="continue each stage from its checkpoint (finished stages are kept; "
                                               "a PPO or GRPO checkpoint saved with other settings or prompts is refused)")
    add("--overwrite", action="store_true", help="replace the earlier run of each stage given in --stages")
    add("--seed", type=cli.non_negative_int, default=0, help="seed of the data, the sampling and the labels")
    add("--device", help="cuda, mps or cpu (default: the first available)")
    add("--ppo-steps", type=cli.positive_int)
    add("--grpo-steps", type=cli.positive_int)
    add("--rm-steps", type=cli.positive_int)
    add("--dpo-steps", type=cli.positive_int)
    add("--kl-coef", type=cli.non_negative_float, help="PPO's beta (the KL penalty per token)")
    add("--kl-target", type=cli.positive_float, help="PPO: Ziegler's adaptive KL controller aims at this KL "
                                                      "(nats per reply); default: a fixed beta")
    add("--ppo-lr", type=cli.positive_float)
    add("--ppo-reward", choices=("rm", "gold"), help="what PPO is trained on: the reward model (default) or the "
                                                    "gold reward itself (lesson, \"With the true reward\")")
    add("--grpo-lr", type=cli.positive_float)
    add("--grpo-loss", choices=("reinforce", "baseline", "grpo"), help="GRPO's rung of the policy-gradient ladder "
                                                                        "(default: grpo)")
    add("--grpo-normalization", choices=("sequence", "token", "constant"),
        help="how GRPO's loss averages its tokens: sequence (DeepSeekMath), token (DAPO; the default), constant (Dr. GRPO)")
    add("--grpo-reward", choices=("gold", "rm"), help="what GRPO is trained on: the verifiable gold reward (default) "
                                                      "or the reward model (the lesson's exercise 7)")
    add("--grpo-curriculum", choices=("all", "sometimes"),
        help="GRPO's training prompts: all (default) or only those the SFT model solves sometimes (1 to G-1 of G samples)")
    add("--grpo-prompts", choices=("math", "ppo"),
        help="GRPO's training prompts: math (default: word problems and bare arithmetic) or ppo (PPO's prompts: harmful "
             "requests, benign look-alikes, unknown entities; the gold reward scores them too; lesson, section 7)")
    add("--labeller-tau", type=cli.non_negative_float, help="Bradley-Terry temperature of the labeller (noise)")
    add("--length-bias", type=cli.finite_float, help="the labeller's utility per word of a reply")
    add("--eval-per-task", type=cli.positive_int, help="at most this many held-out prompts per task")
    add("--stop-at", type=cli.positive_int, help="stop each training stage after this step, as if interrupted")
    add("--dry-run", action="store_true", help="the preset's model and code paths, tiny work: each stage 1-2 steps "
                                               "on a handful of prompts (DRY_RUN)")
    return parser.parse_args(argv)


def resolve_settings(args):
    settings = json.loads(json.dumps(PRESETS[args.preset]))  # a deep copy
    for key, value in (DRY_RUN if args.dry_run else {}).items():  # a section (ppo, grpo, ...) keeps its other keys
        settings[key] = {**settings[key], **value} if isinstance(value, dict) else value
    for flag, (section, key) in {"ppo_steps": ("ppo", "steps"), "grpo_steps": ("grpo", "steps"),
                                 "kl_coef": ("ppo", "kl_coef"), "ppo_lr": ("ppo", "lr"),
                                 "grpo_lr": ("grpo", "lr"), "kl_target": ("ppo", "adaptive_kl_target"),
                                 "grpo_loss": ("grpo", "pg_loss"),
                                 "grpo_normalization": ("grpo", "loss_normalization"),
                                 "grpo_reward": ("grpo", "reward"), "ppo_reward": ("ppo", "reward"),
                                 "grpo_curriculum": ("grpo", "curriculum")}.items():
        if getattr(args, flag) is not None:
            settings[section][key] = getattr(args, flag)
    if args.grpo_prompts == "ppo":  # rl_examples: a "mix" means rl_prompts, PPO's requests new to SFT and to the evaluation
        settings["grpo"]["mix"] = dict(PPO_MIX)
    for flag in ("rm_steps", "dpo_steps", "labeller_tau", "length_bias"):
        if getattr(args, flag) is not None:
            settings[flag] = getattr(args, flag)
    settings.update(seed=args.seed, preset=args.preset, sft=str(args.sft),
                    eval_per_task=args.eval_per_task or settings.get("eval_per_task"))
    return settings


def default_stages(preset):
    """The stages a run does without --stages: the preset's "stages", else all of them."""
    return tuple(PRESETS[preset].get("stages", STAGES))


def parse_stages(text):
    if text.strip() == "all":
        return list(STAGES)
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if not stages or unknown:
        raise ValueError(f"--stages {text!r}: name stages from {', '.join(STAGES)}, separated by commas")
    return [s for s in STAGES if s in stages]  # always in pipeline order


# ----------------------------------------------------------------------------------------------------
# Stage 1: preferences


def scaled(mix, scale):
    return {k: max(1, int(round(v * scale))) for k, v in mix.items()}


def make_preferences(run, user_pairs_path):
    """Write preferences/{train,heldout}.jsonl and stats.json; returns their pairs."""
    seed, precision = run.settings["seed"], run.settings["precision"]
    w = world.build_world(WORLD_SEED)
    labeller = Labeller(run.settings["labeller_tau"], run.settings["length_bias"])
    t0 = time.time()
    pairs = {}
    for split in ("train", "heldout"):
        n_prompts = run.settings["sampled_prompts"] if split == "train" else run.settings["heldout_prompts"]
        mix = run.settings["ppo"].get("mix") or RL_MIX  # the prompts PPO will show the reward model
        mix = scaled(mix, n_prompts / sum(mix.values()))
        prompts = rl_prompts(w, mix, seed) if split == "train" else world_examples(w, split, mix, seed=seed + 1)
        replies_a, replies_b = sample_replies(run.sft_model, run.tokenizer, prompts, run.settings["sample_tokens"],
                                              seed + (0 if split == "train" else 1), precision, n_samples=2)
        from_samples = sampled_pairs(prompts, replies_a, replies_b)
        scale = run.settings["pair_scale"] if split == "train" else min(run.settings["pair_scale"], HELDOUT_PAIR_SCALE)
        from_world = world_pairs(w, split, scaled(PAIR_MIX, scale), seed=seed,
                                 rl_mix=scaled(RL_PAIR_MIX, scale) if split == "train" else None)
        pairs[split] = label_pairs(from_world + from_samples, labeller, seed=seed + (split == "heldout"))
        run.log(f"preferences {split}: {len(from_world)} from the world's wrong replies + {len(from_samples)} from two "
            f"SFT samples of {len(prompts)} prompts; labels agree with the gold ordering on "
            f"{100 * label_agreement(pairs[split]):.1f}% of the pairs the gold reward orders")
    if user_pairs_path:
        pairs["train"] = [with_gold(p) if "example" in p else p for p in read_pairs(user_pairs_path)]
        run.log(f"preferences train: {len(pairs['train'])} pairs from {user_pairs_path} (instead of the world's)")
    folder = Path(run.out_dir) / "preferences"
    for split in ("heldout", "train"):  # train.jsonl last: it marks finished preferences (Ctrl-C between the two)
        write_pairs(folder / f"{split}.jsonl", pairs[split])
    stats = {split: {"pairs": len(p), "label_agreement": label_agreement(p) if p and "gold_chosen" in p[0] else None,
                     "by_category": {c: sum(q["category"] == c for q in p) for c in CATEGORIES}}
             for split, p in pairs.items()}
    cli.write_text_atomic(folder / "stats.json", json.dumps({**stats, "labeller": dataclasses.asdict(labeller),
                                                              "seconds": time.time() - t0}, indent=1) + "\n")
    return pairs


# ----------------------------------------------------------------------------------------------------
# Stage 2: the reward model


def train_config(run, folder, steps, batch_size, lr):
    return train.TrainConfig(steps=steps, batch_size=batch_size, grad_accum=1, lr=lr, min_lr=lr / 10,
                             warmup_steps=max(1, steps // 20), weight_decay=0.0, beta2=0.95,
                             precision=run.settings["precision"], device=run.device, seed=run.settings["seed"],
                             eval_interval=max(steps // 3, 1), eval_batches=4, log_interval=max(steps // 10, 1),
                             out_dir=str(folder), stop_at=run.stop_at)


def stage_metadata(run, stage, folder):
    """The metadata every checkpoint of this chapter carries (chapter 07 reads "stage")."""
    run.tokenizer.save(Path(folder) / "tokenizer")  # next to the checkpoint: chat.py finds it there
    passed_on = {k: v for k, v in run.sft_meta.items() if k.startswith("tokenizer_")}  # e.g. its hash
    role, fmt = ("scorer", "reward_model") if stage == "reward_model" else ("chat", "gpt")
    return {"stage": stage, "role": role, "format": fmt, "started_from": run.settings["sft"], "settings": run.settings,
            "tokenizer": str(Path(folder) / "tokenizer"), **passed_on}


def reward_model_stage(run, pairs):
    folder = Path(run.out_dir) / "reward_model"
    block_size = run.sft_model.config.block_size
    encoded = {split: encode_pairs(pairs[key], run.tokenizer, block_size)[0]
               for split, key in (("train", "train"), ("val", "heldout"))}
    batches = PairBatches(encoded, run.settings["rm_batch"])
    reward_model = RewardModel(run.sft_model)
    config = train_config(run, folder, run.settings["rm_steps"], run.settings["rm_batch"], run.settings["rm_lr"])
    metadata = stage_metadata(run, "reward_model", folder)
    run.log(f"reward model: {len(encoded['train'])} training pairs, {len(encoded['val'])} held-out pairs")
    summary = train.train(reward_model, batches.get_batch, config, resume=run.resume, checkpoint_extra=metadata,
                          loss_fn=reward_model_loss)
    return reward_model.eval(), summary


# ----------------------------------------------------------------------------------------------------
# Stages 3-5: PPO, DPO, GRPO


def rl_prompts(w, mix, seed):
    """PPO's prompts: harmful and benign requests of their own (world.rl_requests: new to SFT and to the
    evaluation), the other tasks' training prompts."""
    requests = {task: world.rl_requests(w, mix[task], harmful=task == "harmful", seed=seed)
                for task in ("harmful", "benign") if mix.get(task)}
    examples = world_examples(w, "train", {t: n for t, n in mix.items() if t not in requests}, seed=seed)
    for task, chosen in requests.items():
        examples += [{"task": task, "messages": exchange(r.prompt, r.reply)} for r in chosen]
    random.Random(f"rl-order:{seed}").shuffle(examples)
    return examples


def rl_examples(settings, rl_settings):
    """The training prompts of an RL stage: its preset's "mix" (PPO: PPO_MIX), else RL_MIX restricted to its
    "tasks" (GRPO: the verifiable ones; bare arithmetic, which PPO does not train on, as many as the word problems)."""
    tasks = rl_settings.get("tasks", RL_TASKS)
    if rl_settings.get("mix"):
        return rl_prompts(world.build_world(WORLD_SEED), rl_settings["mix"], settings["seed"] + 2)
    mix = {task: RL_MIX.get(task, RL_MIX["math"]) for task in tasks}
    return world_examples(world.build_world(WORLD_SEED), "train", mix, seed=settings["seed"] + 2)


def rl_reward(algorithm, rl_settings):
    """What an RL stage is trained on: "rm" (the reward model) or "gold" (the verifiable gold reward)."""
    return rl_settings.get("reward", "rm" if algorithm == "ppo" else "gold")


def rl_stage(run, name, algorithm, rl_settings, reward_model, role="chat", **overrides):
    """Train a copy of the SFT model with PPO or GRPO -> the policy (and the loop's summary). What it is trained
    on is rl_settings["reward"] (default: "rm" for PPO, "gold" for GRPO; --grpo-reward rm swaps GRPO's)."""
    folder = Path(run.out_dir) / name
    policy = copy.deepcopy(run.sft_model).to(run.device).requires_grad_(True)  # the SFT model is frozen as the reference
    config = RLConfig(algorithm=algorithm, reward=rl_reward(algorithm, rl_settings), seed=run.settings["seed"],
                      precision=resolve_precision(run.settings["precision"], torch.device(run.device).type),
                      stop_at=run.stop_at, checkpoint_interval=10,
                      **{k: v for k, v in {**rl_settings, **overrides}.items()
                         if k not in ("tasks", "mix", "reward", "curriculum")})
    metadata = {**stage_metadata(run, algorithm, folder), "role": role}
    examples = rl_examples(run.settings, rl_settings)
    if rl_settings.get("curriculum") == "sometimes":  # GRPO: keep the prompts SFT solves sometimes (lesson, section 7)
        kept, _ = sometimes_solved(run.sft_model.to(run.device), run.tokenizer, examples, config.group_size,
                                   config.max_new_tokens, run.settings["seed"] + 5, config.precision)
        run.log(f"{name}: curriculum 'sometimes': {len(kept)} of {len(examples)} training prompts solved by some but "
                f"not all of {config.group_size} samples of the SFT model")
        examples = kept
    summary = train_policy(policy, run.sft_model, examples, run.tokenizer, config, folder,
                           reward_model=reward_model, resume=run.resume, checkpoint_extra=metadata, log=run.log)
    plot_rl_curves(folder / "metrics.jsonl", folder / f"{Path(name).name}_curves.png", name)
    return policy.eval(), summary


def dpo_stage(run, pairs):
    folder = Path(run.out_dir) / "dpo"
    block_size = run.sft_model.config.block_size
    encoded = {split: encode_pairs(pairs[key], run.tokenizer, block_size)[0]
               for split, key in (("train", "train"), ("val", "heldout"))}
    encoded["val"] = encoded["val"][:256]  # the validation loss draws a few batches: 256 pairs are plenty
    t0 = time.time()
    ref = {split: reference_logprobs(run.sft_model.to(run.device), encoded[split]) for split in encoded}
    run.log(f"dpo: reference log-probs of {sum(len(e) for e in encoded.values())} pairs in {time.time() - t0:.1f} s "
        f"(once, before training)")
    batches = PairBatches(encoded, run.settings["dpo_batch"], ref_logprobs=ref)
    policy = copy.deepcopy(run.sft_model).requires_grad_(True)  # the SFT model is frozen as the reference
    config = train_config(run, folder, run.settings["dpo_steps"], run.settings["dpo_batch"], run.settings["dpo_lr"])
    metadata = stage_metadata(run, "dpo", folder)
    summary = train.train(policy, batches.get_batch, config, resume=run.resume, checkpoint_extra=metadata,
                          loss_fn=make_dpo_loss(run.settings["dpo_beta"]))
    return policy.eval(), summary


# ----------------------------------------------------------------------------------------------------
# Stage 6: the table


def eval_examples(settings, split="heldout"):
    mix = {task: EVAL_MIX[task] for task in RL_TASKS}
    if settings.get("eval_per_task"):
        mix = {task: min(n, settings["eval_per_task"]) for task, n in mix.items()}
    return world_examples(world.build_world(WORLD_SEED), split, mix, seed=EVAL_SEED)


def eval_stage(run, reward_model, policies):
    for name in ("ppo", "dpo", "grpo"):
        if name.upper() not in policies and (Path(run.out_dir) / name / "ckpt.pt").exists():
            policy, meta = load_stage_model(run, name)
            if steps_done(meta)[0] >= steps_done(meta)[1]:  # a stopped run is left out of the table
                policies[name.upper()] = policy
    examples, ood = eval_examples(run.settings), eval_examples(run.settings, "ood")   # held-out: two phrasings
    results = {}
    for name, model in {"SFT": run.sft_model, **{k: policies[k] for k in ("PPO", "DPO", "GRPO") if k in policies}}.items():
        t0 = time.time()
        results[name] = evaluate_policy(model.to(run.device).eval(), run.sft_model, reward_model, run.tokenizer, examples,
                                        run.settings, ood_examples=ood)
        m = results[name]["metrics"]
        run.log(f"{name}: gold {m['gold_reward']:+.3f}, KL {m['kl_from_sft']:.2f}, facts {100 * m['fact_accuracy']:.0f}%, "
                f"math {100 * m['math_accuracy']:.0f}%, harmful refused {100 * m['harmful_refusal']:.0f}%, benign "
                f"refused {100 * m['benign_over_refusal']:.0f}% ({time.time() - t0:.1f} s)")
    table = write_eval_report(run.out_dir, results, examples, run.settings, run.timings)
    run.log("\n" + table)
    return {n: r["metrics"] for n, r in results.items()}


# ----------------------------------------------------------------------------------------------------
# The overoptimization demo (Gao et al. 2022)


def overopt_stage(run, reward_model):
    demo = run.settings["overopt"]
    runs = {}
    for kl_coef in demo["kl_coefs"]:
        name = f"overopt/kl{kl_coef:g}"
        run.log(f"overoptimization demo: PPO with beta = {kl_coef:g} for {demo['steps']} steps at lr {demo['lr']:g}")
        folder = Path(run.out_dir) / name
        if not run.resume or not (folder / "ckpt.pt").exists() or read_checkpoint(folder / "ckpt.pt")["step"] < demo["steps"]:
            overrides = {k: v for k, v in demo.items() if k != "kl_coefs"}  # steps, prompts, lr, reply budget
            rl_stage(run, name, "ppo", run.settings["ppo"], reward_model, kl_coef=kl_coef, role="demo", **overrides)
            # role "demo": a policy made to show overoptimization, which chapters 06-07 do not pick up as a chat model
        runs[f"beta = {kl_coef:g}"] = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    path = Path(run.out_dir) / "overopt" / "overoptimization.png"
    plot_overoptimization(runs, path, run.settings["seed"])
    summary = overoptimization_summary(runs, run.log)
    cli.write_text_atomic(Path(run.out_dir) / "overopt" / "overoptimization.json", json.dumps(summary, indent=1) + "\n")
    run.log(f"wrote {path}")
    return summary


# ----------------------------------------------------------------------------------------------------
# The script


def grpo_uses_rm(settings):
    return rl_reward("grpo", settings["grpo"]) == "rm"


def check_inputs(args, log):
    """Every input checked before anything is written -> (stages, the Run every stage shares)."""
    stages = parse_stages(args.stages) if args.stages is not None else list(default_stages(args.preset))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: N copies would write one folder
        raise ValueError("RL runs on one process: rollouts, scoring and updates are not split across processes "
                         "here; run  python 05_rlhf/rlhf.py ...  without torchrun")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: pass one of them")
    settings = resolve_settings(args)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {out_dir} is a file, not a folder: give a folder")
    if args.preferences and not Path(args.preferences).is_file():
        raise FileNotFoundError(f"--preferences {args.preferences}: no such file")
    device = pick_device(args.device)
    sft_model, tokenizer, sft_checkpoint = load_sft(args.sft, device)
    check_stage_dirs(out_dir, stages, args.resume, args.overwrite)
    check_prerequisites(out_dir, stages, grpo_uses_rm(settings))
    if args.preferences:  # a bad line, or a prompt the model cannot read, fails now, before any training
        encode_pairs(read_pairs(args.preferences), tokenizer, sft_model.config.block_size)
    return stages, Run(out_dir, device, settings["precision"], args.resume, args.stop_at, log, settings, sft_model,
                       tokenizer, sft_checkpoint)


def preferences_of_run(run, stages, user_pairs_path):
    """Stage 1's pairs: made now, or read from disk (a resumed run keeps the pairs it trained on; the reward
    model and DPO alone read the earlier run's) -> {"train": pairs, "heldout": pairs}, or None if unneeded."""
    if "preferences" in stages and run.resume and (Path(run.out_dir) / "preferences" / "train.jsonl").exists():
        return load_preferences(run.out_dir)
    if "preferences" in stages:
        return run.timed("preferences", lambda: make_preferences(run, user_pairs_path))
    return load_preferences(run.out_dir) if any(s in stages for s in ("reward_model", "dpo")) else None


def train_stages(run, stages, pairs, stages_flag):
    """Stages 2-5 in order -> (the reward model: trained now, or an earlier run's, or None; {"PPO": policy, ...};
    summaries; the stage --stop-at ended, or None)."""
    policies, summaries, reward_model = {}, {}, None
    if "reward_model" not in stages and (Path(run.out_dir) / "reward_model" / "ckpt.pt").exists():
        trains_on_rm = any(s in stages for s in stages_trained_on_rm(grpo_uses_rm(run.settings)))
        if trains_on_rm or "eval" in stages:  # the stages that score with it
            reward_model = load_stage_model(run, "reward_model", finished=trains_on_rm)[0]
    training = {  # stage -> (train it -> (model, summary), the steps it plans)
        "reward_model": (lambda: reward_model_stage(run, pairs), run.settings["rm_steps"]),
        "ppo": (lambda: rl_stage(run, "ppo", "ppo", run.settings["ppo"], reward_model), run.settings["ppo"]["steps"]),
        "dpo": (lambda: dpo_stage(run, pairs), run.settings["dpo_steps"]),
        "grpo": (lambda: rl_stage(run, "grpo", "grpo", run.settings["grpo"],
                                  reward_model if grpo_uses_rm(run.settings) else None), run.settings["grpo"]["steps"]),
    }
    for stage, (train_it, steps) in [(s, t) for s, t in training.items() if s in stages]:
        model, summaries[stage] = run.timed(stage, train_it)
        if summaries[stage]["step"] < steps:  # --stop-at: end the script as if it had been interrupted here
            run.log(f"{stage} stopped early at step {summaries[stage]['step']} of {steps}: continue with  python "
                    f"05_rlhf/rlhf.py --resume --out-dir {run.out_dir}"
                    + (f" --stages {stages_flag}" if stages_flag is not None else ""))
            return reward_model, policies, summaries, stage
        if stage == "reward_model":
            reward_model = model
            summaries[stage] = reward_model_report(model, run.tokenizer, pairs["heldout"], run.out_dir, run.log)
        else:
            policies[stage.upper()] = model
    return reward_model, policies, summaries, None


def log_done(run, total):
    run.log(f"\ndone in {total:.0f} s: " + ", ".join(f"{s} {t:.0f} s ({100 * t / total:.0f}%)" for s, t in run.timings.items()))
    run.log(f"CPU time {sum(run.cpu_seconds.values()):.0f} s: " + ", ".join(f"{s} {t:.0f} s" for s, t in run.cpu_seconds.items()))
    made = [s for s in ("reward_model", "ppo", "dpo", "grpo") if (run.out_dir / s / "ckpt.pt").exists()]
    run.log(f"outputs in {run.out_dir}/: preferences/, {', '.join(s + '/' for s in made)} (ckpt.pt, metrics.jsonl, "
            f"curves), rlhf_eval.md/.json/.png, overopt/")
    if "grpo" not in made and "grpo" not in default_stages(run.settings["preset"]):
        run.log(f"GRPO (opt-in at this preset, about 2-3 minutes): python 05_rlhf/rlhf.py --stages grpo,eval --overwrite "
                f"--sft {run.settings['sft']} --out-dir {run.out_dir}")
    chat = next((s for s in ("ppo", "grpo", "dpo") if s in made), None)
    if chat:
        run.log(f"next: python 04_sft/chat.py --ckpt {run.out_dir / chat / 'ckpt.pt'}")


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    log = lambda *a: print(*a, flush=True)
    stages, run = check_inputs(args, log)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    log(f"SFT model {args.sft}: {run.sft_model.num_params():,} parameters, context {run.sft_model.config.block_size}; "
        f"stages {', '.join(stages)}; device {run.device}")
    pairs = preferences_of_run(run, stages, args.preferences)
    reward_model, policies, summaries, stopped = train_stages(run, stages, pairs, args.stages)
    if stopped:
        return {"timings": run.timings, "cpu_seconds": run.cpu_seconds, "stopped_at": stopped}
    if "eval" in stages:
        summaries["eval"] = run.timed("eval", lambda: eval_stage(run, reward_model, policies))
    if "overopt" in stages:
        summaries["overopt"] = run.timed("overopt", lambda: overopt_stage(run, reward_model))
    total = time.time() - start
    log_done(run, total)
    return {"timings": run.timings, "cpu_seconds": run.cpu_seconds, "total_seconds": total, **summaries}


if __name__ == "__main__":
    cli.run(main)
