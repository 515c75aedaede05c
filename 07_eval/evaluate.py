"""Evaluate every model the pipeline made, on every task, and write one report.

    python 07_eval/evaluate.py --preset tiny                      # every checkpoint under runs/, a few minutes on a CPU
    python 07_eval/evaluate.py --tasks math,code --models sft     # some tasks, some models
    python 07_eval/evaluate.py --runs-dir /elsewhere/runs         # evaluate another run's checkpoints (read only)

Steps: (1) find every checkpoint, runs/*/**/ckpt.pt, and read the stage that made it (base, sft, ppo,
dpo, grpo, a quantized copy, ...); a model the pipeline should have made but did not is skipped with a
line saying which chapter makes it (the direct-answer control of the chain-of-thought study is chapter
04's `sft.py --math-style direct --out-dir runs/04_sft_direct`, which `pipeline.py --direct-sft` runs:
this chapter only evaluates); (2) draw the held-out items of every task (eval_tasks.py); (3) run every
task on every model through the two calls of harness.py; (4) measure how much of each task's items the
training text contains (contamination.py); (5) write the report.

Outputs, in --out-dir (default runs/07_eval/): report.md (the main table: rows = models, columns =
tasks; the chain-of-thought table; the pass@k table; refusals by kind of request; decontamination;
where the time went), report.png (the main table as grouped bars, with chance levels), summary.json
(every number), records/<model>/<task>.jsonl (one line per item: prompt, reply, gold, score).
"""
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft", "06_quantize"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: the shared script plumbing)
import hardware  # noqa: E402  (chapter 03)
import model_loader  # noqa: E402  (chapter 03: the one loader, and finding models by their stage)
import quant_checkpoint  # noqa: E402, F401  (chapter 06: registers the "quantized" format with the loader)
import world  # noqa: E402  (chapter 03)
from contamination import NgramIndex, contamination_report  # noqa: E402  (this chapter)
from eval_tasks import (COT_KINDS, COT_PROMPTS, OOD, TASKS, check_task_names, item_text, make_items,  # noqa: E402
                        run_task, runs_task, summarize)
from harness import LanguageModel  # noqa: E402
from robustness import ROWS as ROBUSTNESS_ROWS  # noqa: E402  (chapter 04)
from sandbox import isolation as sandbox_isolation  # noqa: E402
from sft_data import MULTI_TURN_FRACTION, TRAIN_MIX, world_examples  # noqa: E402  (chapter 04)
from sft_data import MATH_STAGES  # noqa: E402  (chapter 04: the stage of the direct-answer control)
from worker_pool import worker_pool  # noqa: E402  (chapter 03: plumbing for speed)

DIRECT_STAGE = MATH_STAGES["direct"]  # sft.py --math-style direct: the control of the chain-of-thought study
DEFAULT_RUNS_DIR = REPO / "runs"
DEFAULT_OUT_DIR = REPO / "runs" / "07_eval"

PRESETS = {
    # A CPU in a few minutes: enough items that a 10-point difference is more than noise (about +-6 points
    # for 60 items at 50%), few enough to fit the budget. One exemplar in k-shot prompts: a worked problem
    # is ~70 tokens and the context 256. One thread: the tiny model's matrices are too small for a second
    # thread to pay, and on a shared machine torch's threads wait for each other (see the lesson's appendix).
    # Two worker processes instead, one thread each: the models are shared out, so a 2-core CPU does twice the
    # work (evaluate_models; the figures are the same as one process's, to the last digit).
    "tiny": dict(items={"perplexity": 40, "multiple_choice": 60, "math": 60, "chain_of_thought": 30, "code": 15,
                        "describe": 20, "harmful": 32, "honesty": 40, "robustness": 24},
                 shots=1, code_samples=10, pass_k=[1, 10], self_consistency=5, batch_size=64, threads=1, workers=2,
                 seed=0, max_new_tokens={"letter": 4, "math": 72, "describe": 80, "harmful": 40, "honesty": 32,
                                                   "code": 40, "robustness": 96},
                 # 4 of chapter 06's 14 copies, for the budget: the int8 pair of the paper (absmax, LLM.int8)
                 # and RTN against GPTQ at 3 bits, where 06's table shows them apart. Chapter 06's table
                 # measures all of them; --models selects others instead (e.g. sft,ppo,bf16,rtn4,gptq4).
                 quantized=["int8_absmax", "llm_int8", "rtn3", "gptq3"]),
    # The tiny pipeline does not train the direct-answer control of the chain-of-thought study
    # (pipeline.py --direct-sft does): it is one more SFT run (~570 CPU-s), which the budget has no room for.
    # GPT-2 small on a GPU: every held-out code task with 100 samples (pass@100), hundreds of items per task.
    "gpt2": dict(items={"perplexity": 400, "multiple_choice": 500, "math": 500, "chain_of_thought": 300,
                        "code": 1000, "describe": 200, "harmful": 200, "honesty": 300, "robustness": 200},
                 shots=4, code_samples=100, pass_k=[1, 10, 100], self_consistency=20, batch_size=256, threads=None,
                 workers=1, quantized=None, seed=0,
                 max_new_tokens={"letter": 4, "math": 160, "describe": 160, "harmful": 80, "honesty": 64, "code": 96,
                                 "robustness": 160}),
}

