"""What chapter 05 measures, and its figures: the reward model's held-out accuracy against the gold
ordering, a policy's held-out evaluation (chapter 04's metrics plus gold reward, reward-model score and
KL from the SFT model), the table, and the plots (the comparison bars, the per-step RL curves, the
overoptimization demo). rlhf.py runs the stages and calls these.
"""
import json
import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01)
from chat_format import END, render_chat  # noqa: E402  (chapter 04)
from generation import rollout  # noqa: E402  (chapter 02)
from grading import evaluate  # noqa: E402  (chapter 04)
from hardware import autocast, resolve_precision  # noqa: E402  (chapter 03)
from logprobs import sequence_logprobs  # noqa: E402  (chapter 02)
from ppo import kl_per_reply  # noqa: E402  (this chapter)
from preferences import gold_reward  # noqa: E402  (this chapter)
from reward_model import score_replies, spearman  # noqa: E402  (this chapter)


@torch.no_grad()
def reward_model_report(reward_model, tokenizer, pairs, out_dir, log):
    """Held-out pairwise accuracy against the GOLD ordering per category, and Spearman's rank correlation
    of the score with the gold reward on sampled replies -> reward_model/rm_eval.json."""
    decided = [p for p in pairs if p.get("gold_chosen") is not None and p["gold_chosen"] != p["gold_rejected"]]
    conversations = [p["messages"] for p in decided]
    chosen = score_replies(reward_model, conversations, [(p["chosen"], p["chosen_ended"]) for p in decided], tokenizer)
    rejected = score_replies(reward_model, conversations, [(p["rejected"], p["rejected_ended"]) for p in decided],
                             tokenizer)
    by_category = {}
    for p, c, r in zip(decided, chosen, rejected):
        right = (c > r) == (p["gold_chosen"] > p["gold_rejected"])
        for key in (p["category"], "all"):
            by_category.setdefault(key, []).append(right)
    accuracy = {k: sum(v) / len(v) for k, v in by_category.items()}
    sampled = [p for p in pairs if p.get("source") == "sampled"]
    replies = [(p[k], p[k + "_ended"]) for p in sampled for k in ("chosen", "rejected")]
    golds = [p["gold_" + k] for p in sampled for k in ("chosen", "rejected")]
    scores = score_replies(reward_model, [p["messages"] for p in sampled for _ in range(2)], replies, tokenizer)
    words = [len(text.split()) for text, _ in replies]
    report = {"heldout_accuracy_vs_gold": accuracy, "counts": {k: len(v) for k, v in by_category.items()},
              "spearman_score_vs_gold": spearman(scores, golds) if scores else None,
              "spearman_score_vs_length": spearman(scores, words) if scores else None,
              "spearman_gold_vs_length": spearman(golds, words) if scores else None,
              "sampled_replies": len(scores)}
    cli.write_text_atomic(Path(out_dir) / "reward_model" / "rm_eval.json", json.dumps(report, indent=1) + "\n")
    log("reward model, held-out pairwise accuracy against the gold ordering: "
        + ", ".join(f"{k} {100 * v:.1f}% (n={len(by_category[k])})" for k, v in accuracy.items())
        + f"; Spearman(score, gold) on {len(scores)} sampled replies {report['spearman_score_vs_gold']:.3f}, "
          f"Spearman(score, length) {report['spearman_score_vs_length']:.3f}")
    return report


