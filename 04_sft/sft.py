"""Supervised fine-tuning (SFT): turn chapter 03's base model into an assistant that answers in a chat format.

    python 04_sft/sft.py --preset tiny          # the default: world instruction data, a few minutes on a CPU
    python 04_sft/sft.py --preset small         # the small base model of `pretrain.py --preset small`, ~12 minutes
    python 04_sft/sft.py --data world --data my_data.jsonl    # add your own JSONL (Alpaca or messages layout)
    python 04_sft/sft.py --mix benign=0         # change the data mix (here: no benign look-alikes)
    python 04_sft/sft.py --ptx 0.25             # a quarter of each batch is pretraining text (the alignment tax)
    python 04_sft/sft.py --preset gpt2          # GPT-2 small from `03_pretrain/pretrain.py --preset gpt2`, one GPU
    python 04_sft/sft.py --resume               # continue an interrupted run in --out-dir
    python 04_sft/sft.py --overwrite            # start over in an --out-dir that holds a run
    python 04_sft/sft.py --math-style direct --out-dir runs/04_sft_direct   # chapter 07's direct-answer control

Steps: (1) load the base checkpoint and its tokenizer (default runs/03_pretrain/); (2) add the chat tokens
to the tokenizer and the embedding (chat_format.py); (3) build instruction conversations from the
mini-world (sft_data.py), render them with the chat template, mask everything but the assistant's tokens,
pack them into rows; (4) evaluate the BASE model on the held-out prompts (grading.py); (5) train with
chapter 03's loop and the loss hook sft_loss (our AdamW, warmup + cosine, clipping, checkpoints, metrics,
loss plot, --resume); (6) evaluate again.

Outputs, in --out-dir (default runs/04_sft/): ckpt.pt, tokenizer.tiktoken + tokenizer.json (with the chat
tokens), metrics.jsonl, loss.png, sample.txt, sft_eval.md (the before/after table and example replies),
sft_eval.json, sft_eval.png (the same as bars). Then talk to the model: python 04_sft/chat.py
"""
import argparse
import hashlib
import random
import re
import sys
import time
from pathlib import Path

import torch.distributed as dist
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one clear line for bad input)
import dataset  # noqa: E402  (chapter 03: the tokenizer's fingerprint)
import hardware  # noqa: E402  (chapter 03: device, precision, DDP)
import memory_plan  # noqa: E402  (chapter 03: the memory a run needs)
from model_loader import load_model  # noqa: E402  (chapter 03: the one loader)
import train  # noqa: E402  (chapter 03: the training loop)
import world  # noqa: E402  (chapter 03: the mini-world)
from checkpoint import read_run_checkpoint  # noqa: E402  (chapter 03)
from chat_format import add_chat_embeddings, add_chat_tokens  # noqa: E402
from grading import METRICS, evaluate, generate_replies, write_report  # noqa: E402  (this chapter)
from robustness import measure, robustness_sets, robustness_table  # noqa: E402  (this chapter)
from sft_data import (EVAL_MIX, MATH_STAGES, MULTI_TURN_FRACTION, TASKS, TRAIN_MIX, SFTBatches,  # noqa: E402
                      fill_ratio, load_jsonl, make_rows, tokenize, world_examples)

DEFAULT_BASE = REPO / "runs" / "03_pretrain" / "ckpt.pt"
DEFAULT_OUT_DIR = REPO / "runs" / "04_sft"

