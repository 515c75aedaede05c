"""One checkpoint contract and one loader for every model the pipeline makes (base, SFT, reward model,
RLHF policy, quantized copy).

    model, tokenizer, meta = load_model("runs/04_sft/ckpt.pt", stage="chat")      # any chat model
    model, tokenizer, meta = load_model("runs/03_pretrain/ckpt.pt", stage="base")
    scorer, tokenizer, meta = load_model("runs/05_rlhf/reward_model/ckpt.pt", stage="reward_model")
    find_chat_models("runs")   # {"04_sft": Path("runs/04_sft/ckpt.pt"), "05_rlhf/grpo": ..., ...}

The contract. Every ckpt.pt is a plain dict (torch.load(..., weights_only=True) reads it) holding
    model, model_config   the state dict, and chapter 02's GPTConfig as a dict
    stage                 what made it: "base", "sft", "ppo", "dpo", "grpo", "reward_model", "rtn4", ...
    role                  what it is for: "base" (continues text), "chat" (answers in the chat template),
                          "scorer" (a reward model: one number per reply)
    format                how to rebuild the module: "gpt" (chapter 02's GPT, the default) or a format a
                          later chapter registered (register_format: "reward_model" in 05, "quantized" in 06)
    tokenizer             the tokenizer's path prefix (else the tokenizer.tiktoken/.json beside ckpt.pt)
    tokenizer_sha256      the tokenizer's hash: a checkpoint never loads with another tokenizer
A checkpoint written before stage/role/format were recorded gets them from its other fields (see
describe()), never from the name of its folder.

load_model(path, stage=...) names the stages or roles the caller accepts and refuses any other with one
line (WrongStageError, a ValueError); a missing file is FileNotFoundError; a damaged, cut-short or
foreign file, a changed tokenizer or weights that do not fit are ValueError naming the file.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from checkpoint import read_checkpoint  # noqa: E402  (this chapter)

ROLES = {"base": "a base model (it continues text; it was not trained to chat)",
         "chat": "a chat model",
         "scorer": "a reward model (it scores replies, it does not write them)"}


class WrongStageError(ValueError):
    """A checkpoint of another stage than the caller asked for (a reward model where a policy is expected);
    .stage and .role are the checkpoint's, so a script can add the fix that fits."""

    def __init__(self, message, stage=None, role=None):
        super().__init__(message)
        self.stage, self.role = stage, role


# ----------------------------------------------------------------------------------------------------
# Formats: how to rebuild the nn.Module of a checkpoint. Chapter 02's GPT is built in; a later chapter
# that saves another kind of model registers its own (05: the reward model, 06: quantized models).


def rebuild_gpt(meta, state_dict):
    """Chapter 02's GPT with the checkpoint's config and weights (state_dict None: fresh weights)."""
    from gpt import GPT, GPTConfig
    model = GPT(GPTConfig(**meta["model_config"]))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


FORMATS = {"gpt": rebuild_gpt}  # format -> rebuild(meta, state_dict) -> nn.Module
RECOGNIZE = []  # (format, test(meta)): for checkpoints written before "format" was recorded


def register_format(name, rebuild, recognize=None):
    """Teach load_model a new kind of checkpoint: rebuild(meta, state_dict) -> nn.Module. `recognize(meta)`
    says whether a checkpoint that records no "format" is of this kind (older files)."""
    FORMATS[name] = rebuild
    if recognize is not None:
        RECOGNIZE.append((name, recognize))


def describe(meta):
    """(stage, role, format) of a checkpoint's metadata, filling in what an older file did not record:
    an SFT run records the base it started from, a pretraining run does not."""
    stage = meta.get("stage") or ("sft" if meta.get("base") else "base")
    role = meta.get("role") or {"base": "base", "reward_model": "scorer"}.get(stage, "chat")
    fmt = meta.get("format") or next((name for name, test in RECOGNIZE if test(meta)), "gpt")
    return stage, role, fmt


def _wanted(stage):
    return () if stage is None else (stage,) if isinstance(stage, str) else tuple(stage)


def check_stage(path, meta, stage):
    """WrongStageError unless the checkpoint's stage or role is one of `stage` (a name or a tuple of them);
    stage=None accepts any model that writes text (base or chat)."""
    have_stage, role, _ = describe(meta)
    wanted = _wanted(stage) or ("base", "chat")
    if have_stage in wanted or role in wanted:
        return
    names = " or ".join({"base": "a base model", "chat": "a chat model", "scorer": "a reward model",
                         "reward_model": "a reward model"}.get(w, f"a {w} checkpoint") for w in wanted)
    raise WrongStageError(f"{path} is not {names}: it is {ROLES.get(role, f'a {role} model')}, stage {have_stage!r}", have_stage, role)


# ----------------------------------------------------------------------------------------------------
# The loader


def find_tokenizer(path, meta):
    """The tokenizer the checkpoint names (or the one beside it) whose sha256 is the one it records."""
    from bpe import Tokenizer
    from dataset import tokenizer_fingerprint

    candidates = [Path(meta["tokenizer"])] if meta.get("tokenizer") else []
    candidates.append(Path(path).parent / "tokenizer")
    found = [p for p in dict.fromkeys(candidates) if p.with_name(p.name + ".tiktoken").is_file()]
    if not found:
        raise FileNotFoundError(f"no tokenizer for {path}: looked for " + " and ".join(f"{p}.tiktoken" for p in candidates))
    expected = meta.get("tokenizer_sha256")
    for prefix in found:
        try:
            tokenizer = Tokenizer.load(prefix)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"the tokenizer {prefix}.tiktoken/.json of {path} is damaged ({error}): put back the "
                             f"run's own tokenizer files, or train again") from None
        if expected is None or tokenizer_fingerprint(tokenizer) == expected:
            return tokenizer
    raise ValueError(f"{path} was trained with another tokenizer than {' or '.join(map(str, found))} (its sha256 "
                     f"differs from the one the checkpoint records): put back the run's own tokenizer.tiktoken/.json "
                     f"next to ckpt.pt, or train again")


