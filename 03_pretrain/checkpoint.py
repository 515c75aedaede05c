"""Checkpoints: written atomically, loaded with a clear error, and complete enough to resume bit for bit.

    save_checkpoint(path, {...})                       atomic: the old file or the new one, never half of one
    checkpoint = load_checkpoint(path, model)          the weights into `model` (its config is checked first)
    checkpoint = load_checkpoint(path, model, optimizer)   ... and the optimizer's moments; checkpoint["step"]
    rng_states(), set_rng_states(states)               every RNG the loop touches (torch, cuda, numpy, python)

What train() writes into ckpt.pt (a plain dict; torch.load(..., weights_only=True) reads it):
    model, optimizer, scaler     state dicts (scaler: {} unless fp16)
    step                         optimizer steps done
    rng                          one rng_states() per process of the run that wrote it
    data_position                {"tokens_done": ...}: batches are drawn by index, so the step is enough
    model_config, train_config   the two dataclasses as dicts
    ... and what the caller adds (checkpoint_extra): the tokenizer's path, the script's settings, ...
"""
import dataclasses
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer"]:  # the earlier chapter this file builds on (its cli plumbing)
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: atomic_output)


def save_checkpoint(path, checkpoint):
    """torch.save to `path` atomically: write a temp file in the same folder, then os.replace it.

    os.replace is atomic on POSIX and Windows, so `path` is always either the old complete checkpoint
    or the new complete one, never half a file, even if the run is killed while saving.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with cli.atomic_output(path) as tmp_path, open(tmp_path, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename, so a power cut cannot leave an empty ckpt.pt


def model_config_dict(model):
    """The model's config as a plain dict (for the checkpoint), or None if it has no dataclass config."""
    config = getattr(model, "config", None)
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None


