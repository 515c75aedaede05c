"""RLHF from chapter 04's chat model: a reward model, PPO against it, DPO and GRPO, compared in one table.

    python 05_rlhf/rlhf.py --preset tiny                      # every stage, a few minutes on a CPU
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
    eval           SFT vs PPO vs DPO vs GRPO on held-out prompts -> rlhf_eval.md, rlhf_eval.json, rlhf_eval.png
    overopt        (not in the default) PPO with no KL penalty and with the default one, longer, plotted
                   against sqrt(KL) -> overopt/overoptimization.png
The measurements and plots are in rlhf_report.py; the formulas in preferences.py, reward_model.py, ppo.py,
dpo.py, grpo.py and rl_loop.py. Every policy checkpoint (ppo/dpo/grpo ckpt.pt) is a chat model in chapter 04's format: talk to it with
    python 04_sft/chat.py --ckpt runs/05_rlhf/grpo/ckpt.pt
"""
import dataclasses
import json
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
from chat_format import END, render_chat  # noqa: E402  (chapter 04)
from checkpoint import read_checkpoint  # noqa: E402  (chapter 03)
from model_loader import WrongStageError, load_model  # noqa: E402  (chapter 03: the one loader)
from generation import rollout  # noqa: E402  (chapter 02)
from hardware import autocast, pick_device, resolve_precision  # noqa: E402  (chapter 03)
from sft_data import EVAL_MIX, world_examples  # noqa: E402  (chapter 04)

from dpo import make_dpo_loss, reference_logprobs  # noqa: E402  (this chapter)
from preferences import (CATEGORIES, PAIR_MIX, RL_TASKS, Labeller, label_agreement,  # noqa: E402
                         label_pairs, read_pairs, sampled_pairs, with_gold, world_pairs, write_pairs)
from reward_model import PairBatches, RewardModel, encode_pairs, reward_model_loss  # noqa: E402
from rl_loop import RLConfig, decode_replies, train_policy  # noqa: E402
from rlhf_report import (evaluate_policy, plot_overoptimization, plot_rl_curves, plot_table,  # noqa: E402
                         results_table, reward_model_report, smooth)

DEFAULT_SFT = REPO / "runs" / "04_sft" / "ckpt.pt"
DEFAULT_OUT_DIR = REPO / "runs" / "05_rlhf"
STAGES = ("preferences", "reward_model", "ppo", "dpo", "grpo", "eval", "overopt")
DEFAULT_STAGES = STAGES[:-1]
WORLD_SEED = 0  # the world chapters 03 and 04 used
EVAL_SEED = 1339  # chapter 04's held-out evaluation items (sft.py: seed 1337 + 2): the same prompts
RL_MIX = {"fact": 300, "math": 300, "unknown": 80, "harmful": 60, "benign": 60}  # PPO/GRPO training prompts

