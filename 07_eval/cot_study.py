"""Chain of thought, on problems the model can read: the step-trained chat model against the direct-answer
control, each asked five ways, on held-out problems in a training phrasing ("heldout") and in a held-out
one ("ood"), by number of steps and by size of the numbers.

    python 07_eval/cot_study.py                       # runs/04_sft (steps) vs runs/04_sft_direct (direct)
    python 07_eval/cot_study.py --per-cell 10         # fewer problems per (steps, digits) cell: faster

The problems (cot_items): distinct word problems of the "count" family with exactly 1, 2 or 3 operations
and 1- or 2-digit numbers (up to --per-cell of each; the world holds only 7 held-out 1-step ones with
1-digit numbers), and bare arithmetic with 1 operation (2-digit numbers) or expressions with 2 or 3
operators (1-digit numbers, precedence), all held-out instances (world/splits.py). The same seeds give
the same problems for "heldout" and "ood": only the wording differs, so the two columns compare item for
item. The ways of asking (PROMPTINGS):

    direct             the question alone, greedy: the chat model's natural way (it replies as trained)
    answer at once     the reply begins "The answer is", scored by its first number: no steps before the
                       answer (Lanham et al. 2023's early answering)
    zero-shot CoT      the reply begins "Let's think step by step." (Kojima et al. 2022)
    few-shot           one worked exemplar from the training split before the question (Wei et al. 2022)
    self-consistency   k samples of the direct prompt at temperature 0.7, the majority answer (Wang et al. 2023)

Every reply is scored by its last number (scoring.flexible_answer), the same rule for every way of asking
but the answer at once (its first number: scoring.first_answer).
Self-consistency runs on the "heldout" problems only. Outputs in --out-dir (default runs/07_eval/cot_study/):
cot_study.md (the tables) and records_steps.json / records_direct.json (every item's answers).
"""
import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft", "07_eval"]:  # earlier chapters, this one
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one-line errors, atomic writes)
import world  # noqa: E402  (chapter 03)
from eval_tasks import ask_each_way, cot_prompt  # noqa: E402  (this chapter)
from harness import LanguageModel  # noqa: E402

PROMPTINGS = ("direct", "answer at once", "zero-shot CoT", "few-shot", "self-consistency")
STEPS = (1, 2, 3)
SPLITS = ("heldout", "ood")
WORLD_SEED = 0


def draw_distinct(draw, n, tries_per_item=20):
    """Up to n problems from draw() -> (Problem or None), none twice (by key): a cell of the world may hold
    fewer held-out problems than asked (e.g. 1-step sums of 1-digit numbers), and a repeat would count one
    problem several times. Stops after n * tries_per_item draws."""
    problems, keys = [], set()
    for _ in range(n * tries_per_item):
        p = draw()
        if p is not None and p.key not in keys:
            problems.append(p)
            keys.add(p.key)
            if len(problems) == n:
                break
    return problems


def cot_items(w, split, per_cell, seed=0):
    """Held-out problems of `split` ("heldout" or "ood"): up to `per_cell` distinct word problems for every
    (steps, digits) in STEPS x (1, 2), and up to `per_cell` distinct bare problems for every number of steps
    (1: a 2-digit sum or difference; 2, 3: a 1-digit expression with that many operators). Each item:
    {"kind", "question", "gold", "steps", "digits", "key"}. Seeds depend on the cell, not on `split`: the same
    problems for both."""
    def word(rng, steps, digits):
        p = world.word_problem(w, rng, n_steps=steps, digits=digits, family="count", split=split)
        return p if len(p.steps) == steps else None  # "bags of" takes two operations: keep the cell exact

    def bare(rng, steps):
        if steps == 1:
            return world.arithmetic_problem(rng, rng.choice("+-"), 2, split=split)
        return world.arithmetic_expression(rng, steps, 1, split=split)

    items = []
    for steps in STEPS:
        for digits in (1, 2):
            rng = random.Random(f"cot-study:word:{steps}:{digits}:{seed}")
            items += [{"kind": "word", "question": p.question, "gold": p.answer, "steps": steps, "digits": digits,
                       "key": p.key} for p in draw_distinct(lambda: word(rng, steps, digits), per_cell)]
        rng = random.Random(f"cot-study:bare:{steps}:{seed}")
        items += [{"kind": "arithmetic", "question": p.question, "gold": p.answer, "steps": steps,
                   "digits": 2 if steps == 1 else 1, "key": p.key}
                  for p in draw_distinct(lambda: bare(rng, steps), per_cell)]
    return items


# The study's ways of asking in the names of the report's (eval_tasks.cot_prompt builds every Prompt); the study's
# self-consistency samples the question alone, the report's samples few-shot CoT chains.
REPORT_NAME = {"direct": "question alone", "few-shot": "few-shot CoT", "self-consistency": "question alone"}


def prompt_for(how, item, w):
    """The Prompt of one way of asking: eval_tasks.cot_prompt with one exemplar for few-shot."""
    return cot_prompt(REPORT_NAME.get(how, how), item, w, shots=1)