# Every preset sets every setting below; a command-line flag overrides one. SFT starts from a model that
# already knows the language and the world, so it needs far fewer steps than pretraining; the peak lr is
# about half of pretraining's. weight_decay 0: a few hundred steps, and we do not want to shrink
# what pretraining learned.
PRESETS = {
    # Chapter 03's tiny base model (2.2M parameters, context 256) on a CPU. bf16 autocast, as chapter 03's
    # tiny preset: faster than fp32 on a CPU with bf16 instructions; fp32 on one without (cpu_preset_precision).
    "tiny": dict(base=str(DEFAULT_BASE), steps=600, batch_size=16, grad_accum=1, lr=1e-3, min_lr=1e-4,
                 warmup_steps=30, weight_decay=0.0, beta2=0.99, precision="bf16", compile=False,
                 eval_interval=100, eval_batches=8, log_interval=20, packing=True, mix_scale=1.0,
                 max_new_tokens=128, ptx=0.0),
    # Chapter 03's small base model (5.3M parameters, context 256) on a 2-core CPU: bf16 autocast (1.45x
    # faster than fp32 at this size, measured: lesson appendix), twice the examples of the tiny mix (new
    # names and wordings rather than more epochs of the same ones); ~8 minutes of training, ~12 in all.
    "small": dict(base=str(DEFAULT_BASE), steps=600, batch_size=16, grad_accum=1, lr=8e-4, min_lr=8e-5,
                  warmup_steps=30, weight_decay=0.0, beta2=0.99, precision="bf16", compile=False,
                  eval_interval=200, eval_batches=8, log_interval=20, packing=True, mix_scale=2.0,
                  max_new_tokens=128, ptx=0.125),  # 2 of 16 rows pretraining text: the alignment tax (lesson s11)
    # GPT-2 small (124M, context 1024) from `pretrain.py --preset gpt2`, on one GPU: 8 x 4 packed rows of
    # 1024 tokens per step (~100 conversations), bf16, torch.compile.
    "gpt2": dict(base=str(DEFAULT_BASE), steps=1500, batch_size=8, grad_accum=4, lr=1e-4, min_lr=1e-5,
                 warmup_steps=100, weight_decay=0.0, beta2=0.95, precision="auto", compile=True,
                 eval_interval=250, eval_batches=20, log_interval=10, packing=True, mix_scale=4.0,
                 max_new_tokens=160, ptx=0.0),
}
# --dry-run: a preset's model and code paths with tiny work (2 steps of 2 one-row micro-batches, 2% of the mix,
# 2 held-out prompts per task, short replies), to find a shape, memory or precision error on a CPU before a GPU
# evening does; no compile (add --compile on a GPU). Flags you pass still override these.
DRY_RUN = dict(steps=2, batch_size=1, grad_accum=2, warmup_steps=1, compile=False, eval_interval=2, eval_batches=1,
               log_interval=1, mix_scale=0.02, eval_per_task=2, max_new_tokens=16)
WORLD_SEED = 0  # build_world(0): the world chapter 03's corpus describes
ROBUSTNESS_ITEMS = 30  # held-out items per robustness row (robustness.py), measured after SFT only


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    count, positive, non_negative = cli.positive_int, cli.positive_float, cli.non_negative_float
    add("--preset", default="tiny", choices=sorted(PRESETS), help="the settings to start from (default: tiny)")
    add("--base", help=f"the base model's checkpoint (default: {DEFAULT_BASE}); its tokenizer is found through it")
    add("--out-dir", default=None, help=f"where everything goes (default: {DEFAULT_OUT_DIR})")
    add("--resume", action="store_true", help="continue from --out-dir/ckpt.pt (its settings fill in missing flags)")
    add("--overwrite", action="store_true", help="start a new run in an --out-dir that holds one (replacing it)")
    add("--dry-run", action="store_true", help="the preset's model and code paths, tiny work: 2 steps, 2%% of the "
                                               "mix, 2 prompts per task (DRY_RUN)")
    data = parser.add_argument_group("data")
    data.add_argument("--data", action="append",
                      help="'world' (the mini-world instruction mix) or a JSONL file; repeat to combine "
                           "(default: world)")
    data.add_argument("--mix", help="override task counts of the world mix, e.g. 'benign=0,math=3000' "
                                    f"(tasks: {', '.join(TASKS)}; defaults: {TRAIN_MIX})")
    data.add_argument("--mix-scale", type=positive, help="multiply every count of the world mix")
    data.add_argument("--packing", action=argparse.BooleanOptionalAction, default=None,
                      help="pack several conversations per row (default) or pad one per row (--no-packing)")
    data.add_argument("--eval-per-task", type=count, help="at most this many held-out prompts per task")
    data.add_argument("--ptx", type=cli.fraction,
                      help="the pretraining mix: this fraction of every training batch's rows are windows of the "
                           "base model's own pretraining tokens (train.bin next to --base), loss on all their "
                           "tokens (default: the preset's; 0 = chat rows only)")
    data.add_argument("--math-style", choices=sorted(MATH_STAGES),
                      help="word problems worked step by step (steps, the default) or answered directly (direct: "
                           "the control of chapter 07's chain-of-thought study, e.g. --out-dir runs/04_sft_direct)")
    opt = parser.add_argument_group("optimization")
    opt.add_argument("--steps", type=count)
    opt.add_argument("--batch-size", type=count, help="rows per micro-batch (per process)")
    opt.add_argument("--grad-accum", type=count)
    opt.add_argument("--lr", type=positive)
    opt.add_argument("--min-lr", type=non_negative)
    opt.add_argument("--warmup-steps", type=cli.non_negative_int)
    opt.add_argument("--weight-decay", type=non_negative)
    run = parser.add_argument_group("running")
    run.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    run.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    run.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    run.add_argument("--eval-interval", type=count, help="steps between val-loss estimates and checkpoints")
    run.add_argument("--eval-batches", type=count)
    run.add_argument("--log-interval", type=count)
    run.add_argument("--max-new-tokens", type=count, help="reply length limit in the evaluation")
    run.add_argument("--seed", type=int, default=None, help="seed of the data order and batches (default 1337)")
    run.add_argument("--stop-at", type=count, help="stop after this step as if interrupted (to try --resume)")
    return parser.parse_args(argv)


