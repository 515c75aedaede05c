"""Preference data with a gold reward: the mini-world plays the human labeller.

    r = gold_reward(example, reply, ended)                   # the truth: +1 right, -1 wrong, -1 more for rambling
    pairs = world_pairs(w, "train", PAIR_MIX, seed=0, rl_mix=RL_PAIR_MIX)  # (prompt, chosen, rejected) from the world's wrong replies
    pairs += sampled_pairs(examples, replies_a, replies_b)   # two samples of the SFT model per prompt
    labelled = label_pairs(pairs, Labeller(tau=0.5, length_bias=0.03), seed=0)   # noisy, length-biased labels
    write_pairs(path, labelled); read_pairs(path)            # JSONL, one pair per line

The gold reward is what a perfect labeller would say, written as rules over chapter 04's grading
(grading.py), for one reply to one example (a dict of sft_data.world_examples):

    task score       fact     +1 the exact answer, 0 "I don't know", -1 anything else
                     math     +1 the right final number ("The answer is N."), -1 otherwise
                     unknown  +1 "I don't know" about an entity that does not exist, -1 an invented answer
                     harmful  +1 a refusal, -1 compliance
                     benign   +1 a helpful reply, -1 a needless refusal or "I don't know of ..."
    format score     0 if the reply ended its turn with <|end|>, -1 if it rambled on to the length limit

Real labels are noisy, and real labellers have biases. A Labeller compares two replies a, b with
Bradley-Terry noise on its own utility u = gold + length_bias * (number of words):

    P(a is chosen) = sigmoid((u_a - u_b) / tau)

so the worse reply wins with probability sigmoid(-|u_a - u_b| / tau), and among equally good replies the
longer one wins more often: a reward model trained on these labels learns "longer is better", which the
gold reward does not want. That is the bias PPO without a KL penalty exploits (the lesson's main figure).

A pair is a dict: {"category", "messages" (the conversation up to the user's last turn), "chosen",
"rejected" (reply texts), "chosen_ended", "rejected_ended" (did the reply end its turn), "gold_chosen",
"gold_rejected", "example" (the grading fields), "source" ("world" or "sampled")}.
"""
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import world  # noqa: E402  (chapter 03: the mini-world)
from grading import is_right, says_dont_know  # noqa: E402  (chapter 04: the one grading rule)

CATEGORIES = ("fact", "math", "unknown", "harmful", "benign", "format")
RL_TASKS = ("fact", "math", "unknown", "harmful", "benign")  # the tasks whose replies the gold reward can judge
# The world's pairs per category. The benign look-alikes weigh most: a reward model that has seen few of them
# scores any refusal high, and PPO against it learns to refuse what it should help with (over-refusal).
# Facts and math weigh less than the rest: the reward model, built on a body that knows few facts, stays near
# chance on them however many it sees (the lesson, section 3), and PPO does not train on them.
PAIR_MIX = {"fact": 100, "math": 100, "unknown": 150, "harmful": 150, "benign": 250, "format": 200}
# Pairs on requests of the kind RL practises on (world.rl_requests), for the training split only: the labellers
# compare replies there too, so that the reward model has seen such requests answered and can judge what PPO
# writes on them (without these pairs PPO over-refused: the lesson, exercise 10).
RL_PAIR_MIX = {"harmful": 75, "benign": 125}
GRADING_FIELDS = ("task", "answer", "distractors", "subject")


# ----------------------------------------------------------------------------------------------------
# The gold reward


def task_score(example, reply):
    """+1 / 0 / -1: +1 if the reply is right for its example's task (chapter 04's is_right), 0 for a world
    question answered "I don't know" (honest, not right), -1 otherwise (see the module docstring). One
    condition more than is_right: a benign request answered "I don't know ..." is not refused (chapter 04's
    over-refusal row counts it as answered) but not helped either, so the gold reward gives it -1."""
    if example["task"] not in RL_TASKS + ("arith",):  # bare arithmetic: GRPO's verifiable prompts, no pairs
        raise ValueError(f"the gold reward knows the tasks {RL_TASKS + ('arith',)}, not {example['task']!r}")
    if is_right(example, reply) and not (example["task"] == "benign" and says_dont_know(reply)):
        return 1.0   # (a look-alike answered "I don't know of ..." is not refused, and not helped either)
    return 0.0 if example["task"] == "fact" and says_dont_know(reply) else -1.0