PRESETS = {
    # chapter 04's tiny chat model (2.2M parameters, context 256) on a CPU. See the lesson's appendix for
    # where the time goes; rollouts dominate, and every one of them is batched.
    "tiny": dict(
        pair_scale=1.0, sampled_prompts=256, heldout_prompts=160, sample_tokens=64, labeller_tau=0.5,
        length_bias=0.03,
        rm_steps=60, rm_batch=16, rm_lr=3e-4,
        ppo=dict(steps=20, prompts_per_step=32, group_size=1, max_new_tokens=64, lr=3e-5, kl_coef=0.05,
                 epochs=2, minibatches=2, vf_coef=0.1, whiten_scores=True),
        dpo_steps=60, dpo_batch=16, dpo_lr=2e-5, dpo_beta=0.1,
        grpo=dict(steps=12, prompts_per_step=16, group_size=8, max_new_tokens=96, lr=3e-5, kl_coef=0.0,
                  epochs=1, minibatches=1, tasks=["fact", "math"]),
        overopt=dict(steps=60, prompts_per_step=32, lr=1e-4, kl_coefs=(0.0, 0.05, 0.3)),
        eval_tokens=96, kl_prompts=100, precision="fp32"),
    # GPT-2 small (124M, context 1024) from `sft.py --preset gpt2`, on one GPU, bf16.
    "gpt2": dict(
        pair_scale=4.0, sampled_prompts=2048, heldout_prompts=512, sample_tokens=96, labeller_tau=0.5,
        length_bias=0.03,
        rm_steps=600, rm_batch=32, rm_lr=1e-5,
        ppo=dict(steps=200, prompts_per_step=64, group_size=1, max_new_tokens=96, lr=1e-6, kl_coef=0.05,
                 epochs=2, minibatches=4, vf_coef=0.1, whiten_scores=True),
        dpo_steps=600, dpo_batch=32, dpo_lr=1e-6, dpo_beta=0.1,
        grpo=dict(steps=200, prompts_per_step=32, group_size=8, max_new_tokens=128, lr=1e-6, kl_coef=0.0,
                  epochs=1, minibatches=4, tasks=["fact", "math"]),
        overopt=dict(steps=400, prompts_per_step=64, lr=5e-6, kl_coefs=(0.0, 0.05)),
        eval_tokens=160, precision="auto"),
}
# chapter 04's small chat model (5.3M parameters, context 256): the tiny settings; the model is read from
# runs/04_sft whatever its size, so only the time grows (about 2.5x tiny's)
PRESETS["small"] = PRESETS["tiny"]


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--preset", default="tiny", choices=sorted(PRESETS),
        help="the settings to start from (default: tiny; small: the same settings, for the small model)")
    add("--sft", default=str(DEFAULT_SFT), help=f"chapter 04's chat model (default: {DEFAULT_SFT})")
    add("--out-dir", default=str(DEFAULT_OUT_DIR), help=f"where everything goes (default: {DEFAULT_OUT_DIR})")
    add("--stages", default=",".join(DEFAULT_STAGES),
        help=f"comma-separated subset of {','.join(STAGES)} (default: all but overopt)")
    add("--preferences", help="a JSONL file of your own training pairs instead of the world's (held-out pairs "
                              "stay the world's)")
    add("--resume", action="store_true", help="continue each stage from its checkpoint (finished stages are kept)")
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
    add("--grpo-lr", type=cli.positive_float)
    add("--labeller-tau", type=cli.non_negative_float, help="Bradley-Terry temperature of the labeller (noise)")
    add("--length-bias", type=cli.finite_float, help="the labeller's utility per word of a reply")
    add("--eval-per-task", type=cli.positive_int, help="at most this many held-out prompts per task")
    add("--stop-at", type=cli.positive_int, help="stop each training stage after this step, as if interrupted")
    return parser.parse_args(argv)


def resolve_settings(args):
    settings = json.loads(json.dumps(PRESETS[args.preset]))  # a deep copy
    for flag, (section, key) in {"ppo_steps": ("ppo", "steps"), "grpo_steps": ("grpo", "steps"),
                                 "kl_coef": ("ppo", "kl_coef"), "ppo_lr": ("ppo", "lr"),
                                 "grpo_lr": ("grpo", "lr"), "kl_target": ("ppo", "adaptive_kl_target")}.items():
        if getattr(args, flag) is not None:
            settings[section][key] = getattr(args, flag)
    for flag in ("rm_steps", "dpo_steps", "labeller_tau", "length_bias"):
        if getattr(args, flag) is not None:
            settings[flag] = getattr(args, flag)
    settings.update(seed=args.seed, preset=args.preset, sft=str(args.sft), eval_per_task=args.eval_per_task)
    return settings


def parse_stages(text):
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if not stages or unknown:
        raise ValueError(f"--stages {text!r}: name stages from {', '.join(STAGES)}, separated by commas")
    return [s for s in STAGES if s in stages]  # always in pipeline order


