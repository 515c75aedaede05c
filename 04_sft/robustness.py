"""Robustness: does the chat model do the TASK, or only the forms it was trained on?

Every row is measured on held-out items twice (world/splits.py): "heldout", in forms training text uses
(the skill on new items), and "ood", in forms that no training text uses (robustness to new phrasing):

    ROWS                       (key, label) of each row, in the table's order
    robustness_sets(w, n, split)  {key: [examples]}: the held-out items of each row (sft_data's example dicts)
    is_right(example, reply)   the one grading rule of a row: the reply does what the example asks
    measure(model, tok, sets)  {"metrics": {key: share}, "counts": {key: n}, "replies": [...]}
    robustness_table(h, o)     the markdown rows, heldout and ood columns (two measure() results)

Chapter 04 prints these rows under its main table; chapter 07 may call the same functions.
The three-turn rows ask the SAME final questions as the "asked alone" row, after two earlier exchanges
(held-out prompts with their reference replies), so the gap between them is what the history costs.
"""
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import world  # noqa: E402  (chapter 03: the mini-world)
from chat_session import TEMPERATURE, TOP_K  # noqa: E402  (this chapter: the chat defaults)
from grading import generate_replies, is_right  # noqa: E402  (this chapter: the one grading rule)
from sft_data import exchange, arith_example, world_examples  # noqa: E402  (this chapter)

CHAT_TEMPERATURE, CHAT_TOP_K = TEMPERATURE, TOP_K  # chat.py's defaults: the sampled three-turn row uses them
ROWS = [   # (the keys keep their first names: chapter 07 reads them)
    ("oot_harmful_refused", "harmful requests with an unseen action: refused"),
    ("oot_benign_answered", "their benign look-alikes (unseen intent): answered, not refused"),
    ("arith_unseen_form", "bare arithmetic on unseen numbers: exact answer"),
    ("fact_unseen_phrasing", "held-out world questions: exact answer"),
    ("single_turn", "final questions asked alone: right (greedy)"),
    ("three_turn_greedy", "the same as the third turn of a conversation: right (greedy)"),
    ("three_turn_sampled", f"the same, sampled (temperature {CHAT_TEMPERATURE}, top-k {CHAT_TOP_K}, seeded): right"),
]


def _out_of_template_requests(w, n, harmful, seed, split="ood"):
    """n held-out requests whose intent (the action) is held out: in a training framing ("heldout") or a
    held-out one ("ood")."""
    task = "harmful" if harmful else "benign"
    requests = world.user_requests(w, 8 * n, harmful=harmful, split=split, seed=seed)
    return [{"task": task, "messages": exchange(r.prompt, r.reply)} for r in requests if "intent" in r.heldout_parts][:n]


def _phrased_fact_examples(w, n, seed, split="ood"):
    """n held-out fact questions, each wrapped in a framing of `split` (chat_phrasings.QUESTION_FRAMINGS:
    a training one for "heldout", a held-out one for "ood"); the same questions for both."""
    rng = random.Random(f"robust-fact:{seed}")
    questions = world.fact_questions(w, "heldout", seed=seed)
    rng.shuffle(questions)
    return [{"task": "fact", "messages": exchange(world.phrase_question(q.question, split, rng), q.answer_sentence),
             "answer": q.answer, "distractors": [c for c in q.choices if c != q.answer], "subject": q.fact.subject}
            for q in questions[:n]]


def robustness_sets(w, n=30, seed=0, split="ood"):
    """{row key: [examples]} for the rows of ROWS (the three turn rows share one set, "three_turn", and
    "single_turn" holds the same final exchanges alone). Every item is held out; `split` "heldout" asks
    them in training forms, "ood" in forms no training text uses."""
    if split not in ("heldout", "ood"):
        raise ValueError(f"robustness sets are held out: split 'heldout' or 'ood', got {split!r}")
    rng = random.Random(f"robust-arith:{seed}")
    sets = {"oot_harmful_refused": _out_of_template_requests(w, n, True, seed, split),
            "oot_benign_answered": _out_of_template_requests(w, n, False, seed, split),
            "arith_unseen_form": [arith_example(*world.arithmetic_chat(rng, split)) for _ in range(n)],
            "fact_unseen_phrasing": _phrased_fact_examples(w, n, seed, split)}
    # three-turn: a held-out fact question, word problem or bare arithmetic problem after two earlier
    # exchanges with short replies (held-out facts, unknown entities, requests) that leave room in the context
    finals = world_examples(w, split, {"fact": n - 2 * (n // 3), "math": n // 3}, seed=seed + 100)
    finals += [arith_example(*world.arithmetic_chat(rng, split)) for _ in range(n // 3)]
    pool = world_examples(w, split, {"fact": 2 * n, "unknown": n, "benign": n}, seed=seed + 200)
    sets["single_turn"], sets["three_turn"] = finals, []
    for final in finals:
        sets["three_turn"].append(three_turns(final, pool))
    return sets


def three_turns(final, pool):
    """`final` after two earlier exchanges taken (popped) from `pool`, the first two that are not about
    the final question's subject (an earlier answer must not hint at the last one)."""
    unrelated = lambda e: e.get("subject") is None or e["subject"] != final.get("subject")
    first, second = [pool.pop(next(k for k, e in enumerate(pool) if unrelated(e))) for _ in range(2)]
    return {**final, "messages": first["messages"] + second["messages"] + final["messages"], "turns": 3}


def measure(model, tokenizer, sets, max_new_tokens=128, precision="fp32", seed=0):
    """Reply to every set's prompts and score them with is_right. Greedy, except "three_turn_sampled"
    (chat.py's temperature and top-k, seeded). Returns {"metrics": {row key: share right}, "counts":
    {row key: n}, "replies": [{"row", "prompt", "reply", "right"}, ...]}."""
    metrics, counts, records = {}, {}, []
    for key, _ in ROWS:
        examples = sets["three_turn" if key.startswith("three_turn") else key]
        sampled = key == "three_turn_sampled"
        replies = generate_replies(model, tokenizer, [e["messages"][:-1] for e in examples], max_new_tokens,
                                   precision=precision, temperature=CHAT_TEMPERATURE if sampled else 0.0,
                                   top_k=CHAT_TOP_K if sampled else None, seed=seed if sampled else None)
        right = [is_right(e, reply) for e, (reply, _) in zip(examples, replies)]
        metrics[key], counts[key] = sum(right) / max(1, len(right)), len(right)
        records += [{"row": key, "prompt": e["messages"][-2]["content"], "reply": reply, "right": ok}
                    for e, (reply, _), ok in zip(examples, replies, right)]
    return {"metrics": metrics, "counts": counts, "replies": records}


def robustness_table(heldout, ood, labels=("heldout: training forms", "ood: unseen forms")):
    """The markdown table of ROWS: the model on the `heldout` sets and on the `ood` ones (two measure()
    results; heldout may be None)."""
    lines = [f"| after SFT, held-out items | n | {labels[0]} | {labels[1]} |", "|---|---:|---:|---:|"]
    for key, label in ROWS:
        if key in ood["metrics"]:
            first = f"{100 * heldout['metrics'][key]:.0f}%" if heldout else "-"
            lines.append(f"| {label} | {ood['counts'][key]} | {first} | {100 * ood['metrics'][key]:.0f}% |")
    return "\n".join(lines)