def gold_reward(example, reply, ended=True):
    """The gold reward of one reply: task_score + (0 if it ended its turn else -1), in [-2, 1].

    >>> ex = {"task": "math", "answer": 14}
    >>> gold_reward(ex, "The answer is 14."), gold_reward(ex, "The answer is 15."), gold_reward(ex, "The answer is 14. And", False)
    (1.0, -1.0, 0.0)
    """
    return task_score(example, reply) + (0.0 if ended else -1.0)


# ----------------------------------------------------------------------------------------------------
# Pairs from the world: the right reply and a wrong-but-plausible one


def _pair(category, user, chosen, rejected, example, chosen_ended=True, rejected_ended=True):
    return {"category": category, "messages": [{"role": "user", "content": user}], "chosen": chosen,
            "rejected": rejected, "chosen_ended": chosen_ended, "rejected_ended": rejected_ended,
            "example": {k: example[k] for k in GRADING_FIELDS if k in example}, "source": "world"}


def ramble(reply, others, rng, n_words=(12, 30)):
    """The reply followed by words of other replies, cut mid-sentence: a reply that does not end its turn."""
    extra = " ".join(rng.choice(others) for _ in range(4)).split()
    return reply + " " + " ".join(extra[:rng.randint(*n_words)])


def world_pairs(w, split, mix=None, seed=0, rl_mix=None):
    """Preference pairs of one split ("train" or "heldout") from the world, mix[category] of each, and
    rl_mix[task] harmful and benign pairs on the requests RL practises on (world.rl_requests).

    fact     the answer sentence vs the same sentence with a distractor (world.wrong_fact_answer)
    math     the worked solution vs one with a slip carried to the end (world.wrong_solution)
    unknown  "I don't know of ..." vs a confident invented answer (ProbeQuestion.invented_answer)
    harmful  a refusal vs compliance (Request.rejected);  benign: a helpful reply vs an over-refusal
             (some of either reject a reply that fits another prompt: request_pairs)
    format   a reference reply of any task vs the same reply rambling on without <|end|>
    The world decides every record's split from its content, so held-out pairs never share a prompt
    with training pairs.
    """
    mix = PAIR_MIX if mix is None else mix
    unknown = set(mix) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; the categories are {CATEGORIES}")
    if rl_mix and split != "train":
        raise ValueError("rl_mix adds pairs on the requests RL practises on: training split only")
    rng = random.Random(f"pairs:{split}:{seed}")
    by_task = {}
    questions = world.fact_questions(w, split, seed=seed)
    rng.shuffle(questions)
    by_task["fact"] = [_pair("fact", q.question, q.answer_sentence, world.wrong_fact_answer(w, q, rng),
                             {"task": "fact", "answer": q.answer, "distractors": [c for c in q.choices if c != q.answer],
                              "subject": q.fact.subject}) for q in questions]
    problems = [world.word_problem(w, rng, n_steps=rng.choice([1, 2]), digits=rng.choice([1, 1, 2]), split=split)
                for _ in range(mix.get("math", 0) + mix.get("format", 0))]
    by_task["math"] = [_pair("math", p.question, world.solution(p, "steps"), world.wrong_solution(p, rng, "steps"),
                             {"task": "math", "answer": p.answer}) for p in problems]
    n_probe = mix.get("unknown", 0) + mix.get("format", 0)
    by_task["unknown"] = [_pair("unknown", q.question, q.honest_answer, q.invented_answer, {"task": "unknown"})
                          for q in world.unknown_entity_questions(w, max(n_probe, 1), split=split, seed=seed)]
    dont_knows = [p["chosen"] for p in by_task["unknown"]]
    refusals = [r.reply for r in world.user_requests(w, 50, harmful=True, split=split, seed=seed + 1)]
    for task, harmful in (("harmful", True), ("benign", False)):
        n = max(mix.get(task, 0) + mix.get("format", 0) // 4, 1)
        requests = world.user_requests(w, n, harmful=harmful, split=split, seed=seed)
        by_task[task] = request_pairs(task, requests, dont_knows, refusals, rng)
    pairs = []
    for task in RL_TASKS:
        pairs += by_task[task][:mix.get(task, 0)]
    # format: the chosen reply of a pair we did not use, against the same reply rambling on
    spare = [p for task in RL_TASKS for p in by_task[task][mix.get(task, 0):]]
    rng.shuffle(spare)
    others = [p["chosen"] for p in pairs] or [p["chosen"] for p in spare]
    for p in spare[:mix.get("format", 0)]:
        pairs.append({**p, "category": "format", "rejected": ramble(p["chosen"], others, rng), "rejected_ended": False})
    for task, n in (rl_mix or {}).items():  # the requests PPO practises on (training split only)
        requests = world.rl_requests(w, n, harmful=task == "harmful", seed=seed)
        pairs += request_pairs(task, requests, dont_knows, refusals, rng)
    rng.shuffle(pairs)
    return [with_gold(p) for p in pairs]


def request_pairs(task, requests, dont_knows, refusals, rng):
    """Pairs on requests (world.Request): the reply vs its `rejected` (a harmful request's compliance, a
    benign one's over-refusal), except where the rejected reply fits another prompt: pairs 1, 4, 7, ...
    reject "I don't know of ..." (from `dont_knows`), and for benign requests pairs 2, 5, 8, ... reject a
    harmful request's refusal (from `refusals`). Without those the reward model learns that "I don't know
    of ..." is right anywhere (it always is for an unknown entity), and PPO says it to every request
    (measured: harmful refused 40 % -> 18 %; the lesson, section 4)."""
    pairs = []
    for i, r in enumerate(requests):
        rejected = r.rejected
        if i % 3 == 1:
            rejected = rng.choice(dont_knows)
        elif i % 3 == 2 and task == "benign":
            rejected = rng.choice(refusals)
        pairs.append(_pair(task, r.prompt, r.reply, rejected, {"task": task}))
    return pairs


def with_gold(pair):
    """The pair with gold_chosen and gold_rejected filled in."""
    example = pair["example"]
    return {**pair, "gold_chosen": gold_reward(example, pair["chosen"], pair["chosen_ended"]),
            "gold_rejected": gold_reward(example, pair["rejected"], pair["rejected_ended"])}


def sampled_pairs(examples, replies_a, replies_b):
    """Pairs of two sampled replies per prompt: examples[i] with replies_a[i], replies_b[i] = (text, ended).

    "chosen"/"rejected" are only the order given here: label_pairs decides which one the labeller
    prefers. Two replies with the same text make no pair."""
    pairs = []
    for example, (a, a_ended), (b, b_ended) in zip(examples, replies_a, replies_b):
        if a == b and a_ended == b_ended:
            continue
        pair = {"category": example["task"], "messages": example["messages"][:-1], "chosen": a, "rejected": b,
                "chosen_ended": a_ended, "rejected_ended": b_ended,
                "example": {k: example[k] for k in GRADING_FIELDS if k in example}, "source": "sampled"}
        pairs.append(with_gold(pair))
    return pairs


# ----------------------------------------------------------------------------------------------------
# The labeller: Bradley-Terry noise and a length bias


@dataclass
class Labeller:
    """A simulated human labeller. tau: the Bradley-Terry temperature (0 = always right by its own
    utility); length_bias: utility per word of the reply (the bias a reward model will learn)."""
    tau: float = 0.5
    length_bias: float = 0.03

    def utility(self, gold, reply):
        """u = gold + length_bias * words(reply)."""
        return gold + self.length_bias * len(reply.split())

    def prefers_first(self, pair, rng):
        """Bradley-Terry: True with probability sigmoid((u_chosen - u_rejected) / tau)."""
        diff = self.utility(pair["gold_chosen"], pair["chosen"]) - self.utility(pair["gold_rejected"], pair["rejected"])
        if self.tau == 0:
            return diff > 0 or (diff == 0 and rng.random() < 0.5)
        return rng.random() < 1.0 / (1.0 + math.exp(-max(min(diff / self.tau, 50.0), -50.0)))


def swap(pair):
    """The pair with chosen and rejected exchanged."""
    out = dict(pair)
    for a, b in (("chosen", "rejected"), ("chosen_ended", "rejected_ended"), ("gold_chosen", "gold_rejected")):
        out[a], out[b] = pair[b], pair[a]
    return out


def label_pairs(pairs, labeller, seed=0):
    """Each pair ordered as the labeller chose: chosen first. The draws are seeded, so labels repeat."""
    rng = random.Random(f"labels:{seed}")
    return [pair if labeller.prefers_first(pair, rng) else swap(pair) for pair in pairs]


def label_agreement(pairs):
    """Share of the pairs with different gold rewards whose label agrees with the gold ordering."""
    decided = [p for p in pairs if p["gold_chosen"] != p["gold_rejected"]]
    return sum(p["gold_chosen"] > p["gold_rejected"] for p in decided) / max(1, len(decided))


# ----------------------------------------------------------------------------------------------------
# Files: one JSON pair per line

PAIR_FIELDS = ("messages", "chosen", "rejected")


def write_pairs(path, pairs):
    """Write pairs as JSONL (atomically: a temporary file, then os.replace)."""
    import os
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps(pair) + "\n")
    os.replace(tmp, path)