def load_sft(path, device):
    """The SFT chat model, its tokenizer and metadata; FileNotFoundError saying what to run, ValueError for a
    checkpoint that is not a chat model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SFT model at {path}. Fine-tune one first:\n    python 04_sft/sft.py --preset tiny"
                                f"\n(or pass --sft PATH to a chapter-04 checkpoint)")
    try:
        return load_model(path, stage="chat", device=device)
    except WrongStageError as error:
        raise WrongStageError(f"--sft {error}: pass a chapter-04 SFT checkpoint (python 04_sft/sft.py makes one)",
                              error.stage, error.role) from None
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"cannot use {path} as the SFT model: {error}") from None


def steps_done(meta):
    """(step reached, steps planned) of a stage's checkpoint (chapter 03's train() or rl_loop's)."""
    planned = (meta.get("train_config") or meta.get("rl_config") or {}).get("steps", 0)
    return meta.get("step", 0), planned


def load_stage_model(out_dir, stage, sft_meta, device, finished=False):
    """A stage's model (a policy, or the reward model), checked against the SFT model it must have started
    from -> (model, meta). finished=True: refuse a run that was stopped before its last step."""
    ckpt_path = Path(out_dir) / stage / "ckpt.pt"
    model, _, meta = load_model(ckpt_path, stage=stage, device=device)
    step, planned = steps_done(meta)
    if finished and step < planned:
        raise ValueError(f"{ckpt_path} is a run stopped at step {step} of {planned}: finish it first with  python "
                         f"05_rlhf/rlhf.py --resume --stages {stage} --out-dir {out_dir}  (or redo it with --overwrite)")
    if meta["model_config"] != sft_meta["model_config"]:
        raise ValueError(f"{ckpt_path} was trained from another SFT model (its config differs from "
                         f"{sft_meta.get('settings', {}).get('sft', 'the SFT model')}): rerun the stage with "
                         f"--stages {stage} --overwrite")
    return model, meta


# ----------------------------------------------------------------------------------------------------
# Stage 1: preferences


@torch.no_grad()
def sample_replies(model, tokenizer, examples, max_new_tokens, seed, precision, n_samples=1, batch_size=256):
    """n_samples replies per example at temperature 1 -> list (per sample) of lists of (text, ended)."""
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


def scaled(mix, scale):
    return {k: max(1, int(round(v * scale))) for k, v in mix.items()}


def make_preferences(sft_model, tokenizer, settings, out_dir, user_pairs_path, log):
    """Write preferences/{train,heldout}.jsonl and stats.json; returns their pairs."""
    seed, precision = settings["seed"], settings["precision"]
    w = world.build_world(WORLD_SEED)
    labeller = Labeller(settings["labeller_tau"], settings["length_bias"])
    t0 = time.time()
    pairs = {}
    for split in ("train", "heldout"):
        n_prompts = settings["sampled_prompts"] if split == "train" else settings["heldout_prompts"]
        prompts = world_examples(w, split, scaled(RL_MIX, n_prompts / sum(RL_MIX.values())),
                                 seed=seed + (0 if split == "train" else 1))
        replies_a, replies_b = sample_replies(sft_model, tokenizer, prompts, settings["sample_tokens"],
                                              seed + (0 if split == "train" else 1), precision, n_samples=2)
        from_samples = sampled_pairs(prompts, replies_a, replies_b)
        from_world = world_pairs(w, split, scaled(PAIR_MIX, settings["pair_scale"]), seed=seed)
        pairs[split] = label_pairs(from_world + from_samples, labeller, seed=seed + (split == "heldout"))
        log(f"preferences {split}: {len(from_world)} from the world's wrong replies + {len(from_samples)} from two "
            f"SFT samples of {len(prompts)} prompts; labels agree with the gold ordering on "
            f"{100 * label_agreement(pairs[split]):.1f}% of the pairs the gold reward orders")
    if user_pairs_path:
        pairs["train"] = [with_gold(p) if "example" in p else p for p in read_pairs(user_pairs_path)]
        log(f"preferences train: {len(pairs['train'])} pairs from {user_pairs_path} (instead of the world's)")
    folder = Path(out_dir) / "preferences"
    for split in ("heldout", "train"):  # train.jsonl last: it marks finished preferences (Ctrl-C between the two)
        write_pairs(folder / f"{split}.jsonl", pairs[split])
    stats = {split: {"pairs": len(p), "label_agreement": label_agreement(p) if p and "gold_chosen" in p[0] else None,
                     "by_category": {c: sum(q["category"] == c for q in p) for c in CATEGORIES}}
             for split, p in pairs.items()}
    cli.write_text_atomic(folder / "stats.json", json.dumps({**stats, "labeller": dataclasses.asdict(labeller),
                                                              "seconds": time.time() - t0}, indent=1) + "\n")
    return pairs