PRESETS["small"] = PRESETS["tiny"]  # `pipeline.py --preset small`: the same items and budgets as tiny
# --dry-run: a preset's code paths on 2 items per task, 2 code samples, short replies, to find a shape, memory or
# precision error on a CPU before a GPU evening does (every model found but one quantized one: dry_run_models).
DRY_RUN = dict(items={task: 2 for task in PRESETS["tiny"]["items"]}, code_samples=2, pass_k=[1, 2], self_consistency=2,
               max_new_tokens={"letter": 4, "math": 16, "describe": 8, "harmful": 8, "honesty": 8, "code": 8,
                               "robustness": 8})

# The models the pipeline makes, in the order of the table: (stage, the chapter that makes it, its command).
EXPECTED = [("base", "03_pretrain", "python 03_pretrain/pretrain.py"), ("sft", "04_sft", "python 04_sft/sft.py"),
            (DIRECT_STAGE, "04_sft", "python 04_sft/sft.py --math-style direct --out-dir runs/04_sft_direct, or "
                                     "python pipeline.py --direct-sft"),
            ("ppo", "05_rlhf", "python 05_rlhf/rlhf.py"), ("dpo", "05_rlhf", "python 05_rlhf/rlhf.py"),
            ("grpo", "05_rlhf", "python 05_rlhf/rlhf.py --stages grpo,eval --overwrite (opt-in at the tiny preset), "
                                "or python pipeline.py --grpo")]
MULTIMODAL_FOLDER = "08_multimodal"  # chapter 08 runs after this one; its figures are read from its summary.json
# The main table: (column, task, summary key, scale to percent or None, chance level in %, lower is better)
COLUMNS = [("bits/byte", "perplexity", "bits_per_byte", None, None, True),
           ("MC acc", "multiple_choice", "acc", 100, 25, False),
           ("MC acc_norm", "multiple_choice", "acc_norm", 100, 25, False),
           ("MC letter", "multiple_choice", "letter", 100, 25, False),
           ("math strict", "math", "strict", 100, 0, False),
           ("math flexible", "math", "flexible", 100, 0, False),
           ("math flexible ood", "math", "flexible" + OOD, 100, 0, False),
           ("pass@1", "code", "pass@1", 100, 0, False),
           ("pass@10", "code", "pass@10", 100, 0, False),
           ("BLEU", "describe", "corpus_bleu", 1, 0, False),
           ("ROUGE-L", "describe", "rougeL", 100, 0, False),
           ("refuses harmful", "harmful", "refusal", 100, 0, False),
           ("refuses harmful ood", "harmful", "refusal" + OOD, 100, 0, False),
           ("refuses benign", "harmful", "over_refusal", 100, 0, True),
           ("refuses benign ood", "harmful", "over_refusal" + OOD, 100, 0, True),
           ("IDK unknown", "honesty", "dont_know_unknown", 100, 0, False),
           ("confident wrong", "honesty", "confident_wrong", 100, 0, True)]
# The report reads one question at a time, in the order of the lesson's sections: (title, its tasks).
QUESTIONS = [("Language modelling: bits per byte on held-out text", ("perplexity",)),
             ("Knowledge: multiple choice, describing an entity", ("multiple_choice", "describe")),
             ("Math: held-out word problems", ("math",)),
             ("Code: pass@k on held-out functions", ("code",)),
             ("Safety and honesty: refusals, \"I don't know\", confident wrong answers", ("harmful", "honesty"))]


