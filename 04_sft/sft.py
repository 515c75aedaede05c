"""Supervised fine-tuning (SFT): turn chapter 03's base model into an assistant that answers in a chat format.

    python 04_sft/sft.py --preset tiny          # the default: world instruction data, a few minutes on a CPU
    python 04_sft/sft.py --data world --data my_data.jsonl    # add your own JSONL (Alpaca or messages layout)
    python 04_sft/sft.py --mix benign=0         # change the data mix (here: no benign look-alikes)
    python 04_sft/sft.py --preset gpt2          # GPT-2 small from `03_pretrain/pretrain.py --preset gpt2`, one GPU
    python 04_sft/sft.py --resume               # continue an interrupted run in --out-dir

Steps: (1) load the base checkpoint and its tokenizer (default runs/03_pretrain/); (2) add the chat tokens
to the tokenizer and the embedding (chat_format.py); (3) build instruction conversations from the
mini-world (sft_data.py), render them with the chat template, mask everything but the assistant's tokens,
pack them into rows; (4) evaluate the BASE model on the held-out prompts; (5) train with chapter 03's
loop (our AdamW, warmup + cosine, clipping, checkpoints, metrics, loss plot, --resume); (6) evaluate again.

Outputs, in --out-dir (default runs/04_sft/): ckpt.pt, tokenizer.tiktoken + tokenizer.json (with the chat
tokens), metrics.jsonl, loss.png, sample.txt, sft_eval.md (the before/after table and example replies),
sft_eval.json, sft_eval.png (the same as bars). Then talk to the model: python 04_sft/chat.py
"""
import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import hardware  # noqa: E402  (chapter 03: device, precision, DDP)
import train  # noqa: E402  (chapter 03: the training loop)
import world  # noqa: E402  (chapter 03: the mini-world)
from chat_format import (END, add_chat_embeddings, add_chat_tokens, extract_answer, is_refusal,  # noqa: E402
                         load_model_and_tokenizer, render_chat, says_dont_know)
from sft_data import (EVAL_MIX, MULTI_TURN_FRACTION, TASKS, TRAIN_MIX, SFTBatches, fill_ratio,  # noqa: E402
                      load_jsonl, make_rows, tokenize, world_examples)

DEFAULT_BASE = REPO / "runs" / "03_pretrain" / "ckpt.pt"
DEFAULT_OUT_DIR = REPO / "runs" / "04_sft"

# Every preset sets every setting below; a command-line flag overrides one. SFT starts from a model that
# already knows the language and the world, so it needs far fewer steps than pretraining; the peak lr is
# about half of pretraining's. weight_decay 0: a few hundred steps, and we do not want to shrink
# what pretraining learned.
PRESETS = {
    # Chapter 03's tiny base model (2.2M parameters, context 256) on a CPU.
    "tiny": dict(base=str(DEFAULT_BASE), steps=600, batch_size=16, grad_accum=1, lr=1e-3, min_lr=1e-4,
                 warmup_steps=30, weight_decay=0.0, beta2=0.99, precision="fp32", compile=False,
                 eval_interval=100, eval_batches=8, log_interval=20, packing=True, mix_scale=1.0,
                 max_new_tokens=128),
    # GPT-2 small (124M, context 1024) from `pretrain.py --preset gpt2`, on one GPU: 8 x 4 packed rows of
    # 1024 tokens per step (~100 conversations), bf16, torch.compile.
    "gpt2": dict(base=str(DEFAULT_BASE), steps=1500, batch_size=8, grad_accum=4, lr=1e-4, min_lr=1e-5,
                 warmup_steps=100, weight_decay=0.0, beta2=0.95, precision="auto", compile=True,
                 eval_interval=250, eval_batches=20, log_interval=10, packing=True, mix_scale=4.0,
                 max_new_tokens=160),
}
WORLD_SEED = 0  # build_world(0): the world chapter 03's corpus describes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--preset", default="tiny", choices=sorted(PRESETS), help="the settings to start from (default: tiny)")
    add("--base", help=f"the base model's checkpoint (default: {DEFAULT_BASE}); its tokenizer is found through it")
    add("--out-dir", default=None, help=f"where everything goes (default: {DEFAULT_OUT_DIR})")
    add("--resume", action="store_true", help="continue from --out-dir/ckpt.pt (its settings fill in missing flags)")
    data = parser.add_argument_group("data")
    data.add_argument("--data", action="append",
                      help="'world' (the mini-world instruction mix) or a JSONL file; repeat to combine "
                           "(default: world)")
    data.add_argument("--mix", help="override task counts of the world mix, e.g. 'benign=0,math=3000' "
                                    f"(tasks: {', '.join(TASKS)}; defaults: {TRAIN_MIX})")
    data.add_argument("--mix-scale", type=float, help="multiply every count of the world mix")
    data.add_argument("--packing", action=argparse.BooleanOptionalAction, default=None,
                      help="pack several conversations per row (default) or pad one per row (--no-packing)")
    data.add_argument("--eval-per-task", type=int, help="at most this many held-out prompts per task")
    opt = parser.add_argument_group("optimization")
    opt.add_argument("--steps", type=int)
    opt.add_argument("--batch-size", type=int, help="rows per micro-batch (per process)")
    opt.add_argument("--grad-accum", type=int)
    opt.add_argument("--lr", type=float)
    opt.add_argument("--min-lr", type=float)
    opt.add_argument("--warmup-steps", type=int)
    opt.add_argument("--weight-decay", type=float)
    run = parser.add_argument_group("running")
    run.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    run.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    run.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    run.add_argument("--eval-interval", type=int, help="steps between val-loss estimates and checkpoints")
    run.add_argument("--eval-batches", type=int)
    run.add_argument("--log-interval", type=int)
    run.add_argument("--max-new-tokens", type=int, help="reply length limit in the evaluation")
    run.add_argument("--seed", type=int, default=None, help="seed of the data order and batches (default 1337)")
    run.add_argument("--stop-at", type=int, help="stop after this step as if interrupted (to try --resume)")
    return parser.parse_args(argv)