def run_study(lm, items, w, k=8, max_new_tokens=128, seed=0):
    """Each item asked every way of PROMPTINGS (eval_tasks.ask_each_way; self-consistency samples the direct
    prompt; k=0: none) -> records {**item, "replies", "answers": {how: n}, "score": {how: 0/1}}."""
    return ask_each_way(lm, items, lambda how, item: prompt_for(how, item, w), PROMPTINGS[:-1], max_new_tokens, k, seed)


def accuracy(records, how, **where):
    """Share right of the records matching every field of `where` -> (share, n)."""
    chosen = [r for r in records if all(r[key] == value for key, value in where.items()) and how in r["score"]]
    return (sum(r["score"][how] for r in chosen) / len(chosen) if chosen else float("nan")), len(chosen)


def tables(results):
    """The markdown tables of results {model: {split: records}}: word problems by steps (heldout) with
    ood beside; bare arithmetic the same; word problems by size of the numbers."""
    pct = lambda a: f"{100 * a[0]:.0f}%" if a[1] else "-"
    lines = []
    for kind, title in (("word", "Word problems"), ("arithmetic", "Bare arithmetic and expressions")):
        lines += [f"### {title}: share right by number of steps", "",
                  "| model | asked | heldout 1 step | heldout 2 | heldout 3 | heldout all | ood all |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for model, by_split in results.items():
            for how in PROMPTINGS:
                cells = [pct(accuracy(by_split["heldout"], how, kind=kind, steps=s)) for s in STEPS]
                cells += [pct(accuracy(by_split["heldout"], how, kind=kind)), pct(accuracy(by_split["ood"], how, kind=kind))]
                lines.append(f"| {model} | {how} | " + " | ".join(cells) + " |")
        counts = [accuracy(next(iter(results.values()))["heldout"], "direct", kind=kind, steps=s)[1] for s in STEPS]
        lines += ["", "(Distinct problems per cell: " + ", ".join(f"{s} step{'s' * (s > 1)} {n}" for s, n in
                                                             zip(STEPS, counts)) + ".)", ""]
    lines += ["### Word problems by size of the numbers (heldout, greedy direct / self-consistency)", "",
              "| model | 1-digit numbers | 2-digit numbers |", "|---|---:|---:|"]
    for model, by_split in results.items():
        cells = [f"{pct(accuracy(by_split['heldout'], 'direct', kind='word', digits=d))} / "
                 f"{pct(accuracy(by_split['heldout'], 'self-consistency', kind='word', digits=d))}" for d in (1, 2)]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps-model", default=str(REPO / "runs/04_sft/ckpt.pt"),
                        help="the step-trained chat model (chapter 04's sft.py)")
    parser.add_argument("--direct-model", default=str(REPO / "runs/04_sft_direct/ckpt.pt"),
                        help="the direct-answer control (sft.py --math-style direct --out-dir runs/04_sft_direct)")
    parser.add_argument("--per-cell", type=cli.positive_int, default=20,
                        help="distinct problems per (steps, digits) cell, at most (default 20)")
    parser.add_argument("--models", default="steps,direct",
                        help="which models to run now (steps, direct or both); the tables use every model's "
                             "records found in --out-dir")
    parser.add_argument("--k", type=cli.positive_int, default=8, help="samples of self-consistency (default 8)")
    parser.add_argument("--max-new-tokens", type=cli.positive_int, default=128)
    parser.add_argument("--out-dir", default=str(REPO / "runs/07_eval/cot_study"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    w = world.build_world(WORLD_SEED)
    names = {"steps": ("SFT (steps)", args.steps_model), "direct": ("SFT (direct control)", args.direct_model)}
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    if not chosen or any(m not in names for m in chosen):
        raise ValueError(f"--models takes steps, direct or steps,direct, got {args.models!r}")
    models = dict(names[m] for m in chosen)
    for path in models.values():
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint at {path}: run chapter 04's sft.py (the control: sft.py "
                                    f"--math-style direct --out-dir runs/04_sft_direct)")
    items = {split: cot_items(w, split, args.per_cell, args.seed) for split in SPLITS}
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    for key in chosen:
        name, path = names[key]
        lm = LanguageModel.load(path, name=name, device=args.device)
        # self-consistency on the heldout problems only (the target's row); ood greedy beside it
        records = {split: run_study(lm, items[split], w, args.k if split == "heldout" else 0, args.max_new_tokens,
                                    args.seed) for split in SPLITS}
        cli.write_text_atomic(out_dir / f"records_{key}.json", json.dumps(records, indent=1) + "\n")
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    results = {names[key][0]: json.loads((out_dir / f"records_{key}.json").read_text())
               for key in names if (out_dir / f"records_{key}.json").exists()}
    table = tables(results)
    print(table)
    cli.write_text_atomic(out_dir / "cot_study.md", "# Chain of thought on held-out problems\n\n" + table)
    return results


if __name__ == "__main__":
    cli.run(main)