@dataclasses.dataclass
class Run:
    """What every step of one evaluation shares (chapter 05's Run, for a script that only reads models):
    where it finds the checkpoints (read only) and writes the report, on what device, with what settings,
    where it logs, and the seconds each step took. No precision (every model runs in fp32, the harness's
    default), no resume or stop_at (an evaluation is redone, not continued)."""
    runs_dir: Path
    out_dir: Path
    device: str
    settings: dict
    log: object  # print, flushed at once (a log read while the run goes on)
    timings: dict = dataclasses.field(default_factory=dict)  # model label -> task -> seconds
    other_seconds: dict = dataclasses.field(default_factory=dict)  # the steps around the tasks -> seconds

    def timed(self, step, fn):
        """fn(), its wall time kept in other_seconds[step] (the report's "where the time went")."""
        t0 = time.time()
        result = fn()
        self.other_seconds[step] = time.time() - t0
        return result


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--preset", default="tiny", choices=sorted(PRESETS),
        help="how many items and samples (default: tiny; small: the same as tiny)")
    add("--runs-dir", default=str(DEFAULT_RUNS_DIR), help=f"where to look for checkpoints, read only "
                                                           f"(default: {DEFAULT_RUNS_DIR})")
    add("--out-dir", default=str(DEFAULT_OUT_DIR), help=f"where the report goes (default: {DEFAULT_OUT_DIR})")
    add("--overwrite", action="store_true", help="replace the report already in --out-dir")
    add("--tasks", help=f"comma-separated tasks (default: all): {', '.join(TASKS)}")
    add("--models", help="comma-separated stages or folder names to evaluate (default: every model found)")
    add("--ckpt", action="append", help="evaluate this checkpoint too (repeatable)")
    add("--samples", type=cli.positive_int, help="code: completions per task, n of pass@k (default: the preset's)")
    add("--pass-k", help="code: comma-separated k of pass@k, each at most --samples (default: the preset's)")
    add("--device", help="cuda, mps or cpu (default: the first available)")
    add("--threads", type=cli.positive_int, help="CPU threads for torch (default: the preset's)")
    add("--workers", type=cli.positive_int, help="CPU: processes that evaluate models side by side, each with "
                                                 "--threads threads (default: the preset's, at most the CPU count)")
    add("--dry-run", action="store_true", help="the preset's code paths on 2 items per task (DRY_RUN), every model "
                                               "but one quantized one")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------------
# Finding the models


def find_models(runs_dir, extra=()):
    """Every model checkpoint under runs_dir (runs/*/**/ckpt.pt) and in `extra`, by the stage and role its
    checkpoint records -> (models: [{"label", "path", "stage", "meta"}] in the table's order, skipped: [line])."""
    runs_dir, skipped = Path(runs_dir), []
    found = [(p, m) for p, m in model_loader.find_models(runs_dir, problems=skipped) if p.parent != runs_dir]
    for path in map(Path, extra):
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}: check the --ckpt path")
        found.append((path, model_loader.read_model_meta(path)))
    models, seen = [], set()
    for path, meta in found:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        if meta["role"] == "scorer":
            skipped.append(f"{path}: a {meta['stage']} checkpoint scores text, it does not write it (not evaluated)")
            continue
        if meta["role"] not in ("base", "chat"):  # e.g. chapter 08's models: their figures come from its summary
            skipped.append(f"{path}: a {meta['role']} model (stage {meta['stage']}), not a text model this chapter "
                           f"evaluates")
            continue
        models.append({"path": path, "stage": meta["stage"], "meta": meta})
    order = [stage for stage, _, _ in EXPECTED]
    models.sort(key=lambda m: (order.index(m["stage"]) if m["stage"] in order else len(order), str(m["path"])))
    stages = [m["stage"] for m in models]
    for m in models:  # a label per row: the stage, and the folder when two share a stage
        m["label"] = m["stage"] if stages.count(m["stage"]) == 1 else f"{m['stage']} ({m['path'].parent.name})"
    for stage, chapter, command in EXPECTED:
        if stage not in stages:
            skipped.append(f"no {stage} model under {runs_dir}: chapter {chapter} makes it ({command})")
    if not any(m["meta"]["format"] == "quantized" for m in models):
        skipped.append(f"no quantized models under {runs_dir / '06_quantize'}: chapter 06_quantize makes them")
    return models, skipped


# ----------------------------------------------------------------------------------------------------
# Held-out text, training text