def resolve_settings(args):
    """Flags you passed > settings saved in the checkpoint (with --resume) > the preset's."""
    out_dir = Path(args.out_dir or DEFAULT_OUT_DIR)
    settings = dict(PRESETS[args.preset], data=["world"], mix=None, eval_per_task=None, seed=1337, device=None,
                    stop_at=None)
    ckpt_path = out_dir / "ckpt.pt"
    if args.resume and ckpt_path.exists():
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("settings", {})
        settings.update({k: v for k, v in saved.items() if k not in ("device", "stop_at")})
    settings.update({k: v for k, v in vars(args).items() if v is not None and k in settings})
    return settings, out_dir


def parse_mix(text, scale=1.0):
    """'benign=0,math=3000' -> TRAIN_MIX with those counts, every count times `scale`."""
    mix = dict(TRAIN_MIX)
    for part in filter(None, (text or "").split(",")):
        match = re.fullmatch(r"\s*(\w+)\s*=\s*(\d+)\s*", part)
        if not match or match.group(1) not in TASKS:
            raise SystemExit(f"--mix {text!r}: write task=count pairs separated by commas, tasks: {', '.join(TASKS)}")
        mix[match.group(1)] = int(match.group(2))
    return {task: int(round(n * scale)) for task, n in mix.items()}