def load_preferences(out_dir):
    folder = Path(out_dir) / "preferences"
    if not (folder / "train.jsonl").is_file():
        raise FileNotFoundError(f"no preference pairs in {folder}: run the preferences stage first "
                                f"(--stages preferences,...)")
    return {split: read_pairs(folder / f"{split}.jsonl") for split in ("train", "heldout")}


# ----------------------------------------------------------------------------------------------------
# Stage 2: the reward model


def train_config(settings, out_dir, steps, batch_size, lr, device, stop_at):
    return train.TrainConfig(steps=steps, batch_size=batch_size, grad_accum=1, lr=lr, min_lr=lr / 10,
                             warmup_steps=max(1, steps // 20), weight_decay=0.0, beta2=0.95,
                             precision=settings["precision"], device=device, seed=settings["seed"],
                             eval_interval=max(steps // 3, 1), eval_batches=4, log_interval=max(steps // 10, 1),
                             out_dir=str(out_dir), stop_at=stop_at)


def stage_extra(stage, settings, tokenizer, folder, sft_checkpoint):
    """The metadata every checkpoint of this chapter carries (chapter 07 reads "stage")."""
    tokenizer.save(Path(folder) / "tokenizer")  # next to the checkpoint: chat.py finds it there
    passed_on = {k: v for k, v in sft_checkpoint.items() if k.startswith("tokenizer_")}  # e.g. its hash
    role, fmt = ("scorer", "reward_model") if stage == "reward_model" else ("chat", "gpt")
    return {"stage": stage, "role": role, "format": fmt, "started_from": settings["sft"], "settings": settings,
            "tokenizer": str(Path(folder) / "tokenizer"), **passed_on}


def reward_model_stage(sft_model, tokenizer, pairs, settings, out_dir, device, resume, stop_at, sft_checkpoint, log):
    folder = Path(out_dir) / "reward_model"
    block_size = sft_model.config.block_size
    encoded = {split: encode_pairs(pairs[key], tokenizer, block_size)[0]
               for split, key in (("train", "train"), ("val", "heldout"))}
    batches = PairBatches(encoded, settings["rm_batch"])
    reward_model = RewardModel(sft_model)
    config = train_config(settings, folder, settings["rm_steps"], settings["rm_batch"], settings["rm_lr"], device,
                          stop_at)
    extra = stage_extra("reward_model", settings, tokenizer, folder, sft_checkpoint)
    log(f"reward model: {len(encoded['train'])} training pairs, {len(encoded['val'])} held-out pairs")
    summary = train.train(reward_model, batches.get_batch, config, resume=resume, checkpoint_extra=extra,
                          loss_fn=reward_model_loss)
    return reward_model.eval(), summary


# ----------------------------------------------------------------------------------------------------
# Stages 3-5: PPO, DPO, GRPO


def rl_examples(settings, tasks):
    """The training prompts of an RL stage: RL_MIX restricted to `tasks` (GRPO: the verifiable ones)."""
    mix = {task: n for task, n in RL_MIX.items() if task in tasks}
    return world_examples(world.build_world(WORLD_SEED), "train", mix, seed=settings["seed"] + 2)


def rl_stage(name, algorithm, sft_model, tokenizer, settings, rl_settings, out_dir, device, resume, stop_at,
             sft_checkpoint, reward_model, log, **overrides):
    """Train a copy of the SFT model with PPO or GRPO -> the policy (and the loop's summary)."""
    import copy
    folder = Path(out_dir) / name
    policy = copy.deepcopy(sft_model).to(device).requires_grad_(True)  # the SFT model is frozen as the reference
    config = RLConfig(algorithm=algorithm, reward="rm" if algorithm == "ppo" else "gold", seed=settings["seed"],
                      precision=resolve_precision(settings["precision"], torch.device(device).type),
                      stop_at=stop_at, checkpoint_interval=10,
                      **{k: v for k, v in {**rl_settings, **overrides}.items() if k != "tasks"})
    extra = stage_extra(algorithm, settings, tokenizer, folder, sft_checkpoint)
    tasks = rl_settings.get("tasks", RL_TASKS)
    summary = train_policy(policy, sft_model, rl_examples(settings, tasks), tokenizer, config, folder,
                           reward_model=reward_model, resume=resume, checkpoint_extra=extra, log=log)
    plot_rl_curves(folder / "metrics.jsonl", folder / f"{Path(name).name}_curves.png", name)
    return policy.eval(), summary


def dpo_stage(sft_model, tokenizer, pairs, settings, out_dir, device, resume, stop_at, sft_checkpoint, log):
    import copy
    folder = Path(out_dir) / "dpo"
    block_size = sft_model.config.block_size
    encoded = {split: encode_pairs(pairs[key], tokenizer, block_size)[0]
               for split, key in (("train", "train"), ("val", "heldout"))}
    encoded["val"] = encoded["val"][:256]  # the validation loss draws a few batches: 256 pairs are plenty
    t0 = time.time()
    ref = {split: reference_logprobs(sft_model.to(device), encoded[split]) for split in encoded}
    log(f"dpo: reference log-probs of {sum(len(e) for e in encoded.values())} pairs in {time.time() - t0:.1f} s "
        f"(once, before training)")
    batches = PairBatches(encoded, settings["dpo_batch"], extra=ref)
    policy = copy.deepcopy(sft_model).requires_grad_(True)  # the SFT model is frozen as the reference
    config = train_config(settings, folder, settings["dpo_steps"], settings["dpo_batch"], settings["dpo_lr"], device,
                          stop_at)
    extra = stage_extra("dpo", settings, tokenizer, folder, sft_checkpoint)
    summary = train.train(policy, batches.get_batch, config, resume=resume, checkpoint_extra=extra,
                          loss_fn=make_dpo_loss(settings["dpo_beta"]))
    return policy.eval(), summary


# ----------------------------------------------------------------------------------------------------
# Stage 6: the table


def eval_examples(settings):
    mix = {task: EVAL_MIX[task] for task in RL_TASKS}
    if settings.get("eval_per_task"):
        mix = {task: min(n, settings["eval_per_task"]) for task, n in mix.items()}
    return world_examples(world.build_world(WORLD_SEED), "heldout", mix, seed=EVAL_SEED)


# ----------------------------------------------------------------------------------------------------
# The overoptimization demo (Gao et al. 2022)


def overopt_stage(sft_model, tokenizer, settings, out_dir, device, resume, stop_at, sft_checkpoint, reward_model, log):
    demo = settings["overopt"]
    runs = {}
    for kl_coef in demo["kl_coefs"]:
        name = f"overopt/kl{kl_coef:g}"
        log(f"overoptimization demo: PPO with beta = {kl_coef:g} for {demo['steps']} steps at lr {demo['lr']:g}")
        folder = Path(out_dir) / name
        if not resume or not (folder / "ckpt.pt").exists() or read_checkpoint(folder / "ckpt.pt")["step"] < demo["steps"]:
            rl_stage(name, "ppo", sft_model, tokenizer, settings, settings["ppo"], out_dir, device, resume, stop_at,
                     sft_checkpoint, reward_model, log, steps=demo["steps"], prompts_per_step=demo["prompts_per_step"],
                     lr=demo["lr"], kl_coef=kl_coef)
        runs[f"beta = {kl_coef:g}"] = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    path = Path(out_dir) / "overopt" / "overoptimization.png"
    plot_overoptimization(runs, path, settings["seed"])
    summary = {}
    for label, records in runs.items():
        gold = smooth([r["gold_reward"] for r in records])
        rm = smooth([r["rm_score"] for r in records])
        peak = max(range(len(gold)), key=gold.__getitem__)
        summary[label] = {"gold_start": gold[0], "gold_peak": gold[peak], "gold_peak_step": records[peak]["step"],
                          "gold_end": gold[-1], "rm_start": rm[0], "rm_end": rm[-1], "kl_end": records[-1]["kl"],
                          "length_start": records[0]["response_length"], "length_end": records[-1]["response_length"]}
        log(f"  {label}: gold {gold[0]:+.3f} -> peak {gold[peak]:+.3f} (step {records[peak]['step']}) -> "
            f"{gold[-1]:+.3f}; rm {rm[0]:+.3f} -> {rm[-1]:+.3f}; KL at the end {records[-1]['kl']:.2f}")
    cli.write_text_atomic(Path(out_dir) / "overopt" / "overoptimization.json", json.dumps(summary, indent=1) + "\n")
    log(f"wrote {path}")
    return summary


# ----------------------------------------------------------------------------------------------------
# The script


def check_stage_dirs(out_dir, stages, resume, overwrite):
    """Refuse, before anything is written, to start a stage over an earlier run of it (cli.check_out_dir)."""
    for stage in stages:
        if stage in ("preferences", "eval"):
            marker = {"preferences": "train.jsonl", "eval": "rlhf_eval.json"}[stage]
            folder = Path(out_dir) / ("preferences" if stage == "preferences" else "")
            if (folder / marker).exists() and not (resume or overwrite):
                cli.check_out_dir(folder, False, False, marker=marker)
        elif stage == "overopt":
            for sub in Path(out_dir, "overopt").glob("kl*"):
                if not resume:
                    cli.check_out_dir(sub, False, overwrite)
        elif not (resume and not (Path(out_dir) / stage / "ckpt.pt").exists()):
            cli.check_out_dir(Path(out_dir) / stage, resume, overwrite)


def check_prerequisites(out_dir, stages):
    """A stage that reads an earlier stage's output fails before anything is written if it is missing."""
    needs = {"reward_model": ("preferences", "preferences/train.jsonl"), "dpo": ("preferences", "preferences/train.jsonl"),
             "ppo": ("reward_model", "reward_model/ckpt.pt"), "overopt": ("reward_model", "reward_model/ckpt.pt")}
    for stage in stages:
        if stage in needs:
            earlier, path = needs[stage]
            if earlier not in stages and not (Path(out_dir) / path).exists():
                raise FileNotFoundError(f"no {earlier.replace('_', ' ')} in {Path(out_dir) / earlier}: run the {earlier} "
                                        f"stage first (--stages {earlier},{stage})")


def main(argv=None):
    args = parse_args(argv)
    stages = parse_stages(args.stages)
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: pass one of them")
    settings = resolve_settings(args)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {out_dir} is a file, not a folder: give a folder")
    if args.preferences and not Path(args.preferences).is_file():
        raise FileNotFoundError(f"--preferences {args.preferences}: no such file")
    device = pick_device(args.device)
    start = time.time()
    sft_model, tokenizer, sft_checkpoint = load_sft(args.sft, device)
    check_stage_dirs(out_dir, stages, args.resume, args.overwrite)
    check_prerequisites(out_dir, stages)
    if args.preferences:  # a bad line, or a prompt the model cannot read, fails now, before any training
        encode_pairs(read_pairs(args.preferences), tokenizer, sft_model.config.block_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = lambda *a: print(*a, flush=True)
    log(f"SFT model {args.sft}: {sft_model.num_params():,} parameters, context {sft_model.config.block_size}; "
        f"stages {', '.join(stages)}; device {device}")
    timings = {}

    cpu_seconds = {}

    def timed(stage, fn):  # wall time, and CPU time (what a quiet machine would need, on a loaded one)
        t0, c0 = time.time(), time.process_time()
        log(f"\n== {stage}")
        result = fn()
        timings[stage], cpu_seconds[stage] = time.time() - t0, time.process_time() - c0
        log(f"== {stage} done in {timings[stage]:.1f} s (CPU time {cpu_seconds[stage]:.1f} s)")
        return result

    pairs, reward_model, policies, summaries = None, None, {}, {}
    if "preferences" in stages and args.resume and (out_dir / "preferences" / "train.jsonl").exists():
        pairs = load_preferences(out_dir)  # a resumed run keeps the pairs it trained on
    elif "preferences" in stages:
        pairs = timed("preferences", lambda: make_preferences(sft_model, tokenizer, settings, out_dir, args.preferences,
                                                              log))
    need_pairs = any(s in stages for s in ("reward_model", "dpo"))
    if pairs is None and need_pairs:
        pairs = load_preferences(out_dir)
    def stopped_early(stage, step, steps):  # --stop-at: end the script as if it had been interrupted here
        if step < steps:
            log(f"{stage} stopped early at step {step} of {steps}: continue with  python 05_rlhf/rlhf.py --resume "
                f"--out-dir {out_dir}" + (f" --stages {args.stages}" if args.stages != ",".join(DEFAULT_STAGES) else ""))
        return step < steps

    if "reward_model" in stages:
        reward_model, rm_summary = timed("reward_model", lambda: reward_model_stage(
            sft_model, tokenizer, pairs, settings, out_dir, device, args.resume, args.stop_at, sft_checkpoint, log))
        if stopped_early("reward_model", rm_summary["step"], settings["rm_steps"]):
            return {"timings": timings, "cpu_seconds": cpu_seconds, "stopped_at": "reward_model"}
        summaries["reward_model"] = reward_model_report(reward_model, tokenizer, pairs["heldout"], out_dir, log)
    elif any(s in stages for s in ("ppo", "eval", "overopt")):
        if (Path(out_dir) / "reward_model" / "ckpt.pt").exists():
            reward_model = load_stage_model(out_dir, "reward_model", sft_checkpoint, device,
                                            finished="ppo" in stages or "overopt" in stages)[0]
        elif "ppo" in stages or "overopt" in stages:
            raise FileNotFoundError(f"no reward model in {out_dir / 'reward_model'}: run the reward_model stage first")
    if "ppo" in stages:
        policies["PPO"], summaries["ppo"] = timed("ppo", lambda: rl_stage(
            "ppo", "ppo", sft_model, tokenizer, settings, settings["ppo"], out_dir, device, args.resume, args.stop_at,
            sft_checkpoint, reward_model, log))
        if stopped_early("ppo", summaries["ppo"]["step"], settings["ppo"]["steps"]):
            return {"timings": timings, "cpu_seconds": cpu_seconds, "stopped_at": "ppo"}
    if "dpo" in stages:
        policies["DPO"], summaries["dpo"] = timed("dpo", lambda: dpo_stage(
            sft_model, tokenizer, pairs, settings, out_dir, device, args.resume, args.stop_at, sft_checkpoint, log))
        if stopped_early("dpo", summaries["dpo"]["step"], settings["dpo_steps"]):
            return {"timings": timings, "cpu_seconds": cpu_seconds, "stopped_at": "dpo"}
    if "grpo" in stages:
        policies["GRPO"], summaries["grpo"] = timed("grpo", lambda: rl_stage(
            "grpo", "grpo", sft_model, tokenizer, settings, settings["grpo"], out_dir, device, args.resume,
            args.stop_at, sft_checkpoint, None, log))
        if stopped_early("grpo", summaries["grpo"]["step"], settings["grpo"]["steps"]):
            return {"timings": timings, "cpu_seconds": cpu_seconds, "stopped_at": "grpo"}
    if "eval" in stages:
        summaries["eval"] = timed("eval", lambda: eval_stage(sft_model, sft_checkpoint, reward_model, tokenizer, policies, settings,
                                                             out_dir, device, timings, log))
    if "overopt" in stages:
        summaries["overopt"] = timed("overopt", lambda: overopt_stage(
            sft_model, tokenizer, settings, out_dir, device, args.resume, args.stop_at, sft_checkpoint, reward_model,
            log))
    total = time.time() - start
    log(f"\ndone in {total:.0f} s: " + ", ".join(f"{s} {t:.0f} s ({100 * t / total:.0f}%)" for s, t in timings.items()))
    log(f"CPU time {sum(cpu_seconds.values()):.0f} s: " + ", ".join(f"{s} {t:.0f} s" for s, t in cpu_seconds.items()))
    log(f"outputs in {out_dir}/: preferences/, reward_model/, ppo/, dpo/, grpo/ (ckpt.pt, metrics.jsonl, curves), "
        f"rlhf_eval.md/.json/.png")
    log(f"next: python 04_sft/chat.py --ckpt {out_dir / 'grpo' / 'ckpt.pt'}")
    return {"timings": timings, "cpu_seconds": cpu_seconds, "total_seconds": total, **summaries}


def eval_stage(sft_model, sft_checkpoint, reward_model, tokenizer, policies, settings, out_dir, device, timings, log):
    for name in ("ppo", "dpo", "grpo"):
        if name.upper() not in policies and (Path(out_dir) / name / "ckpt.pt").exists():
            policy, meta = load_stage_model(out_dir, name, sft_checkpoint, device)
            if steps_done(meta)[0] >= steps_done(meta)[1]:  # a stopped run is left out of the table
                policies[name.upper()] = policy
    examples = eval_examples(settings)
    results = {}
    for name, model in {"SFT": sft_model, **{k: policies[k] for k in ("PPO", "DPO", "GRPO") if k in policies}}.items():
        t0 = time.time()
        results[name] = evaluate_policy(model.to(device).eval(), sft_model, reward_model, tokenizer, examples, settings)
        m = results[name]["metrics"]
        log(f"{name}: gold {m['gold_reward']:+.3f}, KL {m['kl_from_sft']:.2f}, facts {100 * m['fact_accuracy']:.0f}%, "
            f"math {100 * m['math_accuracy']:.0f}%, harmful refused {100 * m['harmful_refusal']:.0f}%, benign refused "
            f"{100 * m['benign_over_refusal']:.0f}% ({time.time() - t0:.1f} s)")
    table = results_table(results)
    rm_eval_path = Path(out_dir) / "reward_model" / "rm_eval.json"
    rm_eval = json.loads(rm_eval_path.read_text()) if rm_eval_path.exists() else None
    lines = ["# RLHF evaluation", "", f"Greedy replies (at most {settings['eval_tokens']} tokens) to {len(examples)} "
             f"held-out prompts (chapter 04's held-out items of these tasks); the KL row samples one reply per prompt "
             f"at temperature 1. SFT model: `{settings['sft']}`, preset {settings['preset']}, seed {settings['seed']}.",
             "", table, ""]
    if rm_eval:
        lines += ["Reward model, held-out pairwise accuracy against the gold ordering: "
                  + ", ".join(f"{k} {100 * v:.1f}%" for k, v in rm_eval["heldout_accuracy_vs_gold"].items())
                  + f"; Spearman(score, gold reward) on sampled replies {rm_eval['spearman_score_vs_gold']:.3f}.", ""]
    lines += ["## Example replies", ""]
    names = list(results)
    shown = {}
    for i, example in enumerate(examples):
        if shown.get(example["task"], 0) >= 2:
            continue
        shown[example["task"]] = shown.get(example["task"], 0) + 1
        lines.append(f"**{example['task']}**: {example['messages'][-2]['content']!r}")
        lines += [f"- {name}: {results[name]['replies'][i]['reply'][:200]!r}" for name in names] + [""]
    cli.write_text_atomic(Path(out_dir) / "rlhf_eval.md", "\n".join(lines) + "\n")
    cli.write_text_atomic(Path(out_dir) / "rlhf_eval.json", json.dumps(
        {"metrics": {n: r["metrics"] for n, r in results.items()}, "counts": results["SFT"]["counts"],
         "reward_model": rm_eval, "timings": timings, "settings": settings}, indent=1) + "\n")
    plot_table(results, Path(out_dir) / "rlhf_eval.png")
    log("\n" + table)
    return {n: r["metrics"] for n, r in results.items()}


if __name__ == "__main__":
    cli.run(main)