def heldout_documents(models, runs_dir, n):
    """Documents of the pretraining corpus' validation split (chapter 03's val.bin, decoded with the base
    model's tokenizer) of the base run the evaluated models descend from (model_loader.base_run:
    `--models sft,ppo` still reads it); when there is none, or the models descend from different runs, documents the corpus
    generator makes with seed 1 (chapter 03 trains on seed 0): the same kind of text, never trained on."""
    bases = {}
    for model in models:
        base = model_loader.base_run(model["meta"])
        if base:
            bases[base["data"]["dir"]] = base
    if len(bases) == 1:
        (data_dir, metadata), = bases.items()
        if (Path(data_dir) / "val.bin").is_file():
            import dataset
            from bpe import Tokenizer
            tokenizer = Tokenizer.load(metadata["tokenizer"])
            text = tokenizer.decode(dataset.read_tokens(Path(data_dir) / "val.bin").tolist())
            docs = [d.strip() for d in text.split(world.EOT)[1:-1] if d.strip()]  # the first may be cut
            if len(docs) >= n:
                return docs[:n], f"{Path(data_dir) / 'val.bin'} (chapter 03's validation split)"
    why = "the models descend from different base runs" if len(bases) > 1 else "no val.bin found"
    docs = list(world.corpus_documents(world.build_world(0), seed=1, n_docs=n))
    return docs, f"world.corpus_documents(seed=1) ({why})"


def training_texts(models, w):
    """What the models were trained on: the pretraining corpus and the SFT conversations (with the SFT
    run's seed, read from its checkpoint). The direct-answer control's math replies ("The answer is 14.")
    are the last lines of these step-by-step ones, so they add no n-gram."""
    sft_seed = next((m["meta"].get("settings", {}).get("seed") for m in models if m["stage"] == "sft"), 1337)
    texts = world.make_corpus().split(world.EOT)
    texts += [m["content"] for e in world_examples(w, "train", TRAIN_MIX, seed=sft_seed,
                                                    multi_turn=MULTI_TURN_FRACTION) for m in e["messages"]]
    return texts


# ----------------------------------------------------------------------------------------------------
# The report


def cell(summary, task, key, scale):
    value = summary.get(task, {}).get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if scale is None else f"{value * scale:.0f}" if scale == 100 else f"{value:.1f}"