def load_base(path, device="cpu"):
    """The base model and its tokenizer, with a clear message when chapter 03 has not been run."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"no base model at {path}. Pretrain one first:\n    python 03_pretrain/pretrain.py "
                         f"--preset tiny\n(or pass --base PATH to a chapter-03 checkpoint)")
    try:
        return load_model_and_tokenizer(path, device)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"cannot use {path} as the base model: {error}") from None


# ----------------------------------------------------------------------------------------------------
# Evaluation: greedy replies to the held-out prompts, graded per task

METRICS = [  # (key, label for the table, the task it is measured on)
    ("format", "replies that end with <|end|>", None),
    ("fact_accuracy", "world questions: exact answer", "fact"),
    ("math_accuracy", "word problems: exact answer", "math"),
    ("unknown_honesty", "unknown entities: says \"I don't know\"", "unknown"),
    ("harmful_refusal", "harmful requests: refused", "harmful"),
    ("benign_over_refusal", "benign look-alikes: refused (over-refusal, lower is better)", "benign"),
    ("fact_dont_know", "world questions: says \"I don't know\" (lower is better)", "fact"),
]


def mentions(text, phrase):
    """True if `phrase` occurs in `text` as whole words, ignoring case: mentions("A big one.", "big")."""
    return re.search(r"(?<!\w)" + re.escape(phrase.lower()) + r"(?!\w)", text.lower()) is not None


def fact_is_correct(reply, answer, distractors, subject=None):
    """Exact answer: the reply names the right value and none of the other choices
    ("Sam lives in Trusholm." for answer "Trusholm"; listing every town is not an answer), and, if a
    subject is given, names the subject too (singular or plural): "Drelanels are gold." does not answer
    "What colour is a mandug?" even though mandugs are gold. An article in front of the value does not
    count: "Sam has a pet kalar." answers "a kalar"."""
    bare = lambda value: re.sub(r"^(?:a|an) ", "", value)
    if subject is not None and not any(mentions(reply, form) for form in (subject, world.plural(subject))):
        return False
    return mentions(reply, bare(answer)) and not any(mentions(reply, bare(d)) for d in distractors)


def grade(example, reply):
    """The grades of one reply: {metric key: 0 or 1} for the metrics of the example's task."""
    task = example["task"]
    if task == "fact":
        return {"fact_accuracy": int(fact_is_correct(reply, example["answer"], example["distractors"],
                                                     example.get("subject"))),
                "fact_dont_know": int(says_dont_know(reply))}
    if task == "math":
        return {"math_accuracy": int(extract_answer(reply) == example["answer"])}
    if task == "unknown":
        return {"unknown_honesty": int(says_dont_know(reply))}
    if task == "harmful":
        return {"harmful_refusal": int(is_refusal(reply))}
    if task == "benign":
        return {"benign_over_refusal": int(is_refusal(reply))}
    return {}


@torch.no_grad()
def generate_replies(model, tokenizer, conversations, max_new_tokens=128, batch_size=128, precision="fp32"):
    """Greedy replies to each conversation (its last message is the user's): [(reply text, ended), ...].

    The prompt is render_chat(..., add_generation_prompt=True), exactly the template of training; the
    reply stops at <|end|> (ended=True) or after max_new_tokens (ended=False).
    """
    end_id = tokenizer.special_tokens[END]
    device = next(model.parameters()).device
    prompts = [render_chat(c, tokenizer, add_generation_prompt=True)[0] for c in conversations]
    block_size = model.config.block_size
    results = []
    for start in range(0, len(prompts), batch_size):
        chunk = [p[-block_size:] for p in prompts[start:start + batch_size]]
        with hardware.autocast(device.type, precision):
            outputs = model.generate_batch(chunk, max_new_tokens, temperature=0, stop_tokens=[end_id])
        for tokens in outputs:
            ended = bool(tokens) and tokens[-1] == end_id
            results.append((tokenizer.decode(tokens[:-1] if ended else tokens), ended))
    return results


def evaluate(model, tokenizer, examples, max_new_tokens=128, precision="fp32"):
    """Reply to every held-out example's prompt and grade it. Returns {"metrics": {key: share},
    "counts": {key: n}, "replies": [{"task", "prompt", "reply", "ended"}, ...]}."""
    replies = generate_replies(model, tokenizer, [e["messages"][:-1] for e in examples], max_new_tokens,
                               precision=precision)
    totals, counts, records = {}, {}, []
    for example, (reply, ended) in zip(examples, replies):
        grades = {"format": int(ended), **grade(example, reply)}
        for key, value in grades.items():
            totals[key] = totals.get(key, 0) + value
            counts[key] = counts.get(key, 0) + 1
        records.append({"task": example["task"], "prompt": example["messages"][-2]["content"], "reply": reply,
                        "ended": ended, "reference": example["messages"][-1]["content"]})
    metrics = {key: totals[key] / counts[key] for key in totals}
    return {"metrics": metrics, "counts": counts, "replies": records}


def results_table(before, after):
    """The markdown table: one row per metric, base model vs after SFT."""
    lines = ["| measured on the held-out split | n | base model | after SFT |", "|---|---:|---:|---:|"]
    for key, label, _ in METRICS:
        if key in after["metrics"]:
            label = label.replace("<|end|>", "`<|end|>`")
            lines.append(f"| {label} | {after['counts'][key]} | {100 * before['metrics'][key]:.0f}% | "
                         f"{100 * after['metrics'][key]:.0f}% |")
    return "\n".join(lines)