def resolve_settings(args):
    """Flags you passed > settings saved in the checkpoint (with --resume) > the preset's.

    Returns (settings, out_dir, saved): saved holds the resumed checkpoint's "tokenizer_sha256" and
    "data_sha256" (empty for a new run), to refuse resuming on another tokenizer or other data. Refuses, before anything is written, a new run in a folder that holds one
    (cli.check_out_dir) and --resume where there is nothing to resume."""
    out_dir = cli.check_out_dir(args.out_dir or DEFAULT_OUT_DIR, args.resume, args.overwrite)
    settings = dict(PRESETS[args.preset], data=["world"], mix=None, eval_per_task=None, seed=1337, device=None,
                    stop_at=None, math_style="steps")
    if args.dry_run:
        settings.update(DRY_RUN)
    saved = {}
    if args.resume:
        checkpoint = read_run_checkpoint(out_dir, "sft.py")
        settings.update({k: v for k, v in checkpoint.get("settings", {}).items() if k not in ("device", "stop_at")})
        saved = {k: checkpoint[k] for k in ("tokenizer_sha256", "data_sha256") if k in checkpoint}
    settings.update({k: v for k, v in vars(args).items() if v is not None and k in settings})
    return settings, out_dir, saved


def check_jsonl_file(path):
    """A --data file must be a file, in UTF-8: an IsADirectoryError for a folder, and for another encoding
    a ValueError naming the file, the line of the first byte that is not UTF-8, and the fix."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--data {path} is a folder, not a JSONL file: give the .jsonl file itself")
    if not path.is_file():
        return  # load_jsonl says it is missing
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}, line {line}: byte {raw[error.start]:#04x} is not UTF-8 (Latin-1 or another "
                         f"legacy encoding?). Convert the file first, e.g. iconv -f latin1 -t utf-8 {path} > "
                         f"fixed.jsonl") from None


def parse_mix(text, scale=1.0):
    """'benign=0,math=3000' -> TRAIN_MIX with those counts, every count times `scale`."""
    mix = dict(TRAIN_MIX)
    for part in filter(None, (text or "").split(",")):
        match = re.fullmatch(r"\s*(\w+)\s*=\s*(\d+)\s*", part)
        if not match or match.group(1) not in TASKS:
            raise ValueError(f"--mix {text!r}: write task=count pairs separated by commas, tasks: {', '.join(TASKS)}")
        mix[match.group(1)] = int(match.group(2))
    return {task: int(round(n * scale)) for task, n in mix.items()}


def load_base(path, device="cpu"):
    """The base model, its tokenizer and its checkpoint's metadata: FileNotFoundError saying what to run when
    chapter 03 has not been run, ValueError when the file is not a usable base model."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--base {path} is a folder, not a checkpoint: give the ckpt.pt file in it")
    if not path.is_file():
        raise FileNotFoundError(f"no base model at {path}. Pretrain one first:\n    python 03_pretrain/pretrain.py "
                                f"--preset tiny\n(or pass --base PATH to a chapter-03 checkpoint)")
    try:
        return load_model(path, stage=("base", "sft"), device=device)  # fine-tuning an SFT model again is allowed
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"cannot use {path} as the base model: {error}") from None