def read_model_checkpoint(path, stage=None):
    """The checkpoint dict at `path`, checked to be a model of an accepted stage (weights not yet built)."""
    path = Path(path)
    checkpoint = read_checkpoint(path)  # FileNotFoundError, or ValueError naming a damaged / cut-short file
    if not isinstance(checkpoint.get("model"), dict) or not isinstance(checkpoint.get("model_config"), dict):
        raise ValueError(f"{path} is not a bytes2chat checkpoint (it needs 'model' and 'model_config'; its keys: "
                         f"{', '.join(map(str, list(checkpoint)[:6])) or 'none'}): give the ckpt.pt of a run")
    check_stage(path, checkpoint, stage)
    return checkpoint


def load_model(path, stage=None, device="cpu"):
    """(model in eval mode on `device`, tokenizer, meta) of any stage's checkpoint; meta is the checkpoint
    dict without its weights and optimizer state, plus "stage", "role" and "format" filled in.

    stage: the stages or roles the caller accepts, e.g. "chat", "base", "reward_model", ("sft", "base");
    None: any model that writes text. Anything else is refused with one WrongStageError line."""
    path = Path(path)
    checkpoint = read_model_checkpoint(path, stage)
    meta = {k: v for k, v in checkpoint.items() if k not in ("model", "optimizer")}
    meta["stage"], meta["role"], meta["format"] = describe(checkpoint)
    if meta["format"] not in FORMATS:
        raise ValueError(f"{path} is a {meta['format']!r} checkpoint, and no loaded chapter knows how to rebuild one "
                         f"(the chapter that writes it registers its format): load it from that chapter's scripts")
    tokenizer = find_tokenizer(path, checkpoint)
    try:
        model = FORMATS[meta["format"]](meta, checkpoint["model"])
    except (TypeError, RuntimeError, KeyError) as error:  # unknown config fields, missing or misshapen weights
        raise ValueError(f"{path}: the weights do not fit the model its config describes "
                         f"({str(error).splitlines()[0]}): give a complete ckpt.pt, or train again") from None
    vocab = meta["model_config"].get("vocab_size", tokenizer.vocab_size)
    if tokenizer.vocab_size > vocab:
        raise ValueError(f"{path}: the tokenizer has {tokenizer.vocab_size} ids but the model only {vocab} embedding "
                         f"rows; they do not belong together")
    return model.to(device).eval(), tokenizer, meta


# ----------------------------------------------------------------------------------------------------
# Finding models: by the stage their checkpoint records, not by folder names


def read_model_meta(path):
    """The metadata of the model checkpoint at `path` (its weights mapped, not read), with "stage", "role" and
    "format" filled in; FileNotFoundError / ValueError naming the file if it is not one."""
    checkpoint = read_checkpoint(path, mmap=True)  # mmap: the settings without reading the weights
    if not isinstance(checkpoint.get("model"), dict) or not isinstance(checkpoint.get("model_config"), dict):
        raise ValueError(f"{path} is not a bytes2chat checkpoint (it needs 'model' and 'model_config')")
    meta = {k: v for k, v in checkpoint.items() if k not in ("model", "optimizer")}
    meta["stage"], meta["role"], meta["format"] = describe(checkpoint)
    return meta


def base_run(checkpoint, depth=0):
    """The checkpoint dict of the chapter-03 run a model descends from: the one that records "data" (the
    folder of its train.bin/val.bin), found by following what each later stage records it started from
    ("base" for SFT, "started_from" for chapter 05's policies, "source" for a quantized copy); None when
    the chain ends before one. Parents are read memory-mapped (their weights are not loaded)."""
    if isinstance(checkpoint.get("data"), dict) and checkpoint["data"].get("dir"):
        return checkpoint
    parent = checkpoint.get("base") or checkpoint.get("started_from") or checkpoint.get("source")
    if parent and depth < 4 and Path(parent).is_file():
        return base_run(read_checkpoint(parent, mmap=True), depth + 1)
    return None


def find_models(runs_dir, problems=None):
    """[(path, meta)] for every model checkpoint runs_dir/**/ckpt.pt outside hidden folders, sorted by path
    (read_model_meta). A file that is not one is left out, with a line saying why appended to `problems`."""
    found = []
    for path in sorted(Path(runs_dir).glob("**/ckpt.pt")):
        if any(part.startswith(".") for part in path.relative_to(runs_dir).parts):
            continue  # a staging folder of a run in progress (quantize.py's .staging/): not a finished model
        try:
            found.append((path, read_model_meta(path)))
        except (OSError, ValueError) as error:
            if problems is not None:
                problems.append(f"{path}: not loaded ({error})")
    return found


def find_chat_models(runs_dir):
    """{name: path} of the chat models under runs_dir that this process can load (their format is
    registered), name = the folder relative to runs_dir: {"04_sft": runs/04_sft/ckpt.pt, "05_rlhf/dpo": ...}."""
    runs_dir = Path(runs_dir)
    return {path.parent.relative_to(runs_dir).as_posix(): path for path, meta in find_models(runs_dir)
            if meta["role"] == "chat" and meta["format"] in FORMATS}