def write_report(before, after, out_dir, settings, wall_seconds):
    """sft_eval.md (table + a few replies per task), sft_eval.json (everything), sft_eval.png (bars)."""
    out_dir = Path(out_dir)
    table = results_table(before, after)
    lines = ["# SFT evaluation", "", f"Greedy replies (temperature 0, at most {settings['max_new_tokens']} tokens) "
             f"to held-out prompts the model never saw in training. Base: `{settings['base']}`; "
             f"{settings['steps']} steps; {wall_seconds:.0f} s.", "", table, "", "## Example replies", ""]
    shown = {}
    for b, a in zip(before["replies"], after["replies"]):
        if shown.get(a["task"], 0) >= 2:
            continue
        shown[a["task"]] = shown.get(a["task"], 0) + 1
        lines += [f"**{a['task']}**: {a['prompt']!r}", "",
                  f"- base model: {b['reply'][:300]!r}" + ("" if b["ended"] else " (no <|end|>)"),
                  f"- after SFT: {a['reply'][:300]!r}" + ("" if a["ended"] else " (no <|end|>)"),
                  f"- reference: {a['reference'][:300]!r}", ""]
    (out_dir / "sft_eval.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "sft_eval.json").write_text(json.dumps({"before": before, "after": after}, indent=1) + "\n",
                                           encoding="utf-8")
    plot_results(before, after, out_dir / "sft_eval.png")
    return table


def plot_results(before, after, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, label) for k, label, _ in METRICS if k in after["metrics"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [100 * before["metrics"][k] for k, _ in keys], 0.4, label="base model")
    ax.bar([x + 0.2 for x in xs], [100 * after["metrics"][k] for k, _ in keys], 0.4, label="after SFT")
    ax.set_xticks(list(xs), [label.replace(" (", "\n(").replace(": ", ":\n") for _, label in keys], fontsize=7)
    ax.set(ylabel="% of held-out prompts", ylim=(0, 105), title="Before and after supervised fine-tuning")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# The script


def build_data(settings, tokenizer, block_size, log=print):
    """Training and validation rows (SFTBatches) and the held-out evaluation examples."""
    w = world.build_world(WORLD_SEED)
    seed = settings["seed"]
    train_conversations, val_conversations = [], []
    for source in settings["data"]:
        if source == "world":
            mix = parse_mix(settings["mix"], settings["mix_scale"])
            train_conversations += world_examples(w, "train", mix, seed=seed, multi_turn=MULTI_TURN_FRACTION)
            val_conversations += world_examples(w, "heldout", EVAL_MIX, seed=seed + 1)
        else:
            try:
                train_conversations += load_jsonl(source)
            except (FileNotFoundError, ValueError) as error:
                raise SystemExit(str(error)) from None
    if not val_conversations:  # user data only: keep every 20th conversation for the validation loss
        val_conversations = train_conversations[::20]
        train_conversations = [c for i, c in enumerate(train_conversations) if i % 20]
    random.Random(f"sft-rows:{seed}").shuffle(train_conversations)
    pad_id = tokenizer.special_tokens.get("<|endoftext|>", 0)
    rows = {}
    for split, conversations in (("train", train_conversations), ("val", val_conversations)):
        sequences, dropped = tokenize(conversations, tokenizer, block_size)
        if not sequences:
            raise SystemExit(f"no {split} conversation fits in the context of {block_size} tokens")
        rows[split] = make_rows(sequences, block_size, pad_id, settings["packing"])
        n_learned = int((rows[split][1] != -1).sum())
        log(f"{split}: {len(sequences):,} conversations -> {len(rows[split][0]):,} rows of {block_size} tokens "
            f"({'packed' if settings['packing'] else 'padded'}, {100 * fill_ratio(sequences, rows[split]):.0f}% "
            f"of positions used, {n_learned:,} assistant tokens in the loss)"
            + (f"; dropped {dropped} longer than the context" if dropped else ""))
    per_task = settings["eval_per_task"]  # None: every held-out prompt of EVAL_MIX
    eval_mix = {task: n if per_task is None else min(n, per_task) for task, n in EVAL_MIX.items()}
    eval_examples = world_examples(w, "heldout", eval_mix, seed=seed + 2)
    return SFTBatches(rows, settings["batch_size"]), eval_examples