def sft_loss(model, batch):
    """The SFT loss hook for chapter 03's train(): cross-entropy on the assistant's tokens only.

        loss = −1/|A| · Σ_{t ∈ A} log softmax(logits_t)[y_t],   A = {t : y_t ≠ −1}

    batch: (x, y) or (x, y, doc_ids), each (B, T); y = −1 on everything the assistant does not say
    (system and user turns, role tokens, padding: render_chat's loss mask), doc_ids separate packed
    conversations. Returns (loss, {"assistant_tokens": |A|}), the count logged beside the loss.
    """
    # --- student part: the masked SFT loss (lesson: "3. Loss masking") ---
    x, y, *doc_ids = batch
    logits, _ = model(x, doc_ids=doc_ids[0] if doc_ids else None)  # (B, T, vocab)
    mask = (y != -1).float()  # (B, T): 1 on A, the assistant's tokens
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten().clamp(min=0), reduction="none")
    loss = (per_token.view_as(mask) * mask).sum() / mask.sum()  # the mean over A (no GPU sync: no indexing)
    return loss, {"assistant_tokens": mask.sum()}
    # --- end of student part ---


def pretraining_mix(base_path, base_checkpoint, ptx, batch_size):
    """The pretraining mix (InstructGPT's "ptx", here at the SFT stage) -> (tokens, rows per batch).

    SFT on chat data alone moves the model away from the text it was pretrained on: it forgets (the
    alignment tax: chapter 07 measures it as bits per byte on pretraining text and multiple-choice
    accuracy). The cure: keep showing it that text. A fraction `ptx` of every training batch's rows,
    round(ptx * batch_size) of them, are windows of the base model's OWN pretraining tokens (the
    train.bin chapter 03 wrote next to its ckpt.pt), with the loss on all their tokens. The objective is
    sft_loss unchanged, one mean over every token in the loss:

        loss = −1/(|A| + |P|) · ( Σ_{t ∈ A} log p(y_t) + Σ_{t ∈ P} log p(y_t) )

    A: the assistant's tokens of the chat rows, P: every token of the pretraining rows. InstructGPT adds
    a separate term with a coefficient instead, objective = E[reward − β KL] + γ · E_pretrain[log p(x)]
    (γ = 27.8 there); our pooled mean is that form with γ = |P|/|A| (the token ratio, logged) and the whole
    loss scaled by |A|/(|A|+|P|). We pick the pooled mean because it needs nothing new: a pretraining row
    is just a row whose loss mask covers every token, sft_loss stays as it is, and one knob (the fraction
    of rows) sets the mix (the "assistant_tokens" the loop logs then counts P too). tokens: np.memmap of token
    ids, from the data folder chapter 03 records in its checkpoint ("data": {"dir"}), else the checkpoint's
    own folder; FileNotFoundError when there is no train.bin there, ValueError when its tokenizer is not
    the base model's."""
    if ptx == 0:
        return None, 0
    path = Path((base_checkpoint.get("data") or {}).get("dir") or Path(base_path).parent) / "train.bin"
    if not path.is_file():
        raise FileNotFoundError(f"--ptx {ptx} needs the base model's pretraining tokens, and there is no {path}: "
                                f"keep chapter 03's train.bin (+ train.json) next to the --base checkpoint, "
                                f"or use --ptx 0")
    meta = dataset.read_meta(path)
    if meta.get("tokenizer_sha256") != base_checkpoint.get("tokenizer_sha256"):
        raise ValueError(f"--ptx: {path} was tokenized with another tokenizer than the base model {base_path}: "
                         f"use the train.bin of the run that made this checkpoint, or --ptx 0")
    rows = int(round(ptx * batch_size))
    if rows >= batch_size:
        raise ValueError(f"--ptx {ptx} leaves no chat row in a batch of {batch_size} rows: use a smaller fraction")
    return dataset.read_tokens(path), rows

# ----------------------------------------------------------------------------------------------------
# The script