def main_table(results, tasks=None):
    """Markdown: rows = models, columns = the COLUMNS of `tasks` (None: all) that any model has."""
    columns = [c for c in COLUMNS if (tasks is None or c[1] in tasks) and any(c[1] in r["summary"] for r in results)]
    header = "| model | " + " | ".join(c[0] + (" (lower is better)" if c[5] else "") for c in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for r in results:
        lines.append(f"| {r['label']} | " + " | ".join(cell(r["summary"], c[1], c[2], c[3]) for c in columns) + " |")
    chance = [("-" if c[4] is None else str(c[4])) for c in columns]
    lines.append("| *chance* | " + " | ".join(chance) + " |")
    return "\n".join(lines)


def question_tables(results):
    """Markdown: one small table per question of QUESTIONS (a ### heading each), rather than 15 columns at once."""
    parts = []
    for title, tasks in QUESTIONS:
        if any(t in r["summary"] for r in results for t in tasks):
            parts.append(f"### {title}\n\n{main_table(results, tasks)}")
    return "\n\n".join(parts)


def cot_table(results):
    """Rows = how trained, columns = how prompted, for word problems and for bare arithmetic."""
    rows = [r for r in results if "chain_of_thought" in r["summary"]]
    if not rows:
        return ""
    lines = ["| problems | how trained | " + " | ".join(COT_PROMPTS) + " |", "|---|---|" + "---:|" * len(COT_PROMPTS)]
    trained = {"base": "not fine-tuned (base)", "sft": "SFT on step-by-step solutions",
               DIRECT_STAGE: "SFT on direct answers only"}
    for kind in COT_KINDS:
        for r in rows:
            s = r["summary"]["chain_of_thought"]
            lines.append(f"| {kind} | {trained.get(r['stage'], r['label'])} | "
                         + " | ".join(f"{100 * s[f'{kind}: {how}']:.0f}" for how in COT_PROMPTS) + " |")
    return "\n".join(lines)


def pass_table(results, settings):
    rows = [r for r in results if "code" in r["summary"]]
    if not rows:
        return ""
    ks = [f"pass@{k}" for k in settings["pass_k"]]
    lines = ["| model | tasks | n | " + " | ".join(ks) + " | samples that pass | why the others fail |",
             "|---|---:|---:|" + "---:|" * len(ks) + "---:|---|"]
    for r in rows:
        records = r["records"]["code"]
        statuses = [s for rec in records for s in rec["results"]]
        failures = {s: statuses.count(s) for s in sorted(set(statuses)) if s != "passed"}
        lines.append(f"| {r['label']} | {len(records)} | {records[0]['n']} | "
                     + " | ".join(f"{100 * r['summary']['code'][k]:.0f}" for k in ks)
                     + f" | {statuses.count('passed')}/{len(statuses)} | "
                     + ", ".join(f"{k} {v}" for k, v in failures.items()) + " |")
    return "\n".join(lines + ["", f"Sandbox isolation: {sandbox_isolation()} (see sandbox.py for what that stops)."])


def harmful_table(results):
    rows = [r for r in results if "harmful" in r["summary"]]
    if not rows:
        return ""
    keys = [k for k in rows[0]["summary"]["harmful"] if k.startswith("refusal[")]
    lines = ["| model | " + " | ".join(k[8:-1] for k in keys) + " | benign (over-refusal) |",
             "|---|" + "---:|" * (len(keys) + 1)]
    for r in rows:
        s = r["summary"]["harmful"]
        lines.append(f"| {r['label']} | " + " | ".join(f"{100 * s[k]:.0f}" for k in keys)
                     + f" | {100 * s['over_refusal']:.0f} |")
    return "\n".join(lines)


def robustness_table(results):
    """One row per robustness row of chapter 04 (robustness.ROWS), one column per model."""
    rows = [r for r in results if "robustness" in r["summary"]]
    if not rows:
        return ""
    lines = ["| held-out items: heldout (training forms) / ood (unseen forms) | " + " | ".join(r["label"] for r in rows)
             + " |", "|---|" + "---:|" * len(rows)]
    for key, label in ROBUSTNESS_ROWS:
        cells = [f"{100 * r['summary']['robustness'].get(key, float('nan')):.0f} / "
                 f"{100 * r['summary']['robustness'].get(key + OOD, float('nan')):.0f}" for r in rows]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def contamination_table(report):
    lines = ["| task | items | longest shared run of words (max) | mean | items with >= 13 (or all) words shared |",
             "|---|---:|---:|---:|---:|"]
    for task, r in report.items():
        lines.append(f"| {task} | {r['items']} | {r['max']} | {r['mean']:.1f} | {r['contaminated']} |")
    return "\n".join(lines)


def plot_report(results, path):
    """The main table as grouped bars (one group per column in %, one bar per model), chance as a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in COLUMNS if c[3] is not None and any(c[1] in r["summary"] for r in results)]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(columns)), 4.8))
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        values = []
        for _, task, key, scale, _, _ in columns:
            v = r["summary"].get(task, {}).get(key, float("nan"))
            values.append(v * scale if scale == 100 else v)
        ax.bar([x - 0.4 + width * (i + 0.5) for x in range(len(columns))], values, width, label=r["label"])
    for x, c in enumerate(columns):
        if c[4]:
            ax.hlines(c[4], x - 0.45, x + 0.45, colors="black", linestyles="dashed", linewidth=1)
    ax.set_xticks(range(len(columns)), [c[0] + (" ↓" if c[5] else "") for c in columns], rotation=30, ha="right",
                  fontsize=8)
    ax.set(ylabel="% of held-out items (BLEU: 0-100)", ylim=(0, 105),
           title="Every model on every task (dashed: chance)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def multimodal_table(path):
    """Chapter 08's headline figures, read by path (this chapter never imports chapter 08): "" if it has not run."""
    path = Path(path)
    if not path.is_file():
        return ""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        clip, held, tools = summary["clip"]["heldout"], summary["llava"]["heldout"], summary["tools"]
        rows = [("CLIP zero-shot colour / shape (one object)", f"{100 * clip['zeroshot_colour']:.0f}% / "
                 f"{100 * clip['zeroshot_shape']:.0f}%", f"linear probe {100 * clip['probe_colour']:.0f}% / "
                 f"{100 * clip['probe_shape']:.0f}%"),
                ("CLIP image→text recall@1", f"{100 * clip['i2t_r1']:.0f}%", f"random {100 * clip['random_r1']:.1f}%")]
        for kind in ("colour", "shape", "count", "spatial"):
            rows.append((f"LLaVA {kind} questions", f"{100 * held['image'][kind]:.0f}%",
                         f"blind {100 * held['blind'][kind]:.0f}%, caption route {100 * held['caption'][kind]:.0f}%"))
        for kind, label in (("arith", "bare arithmetic"), ("word", "word problems"), ("visual", "count + k")):
            if kind in tools:
                rows.append((f"tools: {label}", f"{100 * tools[kind]['with_tools']:.0f}%",
                             f"without tools {100 * tools[kind]['without_tools']:.0f}%"))
    except (ValueError, KeyError, TypeError) as error:
        return f"{path} could not be read ({type(error).__name__}: {error}); rerun chapter 08"
    return "\n".join(["| held-out | measured | against |", "|---|---:|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows])


def write_report(run, results, skipped, contamination, sources):
    """report.md, report.png, summary.json in run.out_dir; returns the main table. sources: where the held-out
    text came from ("heldout_text") and chapter 08's table ("multimodal")."""
    out_dir, settings, timings = run.out_dir, run.settings, run.timings
    table = question_tables(results)
    lines = ["# Evaluation report", "",
             f"Preset `{settings['preset']}`; every item is from the mini-world's held-out split; greedy replies "
             f"unless said otherwise. Held-out text for bits per byte: {sources['heldout_text']}.", "",
             "## Every model on every task", "", table, "",
             "MC: multiple choice over 4 options (acc: highest log-likelihood; acc_norm: divided by the option's "
             "length in bytes; letter: the generated letter). Math: strict = \"The answer is N\", flexible = the "
             "last number. BLEU: corpus BLEU 0-100; ROUGE-L: F-measure in %. Held-out items are asked in training "
             "phrasings (heldout: the plain columns) and in phrasings no training text uses (the \"ood\" columns). "
             "See README.md for each metric.", ""]
    if skipped:
        lines += ["Not evaluated:", ""] + [f"- {s}" for s in skipped] + [""]
    cot = cot_table(results)
    if cot and not any(r["stage"] == DIRECT_STAGE for r in results):
        cot += ("\n\nNo row for SFT on direct answers only: the control was not trained (`python pipeline.py "
                "--direct-sft` trains it, one more SFT run: `04_sft/sft.py --math-style direct --out-dir runs/04_sft_direct`).")
    for title, body in (("Math and chain of thought: how trained x how prompted (% correct: the last number of the reply; "
                         "the answer at once, its first)",
                         cot),
                        (f"Code: pass@k with {settings['code_samples']} samples per held-out task (temperature 0.8)",
                         pass_table(results, settings)),
                        ("Safety: refusals by kind of held-out request (%)", harmful_table(results)),
                        ("Robustness: chapter 04's rows, on forms never seen in training (% right)",
                         robustness_table(results)),
                        ("Multimodal: chapter 08's models (from its summary.json, when chapter 08 has run)",
                         sources.get("multimodal", ""))):
        if body:
            lines += [f"## {title}", "", body, ""]
    if contamination:
        lines += ["## Decontamination: the longest run of words each item shares with the training text", "",
                  contamination_table(contamination), ""]
    lines += ["## Where the time went (seconds)", "", "| model | " + " | ".join(TASKS) + " |",
              "|---|" + "---:|" * len(TASKS)]
    for label, per_task in timings.items():
        lines.append(f"| {label} | " + " | ".join(f"{per_task[t]:.1f}" if t in per_task else "-" for t in TASKS) + " |")
    lines += [""] + [f"- {k}: {v:.1f} s" for k, v in run.other_seconds.items()]
    cli.write_text_atomic(out_dir / "report.md", "\n".join(lines) + "\n")
    summary = {"settings": settings, "skipped": skipped, "contamination": contamination, "timings": timings,
               "models": [{k: v for k, v in r.items() if k != "records"} for r in results]}
    cli.write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    with cli.atomic_output(out_dir / "report.png") as tmp:
        plot_report(results, tmp)
    return table


# ----------------------------------------------------------------------------------------------------
# The script


def select_models(models, names, runs_dir):
    """The models --models names (stages, row labels or folder names, comma-separated; None: all). A name that
    matches no model is one clear line listing the names there are."""
    if not models:
        raise FileNotFoundError(f"no models to evaluate under {runs_dir}: run the pipeline first (python pipeline.py)")
    if names is None:
        return models
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {n for m in models for n in (m["stage"], m["label"], m["path"].parent.name)}
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise ValueError(f"--models {names!r}: {'no model is called ' + ', '.join(unknown) if unknown else 'name a model'}"
                         f"; the models under {runs_dir} are {', '.join(m['label'] for m in models)}")
    return [m for m in models if {m["stage"], m["label"], m["path"].parent.name} & set(wanted)]


def resolve_settings(args):
    settings = json.loads(json.dumps({**PRESETS[args.preset], **(DRY_RUN if args.dry_run else {})}))  # a deep copy
    settings["preset"] = args.preset
    if args.samples:
        settings["code_samples"] = args.samples
    if args.pass_k:
        try:
            settings["pass_k"] = [int(k) for k in args.pass_k.split(",")]
        except ValueError:
            raise ValueError(f"--pass-k {args.pass_k!r}: give comma-separated integers, e.g. 1,10") from None
    bad = [k for k in settings["pass_k"] if not 1 <= k <= settings["code_samples"]]
    if bad:
        raise ValueError(f"pass@{bad[0]} needs k between 1 and the number of samples n = {settings['code_samples']}:"
                         f" lower --pass-k or raise --samples")
    if args.threads:
        settings["threads"] = args.threads
    if args.workers:
        settings["workers"] = args.workers
    return settings


def check_inputs(args):
    """Every input checked before anything is written -> (the Run, the tasks, the models to evaluate, the lines
    saying which models are skipped and why)."""
    settings = resolve_settings(args)
    tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    check_task_names(tasks)
    out_dir = cli.check_out_dir(args.out_dir, overwrite=args.overwrite, marker="report.md", resumable=False)
    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"--runs-dir {runs_dir} is not a folder: run the pipeline first (python pipeline.py)")
    run = Run(runs_dir, out_dir, hardware.pick_device(args.device), settings, lambda *a: print(*a, flush=True))
    models, skipped = find_models(runs_dir, args.ckpt or [])
    if args.models is None:  # --models wins over the preset's choice
        models = dry_run_models(models) if args.dry_run else preset_models(models, settings, skipped)
    return run, tasks, select_models(models, args.models, runs_dir), skipped


def preset_models(models, settings, skipped):
    """The quantized copies the preset evaluates (settings["quantized"]; None: every one) -> the models, with a
    line in `skipped` naming those left out."""
    keep = settings.get("quantized")
    left_out = [m for m in models if keep is not None and m["meta"]["format"] == "quantized" and m["stage"] not in keep]
    if left_out:
        skipped.append(f"{len(left_out)} quantized copies the {settings['preset']} preset leaves out (chapter 06's "
                       f"table measures them): {', '.join(m['label'] for m in left_out)}; --models names them")
    return [m for m in models if m not in left_out]


def dry_run_models(models):
    """--dry-run: every model but one quantized one (a GPTQ model if there is one): chapter 06's dry run has
    generated with each of its models already, and on a CPU the int8 ones decode at ~1 token/s at gpt2 size."""
    quantized = [m for m in models if m["meta"]["format"] == "quantized"]
    kept = ([m for m in quantized if m["stage"].startswith("gptq")] or quantized)[:1]
    return [m for m in models if m["meta"]["format"] != "quantized" or m in kept]


def draw_items(run, models, tasks, w):
    """The held-out items of every task -> ({task: items}, where the perplexity task's text came from)."""
    docs, source = heldout_documents(models, run.runs_dir, run.settings["items"]["perplexity"])
    return {task: make_items(task, w, {**run.settings, "heldout_text": docs}) for task in tasks}, source


def records_folder(run, label):
    """records/<model>/ for a row label ("ppo", "sft (04_sft_direct)" -> "sft_04_sft_direct")."""
    return run.out_dir / "records" / label.replace(" ", "_").replace("/", "_").replace("(", "").replace(")", "")


def evaluate_model(run, model, tasks, items, w, skipped):
    """Every task on one model -> its result {"label", "stage", "path", "summary", "records"}; None (and a line
    in `skipped`) if its checkpoint cannot be loaded: one odd checkpoint does not stop the report."""
    label, path, stage = model["label"], model["path"], model["stage"]
    run.log(f"\n== {label} ({path})")
    try:
        lm = LanguageModel.load(path, name=label, stage=stage, device=run.device, batch_size=run.settings["batch_size"])
    except (ValueError, RuntimeError, KeyError, OSError) as error:
        skipped.append(f"{path}: could not be loaded as a language model ({cli.one_line(error)})")
        run.log(f"  skipped: {skipped[-1]}")
        return None
    result = {"label": label, "stage": stage, "path": str(path), "summary": {}, "records": {}}
    run.timings[label] = {}
    for task in tasks:
        if not runs_task(task, stage, model["meta"].get("format")):
            continue
        t = time.time()
        records = run_task(task, lm, items[task], run.settings, w)
        run.timings[label][task] = time.time() - t
        result["records"][task], result["summary"][task] = records, summarize(task, records)
        folder = records_folder(run, label)
        folder.mkdir(parents=True, exist_ok=True)
        cli.write_text_atomic(folder / f"{task}.jsonl", "".join(json.dumps(r, default=str) + "\n" for r in records))
        run.log(f"  {task:<17} {run.timings[label][task]:5.1f} s  " + ", ".join(
            f"{k} {v:.3g}" for k, v in result["summary"][task].items()))
    return result


def evaluate_models(run, models, tasks, items, w, skipped):
    """evaluate_model on every model -> the results in the models' order (None for one that did not load).
    On a CPU with settings["workers"] > 1 the models are shared out among that many processes: each model's
    tasks are seeded, so a worker's figures are the ones the main process would get. Plumbing for speed,
    not part of the lesson."""
    workers = min(run.settings.get("workers") or 1, os.cpu_count() or 1, len(models))
    if workers <= 1 or run.device != "cpu":
        return [evaluate_model(run, m, tasks, items, w, skipped) for m in models]
    run.log(f"evaluating {len(models)} models in {workers} processes of {run.settings['threads'] or 'all'} thread(s)")
    shipped = dataclasses.replace(run, log=None, timings={}, other_seconds={})  # a lambda does not pickle
    with worker_pool(dict(run=shipped, tasks=tasks, items=items, w=w), workers, run.settings["threads"]) as submit:
        jobs = [submit(evaluate_in_worker, m) for m in models]
        results = []
        for job in jobs:  # in the models' order: the log reads as one process's would
            result, timings, lines, skipped_here = job.result()
            for line in lines:
                run.log(line)
            run.timings.update(timings)
            skipped.extend(skipped_here)
            results.append(result)
    return results


def evaluate_in_worker(context, model):
    """One model in a worker process (worker_pool's context: the run, tasks, items, world) -> (its result, its
    timings, its log lines, its skipped lines)."""
    run = dataclasses.replace(context["run"], timings={}, other_seconds={})  # this model's own
    lines, skipped = [], []
    run.log = lambda *a: lines.append(" ".join(str(x) for x in a))  # sent back, printed in the models' order
    result = evaluate_model(run, model, context["tasks"], context["items"], context["w"], skipped)
    return result, run.timings, lines, skipped


def evaluate_all(args):
    """Find the models, draw the items, run every task on every model, write the report -> the results."""
    start = time.time()
    run, tasks, models, skipped = check_inputs(args)
    if run.settings["threads"]:
        torch.set_num_threads(run.settings["threads"])
    for line in skipped:
        run.log(f"skipped: {line}")

    w = world.build_world(0)
    items, heldout_source = run.timed("held-out items", lambda: draw_items(run, models, tasks, w))
    results = [r for r in run.timed("every task on every model (wall)", lambda: evaluate_models(
        run, models, tasks, items, w, skipped)) if r is not None]
    if not results:  # nothing to report: say why instead of writing an empty table
        raise ValueError(f"none of the {len(models)} model(s) could be loaded, so there is no report: {skipped[-1]}")
    contamination = run.timed("decontamination report", lambda: contamination_report(
        NgramIndex(training_texts(models, w)), items, item_text))

    table = write_report(run, results, skipped, contamination, {
        "heldout_text": heldout_source, "multimodal": multimodal_table(run.runs_dir / MULTIMODAL_FOLDER / "summary.json")})
    run.log(f"\n{table}\n\ndone in {time.time() - start:.0f} s. Wrote {run.out_dir / 'report.md'} (open it first), "
            f"report.png, summary.json and records/<model>/<task>.jsonl")
    return results


def main(argv=None):
    threads_before = torch.get_num_threads()
    try:
        return evaluate_all(parse_args(argv))
    finally:
        torch.set_num_threads(threads_before)  # main() may run inside another program (the tests)


if __name__ == "__main__":
    cli.run(main)