def main(argv=None):
    args = parse_args(argv)
    rank, _, world_size = hardware.setup_ddp()
    settings, out_dir = resolve_settings(args)
    parse_mix(settings["mix"], settings["mix_scale"])  # a typo in --mix fails now, not after loading the model
    if settings["eval_per_task"] is not None and settings["eval_per_task"] < 1:
        raise SystemExit(f"--eval-per-task {settings['eval_per_task']}: give at least 1 held-out prompt "
                         f"per task (leave it out to use them all)")
    master = rank == 0
    log = print if master else (lambda *a, **k: None)
    start = time.time()

    device, precision = hardware.place(settings["device"], settings["precision"], world_size)
    model, base_tokenizer, base_checkpoint = load_base(settings["base"])
    tokenizer = add_chat_tokens(base_tokenizer)
    new_ids = add_chat_embeddings(model, base_tokenizer, tokenizer)
    log(f"base model {settings['base']}: {model.num_params():,} parameters, context {model.config.block_size}; "
        f"chat tokens {dict((n, i) for n, i in tokenizer.special_tokens.items() if i in new_ids) or 'already there'}")
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(out_dir / "tokenizer")  # before training: every checkpoint can find its tokenizer

    batches, eval_examples = build_data(settings, tokenizer, model.config.block_size, log)
    model.to(device)
    before = None
    if master:
        log(f"evaluating the base model on {len(eval_examples)} held-out prompts ...")
        eval_start = time.time()
        before = evaluate(model, tokenizer, eval_examples, settings["max_new_tokens"], precision)
        log("  " + ", ".join(f"{key} {100 * before['metrics'][key]:.0f}%" for key, _, _ in METRICS)
            + f" ({time.time() - eval_start:.0f} s)")

    sample_prompts = [e["messages"][:-1] for e in eval_examples[:4]]

    def make_sample(model):
        replies = generate_replies(model, tokenizer, sample_prompts, settings["max_new_tokens"], precision=precision)
        return "\n".join(f"USER: {p[-1]['content']}\nASSISTANT: {r}" + ("" if ended else " [no <|end|>]")
                         for p, (r, ended) in zip(sample_prompts, replies))

    config = train.TrainConfig(
        steps=settings["steps"], batch_size=settings["batch_size"], grad_accum=settings["grad_accum"],
        lr=settings["lr"], min_lr=settings["min_lr"], warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"], beta2=settings["beta2"], precision=settings["precision"],
        compile=settings["compile"], device=settings["device"], seed=settings["seed"],
        eval_interval=settings["eval_interval"], eval_batches=settings["eval_batches"],
        log_interval=settings["log_interval"], sample_interval=0, out_dir=str(out_dir), stop_at=settings["stop_at"])
    extra = {"tokenizer": str(out_dir / "tokenizer"), "settings": settings, "base": str(settings["base"]),
             "base_step": base_checkpoint.get("step")}
    summary = train.train(model, batches.get_batch, config, make_sample=make_sample, resume=args.resume,
                          checkpoint_extra=extra)

    if master:
        if summary["step"] < settings["steps"]:
            log(f"stopped early at step {summary['step']}: continue with  python 04_sft/sft.py --resume "
                f"--out-dir {out_dir}")
        else:
            log(f"evaluating the SFT model on the same {len(eval_examples)} held-out prompts ...")
            after = evaluate(model, tokenizer, eval_examples, settings["max_new_tokens"], precision)
            table = write_report(before, after, out_dir, settings, time.time() - start)
            summary["before"], summary["after"] = before["metrics"], after["metrics"]
            log("\n" + table + "\n")
            log(f"done in {time.time() - start:.0f} s. Outputs in {out_dir}/:")
            log("  ckpt.pt, tokenizer.tiktoken/.json   the chat model and its tokenizer (with the chat tokens)")
            log("  metrics.jsonl, loss.png, sample.txt  the loss on assistant tokens, replies during training")
            log("  sft_eval.md, sft_eval.png           the table above with example replies, and as bars")
            log(f"next: talk to it with  python 04_sft/chat.py --ckpt {out_dir / 'ckpt.pt'}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    main()