def rows_fingerprint(tensors):
    """sha256 of the training rows (x, y[, doc_ids]) as bytes: what a resumed run must train on again."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def eval_mix(settings):
    """Held-out prompts per task: EVAL_MIX, at most settings["eval_per_task"] each (None: all of them)."""
    per_task = settings["eval_per_task"]
    return {task: n if per_task is None else min(n, per_task) for task, n in EVAL_MIX.items()}


def build_data(settings, tokenizer, block_size, log=print, ptx_tokens=None, ptx_rows=0):
    """Training and validation rows (SFTBatches, with ptx_rows of every training batch drawn from
    ptx_tokens: pretraining_mix) and the held-out evaluation examples."""
    w = world.build_world(WORLD_SEED)
    seed = settings["seed"]
    train_conversations, val_conversations = [], []
    for source in settings["data"]:
        if source == "world":
            mix = parse_mix(settings["mix"], settings["mix_scale"])
            style = settings.get("math_style", "steps")  # "direct": "The answer is 14." with no working
            train_conversations += world_examples(w, "train", mix, seed=seed, multi_turn=MULTI_TURN_FRACTION,
                                                  math_style=style)
            val_conversations += world_examples(w, "heldout", EVAL_MIX, seed=seed + 1, math_style=style)
        else:
            train_conversations += load_jsonl(source)  # FileNotFoundError or ValueError naming the line
    if not train_conversations:
        raise ValueError("the data has no training conversation: --mix and --mix-scale set every task's count to 0; "
                         "raise them, or add a --data JSONL file")
    if not val_conversations:  # user data only: keep every 20th conversation for the validation loss
        val_conversations = train_conversations[::20]
        train_conversations = [c for i, c in enumerate(train_conversations) if i % 20]
    random.Random(f"sft-rows:{seed}").shuffle(train_conversations)
    pad_id = tokenizer.special_tokens.get("<|endoftext|>", 0)
    rows = {}
    for split, conversations in (("train", train_conversations), ("val", val_conversations)):
        sequences, dropped = tokenize(conversations, tokenizer, block_size)
        if not sequences:
            raise ValueError(f"no {split} conversation fits in the context of {block_size} tokens")
        rows[split] = make_rows(sequences, block_size, pad_id, settings["packing"])
        n_learned = int((rows[split][1] != -1).sum())
        log(f"{split}: {len(sequences):,} conversations -> {len(rows[split][0]):,} rows of {block_size} tokens "
            f"({'packed' if settings['packing'] else 'padded'}, {100 * fill_ratio(sequences, rows[split]):.0f}% "
            f"of positions used, {n_learned:,} assistant tokens in the loss)"
            + (f"; dropped {dropped} longer than the context" if dropped else ""))
    if ptx_rows:
        chat_rows = settings["batch_size"] - ptx_rows
        per_chat_row = (rows["train"][1] != -1).sum().item() / len(rows["train"][0])
        log(f"pretraining mix: {ptx_rows} of {settings['batch_size']} rows per batch are windows of the base model's "
            f"{len(ptx_tokens):,} pretraining tokens, loss on all of them: {ptx_rows * block_size:,} pretraining "
            f"tokens per {chat_rows * per_chat_row:,.0f} assistant tokens (gamma = "
            f"{ptx_rows * block_size / (chat_rows * per_chat_row):.2f})")
    eval_examples = world_examples(w, "heldout", eval_mix(settings), seed=seed + 2)
    return SFTBatches(rows, settings["batch_size"], ptx_tokens, ptx_rows), eval_examples


def main(argv=None):
    """The script: `python sft.py ...` runs it through cli.run (a bad input is one line, exit code 2)."""
    return fine_tune(parse_args(argv))


def train_config(settings, out_dir):
    """Chapter 03's TrainConfig from the resolved settings (samples are drawn by make_sample, not by train())."""
    return train.TrainConfig(
        steps=settings["steps"], batch_size=settings["batch_size"], grad_accum=settings["grad_accum"],
        lr=settings["lr"], min_lr=settings["min_lr"], warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"], beta2=settings["beta2"], precision=settings["precision"],
        compile=settings["compile"], device=settings["device"], seed=settings["seed"],
        eval_interval=settings["eval_interval"], eval_batches=settings["eval_batches"],
        log_interval=settings["log_interval"], sample_interval=0, out_dir=str(out_dir), stop_at=settings["stop_at"])