def read_checkpoint(path, mmap=False):
    """torch.load(path) onto the CPU with weights_only=True: tensors and plain Python data only, never
    arbitrary objects (a checkpoint from elsewhere cannot run code). FileNotFoundError if it is missing,
    ValueError if it is not a checkpoint this way can read (another format, a damaged, cut-short or empty
    file, or a file that holds something other than a dict). mmap=True maps the tensors instead of reading
    them (cheap when only the settings are wanted)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint: give the ckpt.pt file in it")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train first, or point --out-dir/--resume at a run folder")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except OSError as error:  # e.g. [Errno 22] Invalid argument from a cut-short file: say which file
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint: reading it failed with "
                         f"{error.strerror or error} (a damaged or cut-short file): copy it again from its run, "
                         f"or train again") from None
    except Exception as error:  # UnpicklingError, RuntimeError (not a zip), EOFError, struct.error, ...
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint: torch.load failed with "
                         f"{type(error).__name__} (a damaged or cut-short file, another format, or objects other "
                         f"than tensors and plain data, which are never loaded)") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint: it holds a "
                         f"{type(checkpoint).__name__}, not a dict of model, optimizer, step, ...")
    return checkpoint


def read_run_checkpoint(out_dir, script):
    """The checkpoint that --resume continues: out_dir/ckpt.pt, which must hold the 'model' and the
    'settings' of a run of `script` (e.g. "pretrain.py"); anything else is one clear ValueError."""
    path = Path(out_dir) / "ckpt.pt"
    checkpoint = read_checkpoint(path, mmap=True)  # one clear line for a damaged file
    if not {"model", "settings"} <= set(checkpoint):
        raise ValueError(f"{path} is not a checkpoint of {script} (it has no 'model' and 'settings'): --resume "
                         f"continues a run of this script; start a new one with --overwrite or another --out-dir")
    return checkpoint


def load_checkpoint(path, model=None, optimizer=None, scaler=None):
    """Load a checkpoint written by save_checkpoint; returns it as a dict (checkpoint["step"], ...).

    model       if given, its config is checked against the saved one, then the weights are loaded;
    optimizer   if given, its state (AdamW's moments and step counts) is restored too, so training
                can go on where it stopped: load_checkpoint(path, model, optimizer)["step"];
    scaler      if given (fp16's GradScaler), its scale is restored.
    A missing file raises FileNotFoundError; a checkpoint made for another model config (another
    width, depth, vocab, ...) raises ValueError naming the fields that differ, instead of torch's
    "size mismatch for transformer.h.0...". Loads with weights_only=True: tensors and plain data only.
    """
    checkpoint = read_checkpoint(path)
    if model is not None and not isinstance(checkpoint.get("model"), dict):
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint (it has no 'model' weights; its "
                         f"keys: {', '.join(map(str, list(checkpoint)[:6])) or 'none'}): point at a run's ckpt.pt")
    if model is not None:
        saved, current = checkpoint.get("model_config"), model_config_dict(model)
        # Fields both configs have must agree. A field the checkpoint lacks was added to GPTConfig after
        # it was saved (e.g. norm_eps), with a default that keeps the old behaviour: not a difference.
        diffs = [f"{k}: checkpoint {saved[k]!r}, now {current[k]!r}"
                 for k in sorted(set(saved or {}) & set(current or {})) if saved[k] != current[k]]
        if diffs:
            raise ValueError(f"checkpoint {path} was saved from a different model config ("
                             + "; ".join(diffs) + "). Use the same model settings as that run, "
                             "or start a fresh run in another --out-dir.")
        try:
            model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise ValueError(f"checkpoint {path} does not fit this model (different architecture?): "
                             f"{str(error).splitlines()[0]}. Start a fresh run in another --out-dir.") from None
    if optimizer is not None:
        if not checkpoint.get("optimizer"):
            raise ValueError(f"checkpoint {path} holds no optimizer state (it was saved for inference only): "
                             f"load it without an optimizer and start the optimizer fresh")
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scaler is not None and checkpoint.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(checkpoint["scaler"])
    return checkpoint


# ----------------------------------------------------------------------------------------------------
# random number generators: what exact resume needs besides the weights and the optimizer


def rng_states():
    """Every random number generator the loop touches, in a form torch.load(weights_only=True) accepts."""
    numpy_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ----------------------------------------------------------------------------------------------------
# the training loop's checkpoint: save every process's RNGs, resume onto them


def save_training_state(path, model, optimizer, scaler, step, tokens_done, train_config, extra=None):
    """train()'s checkpoint. Under DDP every process must call it (it gathers each rank's RNG states:
    dropout differs per rank); only rank 0 writes."""
    rng = [rng_states()]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        rng = [None] * dist.get_world_size()
        dist.all_gather_object(rng, rng_states())
        if dist.get_rank() != 0:
            return
    save_checkpoint(path, {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "step": step,
        "rng": rng,  # one entry per process
        "data_position": {"tokens_done": tokens_done},
        "model_config": model_config_dict(model),
        "train_config": dataclasses.asdict(train_config),
        **(extra or {}),
    })


def resume_from(path, model, optimizer, scaler, train_config, rank=0, world_size=1, log=print):
    """Load a checkpoint into the model, optimizer and grad scaler, and give this process the RNG states
    it had when the checkpoint was written; returns (step, tokens_done).

    checkpoint["rng"] holds one entry per process of the run that wrote it. Resumed with another number
    of processes, the RNGs keep their fresh seeds: only dropout draws from them (the batches are drawn by
    index), so training goes on correctly, just not bit for bit as the uninterrupted run would have."""
    checkpoint = load_checkpoint(path, model, optimizer, scaler)  # a clear error if the model config differs
    missing = [key for key in ("step", "rng", "train_config", "data_position") if key not in checkpoint]
    if missing:
        raise ValueError(f"cannot resume from {path}: it lacks {', '.join(missing)} (it was not written by "
                         f"train()); start a new run with --overwrite or another --out-dir")
    if len(checkpoint["rng"]) == world_size:
        set_rng_states(checkpoint["rng"][rank])
    else:
        log(f"the checkpoint was written by {len(checkpoint['rng'])} process(es), this run has {world_size}: "
            f"same batches, but fresh RNG seeds (other dropout masks than an uninterrupted run)")
    step = checkpoint["step"]
    changed = {k: (v, getattr(train_config, k)) for k, v in checkpoint["train_config"].items()
               if k not in ("stop_at", "device", "out_dir") and getattr(train_config, k, v) != v}
    log(f"resuming from {path} at step {step}" + (f" (settings changed since: {changed})" if changed else ""))
    return step, checkpoint["data_position"]["tokens_done"]