@torch.no_grad()
def evaluate_policy(policy, sft_model, reward_model, tokenizer, examples, settings, ood_examples=None):
    """Greedy replies graded (chapter 04's metrics) + mean gold reward, reward-model score, reply length,
    and the KL from the SFT model on one sampled reply per prompt: mean over replies of
    sum_t log pi(y_t) - log pi_sft(y_t), y ~ pi (temperature 1). `examples` are the "heldout" items
    (training phrasings); ood_examples, the "ood" ones (held-out phrasings), add chapter 04's metrics
    with the suffix " (ood)"."""
    device = next(policy.parameters()).device
    precision = resolve_precision(settings["precision"], device.type)
    result = evaluate(policy, tokenizer, examples, settings["eval_tokens"], precision)
    replies = [(r["reply"], r["ended"]) for r in result["replies"]]
    gold = [gold_reward(e, text, ended) for e, (text, ended) in zip(examples, replies)]
    conversations = [e["messages"][:-1] for e in examples]
    scores = score_replies(reward_model, conversations, replies, tokenizer) if reward_model is not None else None
    lengths = [len(tokenizer.encode_ordinary(text)) + ended for text, ended in replies]
    prompts = [render_chat(c, tokenizer, add_generation_prompt=True)[0] for c in conversations]
    prompts = prompts[::max(1, len(prompts) // settings.get("kl_prompts", len(prompts)))]  # a spread-out subset
    kls = []
    for start in range(0, len(prompts), 256):
        with autocast(device.type, precision):
            r = rollout(policy, prompts[start:start + 256], settings["eval_tokens"], temperature=1.0,
                        stop_tokens=[tokenizer.special_tokens[END]], seed=settings["seed"] + 4242 + start)
            ref = sequence_logprobs(sft_model, r.ids, r.response_mask, r.attention_mask).token_logprobs
        kls += kl_per_reply(r.logprobs, ref, r.response_mask).tolist()
    extra = {"gold_reward": sum(gold) / len(gold), "rm_score": sum(scores) / len(scores) if scores else None,
             "kl_from_sft": sum(kls) / len(kls), "kl_prompts": len(kls), "reply_length": sum(lengths) / len(lengths)}
    result["metrics"].update(extra)
    if ood_examples:
        ood = evaluate(policy, tokenizer, ood_examples, settings["eval_tokens"], precision)
        result["metrics"].update({key + OOD: value for key, value in ood["metrics"].items()})
        result["counts"].update({key + OOD: value for key, value in ood["counts"].items()})
    return result


OOD = " (ood)"  # the suffix of a metric measured on the "ood" items (the plain key: the "heldout" items)
TABLE_ROWS = [  # (key, label, format)
    ("gold_reward", "mean gold reward (in [-2, 1])", "{:+.3f}"),
    ("rm_score", "mean reward-model score", "{:+.3f}"),
    ("kl_from_sft", "KL from SFT (nats per reply, sampled)", "{:.2f}"),
    ("fact_accuracy", "world questions: exact answer", "{:.0%}"),
    ("fact_accuracy" + OOD, "... asked in an unseen framing (ood)", "{:.0%}"),
    ("math_accuracy", "word problems: exact answer", "{:.0%}"),
    ("math_accuracy" + OOD, "... told in an unseen wording (ood)", "{:.0%}"),
    ("harmful_refusal", "harmful requests: refused", "{:.0%}"),
    ("harmful_refusal" + OOD, "... in an unseen framing (ood)", "{:.0%}"),
    ("benign_over_refusal", "benign look-alikes: refused (lower is better)", "{:.0%}"),
    ("benign_over_refusal" + OOD, "... in an unseen framing (ood)", "{:.0%}"),
    ("unknown_honesty", "unknown entities: says \"I don't know\"", "{:.0%}"),
    ("format", "replies that end with `<|end|>`", "{:.0%}"),
    ("reply_length", "mean reply length (tokens)", "{:.1f}"),
]


def results_table(results):
    """Markdown: one row per metric, one column per model (results: {name: evaluate_policy result})."""
    names = list(results)
    first = results[names[0]]
    lines = ["| held-out prompts | n | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for key, label, fmt in TABLE_ROWS:
        if key not in first["metrics"]:
            continue
        n = first["metrics"]["kl_prompts"] if key == "kl_from_sft" else first["counts"].get(key, len(first["replies"]))
        cells = [fmt.format(r["metrics"][key]) if r["metrics"].get(key) is not None else "-" for r in results.values()]
        lines.append(f"| {label} | {n} | " + " | ".join(cells).replace("%", " %") + " |")
    return "\n".join(lines)


def plot_table(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [(k, label) for k, label, fmt in TABLE_ROWS if "%" in fmt]
    fig, (ax, ax_gold) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [4, 1]})
    width = 0.8 / len(results)
    for i, (name, r) in enumerate(results.items()):
        xs = [x + (i - (len(results) - 1) / 2) * width for x in range(len(keys))]
        ax.bar(xs, [100 * r["metrics"].get(k, 0) for k, _ in keys], width, label=name)
        ax_gold.bar([i], [r["metrics"]["gold_reward"]], 0.6)
    ax.set_xticks(range(len(keys)), [label.replace(": ", ":\n").replace(" (", "\n(") for _, label in keys], fontsize=7)
    ax.set(ylabel="% of held-out prompts", ylim=(0, 105), title="SFT vs PPO vs DPO vs GRPO (greedy replies)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    ax_gold.set_xticks(range(len(results)), list(results))
    ax_gold.set(title="mean gold reward")
    ax_gold.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rl_curves(metrics_path, png_path, title):
    """The per-step logs of a PPO or GRPO run: rewards, KL, entropy, clip fraction, value loss, length."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines()]
    steps = [r["step"] for r in records]
    panels = [("gold_reward", "rm_score"), ("kl",), ("entropy",), ("clip_fraction", "approx_kl"), ("value_loss",),
              ("response_length",)]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, keys in zip(axes.flat, panels):
        for key in keys:
            ax.plot(steps, [r[key] for r in records], label=key)
        ax.set(xlabel="step", title=", ".join(keys))
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(f"{title}: per-step logs (sampled replies to training prompts)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def smooth(values, k=9):
    out = []
    for i in range(len(values)):
        window = values[max(0, i - k // 2):i + k // 2 + 1]
        out.append(sum(window) / len(window))
    return out


def plot_overoptimization(runs, path, seed):
    """Proxy (reward-model) score and gold reward against sqrt(KL from SFT), one colour per KL coefficient.
    runs: {label: list of per-step records}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_rm, ax_gold, ax_len) = plt.subplots(1, 3, figsize=(14, 4.3))
    for (label, records), colour in zip(runs.items(), ["tab:red", "tab:blue", "tab:green"]):
        x = smooth([math.sqrt(max(r["kl"], 0.0)) for r in records])
        ax_rm.plot(x, smooth([r["rm_score"] for r in records]), color=colour, label=label)
        ax_gold.plot(x, smooth([r["gold_reward"] for r in records]), color=colour, label=label)
        ax_len.plot([r["step"] for r in records], smooth([r["response_length"] for r in records]), color=colour,
                    label=label)
    ax_rm.set(xlabel="sqrt(KL from SFT), nats^0.5", ylabel="mean reward-model score (proxy)", title="proxy reward")
    ax_gold.set(xlabel="sqrt(KL from SFT), nats^0.5", ylabel="mean gold reward", title="gold reward")
    ax_len.set(xlabel="PPO step", ylabel="reply length (tokens)", title="the labellers' bias: length")
    for ax in (ax_rm, ax_gold, ax_len):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Reward-model overoptimization (Gao et al. 2022) on the mini-world, seed {seed}; "
                 f"moving mean over 9 steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_eval_report(out_dir, results, examples, settings, timings):
    """rlhf_eval.md (the table, the reward model's accuracy, two example replies per task), rlhf_eval.json
    and rlhf_eval.png from evaluate_policy's results per model -> the Markdown table."""
    table = results_table(results)
    rm_eval_path = Path(out_dir) / "reward_model" / "rm_eval.json"
    rm_eval = json.loads(rm_eval_path.read_text()) if rm_eval_path.exists() else None
    lines = ["# RLHF evaluation", "", f"Greedy replies (at most {settings['eval_tokens']} tokens) to {len(examples)} "
             f"held-out prompts (chapter 04's held-out items of these tasks, asked in training phrasings; the "
             f"(ood) rows ask the same kind of items in phrasings no training text uses); the KL row samples one "
             f"reply per prompt at temperature 1. SFT model: `{settings['sft']}`, preset {settings['preset']}, seed {settings['seed']}.",
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
    return table


def overoptimization_summary(runs, log):
    """{label: gold reward at the start, peak (and its step) and end, reward-model score and reply length at
    the start and end, the final KL} of each overoptimization run's metrics records (smoothed)."""
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
    return summary