def base_with_chat_tokens(settings, saved, log):
    """The base model with the chat tokens added to its tokenizer and embeddings -> (model, tokenizer, its
    sha256, the base checkpoint's metadata). `saved`: a resumed run's metadata, whose tokenizer must match."""
    model, base_tokenizer, base_checkpoint = load_base(settings["base"])
    tokenizer = add_chat_tokens(base_tokenizer)
    tokenizer_sha256 = dataset.tokenizer_fingerprint(tokenizer)
    if saved.get("tokenizer_sha256", tokenizer_sha256) != tokenizer_sha256:
        raise ValueError(f"--resume: the base model {settings['base']} has another tokenizer than the one this run "
                         f"was trained with: resume with the same --base, or start a new run with --overwrite or "
                         f"another --out-dir")
    new_ids = add_chat_embeddings(model, base_tokenizer, tokenizer)
    log(f"base model {settings['base']}: {model.num_params():,} parameters, context {model.config.block_size}; "
        f"chat tokens {dict((n, i) for n, i in tokenizer.special_tokens.items() if i in new_ids) or 'already there'}")
    return model, tokenizer, tokenizer_sha256, base_checkpoint


def check_same_data(saved, data_sha256, settings):
    """--resume trains on the rows the run started with, or not at all."""
    if saved.get("data_sha256", data_sha256) != data_sha256:
        raise ValueError(f"--resume: the training conversations differ from the ones this run was trained on "
                         f"(--data {' '.join(map(str, settings['data']))}, --mix, --mix-scale or --seed changed, or a "
                         f"JSONL file was edited): resume with the run's own data, or start a new run with "
                         f"--overwrite or another --out-dir")


def evaluate_before(model, tokenizer, eval_examples, settings, precision, log):
    """The base model on the held-out prompts (the table's "before" column)."""
    log(f"evaluating the base model on {len(eval_examples)} held-out prompts ...")
    eval_start = time.time()
    before = evaluate(model, tokenizer, eval_examples, settings["max_new_tokens"], precision)
    log("  " + ", ".join(f"{key} {100 * before['metrics'][key]:.0f}%" for key, _, _ in METRICS)
        + f" ({time.time() - eval_start:.0f} s)")
    return before


def sample_writer(tokenizer, eval_examples, settings, precision):
    """make_sample(model) for train(): greedy replies to four held-out prompts, as text for the log."""
    sample_prompts = [e["messages"][:-1] for e in eval_examples[:4]]

    def make_sample(model):
        replies = generate_replies(model, tokenizer, sample_prompts, settings["max_new_tokens"], precision=precision)
        return "\n".join(f"USER: {p[-1]['content']}\nASSISTANT: {r}" + ("" if ended else " [no <|end|>]")
                         for p, (r, ended) in zip(sample_prompts, replies))
    return make_sample