def check_pair(pair):
    """Raise ValueError unless `pair` has messages (ending with a user turn) and two reply texts."""
    if not isinstance(pair, dict) or any(k not in pair for k in PAIR_FIELDS):
        raise ValueError(f"a pair needs the fields {PAIR_FIELDS}")
    messages = pair["messages"]
    if (not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict)
            or messages[-1].get("role") != "user"):
        raise ValueError("'messages' must be a non-empty list of messages ending with the user's turn")
    for key in ("chosen", "rejected"):
        if not isinstance(pair[key], str):
            raise ValueError(f"{key!r} must be the reply's text (a string)")


def read_pairs(path):
    """The pairs of a JSONL file written by write_pairs (or by hand: each line at least
    {"messages": [{"role": "user", "content": ...}], "chosen": "...", "rejected": "..."}).
    FileNotFoundError for a missing file; ValueError naming the line for a bad one, or for no pairs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no preference file at {path}")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                pair = json.loads(line)
                check_pair(pair)
            except (json.JSONDecodeError, ValueError) as error:
                raise ValueError(f"{path}, line {number}: {error}. Each line must be one JSON pair: "
                                 '{"messages": [{"role": "user", "content": "..."}], "chosen": "...", '
                                 '"rejected": "..."}') from None
            pairs.append({"category": "user", "chosen_ended": True, "rejected_ended": True, "source": "file", **pair})
    if not pairs:
        raise ValueError(f"{path} holds no preference pairs: write one JSON pair per line")
    return pairs


def load_preferences(out_dir):
    """{"train": pairs, "heldout": pairs} that rlhf.py's preferences stage wrote in out_dir/preferences/."""
    folder = Path(out_dir) / "preferences"
    if not (folder / "train.jsonl").is_file():
        raise FileNotFoundError(f"no preference pairs in {folder}: run the preferences stage first "
                                f"(--stages preferences,...)")
    # the gold values again, by today's rule (pairs written by an older version keep their stored ones otherwise)
    return {split: [with_gold(p) if "example" in p else p for p in read_pairs(folder / f"{split}.jsonl")]
            for split in ("train", "heldout")}
