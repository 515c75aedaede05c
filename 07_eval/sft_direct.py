"""The control model of the chain-of-thought study: chapter 04's SFT, with the math replies in DIRECT form.

    train_direct_sft(sft_ckpt="runs/04_sft/ckpt.pt", out_dir="runs/07_eval/sft_direct")

Chapter 04's SFT model was trained to work word problems out step by step ("She gives 7 to Clara, so she
has 13 - 7 = 6 apples. ... The answer is 14."). To see what the steps are worth, this trains a second
model the same way (the same base model, settings, data mix and seed: every conversation is the same)
except that every math reply is only "The answer is 14.". The run's settings are read from the SFT
checkpoint, so the two models differ in that one thing. It costs one more SFT run (about as long as
chapter 04's training); evaluate.py makes it once and reuses it.
"""
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import train  # noqa: E402  (chapter 03: the training loop)
import world  # noqa: E402  (chapter 03)
from chat_format import add_chat_embeddings, add_chat_tokens  # noqa: E402  (chapter 04)
from checkpoint import read_checkpoint  # noqa: E402  (chapter 03)
from sft import WORLD_SEED, load_base, parse_mix, sft_loss  # noqa: E402  (chapter 04)
from sft_data import EVAL_MIX, MULTI_TURN_FRACTION, SFTBatches, make_rows, tokenize, world_examples  # noqa: E402

STAGE = "sft-direct"


def direct_rows(settings, tokenizer, block_size):
    """chapter 04's training and validation rows, with math_style="direct" (sft.build_data otherwise)."""
    w = world.build_world(WORLD_SEED)
    seed = settings["seed"]
    mix = parse_mix(settings.get("mix"), settings.get("mix_scale", 1.0))
    train_conversations = world_examples(w, "train", mix, seed=seed, multi_turn=MULTI_TURN_FRACTION,
                                         math_style="direct")
    val_conversations = world_examples(w, "heldout", EVAL_MIX, seed=seed + 1, math_style="direct")
    random.Random(f"sft-rows:{seed}").shuffle(train_conversations)
    pad_id = tokenizer.special_tokens.get("<|endoftext|>", 0)
    rows = {}
    for split, conversations in (("train", train_conversations), ("val", val_conversations)):
        sequences, _ = tokenize(conversations, tokenizer, block_size)
        rows[split] = make_rows(sequences, block_size, pad_id, settings.get("packing", True))
    return SFTBatches(rows, settings["batch_size"])


def train_direct_sft(sft_ckpt, out_dir, device=None, base_ckpt=None, log=print, settings=None):
    """Train the direct-answer control next to the SFT checkpoint `sft_ckpt` -> the path of its ckpt.pt.

    The base model is the one the SFT run started from (or base_ckpt); every setting is the SFT run's
    (or `settings`, sft.py's resolved settings, to train it before or beside the SFT run)."""
    start = time.time()
    settings = dict(settings or read_checkpoint(sft_ckpt).get("settings") or {})
    if "steps" not in settings:
        raise ValueError(f"{sft_ckpt} has no SFT settings: it is not a chapter 04 checkpoint")
    base_path = base_ckpt or settings["base"]
    model, base_tokenizer, _ = load_base(base_path)
    tokenizer = add_chat_tokens(base_tokenizer)
    add_chat_embeddings(model, base_tokenizer, tokenizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out_dir / "tokenizer")
    batches = direct_rows(settings, tokenizer, model.config.block_size)
    config = train.TrainConfig(
        steps=settings["steps"], batch_size=settings["batch_size"], grad_accum=settings["grad_accum"],
        lr=settings["lr"], min_lr=settings["min_lr"], warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"], beta2=settings["beta2"], precision=settings["precision"],
        compile=False, device=device, seed=settings["seed"], eval_interval=settings["steps"],
        eval_batches=settings["eval_batches"], log_interval=max(settings["steps"] // 5, 1), sample_interval=0,
        out_dir=str(out_dir))
    extra = {"tokenizer": str(out_dir / "tokenizer"), "settings": {**settings, "math_style": "direct"},
             "base": str(base_path), "stage": STAGE, "made_by": "07_eval/sft_direct.py"}
    train.train(model, batches.get_batch, config, checkpoint_extra=extra, loss_fn=sft_loss, resume=True)
    log(f"direct-answer SFT control: {settings['steps']} steps in {time.time() - start:.0f} s -> {out_dir}")
    return out_dir / "ckpt.pt"