def fine_tune(args):
    """Load the base model, build the data, evaluate, train with sft_loss, evaluate again; returns a summary."""
    rank, _, world_size = hardware.setup_ddp()
    settings, out_dir, saved = resolve_settings(args)
    # check every setting and input before anything is written: a bad one must not touch the run in out_dir
    parse_mix(settings["mix"], settings["mix_scale"])  # a typo in --mix fails now, not after loading the model
    settings["precision"], precision_note = hardware.cpu_preset_precision(
        settings["precision"], hardware.pick_device(settings["device"]), asked=args.precision is not None)
    device, precision = hardware.place(settings["device"], settings["precision"], world_size)
    settings["compile"], compile_note = hardware.resolve_compile(settings["compile"], device.split(":")[0],
                                                                 asked=args.compile is True)
    config = train_config(settings, out_dir)
    train.check_config(config, world_size)
    for source in settings["data"]:
        if source != "world":
            check_jsonl_file(source)
    master = rank == 0
    log = print if master else (lambda *a, **k: None)
    for note in (precision_note, compile_note):
        if note:
            log(note)
    start = time.time()

    model, tokenizer, tokenizer_sha256, base_checkpoint = base_with_chat_tokens(settings, saved, log)
    ptx = settings.get("ptx", 0.0)  # a run saved before the option existed had none
    ptx_tokens, ptx_rows = pretraining_mix(settings["base"], base_checkpoint, ptx, settings["batch_size"])
    batches, eval_examples = build_data(settings, tokenizer, model.config.block_size, log, ptx_tokens, ptx_rows)
    data_sha256 = rows_fingerprint(batches.rows["train"])
    if ptx_rows:  # the mix is part of the data a resumed run must train on again
        data_sha256 = hashlib.sha256(f"{data_sha256} ptx {ptx_rows} {len(ptx_tokens)}".encode()).hexdigest()
    check_same_data(saved, data_sha256, settings)
    if master:  # every input is good: now write, the tokenizer before training so every checkpoint finds it
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(out_dir / "tokenizer")
    log(memory_plan.describe(model, settings["batch_size"], settings["grad_accum"] // world_size, precision, device,
                             sft=settings["packing"]))  # before the model takes its share of the GPU's free memory
    model.to(device)
    before = evaluate_before(model, tokenizer, eval_examples, settings, precision, log) if master else None

    metadata = {"stage": MATH_STAGES[settings.get("math_style", "steps")], "role": "chat",
                "tokenizer": str(out_dir.absolute() / "tokenizer"), "tokenizer_sha256": tokenizer_sha256,
                "data_sha256": data_sha256, "settings": settings, "base": str(settings["base"]),
                "base_step": base_checkpoint.get("step")}
    summary = train.train(model, batches.get_batch, config, resume=args.resume, checkpoint_extra=metadata,
                          loss_fn=sft_loss, make_sample=sample_writer(tokenizer, eval_examples, settings, precision))

    if master:
        if summary["step"] < settings["steps"]:
            log(f"stopped early at step {summary['step']}: continue with  python 04_sft/sft.py --resume "
                f"--out-dir {out_dir}")
        else:
            summary.update(evaluate_after(model, tokenizer, before, eval_examples, settings, out_dir, precision, start,
                                          log))
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


def evaluate_after(model, tokenizer, before, eval_examples, settings, out_dir, precision, start, log):
    """The trained model on the same held-out prompts, and the robustness rows (world data only); writes
    sft_eval.md/.json/.png -> {"before", "after"[, "robustness"]} metrics for the run's summary."""
    log(f"evaluating the SFT model on the same {len(eval_examples)} held-out prompts ...")
    after = evaluate(model, tokenizer, eval_examples, settings["max_new_tokens"], precision)
    robust, more, results = None, {}, {"before": before["metrics"], "after": after["metrics"]}
    if "world" in settings["data"]:
        # the three levels: training prompts (memorised), heldout (the skill), ood (robust to new phrasing)
        w, per_task = world.build_world(WORLD_SEED), settings["eval_per_task"]
        for split, seed in (("train", settings["seed"]), ("ood", settings["seed"] + 2)):
            log(f"evaluating the SFT model on {split} prompts ...")
            examples = world_examples(w, split, eval_mix(settings), seed=seed)   # train, seed: a part of the training set
            more[split] = evaluate(model, tokenizer, examples, settings["max_new_tokens"], precision)
            results[f"after_{split}"] = more[split]["metrics"]
        log("measuring robustness: held-out items in training forms and in forms never seen in training ...")
        per_row = ROBUSTNESS_ITEMS if per_task is None else min(ROBUSTNESS_ITEMS, per_task)
        robust = {}
        for split in ("heldout", "ood"):
            sets = robustness_sets(w, per_row, seed=settings["seed"], split=split)
            robust[split] = measure(model, tokenizer, sets, settings["max_new_tokens"], precision, seed=settings["seed"])
        results["robustness"] = {split: r["metrics"] for split, r in robust.items()}
    table = write_report(before, after, out_dir, settings, time.time() - start, robust and robust["ood"],
                         robustness_table(robust["heldout"], robust["ood"]) if robust else "", more)
    log("\n" + table + "\n")
    log(f"done in {time.time() - start:.0f} s. Outputs in {out_dir}/:")
    log("  ckpt.pt, tokenizer.tiktoken/.json   the chat model and its tokenizer (with the chat tokens)")
    log("  metrics.jsonl, loss.png, sample.txt  the loss on assistant tokens, replies during training")
    log("  sft_eval.md, sft_eval.png           the table above with example replies, and as bars")
    log(f"next: talk to it with  python 04_sft/chat.py --ckpt {out_dir / 'ckpt.pt'}")
    return results


if __name__ == "__main__":
    cli.run(main)
