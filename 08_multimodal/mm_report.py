"""Chapter 08's report: report.md (the tables), report.png (the bars), summary.json (everything, for 07)."""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: atomic writes)
from grading import METRICS  # noqa: E402  (chapter 04: the text rows' labels)

TARGETS = {"zeroshot": 0.90, "colour_shape": 0.80, "count_spatial": 0.60, "above_blind": 0.30, "calculator": 0.90}


def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def target_lines(summary):
    """The issue's targets, each with its measured figure and met / missed by how much."""
    clip, llava, tools = summary["clip"]["heldout"], summary["llava"]["heldout"], summary["tools"]
    image, blind = llava["image"], llava["blind"]
    gaps = [image[t] - blind[t] for t in ("colour", "shape", "count", "spatial")]
    rows = [("CLIP zero-shot colour (held-out)", clip["zeroshot_colour"], TARGETS["zeroshot"]),
            ("CLIP zero-shot shape (held-out)", clip["zeroshot_shape"], TARGETS["zeroshot"]),
            ("LLaVA colour questions", image["colour"], TARGETS["colour_shape"]),
            ("LLaVA shape questions", image["shape"], TARGETS["colour_shape"]),
            ("LLaVA counting questions", image["count"], TARGETS["count_spatial"]),
            ("LLaVA spatial questions", image["spatial"], TARGETS["count_spatial"]),
            ("LLaVA above blind (smallest gap of the four)", min(gaps), TARGETS["above_blind"]),
            ("bare arithmetic with the calculator", tools["arith"]["with_tools"], TARGETS["calculator"])]
    lines = ["| target | measured | wanted | |", "|---|---:|---:|---|"]
    for name, value, wanted in rows:
        verdict = "met" if value >= wanted else f"missed by {100 * (wanted - value):.0f} points"
        lines.append(f"| {name} | {pct(value)} | {pct(wanted)} | {verdict} |")
    return "\n".join(lines)


def write_report(summary, out_dir):
    out_dir = Path(out_dir)
    clip, llava, tools = summary["clip"], summary["llava"], summary["tools"]
    lines = ["# Chapter 08: multimodal", "",
             f"Preset `{summary['settings']['preset']}`, chat model `{summary['settings']['chat']}`; "
             + ", ".join(f"{k} {v:.0f} s" for k, v in summary["seconds"].items()) + ".", "",
             "## Targets (held-out scenes)", "", target_lines(summary), "",
             "## CLIP", "",
             "| | held-out scenes | held-out compositions |", "|---|---:|---:|"]
    rows = [("image→text recall@1", "i2t_r1"), ("image→text recall@5", "i2t_r5"), ("text→image recall@1", "t2i_r1"),
            ("text→image recall@5", "t2i_r5"), ("random recall@1", "random_r1"), ("random recall@5", "random_r5"),
            ("zero-shot colour (one object)", "zeroshot_colour"), ("linear probe colour", "probe_colour"),
            ("zero-shot shape (one object)", "zeroshot_shape"), ("linear probe shape", "probe_shape")]
    for label, key in rows:
        lines.append(f"| {label} | {pct(clip['heldout'][key])} | {pct(clip['composition'][key])} |")
    lines += ["", f"Retrieval among {clip['heldout']['n']} scenes per set; zero-shot and probe on scenes of one "
              "object (composition: the four held-out colour-shape pairs). Similarity matrix: similarity.png.", "",
              "## LLaVA: accuracy per question type", "",
              "| question | n | with the picture | blind | caption, then answer | compositions: picture | "
              "compositions: blind |", "|---|---:|---:|---:|---:|---:|---:|"]
    held, comp = llava["heldout"], llava["composition"]
    for t in held["n"]:
        lines.append(f"| {t} | {held['n'][t]} | {pct(held['image'].get(t))} | {pct(held['blind'].get(t))} | "
                     f"{pct(held['caption'].get(t))} | {pct(comp['image'].get(t))} | {pct(comp['blind'].get(t))} |")
    lines += ["", f"Captions word for word right: {pct(held['caption_exact'])} (held-out), "
              f"{pct(comp['caption_exact'])} (compositions).", "",
              "## Chapter 04's text rows before and after LLaVA's stage 2", "",
              "| row | chapter 04's chat model | LLaVA's language model |", "|---|---:|---:|"]
    for key, label, _ in METRICS:
        if key in summary["text_before"]:
            lines.append(f"| {label.replace('<|end|>', '`<|end|>`')} | {pct(summary['text_before'][key])} | "
                         f"{pct(summary['text_after'].get(key))} |")
    lines += ["", "## Tools", "", "| held-out | n | with tools | without tools | calls per reply |",
              "|---|---:|---:|---:|---:|"]
    names = {"arith": "bare arithmetic (2 digits)", "word": "word problems (1-2 steps)",
             "visual": "count the objects + k (without tools: LLaVA end to end)"}
    for kind, label in names.items():
        if kind in tools:
            r = tools[kind]
            lines.append(f"| {label} | {r['n']} | {pct(r['with_tools'])} | {pct(r['without_tools'])} | {r['calls']:.1f} |")
    lines += ["", "Example tool transcripts:", ""]
    for e in tools["examples"][:4]:
        calls = " ".join(f"`{c}` → `{r}`" for c, r in e["trace"])
        lines.append(f"- {e['question']} {calls} → {e['reply']}")
    text = "\n".join(lines) + "\n"
    cli.write_text_atomic(out_dir / "report.md", text)
    cli.write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    plot_report(summary, out_dir / "report.png")
    return text


def plot_report(summary, path):
    """Bars: LLaVA per question type (picture, blind, caption route) and the tools with/without."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    held = summary["llava"]["heldout"]
    types = list(held["n"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    for k, route in enumerate(("image", "blind", "caption")):
        left.bar([i + 0.27 * (k - 1) for i in range(len(types))], [held[route].get(t, 0) for t in types], 0.27,
                 label={"image": "with the picture", "blind": "blind", "caption": "caption, then answer"}[route])
    left.set_xticks(range(len(types)), types)
    left.set_ylim(0, 1)
    left.set_title("LLaVA on held-out scenes")
    left.legend(fontsize=8)
    kinds = [k for k in ("arith", "word", "visual") if k in summary["tools"]]
    for k, key in enumerate(("with_tools", "without_tools")):
        right.bar([i + 0.4 * (k - 0.5) for i in range(len(kinds))], [summary["tools"][x][key] for x in kinds], 0.4,
                  label=key.replace("_", " "))
    right.set_xticks(range(len(kinds)), kinds)
    right.set_ylim(0, 1)
    right.set_title("tools (held-out)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
