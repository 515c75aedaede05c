"""The checks rlhf.py makes before it writes anything: the SFT model it starts from, the folders of earlier
runs it must not start over, the earlier stages a stage reads, and an earlier stage's model. Script plumbing, out of the lesson's path:
each raises one clear line (cli.run turns it into a message and exit code 2)."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: the shared script plumbing)
from model_loader import WrongStageError, load_model  # noqa: E402  (chapter 03: the one loader)
from rl_loop import steps_done  # noqa: E402  (this chapter)


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


def stages_trained_on_rm(grpo_needs_rm):
    """The stages whose policy is trained against the reward model: PPO, the overoptimization demo, and GRPO
    with --grpo-reward rm."""
    return ("ppo", "overopt") + (("grpo",) if grpo_needs_rm else ())


def check_prerequisites(out_dir, stages, grpo_needs_rm):
    """A stage that reads an earlier stage's output fails before anything is written if it is missing."""
    needs = {"reward_model": ("preferences", "preferences/train.jsonl"), "dpo": ("preferences", "preferences/train.jsonl"),
             **{stage: ("reward_model", "reward_model/ckpt.pt") for stage in stages_trained_on_rm(grpo_needs_rm)}}
    for stage, (earlier, path) in [(s, needs[s]) for s in stages if s in needs]:
        if earlier not in stages and not (Path(out_dir) / path).exists():
            raise FileNotFoundError(f"no {earlier.replace('_', ' ')} in {Path(out_dir) / earlier}: run the {earlier} "
                                    f"stage first (--stages {earlier},{stage})")


def load_stage_model(run, stage, finished=False):
    """A stage's model (a policy, or the reward model), checked against the SFT model it must have started
    from -> (model, meta). finished=True: refuse a run that was stopped before its last step."""
    ckpt_path = Path(run.out_dir) / stage / "ckpt.pt"
    model, _, meta = load_model(ckpt_path, stage=stage, device=run.device)
    step, planned = steps_done(meta)
    if finished and step < planned:
        raise ValueError(f"{ckpt_path} is a run stopped at step {step} of {planned}: finish it first with  python "
                         f"05_rlhf/rlhf.py --resume --stages {stage} --out-dir {run.out_dir}  (or redo it with --overwrite)")
    if meta["model_config"] != run.sft_meta["model_config"]:
        raise ValueError(f"{ckpt_path} was trained from another SFT model (its config differs from "
                         f"{run.settings['sft']}): rerun the stage with "
                         f"--stages {stage} --overwrite")
    return model, meta
