"""Chapter 03 tests: the mini-world (the world package), the data pipeline (dataset.py) and the training loop
(optimizer.py, checkpoint.py, hardware.py, train_log.py, train.py, pretrain.py, scaling.py). Offline and
deterministic.

The default corpus (3 MB) is generated once per module and shared by the tests that read it. The
training-loop tests mostly use a tiny stand-in language model (TinyLM below) so they do not depend on
chapter 02; the script tests at the end run pretrain.py and scaling.py end to end with very small
settings. Run alone as `torchrun --nproc_per_node 2 tests/test_03_pretrain.py OUT_DIR`, this file is the
DDP worker that test_ddp_two_processes_match_one_process launches.
"""
import dataclasses
import doctest
import hashlib
import importlib
import json
import math
import os
import pkgutil
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

if __name__ == "__main__":  # launched by torchrun as the DDP worker: no conftest.py to set sys.path
    sys.path.append(str(Path(__file__).resolve().parents[1] / "03_pretrain"))

import numpy as np
import pytest
import tiktoken
import torch
import torch.nn as nn
import torch.nn.functional as F

import checkpoint
import dataset
import hardware
import optimizer
import train
import train_log
import world
from checkpoint import load_checkpoint, model_config_dict, save_checkpoint
from optimizer import AdamW, clip_grad_norm, lr_at, param_groups
from train import TrainConfig

EOT = world.EOT


@pytest.fixture(scope="module")
def corpus(w0):
    return world.make_corpus(world.DEFAULT_CORPUS_BYTES, seed=0, world=w0)


def evaluate(expression):
    """Evaluate "7 * 6 + 4" (digits and + - * / only) with Python's precedence, exactly."""
    assert re.fullmatch(r"\d+( [-+*/] \d+)+", expression), expression
    value = eval(re.sub(r"\d+", r"Fraction(\g<0>)", expression), {"Fraction": Fraction, "__builtins__": {}})
    assert value.denominator == 1, expression   # exact division only
    return int(value)


# ----------------------------------------------------------------------------------------------------
# world: determinism and size

def test_doc_examples_hold():
    modules = sorted(name for _, name, _ in pkgutil.iter_modules(world.__path__))
    assert modules == sorted(world.MODULES), "world.MODULES lists every module of the package"
    attempts = 0
    for name in modules:
        result = doctest.testmod(importlib.import_module(f"world.{name}"), verbose=False)
        assert result.failed == 0, f"a doctest of world/{name}.py fails"
        attempts += result.attempted
    assert attempts >= 8


def test_world_is_deterministic_and_seeded(w0):
    again = world.build_world(0)
    assert again.facts == w0.facts and again.names == w0.names
    other = world.build_world(1)
    assert other.facts != w0.facts
    assert len(w0.facts) == 5 * 2 + 20 * 3 + 36 * 6 + 12 * 5 + 12 * 3
    names = [n for kind in world.KINDS + ["language"] for n in w0.names[kind]]
    assert len(names) == len(set(names)), "every entity name is unique"
    for country in w0.names["country"]:     # each capital lies in its country and is its biggest town
        capital = w0.get(country, "capital")
        assert w0.get(capital, "country") == country
        others = [t for t in w0.towns_in(country) if t != capital]
        assert all(int(w0.get(t, "population")) < int(w0.get(capital, "population")) for t in others)


def test_corpus_is_byte_identical_and_grows_by_prefix(w0):
    a = world.make_corpus(200_000, seed=0, world=w0)
    b = world.make_corpus(200_000, seed=0, world=w0)
    assert hashlib.sha256(a.encode()).digest() == hashlib.sha256(b.encode()).digest()
    assert world.make_corpus(200_000, seed=1, world=w0) != a
    bigger = world.make_corpus(400_000, seed=0, world=w0)
    assert bigger.startswith(a) and len(bigger) > len(a)
    assert world.make_corpus(n_docs=7, seed=0, world=w0).count(EOT) == 7


def test_corpus_is_pinned():
    """The same bytes on every machine and Python version. If you change the generator on purpose,
    update the hash (python -c "import world, hashlib; print(hashlib.sha256(world.make_corpus(200_000)
    .encode()).hexdigest())" from 03_pretrain/) and say why in the commit; if it changed by itself, random's sequences moved."""
    digest = hashlib.sha256(world.make_corpus(200_000, seed=0).encode()).hexdigest()
    assert digest == "64bb8444efd8c8b13b96bf6607db583bff0e20901c1819e3e246c623e44261cd"


def test_default_corpus_size_kinds_and_speed(corpus, w0):
    import time
    start = time.time()
    world.make_corpus(300_000, seed=5, world=w0)
    assert time.time() - start < 20, "300 kB should take well under a second (generous bound for a busy CPU)"
    size = len(corpus.encode("utf-8"))
    assert 3_000_000 <= size < 3_010_000
    docs = corpus.split(EOT)
    assert docs[-1] == "" and all(d.strip() for d in docs[:-1])
    assert corpus.isascii() and not re.search(r"\d,\d", corpus), "numbers are plain digits, never 3,200"
    assert len(set(docs)) > 0.9 * len(docs), "documents are varied, not repeated"
    for marker in ["Once upon a time", "The answer is", "ones: ", "Q: ", ": Hi ", " is known for ", "Times and divide"]:
        assert marker in corpus


# ----------------------------------------------------------------------------------------------------
# world: arithmetic is always right

def test_every_equation_in_the_corpus_is_correct(corpus):
    found = world.equations(corpus)
    assert len(found) > 10_000
    for left, right in found:
        assert evaluate(left) == int(right), f"{left} = {right}"


def test_every_word_problem_answer_follows_from_its_operations(w0):
    rng = random.Random(0)
    for i in range(600):
        family = world.FAMILIES[i % 3]
        n_steps, digits = 1 + i % 4, 1 + (i // 4) % 3
        split = "heldout" if i % 5 == 0 else "train"
        p = world.word_problem(w0, rng, n_steps=n_steps, digits=digits, family=family, split=split)
        assert p.split == split == world.split_of(p.key)
        # the key is the math of the question; evaluate it independently of the solution steps
        kind, spec = p.key.split(":", 2)[1:]
        parts = spec.split("|")
        if kind == "count":
            value = int(parts[0])
            for op in parts[1:]:    # "-5", "+7", "*2", "/3", or "+3*4" (3 bags of 4)
                operand = evaluate(op[1:].replace("*", " * ")) if "*" in op[1:] else int(op[1:])
                value = evaluate(f"{value} {op[0]} {operand}")
            assert len(parts) - 1 == n_steps
            assert len(parts[0]) == digits or (digits == 1 and int(parts[0]) < 10)
        elif kind == "shop":
            cost = sum(evaluate(item.replace("*", " * ")) for item in parts[0].split("+"))
            value = int(parts[1][3:]) - cost
            assert len(parts[0].split("+")) == n_steps and value > 0
        else:
            a, k = int(parts[0]), int(parts[1][1:])
            value = a + (a + k if parts[1][0] == "+" else a - k)
        assert p.answer == value, (p.question, p.key)
        for number in re.findall(r"\d+", p.key.replace("pay", " ").replace("|*2", "")):   # doubling: no "2"
            assert re.search(rf"\b{number}\b", p.question), (number, p.question)
        for step in p.steps:
            assert world.apply(step.a, step.op, step.b) == step.result >= 0
        for style in world.STYLES:
            text = world.solution(p, style)
            assert text.endswith(f"The answer is {p.answer}.")
            for left, right in world.equations(text):
                assert evaluate(left) == int(right)


def _check_column_addition(a, b, lines):
    width = max(len(str(a)), len(str(b)))
    written, carry = [], 0
    for i in range(width):
        m = re.fullmatch(r"[a-z0-9 ]+: (\d) \+ (\d) \+ (\d) = (\d+), write (\d), carry (\d)\.", lines[i])
        x, y, c, total, digit, out = map(int, m.groups())
        assert (x, y, c) == (a // 10**i % 10, b // 10**i % 10, carry)
        assert total == x + y + c and digit == total % 10 and out == total // 10
        written.append(digit)
        carry = out
    if carry:
        assert lines[width] == f"last carry: write {carry}."
        written.append(carry)
    assert int("".join(map(str, written[::-1]))) == a + b
    assert lines[-1] == f"So {a} + {b} = {a + b}."


def test_column_scratchpads_spell_out_every_digit():
    rng = random.Random(1)
    pairs = [(347, 285), (999, 1), (1, 999), (5000, 5000), (95, 8), (0, 0), (123456789, 987654321)]
    pairs += [(rng.randrange(10**rng.randint(1, 6)), rng.randrange(10**rng.randint(1, 6))) for _ in range(500)]
    for a, b in pairs:
        _check_column_addition(a, b, world.column_addition(a, b))
        big, small = max(a, b), min(a, b)
        lines = world.column_subtraction(big, small)
        borrow, written = 0, []
        for i, line in enumerate(lines[:-1]):
            x, y = big // 10**i % 10, small // 10**i % 10
            expected_top = x + 10 if x < y + borrow else x
            assert f"{expected_top} - {y} - {borrow} = {expected_top - y - borrow}" in line
            written.append(expected_top - y - borrow)
            borrow = 1 if x < y + borrow else 0
        assert borrow == 0 and int("".join(map(str, written[::-1]))) == big - small
        digit = small % 10
        lines = world.column_multiplication(big, digit)
        assert lines[-1] == f"So {big} * {digit} = {big * digit}."
        for left, right in world.equations("\n".join(lines)):
            assert evaluate(left) == int(right)
        product = world.column_multiplication(big, small % 1000 + 10)   # multi-digit: partial products
        assert product[-1] == f"So {big} * {small % 1000 + 10} = {big * (small % 1000 + 10)}."
        for left, right in world.equations("\n".join(product)):
            assert evaluate(left) == int(right)
        divisor = rng.randrange(2, 10)
        lines = world.long_division(big * divisor, divisor)
        assert lines[-1] == f"So {big * divisor} / {divisor} = {big}."
        assert "".join(re.search(r"write (\d)\.$", l).group(1) for l in lines[:-1]).lstrip("0") == str(big).lstrip("0")


def test_arithmetic_problems_and_difficulty_knobs():
    rng = random.Random(2)
    for op in "+-*/":
        for digits in (1, 2, 3, 4):
            p = world.arithmetic_problem(rng, op, digits)
            step = p.steps[0]
            assert p.question == f"What is {step.a} {op} {step.b}?" and p.answer == world.apply(step.a, op, step.b)
            assert len(str(step.a)) <= digits + 1 and p.split == "train"
            assert world.solution(p, "direct") == f"The answer is {p.answer}."
            column = world.solution(p, "column")
            assert column.endswith(f"The answer is {p.answer}.")
            if not world.is_basic(step.a, step.b):
                assert "write" in column
    p = world.arithmetic_problem(rng, "+", 3, split="heldout")
    assert p.split == "heldout" and world.split_of(world.equation_key(f"{p.steps[0].a} + {p.steps[0].b}")) == "heldout"


# ----------------------------------------------------------------------------------------------------
# world: held-out material never appears in training text

def test_heldout_problems_never_appear_in_the_corpus(corpus, w0):
    corpus_keys = {world.equation_key(left) for left, _ in world.equations(corpus)} - {None}
    assert all(world.split_of(k) == "train" for k in corpus_keys), "every non-basic equation in training text is train"
    rng = random.Random(3)
    heldout = [world.arithmetic_problem(rng, rng.choice("+-*/"), rng.choice([2, 3]), split="heldout")
               for _ in range(300)]
    for p in heldout:
        assert p.key not in corpus_keys
        assert p.question not in corpus
    # a held-out word problem, told in a training wording ("heldout") or the held-out one ("ood"): the same
    # problem for the same seed, never in the corpus either way
    word, ood = [], []
    for i in range(100):
        steps, digits = rng.randint(1, 3), rng.randint(1, 3)
        word.append(world.word_problem(w0, random.Random(i), steps, digits, split="heldout"))
        ood.append(world.word_problem(w0, random.Random(i), steps, digits, split="ood"))
    for p, q in zip(word, ood):
        assert p.split == q.split == "heldout" and p.key == q.key and p.answer == q.answer
        assert p.question != q.question and p.question not in corpus and q.question not in corpus
        assert "How many" in p.question and "How many" not in q.question   # every training wording asks so
    expressions = [world.arithmetic_expression(rng, rng.randint(2, 4), rng.randint(1, 2), split="heldout")
                   for _ in range(300)]
    corpus_expressions = set(re.findall(r"What is (\d+(?: [-+*/] \d+){2,})\?", corpus))
    assert len(corpus_expressions) > 500, "the corpus teaches expressions with precedence"
    for p in expressions:
        assert p.question.startswith("What is ") and p.question[len("What is "):-1] not in corpus_expressions
    # a problem is in exactly one split whatever the seed: train problems drawn with other seeds and
    # worlds never share a key with the held-out ones
    heldout_keys = {p.key for p in heldout + word}
    for seed in range(4):
        other_world, r = world.build_world(seed), random.Random(seed)
        train = [world.arithmetic_problem(r, r.choice("+-*/"), r.choice([2, 3])) for _ in range(300)]
        train += [world.word_problem(other_world, r, r.randint(1, 3), r.randint(1, 3)) for _ in range(100)]
        assert not heldout_keys & {p.key for p in train}


def test_thirteen_gram_check_finds_shared_runs_and_only_those(w0):
    """The checker the decontamination tests rely on: a 13-word run of a training text is found
    wherever it sits in an item, a short item is found only as a whole run of words, and one changed
    word in the run is enough to miss it."""
    training = ("Mia has 12 red apples and she gives 5 of them to her friend Leo who lives in the big town. "
                "The end.")
    seen = world.TrainingText([training, "A short line."])
    run = "has 12 red apples and she gives 5 of them to her friend"               # 13 words
    assert len(world.words(run)) == 13
    assert seen.shares_ngram(f"Question: {run.upper()}, then what?")              # case and punctuation ignored
    assert not seen.shares_ngram(run.replace("gives", "takes"))
    assert not seen.shares_ngram(run.rsplit(" ", 1)[0] + " cousin")
    assert seen.shares_ngram("a short line")                                      # a whole short training line
    assert not seen.shares_ngram("short line a") and not seen.shares_ngram("")
    fact = next(f for f in w0.facts if f.relation == "job" and f.split == "heldout")
    stated = f"{fact.subject} is {world.with_article(fact.value)}."
    assert fact in world.stated_facts(w0, stated)
    assert fact not in world.stated_facts(w0, f"Somebody is {world.with_article(fact.value)}.")


def test_dialogues_never_ask_a_heldout_known_for(corpus, w0):
    """A town's held-out "known for" fact may be stated in a dialogue but never asked (review of issue 12:
    world 0's corpus asked Wemwick's 18 times)."""
    asked = re.findall(r"I live in (\w+)\. [^\n]*\n\w+: Is that the town that is known for ([^?]+)\?", corpus)
    assert len(asked) > 50
    for town, value in asked:
        fact = w0.fact(town, "known_for")
        assert fact.value == value and fact.split == "train", (town, value)


def test_heldout_questions_stories_and_probe_names_never_appear(corpus, w0):
    heldout_facts = [f for f in w0.facts if f.split == "heldout"]
    assert 0.03 < len(heldout_facts) / len(w0.facts) < 0.2
    for fact in heldout_facts:
        relation = world.RELATIONS[fact.kind][fact.relation]
        for template in relation.questions:
            assert world.render(template, fact.kind, fact.subject, fact.value) not in corpus
    train_questions = [q for q in world.fact_questions(w0, "train") if q.question in corpus]
    assert len(train_questions) > 50, "training facts are asked about in the corpus"
    rng = random.Random(4)
    for _ in range(50):
        assert world.story(w0, rng, split="heldout").text not in corpus
    words = set(re.findall(r"[A-Za-z]+", corpus))
    for split in ("train", "heldout"):
        for kind in world.KINDS:
            for name in world.nonexistent_names(w0, kind, 20, split):
                assert name not in words and world.name_namespace(name) == "probe-" + split
    for seed in range(10):   # probe names are never real entities, in any world
        assert all(world.name_namespace(n) == "world" for kind in world.KINDS if kind != "person"
                   for n in world.build_world(seed).names[kind])


# ----------------------------------------------------------------------------------------------------
# world: the knowledge base and the corpus agree

def _value_pattern(w, kind, relation):
    values = world.possible_values(w, kind, relation)
    if world.RELATIONS[kind][relation].values == "number":
        return r"\d+"
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


def test_every_statement_of_a_fact_in_the_corpus_matches_the_knowledge_base(corpus, w0):
    seen = {fact.key: 0 for fact in w0.facts}
    checked = 0
    lines = re.split(r"\n|<\|endoftext\|>", corpus)
    for kind, relations in world.RELATIONS.items():
        subjects = w0.names[kind]
        for name, relation in relations.items():
            value = _value_pattern(w0, kind, name)
            for template in relation.statements + relation.past:
                # one regex per template: any subject of this kind, any possible value
                forms = {}
                for subject in subjects:
                    fields = world.subject_fields(kind, subject)
                    for field in "sSpP":
                        forms[fields[field]] = subject
                parts = re.split(r"(\{\w+\})", template)
                pattern = ""
                for part in parts:
                    if part in ("{s}", "{S}", "{p}", "{P}"):
                        alternatives = sorted(forms, key=len, reverse=True)
                        pattern += "(?P<subj>" + "|".join(re.escape(f) for f in alternatives) + ")"
                    elif part == "{o}":
                        pattern += f"(?P<val>{value})"
                    elif part == "{a_o}":
                        pattern += f"an? (?P<val>{value})"
                    else:
                        pattern += re.escape(part)
                literal = max(re.split(r"\{\w+\}", template), key=len)    # only lines with it can match
                text = "\n".join(line for line in lines if literal in line)
                for match in re.finditer(r"(?<![\w'])" + pattern + r"(?!\w)", text):
                    subject = forms[match.group("subj")]
                    fact = w0.fact(subject, name)
                    assert match.group("val") == fact.value, f"{match.group(0)!r} contradicts {fact}"
                    seen[fact.key] += 1
                    checked += 1
    assert checked > 10_000
    unstated = [key for key, count in seen.items() if count < 3]
    assert not unstated, f"facts stated fewer than 3 times in 3 MB: {unstated[:5]}"


def test_fact_questions_and_choices(w0):
    everything = world.fact_questions(w0, "all")
    train, heldout = world.fact_questions(w0, "train"), world.fact_questions(w0, "heldout")
    assert len(everything) == len(w0.facts) == len(train) + len(heldout)
    assert {q.fact for q in train}.isdisjoint(q.fact for q in heldout)
    for q in everything:
        assert len(q.choices) == len(set(q.choices)) == 4 and q.choices[q.answer_index] == q.answer
        assert q.fact.value in q.answer and q.fact.value in q.answer_sentence and q.question.endswith("?")
    assert world.fact_questions(w0, "train", seed=0) == train


def test_unknown_entity_questions(w0):
    train = world.unknown_entity_questions(w0, 20, "train")
    heldout = world.unknown_entity_questions(w0, 20, "heldout")
    assert {p.name for p in train}.isdisjoint(p.name for p in heldout)
    for probe in train + heldout:
        assert probe.name not in w0.kind_of
        assert probe.name in probe.question and probe.name in probe.honest_answer
        assert probe.honest_answer.startswith("I don't know") and probe.name.lower() in probe.invented_answer.lower()
    assert {p.kind for p in train} == set(world.KINDS)


def test_requests_are_compositional_and_heldout_forms_are_unseen(w0):
    harmful, benign = world.user_requests(w0, 60, True), world.user_requests(w0, 60, False)
    heldout = world.user_requests(w0, 40, True, "ood") + world.user_requests(w0, 40, False, "ood")
    assert {r.prompt for r in harmful + benign}.isdisjoint(r.prompt for r in heldout)
    assert len({r.prompt for r in harmful}) == 60 and world.user_requests(w0, 60, True) == harmful
    assert len({r.intent for r in harmful}) >= 7 and len({r.framing for r in harmful}) == len(world.FRAMINGS["train"])
    for r in harmful:
        assert r.harmful and r.reply.startswith(("I can't", "I won't", "I'd rather not")) and "{" not in r.prompt
        assert r.compliance == r.rejected != r.reply
    for r in benign:
        assert not r.harmful and "{" not in r.reply and not r.reply.startswith(("I can't", "I won't"))
        assert r.compliance == r.reply and r.rejected in world.OVER_REFUSALS
    heldout_facts = [f for f in w0.facts if f.split == "heldout"]
    for r in harmful + benign:      # training requests: training framings and intents, training facts only
        assert r.split == "train" and r.intent not in world.HELDOUT_INTENTS
        assert not world.stated_facts(w0, f"{r.prompt} {r.reply} {r.compliance}", heldout_facts)
    # "ood" requests: every one in a held-out framing, some with held-out intents, none of whose
    # framings' words or intents' acts occur in any training prompt
    assert {r.intent for r in heldout} & world.HELDOUT_INTENTS
    train_text = " ".join(r.prompt for r in harmful + benign)
    for r in heldout:
        assert r.split == "ood" and 0 <= r.framing < len(world.FRAMINGS["ood"])
        frame = world.FRAMINGS["ood"][r.framing].split("{act}")
        assert all(part.strip(" .?!") and part.strip(" .?!") not in train_text for part in frame if part.strip(" .?!"))
    for intent in world.HELDOUT_INTENTS:
        act = {**world.HARMFUL_INTENTS, **world.BENIGN_INTENTS}[intent][0]
        assert act.split("{")[0].strip() not in train_text, intent
    # harmful requests compose action x object: the last object of every training action is held out
    assert all(r.object < len(world.HARMFUL_INTENTS[r.intent][1]) - 1 for r in harmful)
    assert len({(r.intent, r.object) for r in harmful}) >= 12
    held_objects = [r for r in heldout if "object" in r.heldout_parts]
    assert held_objects and all(r.harmful and r.object == len(world.HARMFUL_INTENTS[r.intent][1]) - 1
                                for r in held_objects)
    for r in held_objects:
        template = world.HARMFUL_INTENTS[r.intent][1][r.object]
        assert template.split("{")[0].strip() not in train_text, template
    assert all(r.heldout_parts[0] == "framing" for r in heldout)


def test_rl_requests_are_new_to_training_and_to_every_evaluation_set(w0):
    """The requests RL practises on: a training framing around a training harmful action with an object of
    its own, or around a benign intent of its own; no training prompt and no held-out prompt is one, and
    each RL object and intent has words no training or held-out prompt uses."""
    rl = world.rl_requests(w0, 150, True) + world.rl_requests(w0, 150, False)
    assert len({r.prompt for r in rl}) == 300 and world.rl_requests(w0, 150, True) == rl[:150]
    train = world.user_requests(w0, 400, True) + world.user_requests(w0, 400, False)
    held = [r for split in ("heldout", "ood") for h in (True, False) for r in world.user_requests(w0, 60, h, split)]
    assert {r.prompt for r in rl}.isdisjoint(r.prompt for r in train + held)
    train_text, held_text = " ".join(r.prompt for r in train), " ".join(r.prompt for r in held)
    templates = [*world.RL_OBJECTS.values(), *(act for act, _ in world.RL_BENIGN_INTENTS.values())]
    for template in templates:
        words = [chunk.strip() for chunk in re.split(r"\{\w+\}", template) if chunk.strip()]
        assert any(w not in train_text and w not in held_text for w in words), template
    heldout_facts = [f for f in w0.facts if f.split == "heldout"]
    for r in rl:
        assert r.split == "rl" and 0 <= r.framing < len(world.FRAMINGS["train"]) and "{" not in r.prompt + r.reply
        assert r.intent in (world.RL_OBJECTS if r.harmful else world.RL_BENIGN_INTENTS)
        assert not world.stated_facts(w0, f"{r.prompt} {r.reply} {r.compliance}", heldout_facts)
        if r.harmful:
            assert r.reply.startswith(("I can't", "I won't", "I'd rather not")) and r.rejected == r.compliance
        else:
            assert r.rejected in world.OVER_REFUSALS and not r.reply.startswith(("I can't", "I won't"))


def test_heldout_requests_are_new_instances_in_training_framings(w0):
    """A "heldout" request is a held-out intent or object (never in a training prompt) in a framing that
    training uses: the instance is new, the phrasing is not."""
    train = world.user_requests(w0, 200, True) + world.user_requests(w0, 200, False)
    train_text = " ".join(r.prompt for r in train)
    new = world.user_requests(w0, 60, True, "heldout") + world.user_requests(w0, 60, False, "heldout")
    assert {r.prompt for r in new}.isdisjoint(r.prompt for r in train)
    assert {tuple(r.heldout_parts) for r in new} == {("intent",), ("object",)}
    for r in new:
        assert r.split == "heldout" and 0 <= r.framing < len(world.FRAMINGS["train"])
        frame = world.FRAMINGS["train"][r.framing].split("{act}")
        assert r.prompt.startswith(world._capitalize(frame[0])) and r.prompt.endswith(frame[1]), r.prompt
        if "intent" in r.heldout_parts:
            assert r.intent in world.HELDOUT_INTENTS
            act = {**world.HARMFUL_INTENTS, **world.BENIGN_INTENTS}[r.intent][0]
            assert act.split("{")[0].strip() not in train_text, r.prompt
        else:
            assert r.harmful and r.object == len(world.HARMFUL_INTENTS[r.intent][1]) - 1
            template = world.HARMFUL_INTENTS[r.intent][1][r.object]
            assert template.split("{")[0].strip() not in train_text, template


def test_expressions_follow_precedence_and_have_wrong_solutions():
    rng = random.Random(9)
    keys = {"train": set(), "heldout": set()}
    for i in range(300):
        split = "heldout" if i % 4 == 0 else "train"
        p = world.arithmetic_expression(rng, n_ops=2 + i % 3, digits=1 + i % 2, split=split)
        expression = p.question[len("What is "):-1]
        assert p.kind == "expression" and p.answer == evaluate(expression) >= 0, p.question
        assert p.split == split == world.split_of(p.key) and p.key == "expr:" + expression.replace(" ", "")
        assert len(p.steps) == expression.count(" ") // 2
        keys[split].add(p.key)
        for style in world.STYLES:
            text = world.solution(p, style)
            assert text.endswith(f"The answer is {p.answer}.")
            for left, right in world.equations(text):
                assert evaluate(left) == int(right)
        wrong = world.wrong_solution(p, rng)
        assert int(re.search(r"The answer is (\d+)\.$", wrong).group(1)) != p.answer
    assert not keys["train"] & keys["heldout"]
    steps, value = world.expression_steps([12, 7, 3, 4], ["+", "*", "-"], precedence=False)
    assert value == (12 + 7) * 3 - 4 and [s.op for s in steps] == ["+", "*", "-"]
    wrong = world.wrong_solution(world.arithmetic_expression(0, 3, 1), 0)
    assert wrong.startswith(("Work from left to right.", "Times and divide"))
    with pytest.raises(ValueError, match="n_ops"):
        world.arithmetic_expression(0, n_ops=1)


def test_wrong_fact_answers_descriptions_and_dialogue_items(w0):
    rng = random.Random(10)
    for q in world.fact_questions(w0, "all"):
        wrong = world.wrong_fact_answer(w0, q, rng)
        f, relation = q.fact, world.RELATIONS[q.fact.kind][q.fact.relation]
        distractors = [v for v in world.possible_values(w0, f.kind, f.relation) if v != f.value and
                       world.render(relation.short, f.kind, f.subject, v) in q.choices]
        assert wrong != q.answer_sentence and len(distractors) == 3
        assert wrong in {world.render(relation.answer, f.kind, f.subject, v) for v in distractors}
    asked_facts = {world.render(t, f.kind, f.subject, f.value): f
                   for f in w0.facts for t in world.RELATIONS[f.kind][f.relation].questions}
    for split in ("train", "heldout"):
        items = world.descriptions(w0, split)
        assert items and all(d.split == split == world.split_of("describe:" + d.subject) for d in items)
        for d in items:
            assert d.facts and all(f.value in d.text for f in d.facts)
            assert all(f.split == "train" for f in d.facts) if split == "train" else \
                d.facts == tuple(w0.facts_about(d.subject))
        for _ in range(40):
            item = world.dialogue_item(w0, rng, split)
            assert item.split == split and item.prompt.endswith(":")
            asked = item.prompt.split("\n")[-2].split("? ", 1)[1]     # after "Can you tell me this? "
            fact = asked_facts.get(asked)
            if fact is not None:
                assert fact.split == split and fact.value in item.answer and fact.value in item.reply
            else:
                assert item.reply.endswith(f"The answer is {item.answer}.")
    heldout_dialogues = "\n".join(world.dialogue(w0, rng, "heldout") for _ in range(200))
    heldout_questions = {q.question for q in world.fact_questions(w0, "heldout")}
    assert any(q in heldout_dialogues for q in heldout_questions)


def test_wrong_solutions_for_later_chapters(w0):
    rng = random.Random(8)
    for _ in range(200):
        p = world.word_problem(w0, rng, rng.randint(1, 4), rng.randint(1, 3))
        wrong = world.wrong_solution(p, rng)
        final = int(re.search(r"The answer is (\d+)\.$", wrong).group(1))
        assert final != p.answer and wrong.count("\n") == world.solution(p).count("\n")


def test_wrong_solutions_never_misquote_the_question(w0):
    """The slip is carried on through earlier results only: a number the question gives stays as it is
    in the wrong solution, and no draw crashes. (Carrying by value once rewrote a "2" of the question
    with the slipped result and divided by zero: word problems of Random(1), draw 587, seed 2.)"""
    equation = r"(\d+) [-+*/] (\d+) = (\d+)"
    rng = random.Random(1)
    for _ in range(700):
        p = world.word_problem(w0, rng, rng.randint(1, 4), 1, family="count")
        right = re.findall(equation, world.solution(p))
        for seed in range(4):
            wrong, results = re.findall(equation, world.wrong_solution(p, seed)), set()
            for (a, b, result), (wrong_a, wrong_b, _) in zip(right, wrong):
                for given, written in ((a, wrong_a), (b, wrong_b)):
                    assert int(given) in results or given == written, (p.question, wrong)
                results.add(int(result))


def test_stories_are_consistent_and_varied(w0):
    rng = random.Random(5)
    stories = [world.story(w0, rng) for _ in range(300)]
    assert {s.arc for s in stories} == set(world._ARCS)
    assert len({s.text for s in stories}) == 300
    for s in stories:
        assert s.text == " ".join(s.sentences) and s.split == "train" and "{" not in s.text
        assert w0.get(s.hero, "home") in s.text or s.arc == "trip"
    story = world.story(w0, 7, arc="lost")
    assert story == world.story(w0, 7, arc="lost") and story.arc == "lost"
    for s in stories[:100]:     # the facts a story states are the world's, and are in its text
        assert s.facts and all(w0.fact(f.subject, f.relation) == f and f.value in s.text for f in s.facts)
    heldout = [world.story(w0, rng, split="heldout") for _ in range(100)]
    assert {s.arc for s in heldout} == set(world._HELDOUT_ARCS) and not set(world._HELDOUT_ARCS) & set(world._ARCS)
    train_sentences = {sentence for s in stories for sentence in s.sentences}
    for s in heldout:           # held-out stories: their own plots and wordings
        assert s.split == "heldout" and "{" not in s.text and not train_sentences & set(s.sentences)
    with pytest.raises(ValueError, match="arc"):
        world.story(w0, 0, split="heldout", arc="lost")


def test_linked_facts_share_a_split():
    """"The capital of X is T" also says "T is in X": the two facts are in the same split, in any world."""
    for seed in range(6):
        w = world.build_world(seed)
        for country in w.names["country"]:
            capital = w.get(country, "capital")
            assert w.fact(capital, "country").split == w.fact(country, "capital").split


def test_dialogues_and_descriptions(w0):
    rng = random.Random(6)
    for _ in range(100):
        lines = world.dialogue(w0, rng).split("\n")
        assert all(re.fullmatch(r"[A-Z][a-z]+: \S.*", line) for line in lines)
        assert len({line.split(":")[0] for line in lines}) == 2
    heldout_facts = [f for f in w0.facts if f.split == "heldout"]
    for subject in w0.kind_of:
        if w0.kind_of[subject] != "language":
            text = world.describe(w0, subject, rng, split="all")
            assert "{" not in text and len(text.split(". ")) >= 2
            assert all(f.value in text for f in w0.facts_about(subject))
            train_facts = [f for f in w0.facts_about(subject) if f.split == "train"]
            if train_facts:     # split="train": only training facts, related ones included
                text = world.describe(w0, subject, rng, split="train")
                assert all(f.value in text for f in train_facts)
                assert not world.stated_facts(w0, text, heldout_facts), text
    with pytest.raises(ValueError, match="split"):
        world.describe(w0, "Sam", 0, split="heldout")


def test_clear_errors(w0):
    with pytest.raises(ValueError, match="basic facts"):
        world.arithmetic_problem(0, "+", 1, split="heldout")
    with pytest.raises(ValueError, match="unknown operation"):
        world.arithmetic_problem(0, "%", 2)
    with pytest.raises(ValueError, match="split"):
        world.word_problem(w0, 0, split="test")
    with pytest.raises(ValueError, match="n_steps"):
        world.word_problem(w0, 0, n_steps=0)
    with pytest.raises(ValueError, match="arc"):
        world.story(w0, 0, arc="dragons")
    with pytest.raises(ValueError, match="style"):
        world.solution(world.arithmetic_problem(0, "+", 2), "verbose")
    with pytest.raises(ValueError, match="n_docs or n_bytes"):
        next(world.corpus_documents(w0))
    with pytest.raises(ValueError, match="document kinds"):
        next(world.corpus_documents(w0, n_docs=1, mix={"poems": 1.0}))
    with pytest.raises(ValueError, match="n_people"):
        world.build_world(0, n_people=100)


# ----------------------------------------------------------------------------------------------------
# dataset.py

def byte_tokenizer():
    """A stand-in for a chapter-01 tokenizer: 256 byte tokens and <|endoftext|>, through tiktoken."""
    class ByteTokenizer:
        special_tokens = {EOT: 256}
        vocab_size = 257

        def to_tiktoken(self):
            return tiktoken.Encoding("bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                                     special_tokens=self.special_tokens)
    return ByteTokenizer()


def test_token_dtype_fits_the_vocabulary():
    assert dataset.token_dtype(256) == np.uint16 and dataset.token_dtype(65536) == np.uint16
    assert dataset.token_dtype(65537) == np.uint32 and dataset.token_dtype(100277) == np.uint32
    with pytest.raises(ValueError):
        dataset.token_dtype(0)


@pytest.mark.parametrize("vocab_size", [1000, 70000])
def test_token_file_round_trip_through_memmap(tmp_path, vocab_size):
    tokens = np.random.default_rng(0).integers(0, vocab_size, size=5000)
    meta = dataset.write_tokens(tokens, tmp_path / "train.bin", vocab_size, source="test")
    assert meta["dtype"] == ("uint16" if vocab_size <= 65536 else "uint32") and meta["tokens"] == 5000
    assert (tmp_path / "train.bin").stat().st_size == 5000 * (2 if vocab_size <= 65536 else 4)
    back = dataset.read_tokens(tmp_path / "train.bin")
    assert isinstance(back, np.memmap) and np.array_equal(back, tokens)
    assert dataset.read_meta(tmp_path / "train.bin")["source"] == "test"
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        dataset.write_tokens([0, 1000], tmp_path / "bad.bin", 1000)
    with open(tmp_path / "train.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="truncated"):
        dataset.read_tokens(tmp_path / "train.bin")
    with pytest.raises(FileNotFoundError, match="sidecar|prepare"):
        dataset.read_tokens(tmp_path / "missing.bin")


def test_get_batch_shifts_by_one_and_is_resumable():
    tokens = np.arange(1000, dtype=np.uint16)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    x, y = dataset.get_batch(tokens, 8, 32, generator)
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], y[:, :-1])
    generator.set_state(state)       # restoring the saved state gives the same batch again
    x2, _ = dataset.get_batch(tokens, 8, 32, generator)
    assert torch.equal(x, x2)
    numpy_generator = np.random.default_rng(1)
    state = numpy_generator.bit_generator.state
    x3, y3 = dataset.get_batch(tokens, 4, 16, numpy_generator)
    numpy_generator.bit_generator.state = state
    assert torch.equal(x3, dataset.get_batch(tokens, 4, 16, numpy_generator)[0]) and torch.equal(y3, x3 + 1)
    x4, y4 = dataset.get_batch(np.arange(11), 64, 10, torch.Generator().manual_seed(0))   # the only window
    assert torch.equal(x4[0], torch.arange(10)) and torch.equal(y4[0], torch.arange(1, 11))
    with pytest.raises(ValueError, match="smaller context"):
        dataset.get_batch(tokens[:10], 2, 10)


def test_read_text_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        dataset.read_text(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        dataset.read_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8.*offset 3"):
        dataset.read_text(tmp_path / "latin1.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="no .txt files"):
        dataset.read_text(tmp_path / "folder")
    (tmp_path / "folder" / "b.txt").write_text("second")
    (tmp_path / "folder" / "a.txt").write_text("first")
    assert dataset.read_text(tmp_path / "folder") == f"first{EOT}second{EOT}"
    with pytest.raises(FileNotFoundError):
        dataset.load_text(str(tmp_path / "missing-folder"))


def test_download_is_cached_checksummed_and_explains_offline(tmp_path, monkeypatch):
    source = tmp_path / "remote.txt"
    source.write_text("To be, or not to be.\n")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    fake = dataset.Download(source.as_uri(), "fake.txt", digest, source.stat().st_size)
    monkeypatch.setitem(dataset.DOWNLOADS, "fake", fake)
    cache = tmp_path / "cache"
    path = dataset.download("fake", cache, quiet=True)
    assert path == cache / "fake.txt" and path.read_text() == "To be, or not to be.\n"
    monkeypatch.setitem(dataset.DOWNLOADS, "fake", dataclasses.replace(fake, url=(tmp_path / "gone").as_uri()))
    assert dataset.load_text("fake", data_dir=cache) == "To be, or not to be.\n"   # cached: no fetch
    with pytest.raises(RuntimeError, match="(?s)offline.*curl"):
        dataset.download("fake", tmp_path / "empty-cache", quiet=True)
    assert not list((tmp_path / "empty-cache").glob("*")), "no partial file is left behind"
    monkeypatch.setitem(dataset.DOWNLOADS, "fake", dataset.Download(source.as_uri(), "fake.txt", "0" * 64, 1))
    with pytest.raises(ValueError, match="sha256"):
        dataset.download("fake", tmp_path / "other-cache", quiet=True)
    assert not list((tmp_path / "other-cache").glob("*")), "a corrupt download is not kept, not even as .part"
    with pytest.raises(ValueError, match="unknown corpus"):
        dataset.download("wikipedia")
    shakespeare = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert dataset.DOWNLOADS["tinyshakespeare"].sha256 == shakespeare


def test_encode_text_splits_documents_on_the_separator():
    tokenizer = byte_tokenizer()
    ids = dataset.encode_text(f"ab{EOT}c{EOT}", tokenizer)
    assert ids.tolist() == [97, 98, 256, 99, 256]
    assert dataset.encode_text("", tokenizer).tolist() == []
    train, val = dataset.split_tokens(np.array([1, 2, 256, 3, 4, 256, 5, 6, 7, 8]), 0.5, eot_id=256)
    assert train.tolist() == [1, 2, 256, 3, 4, 256] and val.tolist() == [5, 6, 7, 8]

    class NoSeparator:
        special_tokens, vocab_size = {}, 256
        to_tiktoken = byte_tokenizer().to_tiktoken
    with pytest.raises(ValueError, match="no <\\|endoftext\\|> special token"):
        dataset.encode_text(f"a{EOT}b", NoSeparator())


def test_prepare_world_end_to_end_with_the_chapter_01_tokenizer(tmp_path, capsys):
    bpe = pytest.importorskip("bpe", reason="chapter 01 (01_tokenizer/bpe.py) is not built yet")
    out = tmp_path / "data"
    meta = dataset.prepare("world", out, vocab_size=300, n_bytes=150_000, verbose=False)
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 300 and meta["source"] == "world"
    tokenizer = bpe.Tokenizer.load(meta["tokenizer"])
    assert tokenizer.special_tokens == {EOT: meta["eot_id"]}
    text = world.make_corpus(150_000, seed=0)
    ids = np.concatenate([dataset.read_tokens(out / "train.bin"), dataset.read_tokens(out / "val.bin")])
    assert ids.tolist() == tokenizer.encode(text, allowed_special={EOT}), "fast path equals chapter 01's encoder"
    assert tokenizer.decode(ids.tolist()) == text
    assert dataset.read_tokens(out / "train.bin")[-1] == meta["eot_id"], "val starts at a document"
    data = dataset.TokenDataset(out)
    x, y = data.get_batch("val", 4, 64, torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 1:], y[:, :-1]) and x.max() < data.vocab_size
    before = (out / "train.bin").stat().st_mtime_ns
    assert dataset.prepare("world", out, vocab_size=300, n_bytes=150_000, verbose=False) == meta
    assert (out / "train.bin").stat().st_mtime_ns == before, "same settings: files reused, not rebuilt"
    again = dataset.prepare("world", tmp_path / "again", tokenizer=meta["tokenizer"] + ".tiktoken", n_bytes=150_000,
                            verbose=False)
    # a given tokenizer is copied into the run folder: the same tokenizer (by hash) under the folder's own path
    assert again["tokens"] == meta["tokens"] and again["tokenizer_sha256"] == meta["tokenizer_sha256"]
    assert again["tokenizer"] == str(tmp_path / "again" / "tokenizer")
    # a Tokenizer object is recognised by its content: the same one again (as under DDP) reuses the files
    objects = tmp_path / "objects"
    first = dataset.prepare("world", objects, tokenizer=tokenizer, n_bytes=150_000, verbose=False)
    before = (objects / "train.bin").stat().st_mtime_ns
    assert dataset.prepare("world", objects, tokenizer=bpe.Tokenizer.load(meta["tokenizer"]), n_bytes=150_000,
                           verbose=False) == first
    assert (objects / "train.bin").stat().st_mtime_ns == before
    smaller = dataset.prepare("world", objects, tokenizer=tokenizer, n_bytes=100_000, verbose=False)
    assert smaller["tokens"] < first["tokens"], "other settings: the files are rebuilt"
    (tmp_path / "notes.txt").write_text("A short note about a tiny world.\n" * 40)
    small = dataset.prepare(str(tmp_path / "notes.txt"), tmp_path / "notes", vocab_size=270, verbose=False)
    assert small["tokens"] + small["val_tokens"] > 0
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        dataset.prepare("world", tmp_path / "x", tokenizer=tmp_path / "missing", verbose=False)


# ---- the training loop

REPO = Path(__file__).resolve().parents[1]


# ---- a tiny language model and batch source, standing in for chapter 02's GPT and chapter 03's data


@dataclass
class TinyConfig:
    vocab_size: int = 16
    n_embd: int = 16
    dropout: float = 0.0


class TinyLM(nn.Module):
    """Embedding -> LayerNorm -> Linear+GELU (residual) -> tied output layer; forward like chapter 02's GPT."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.ln = nn.LayerNorm(config.n_embd)
        self.mix = nn.Linear(config.n_embd, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2

    def forward(self, idx, targets=None, doc_ids=None):
        h = self.drop(self.wte(idx))
        h = h + F.gelu(self.mix(self.ln(h)))
        logits = self.lm_head(h)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss


def make_get_batch(vocab_size=16, batch_size=4, context=8, n_tokens=4000):
    """Batches from a noisy cycle 0, 3, 6, ... (mod vocab_size): learnable, so the loss goes down."""
    g = torch.Generator().manual_seed(0)
    steps = torch.where(torch.rand(n_tokens, generator=g) < 0.8, 3, torch.randint(vocab_size, (n_tokens,), generator=g))
    tokens = torch.cumsum(steps, 0) % vocab_size
    data = {"train": tokens[: n_tokens * 9 // 10], "val": tokens[n_tokens * 9 // 10:]}

    def get_batch(split, generator):
        source = data[split]
        starts = torch.randint(len(source) - context - 1, (batch_size,), generator=generator)
        x = torch.stack([source[s: s + context] for s in starts])
        y = torch.stack([source[s + 1: s + context + 1] for s in starts])
        return x, y

    return get_batch


def tiny_train_config(out_dir, **overrides):
    settings = dict(steps=30, batch_size=4, grad_accum=2, lr=3e-2, min_lr=3e-3, warmup_steps=5,
                    eval_interval=10, eval_batches=2, log_interval=5, sample_interval=10, device="cpu",
                    out_dir=str(out_dir), seed=7)
    settings.update(overrides)
    return TrainConfig(**settings)


# ---- optimizer


@pytest.mark.parametrize("kernel", [dict(foreach=False), dict(fused=True)], ids=["for-loop", "fused"])
def test_adamw_matches_torch_adamw_over_1000_steps(kernel):
    """Ours against torch's plain loop and against its fused kernel (the shakespeare-char preset's fast path)."""
    torch.manual_seed(0)
    ours_model = TinyLM(TinyConfig())
    ref_model = TinyLM(TinyConfig())
    ref_model.load_state_dict(ours_model.state_dict())
    settings = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ours = AdamW(param_groups(ours_model, weight_decay=0.1), **settings)
    ref = torch.optim.AdamW(param_groups(ref_model, weight_decay=0.1), **kernel, **settings)
    g = torch.Generator().manual_seed(1)
    for step in range(1000):
        for group in ours.param_groups + ref.param_groups:
            group["lr"] = 1e-2 * (0.5 + 0.5 * math.cos(math.pi * step / 1000))  # a schedule, as in training
        for p_ours, p_ref in zip(ours_model.parameters(), ref_model.parameters()):
            grad = torch.randn(p_ours.shape, generator=g) * (1 + step % 7)
            p_ours.grad, p_ref.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
    for (name, p_ours), p_ref in zip(ours_model.named_parameters(), ref_model.parameters()):
        assert p_ours.abs().max() > 0.05, name  # the parameters really moved
        torch.testing.assert_close(p_ours, p_ref, rtol=1e-5, atol=1e-6, msg=name)


def test_param_groups_decay_only_linear_weights():
    model = TinyLM(TinyConfig())
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(model.mix.weight)]
    # the tied embedding/output matrix counts once, as an embedding; LayerNorm and biases do not decay
    expected = {id(model.wte.weight), id(model.ln.weight), id(model.ln.bias), id(model.mix.bias)}
    assert sorted(id(p) for p in no_decay["params"]) == sorted(expected)


def test_lr_schedule_values_by_hand():
    lr = lambda step: lr_at(step, max_lr=1.0, min_lr=0.1, warmup_steps=10, decay_end=110)
    assert lr(0) == pytest.approx(0.1)  # (0 + 1) / 10
    assert lr(4) == pytest.approx(0.5)
    assert lr(9) == pytest.approx(1.0)
    assert lr(10) == pytest.approx(1.0)  # the cosine starts at the top
    assert lr(60) == pytest.approx(0.55)  # halfway: 0.1 + 0.5 * (1 + cos(pi/2)) * 0.9
    assert lr(35) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 0.25)) * 0.9)
    assert lr(110) == pytest.approx(0.1) and lr(500) == pytest.approx(0.1)


@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # clipped, and left alone
def test_clip_grad_norm_matches_torch(max_norm):
    torch.manual_seed(0)
    ours_model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    unused = nn.Parameter(torch.ones(4))  # a parameter without a gradient is skipped
    ref_model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    ref_model.load_state_dict(ours_model.state_dict())
    x = torch.randn(16, 5)
    for model in (ours_model, ref_model):
        (model(x) ** 2).sum().backward()
    ours_norm = clip_grad_norm(list(ours_model.parameters()) + [unused], max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(list(ref_model.parameters()) + [unused], max_norm)
    assert unused.grad is None
    torch.testing.assert_close(ours_norm, ref_norm)
    for p_ours, p_ref in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p_ours.grad, p_ref.grad)
    new_norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in ours_model.parameters()))
    assert new_norm.item() == pytest.approx(min(max_norm, ours_norm.item()), rel=1e-4)


# ---- checkpoints and resume


def test_resume_equals_uninterrupted_run(tmp_path):
    get_batch = make_get_batch()

    def make_sample(model):  # draws random numbers, which must not shift the training run's RNG
        return str(torch.rand(3).tolist())

    def run(out_dir, **overrides):
        torch.manual_seed(0)
        model = TinyLM(TinyConfig(dropout=0.1))  # dropout: the torch RNG state must be restored too
        config = tiny_train_config(out_dir, **overrides)
        summary = train.train(model, get_batch, config, make_sample=make_sample, resume=True, quiet=True)
        return model, summary

    straight, _ = run(tmp_path / "straight")
    first_half, summary = run(tmp_path / "resumed", stop_at=15)  # stops between two checkpoints
    assert summary["step"] == 15
    resumed, summary = run(tmp_path / "resumed")
    assert summary["step"] == 30
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    opt_a = torch.load(tmp_path / "straight" / "ckpt.pt")["optimizer"]["state"]
    opt_b = torch.load(tmp_path / "resumed" / "ckpt.pt")["optimizer"]["state"]
    for key in opt_a:
        assert torch.equal(opt_a[key]["exp_avg_sq"], opt_b[key]["exp_avg_sq"]) and opt_a[key]["step"] == 30
    # the resumed run's log continues the first one: the same training losses as the uninterrupted run
    logs = [train_log.read_metrics(tmp_path / d / "metrics.jsonl") for d in ("straight", "resumed")]
    losses = [[(e["step"], e["loss"]) for e in log if e["kind"] == "train"] for log in logs]
    assert len(losses[0]) == 6 and losses[0] == losses[1]
    evals = [e for e in logs[0] if e["kind"] == "eval"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5  # it learned something
    assert (tmp_path / "resumed" / "loss.png").stat().st_size > 1000


def test_resume_with_another_number_of_processes_says_the_rng_is_fresh(tmp_path, capsys):
    config = tiny_train_config(tmp_path, steps=4, eval_interval=2, sample_interval=0)
    train.train(TinyLM(TinyConfig()), make_get_batch(), dataclasses.replace(config, stop_at=2), quiet=True)
    checkpoint = torch.load(tmp_path / "ckpt.pt")
    checkpoint["rng"] = checkpoint["rng"] * 2  # as if two processes had written it
    save_checkpoint(tmp_path / "ckpt.pt", checkpoint)
    capsys.readouterr()
    summary = train.train(TinyLM(TinyConfig()), make_get_batch(), config, resume=True)
    assert summary["step"] == 4
    assert "written by 2 process(es), this run has 1" in capsys.readouterr().out


def test_checkpoint_from_another_model_config_is_a_clear_error(tmp_path):
    model = TinyLM(TinyConfig(n_embd=16))
    save_checkpoint(tmp_path / "ckpt.pt", {"model": model.state_dict(), "model_config": model_config_dict(model)})
    with pytest.raises(ValueError, match=r"different model config \(n_embd: checkpoint 16, now 32\)"):
        load_checkpoint(tmp_path / "ckpt.pt", TinyLM(TinyConfig(n_embd=32)))
    # and through the loop's --resume path
    config = tiny_train_config(tmp_path, steps=2)
    with pytest.raises(ValueError, match="different model config"):
        train.train(TinyLM(TinyConfig(vocab_size=20)), make_get_batch(), config, resume=True, quiet=True)


def test_checkpoint_saved_before_a_config_field_existed_still_loads(tmp_path):
    """A checkpoint written before GPTConfig gained a field (norm_eps, say) lacks it: it still loads,
    since new fields default to the old behaviour; a field both have must still agree."""
    model = TinyLM(TinyConfig(n_embd=16))
    old_config = {k: v for k, v in model_config_dict(model).items() if k != "vocab_size"}
    save_checkpoint(tmp_path / "ckpt.pt", {"model": model.state_dict(), "model_config": old_config})
    fresh = TinyLM(TinyConfig(n_embd=16))
    load_checkpoint(tmp_path / "ckpt.pt", fresh)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="n_embd: checkpoint 16, now 32"):
        load_checkpoint(tmp_path / "ckpt.pt", TinyLM(TinyConfig(n_embd=32)))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.arange(1000)})

    def save_half_then_crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", save_half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "weights": torch.arange(1000)})
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # and no temp file is left behind


def test_load_checkpoint_restores_the_optimizer_outside_the_loop(tmp_path):
    config = tiny_train_config(tmp_path, steps=6, eval_interval=3, sample_interval=0)
    trained = TinyLM(TinyConfig())
    train.train(trained, make_get_batch(), config, quiet=True)
    model = TinyLM(TinyConfig())
    opt = optimizer.make_optimizer(model, lr=config.lr)
    checkpoint = load_checkpoint(tmp_path / "ckpt.pt", model, opt)
    assert checkpoint["step"] == 6
    for a, b in zip(trained.parameters(), model.parameters()):
        assert torch.equal(a, b)
    saved = torch.load(tmp_path / "ckpt.pt")["optimizer"]["state"]
    assert len(opt.state) == len(saved) > 0
    for param_id, param in enumerate(p for group in opt.param_groups for p in group["params"]):
        assert opt.state[param]["step"] == 6
        assert torch.equal(opt.state[param]["exp_avg"], saved[param_id]["exp_avg"])
    # a checkpoint saved for inference only: the model loads, the optimizer is a clear error
    save_checkpoint(tmp_path / "weights.pt", {"model": model.state_dict(), "model_config": model_config_dict(model)})
    load_checkpoint(tmp_path / "weights.pt", TinyLM(TinyConfig()))
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(tmp_path / "weights.pt", TinyLM(TinyConfig()), opt)


def test_library_errors_are_exceptions_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*train first"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a checkpoint written by save_checkpoint") as caught:
        load_checkpoint(tmp_path / "junk.pt")
    assert "weights_only" not in str(caught.value)
    with pytest.raises(ValueError, match="--device tpu: unknown device; use cuda, mps or cpu"):
        hardware.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU .*use --device cpu"):
            hardware.pick_device("cuda")
    with pytest.raises(ValueError, match="--precision fp8: use auto, fp32, bf16 or fp16"):
        hardware.resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="--precision fp16 on mps: .*untried there; use bf16 or fp32"):
        hardware.resolve_precision("fp16", "mps")
    assert hardware.resolve_precision("fp16", "cpu") == "fp16"  # GradScaler("cpu"): a T4 run rehearsed on a CPU
    assert hardware.resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match="grad_accum=3 must be a multiple of the number of processes .*--grad-accum 2"):
        train.check_config(tiny_train_config(tmp_path, grad_accum=3), world_size=2)
    with pytest.raises(ValueError, match="at least 1"):
        train.train(TinyLM(TinyConfig()), make_get_batch(), tiny_train_config(tmp_path, steps=0), quiet=True)


def test_loss_hook_trains_evaluates_and_logs_its_metrics(tmp_path):
    inner = make_get_batch()
    def get_batch(split, g):  # a batch the default loss cannot take: (x, y, weight)
        return (*inner(split, g), torch.tensor([3.0]))
    def loss_fn(model, batch):
        x, y, weight = batch
        _, loss = model(x, y)
        return weight[0] * loss, {"unweighted": loss.detach(), "rows": x.shape[0]}
    torch.manual_seed(0)
    model = TinyLM(TinyConfig())
    initial = TinyLM(TinyConfig())
    initial.load_state_dict(model.state_dict())
    # two micro-batches a step: a metric that varies by batch ("unweighted") is their mean, like the loss
    cfg = tiny_train_config(tmp_path, steps=6, log_interval=3, eval_interval=6, sample_interval=0, grad_accum=2)
    train.train(model, get_batch, cfg, quiet=True, loss_fn=loss_fn)
    records = metrics(tmp_path)
    logged = [e for e in records if e["kind"] == "train"]
    assert len(logged) == 2 and logged[-1]["loss"] < logged[0]["loss"]  # it trains on the hook's loss
    for e in logged:
        assert e["loss"] == pytest.approx(3 * e["unweighted"], rel=1e-5) and e["rows"] == pytest.approx(4)
    # the validation loss comes from the same hook (3x the model's own cross-entropy)
    expected = train.estimate_loss(initial, get_batch, cfg.eval_batches, "cpu", seed=cfg.seed, loss_fn=loss_fn)
    first_eval = [e for e in records if e["kind"] == "eval"][0]
    assert first_eval["step"] == 0 and first_eval["val_loss"] == pytest.approx(expected["val"])
    assert first_eval["val_unweighted"] == pytest.approx(expected["val"] / 3, rel=1e-5)
    assert first_eval["train_rows"] == pytest.approx(4) and expected["val_rows"] == pytest.approx(4)
    assert expected["val"] == pytest.approx(3 * train.estimate_loss(initial, inner, cfg.eval_batches, "cpu",
                                                                    seed=cfg.seed)["val"], rel=1e-5)


@pytest.mark.parametrize("name", ["loss", "lr", "tokens", "val_acc"])
def test_loss_hook_metrics_may_not_overwrite_the_log_fields(tmp_path, name):
    def loss_fn(model, batch):
        _, loss = model(*batch)
        return loss, {name: 1.0}
    with pytest.raises(ValueError, match="clash with the log's own fields"):
        train.train(TinyLM(TinyConfig()), make_get_batch(), tiny_train_config(tmp_path, steps=1), quiet=True,
                    loss_fn=loss_fn)


# ---- data parallel: 2 processes (gloo, CPU) == 1 process with the same global batch


def ddp_config(out_dir):
    return tiny_train_config(out_dir, steps=6, grad_accum=2, log_interval=1, eval_interval=6, sample_interval=0)


def test_ddp_two_processes_match_one_process(tmp_path):
    torch.manual_seed(0)
    single = TinyLM(TinyConfig())
    train.train(single, make_get_batch(), ddp_config(tmp_path / "single"), quiet=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               __file__, str(tmp_path / "ddp")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)  # a hang guard: on a busy 2-core machine torchrun took over 120 s
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    logs = [train_log.read_metrics(tmp_path / d / "metrics.jsonl") for d in ("single", "ddp")]
    single_losses = [e["loss"] for e in logs[0] if e["kind"] == "train"]
    ddp_losses = [e["loss"] for e in logs[1] if e["kind"] == "train"]
    assert len(single_losses) == 6 and single_losses[-1] < single_losses[0]
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5)
    tokens = [[(e["step"], e["tokens"]) for e in log if e["kind"] == "train"] for log in logs]
    assert tokens[0] == tokens[1]  # DDP counts every process's tokens
    ddp_weights = torch.load(tmp_path / "ddp" / "ckpt.pt")["model"]
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-5, atol=1e-6)
    # the same worker also trained with dropout, straight and stopped + resumed: each rank must get its
    # own RNG state back (a rank restarting from its seed would draw other dropout masks)
    straight = torch.load(tmp_path / "ddp" / "straight" / "ckpt.pt")
    resumed = torch.load(tmp_path / "ddp" / "resumed" / "ckpt.pt")
    assert straight["step"] == resumed["step"] == 6 and len(resumed["rng"]) == 2
    assert not torch.equal(resumed["rng"][0]["torch"], resumed["rng"][1]["torch"])
    for name, value in straight["model"].items():
        assert torch.equal(resumed["model"][name], value), name


# ---- the scripts, end to end at a very small setting


SMALL_RUN = ["--bytes", "150000", "--vocab-size", "300", "--context", "32", "--batch-size", "4", "--n-layer", "1",
             "--n-head", "2", "--n-embd", "32", "--steps", "6", "--eval-interval", "3", "--eval-batches", "2",
             "--log-interval", "2", "--sample-interval", "0", "--sample-tokens", "8", "--device", "cpu"]


def test_pretrain_script_runs_stops_and_resumes(tmp_path, capsys):
    import pretrain

    out = ["--out-dir", str(tmp_path)]
    first = pretrain.main(["--preset", "tiny", *SMALL_RUN, *out, "--stop-at", "4"])
    assert first["step"] == 4 and "--resume" in capsys.readouterr().out
    # --resume alone: the settings come back from the checkpoint
    summary = pretrain.main(["--resume", *out])
    printed = capsys.readouterr().out
    assert summary["step"] == 6 and "resuming from" in printed and "loss.png" in printed
    assert summary["val_loss"] < math.log(300)  # better than a uniform guess over the vocabulary
    for name in ("ckpt.pt", "tokenizer.tiktoken", "tokenizer.json", "train.bin", "val.bin", "metrics.jsonl",
                 "loss.png", "sample.txt"):
        assert (tmp_path / name).stat().st_size > 0, name
    checkpoint = torch.load(tmp_path / "ckpt.pt")
    assert checkpoint["step"] == 6 and checkpoint["tokenizer"] == str(tmp_path / "tokenizer")
    assert checkpoint["model_config"]["n_embd"] == 32 and checkpoint["train_config"]["steps"] == 6
    assert len(checkpoint["rng"]) == 1 and {"torch", "numpy", "python"} <= set(checkpoint["rng"][0])
    # a different model on the same run folder: a clear error, not a wall of size mismatches
    # main raises; the script (cli.run) turns it into one line, exit code 2 (tests/test_bad_input.py)
    with pytest.raises(ValueError, match="checkpoint .*different model config.*n_embd: checkpoint 32, now 64"):
        pretrain.main(["--resume", *out, "--n-embd", "64"])


def test_pretrain_script_turns_library_errors_into_one_message(tmp_path):
    import pretrain

    with pytest.raises(ValueError, match="^--device tpu: unknown device"):
        pretrain.main(["--preset", "tiny", *SMALL_RUN, "--out-dir", str(tmp_path), "--device", "tpu"])
    result = subprocess.run([sys.executable, str(REPO / "03_pretrain" / "pretrain.py"), "--preset", "shakespeare-char",
                             "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: --preset shakespeare-char needs --data")


def test_pretrain_help():
    result = subprocess.run([sys.executable, str(REPO / "03_pretrain" / "pretrain.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--preset" in result.stdout and "shakespeare-char" in result.stdout


def test_power_law_fit_recovers_known_exponent():
    import scaling

    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6])
    a, alpha = scaling.fit_power_law(n, 20.0 * n**-0.1)
    assert a == pytest.approx(20.0, rel=1e-6) and alpha == pytest.approx(0.1, rel=1e-6)
    a, alpha, c = scaling.fit_power_law_with_constant(n, 30.0 * n**-0.3 + 1.5, grid=2000)
    assert alpha == pytest.approx(0.3, abs=0.02) and c == pytest.approx(1.5, abs=0.05)


def test_scaling_quick(tmp_path):
    import scaling

    results = scaling.main(["--quick", "--out-dir", str(tmp_path)])
    runs = results["runs"]
    assert len(runs) == 3 and all(r["tokens"] == runs[0]["tokens"] for r in runs)  # one token budget
    assert [r["non_embedding_params"] for r in runs] == sorted(r["non_embedding_params"] for r in runs)
    assert runs[-1]["val_loss"] < runs[0]["val_loss"]  # the bigger model is better on the same tokens
    assert results["fit"]["alpha"] > 0
    assert (tmp_path / "scaling.png").stat().st_size > 1000 and (tmp_path / "scaling.json").exists()


# ---- the loop really uses what the unit tests above check (each test here catches a bug that
# ---- passed every test before it: a mutation review)


def metrics(d):
    """Every line of a run's metrics.jsonl, duplicates included (read_metrics keeps the last per step)."""
    return [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]


def test_loop_applies_the_schedule_to_every_group(tmp_path, monkeypatch):
    seen = []
    real_step = optimizer.AdamW.step
    def spy(self, closure=None):
        seen.append([g["lr"] for g in self.param_groups])
        return real_step(self, closure)
    monkeypatch.setattr(optimizer.AdamW, "step", spy)
    cfg = tiny_train_config(tmp_path, steps=12, warmup_steps=4, log_interval=1, eval_interval=12, sample_interval=0)
    train.train(TinyLM(TinyConfig()), make_get_batch(), cfg, quiet=True)
    expected = [lr_at(s, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.steps) for s in range(12)]
    assert seen == [[lr, lr] for lr in expected]


def test_config_hyperparameters_reach_the_optimizer(tmp_path):
    cfg = tiny_train_config(tmp_path, steps=2, weight_decay=0.3, beta1=0.8, beta2=0.9, eps=1e-6, sample_interval=0)
    train.train(TinyLM(TinyConfig()), make_get_batch(), cfg, quiet=True)
    groups = torch.load(tmp_path / "ckpt.pt")["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.3, 0.0]
    assert all(tuple(g["betas"]) == (0.8, 0.9) and g["eps"] == 1e-6 for g in groups)


@pytest.mark.parametrize("grad_clip,expected", [(0.25, 0.25), (0.0, math.inf)])
def test_loop_clips_with_the_configured_norm(tmp_path, monkeypatch, grad_clip, expected):
    norms = []
    real = train.clip_grad_norm
    def spy(params, max_norm, **kwargs):
        norms.append(max_norm)
        return real(params, max_norm, **kwargs)
    monkeypatch.setattr(train, "clip_grad_norm", spy)
    config = tiny_train_config(tmp_path, steps=3, grad_clip=grad_clip, sample_interval=0)
    train.train(TinyLM(TinyConfig()), make_get_batch(), config, quiet=True)
    assert norms == [expected] * 3


def fixed_batch_source():
    x = torch.arange(32).reshape(4, 8) % 16
    return lambda split, g: (x, (x + 3) % 16)


def test_grad_accum_of_identical_micro_batches_equals_one_batch(tmp_path):
    records = []
    for accum in (1, 3):
        torch.manual_seed(0)
        cfg = tiny_train_config(tmp_path / str(accum), steps=1, grad_accum=accum, log_interval=1, sample_interval=0)
        train.train(TinyLM(TinyConfig()), fixed_batch_source(), cfg, quiet=True)
        records.append([e for e in metrics(tmp_path / str(accum)) if e["kind"] == "train"][0])
    assert records[1]["grad_norm"] == pytest.approx(records[0]["grad_norm"], rel=1e-5)
    assert records[1]["loss"] == pytest.approx(records[0]["loss"], rel=1e-5)
    assert records[1]["tokens"] == 3 * records[0]["tokens"]


def test_every_micro_batch_of_the_run_is_a_new_one(tmp_path):
    seeds = []
    inner = make_get_batch()
    def get_batch(split, g):
        if split == "train" and torch.is_grad_enabled():   # training draws, not estimate_loss
            seeds.append(g.initial_seed())
        return inner(split, g)
    cfg = tiny_train_config(tmp_path, steps=4, grad_accum=3, eval_interval=100, sample_interval=0)
    train.train(TinyLM(TinyConfig()), get_batch, cfg, quiet=True)
    assert seeds == [train.batch_seed(cfg.seed, "train", i) for i in range(12)]


class ConstantLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
    def forward(self, x, y, doc_ids=None):
        return None, 2.5 + 0 * self.w.sum()


def test_logged_loss_is_the_mean_even_for_a_short_last_interval(tmp_path):
    cfg = tiny_train_config(tmp_path, steps=7, grad_accum=2, log_interval=5, eval_interval=100, sample_interval=0)
    train.train(ConstantLoss(), make_get_batch(), cfg, quiet=True)
    logged = [(e["step"], e["loss"]) for e in metrics(tmp_path) if e["kind"] == "train"]
    assert logged == [(5, pytest.approx(2.5)), (7, pytest.approx(2.5))]


class Recorder(nn.Module):
    """loss = mean of x; records (training flag, loss) of every forward."""
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.drop = nn.Dropout(0.5)
        self.calls = []
    def forward(self, x, y, doc_ids=None):
        loss = x.float().mean() + 0 * self.w.sum()
        self.calls.append((self.training, loss.item()))
        return None, loss


def test_estimate_loss_is_the_mean_in_eval_mode_per_split():
    def get_batch(split, g):
        x = torch.randint(100, (2, 3), generator=g) + (1000 if split == "val" else 0)
        return x, x
    model = Recorder().train()
    losses = train.estimate_loss(model, get_batch, 5, "cpu")
    assert model.training and len(model.calls) == 10 and not any(t for t, _ in model.calls)
    assert losses["train"] == pytest.approx(np.mean([l for _, l in model.calls[:5]]))
    assert losses["val"] == pytest.approx(np.mean([l for _, l in model.calls[5:]])) and losses["val"] > 1000
    assert train.estimate_loss(model, get_batch, 5, "cpu") == losses


def test_mfu_formula(tmp_path):
    model = TinyLM(TinyConfig())
    cfg = tiny_train_config(tmp_path, steps=4, log_interval=2, peak_flops=1e9, sample_interval=0)
    train.train(model, make_get_batch(), cfg, quiet=True)
    flops = 6 * sum(p.numel() for p in model.parameters())
    for e in metrics(tmp_path):
        if e["kind"] == "train":
            assert e["mfu"] == pytest.approx(e["tokens_per_sec"] * flops / 1e9)


def test_sampling_does_not_shift_the_training_rng(tmp_path):
    weights = []
    for name, sample in (("a", None), ("b", lambda m: str(torch.rand(5).tolist()))):
        torch.manual_seed(0)
        model = TinyLM(TinyConfig(dropout=0.2))
        config = tiny_train_config(tmp_path / name, steps=20)
        train.train(model, make_get_batch(), config, make_sample=sample, quiet=True)
        weights.append(model.state_dict())
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_resume_after_a_real_interrupt_continues_log_and_tokens(tmp_path):
    inner = make_get_batch()
    def run(out, interrupt_at=None):
        calls = [0]
        def get_batch(split, g):
            if split == "train":
                calls[0] += 1
                if interrupt_at is not None and calls[0] > interrupt_at:
                    raise KeyboardInterrupt
            return inner(split, g)
        torch.manual_seed(0)
        model = TinyLM(TinyConfig(dropout=0.1))
        cfg = tiny_train_config(out, steps=30, sample_interval=0)
        try:
            train.train(model, get_batch, cfg, resume=True, quiet=True)
        except KeyboardInterrupt:
            pass
        return model
    straight = run(tmp_path / "s")
    run(tmp_path / "r", interrupt_at=2 * 17 + 1)   # dies in step 18: logged 15, last checkpoint 10
    resumed = run(tmp_path / "r")
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    raw = metrics(tmp_path / "r")
    keys = [(e["kind"], e["step"]) for e in raw]
    assert len(keys) == len(set(keys)), "no step logged twice in the raw file"
    pick = lambda rs: [(e["step"], e["loss"], e["tokens"]) for e in rs if e["kind"] == "train"]
    assert pick(raw) == pick(metrics(tmp_path / "s"))


def test_peak_flops_table_prefers_the_longest_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: names.pop(0))
    names = ["NVIDIA L40", "NVIDIA L4", "NVIDIA H100 NVL", "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]
    assert [hardware.peak_flops_of("cuda") for _ in range(5)] == [181e12, 121e12, 835e12, 989e12, None]
    assert hardware.peak_flops_of("cpu") is None


def test_numpy_generator_can_draw_the_last_window():
    x, y = dataset.get_batch(np.arange(11), 4, 10, np.random.default_rng(0))
    assert torch.equal(x[0], torch.arange(10)) and torch.equal(y[0], torch.arange(1, 11))


def test_corrupted_cache_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(dataset.DOWNLOADS, "fake", dataset.Download("file:///nonexistent", "fake.txt", "0" * 64, 1))
    (tmp_path / "fake.txt").write_text("corrupt")
    with pytest.raises(ValueError, match="sha256"):
        dataset.download("fake", tmp_path, quiet=True)


def test_scaling_gives_every_size_the_same_batches_and_counts_compute(tmp_path, monkeypatch):
    import scaling
    seen = []
    def fake_train(model, get_batch, config, **k):
        seen.append(config.seed)
        return {"tokens": config.steps * config.batch_size * 64, "val_loss": 1.0, "train_loss": 1.0, "wall_seconds": 0}
    monkeypatch.setattr(scaling.train, "train", fake_train)
    class Data:
        vocab_size = 64
    settings = {"batch_size": 2, "context": 64, "seed": 3, "lr": 1e-3, "steps": 5, "precision": "fp32",
                "device": "cpu", "eval_batches": 1}
    recs = [scaling.run_size(l, h, w, Data(), settings, tmp_path / str(w)) for l, h, w in scaling.QUICK_SIZES]
    assert seen == [3, 3, 3]
    for r, (l, h, w) in zip(recs, scaling.QUICK_SIZES):
        gpt = scaling.GPT(scaling.GPTConfig.from_preset("tiny", vocab_size=64, block_size=64, n_layer=l, n_head=h,
                                                        n_embd=w))
        assert r["compute"] == gpt.flops_per_token() * r["tokens"]
        assert r["tokens"] == 5 * 2 * 64


def test_adamw_matches_torch_when_eps_matters():
    torch.manual_seed(0)
    ours_model, ref_model = TinyLM(TinyConfig()), TinyLM(TinyConfig())
    ref_model.load_state_dict(ours_model.state_dict())
    kw = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ours = optimizer.AdamW(optimizer.param_groups(ours_model, 0.1), **kw)
    ref = torch.optim.AdamW(optimizer.param_groups(ref_model, 0.1), foreach=False, **kw)
    g = torch.Generator().manual_seed(1)
    for step in range(50):
        for a, b in zip(ours_model.parameters(), ref_model.parameters()):
            grad = torch.randn(a.shape, generator=g) * 1e-8     # |g| ~ eps: where eps sits matters
            a.grad, b.grad = grad.clone(), grad.clone()
        ours.step(); ref.step()
    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_power_law_fit_sign():
    import scaling
    n = np.array([1e4, 1e5, 1e6])
    assert scaling.fit_power_law(n, 2.0 * n**0.1)[1] == pytest.approx(-0.1)


def ddp_worker(out_dir):
    rank, _, world_size = hardware.setup_ddp()
    assert world_size == 2
    torch.manual_seed(0)  # same initial weights on every process (DDP also broadcasts rank 0's)
    train.train(TinyLM(TinyConfig()), make_get_batch(), ddp_config(out_dir), quiet=True)
    for folder, stop_at in (("straight", None), ("resumed", 3), ("resumed", None)):
        torch.manual_seed(0)
        config = dataclasses.replace(ddp_config(Path(out_dir) / folder), stop_at=stop_at)
        train.train(TinyLM(TinyConfig(dropout=0.1)), make_get_batch(), config, resume=True, quiet=True)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    ddp_worker(sys.argv[1])


def test_chat_phrasings_split_and_never_in_the_corpus(corpus):
    """Held-out question framings and arithmetic forms are their own (no training one); a "heldout"
    arithmetic item is a held-out equation in a training form and an "ood" one the same equation (same
    seed) in a held-out form; no held-out form's words are in the pretraining corpus (chapter 04's chat
    data is the only training text that uses these forms)."""
    assert not set(world.QUESTION_FRAMINGS["train"]) & set(world.QUESTION_FRAMINGS["ood"])
    assert not {f for f, _ in world.ARITHMETIC_FORMS["train"]} & {f for f, _ in world.ARITHMETIC_FORMS["ood"]}
    forms = {phrasing: {f.format(e="E"): steps for f, steps in world.ARITHMETIC_FORMS[phrasing]}
             for phrasing in ("train", "ood")}
    assert world.SPLITS == ("train", "heldout", "ood")
    for split, phrasing in zip(world.SPLITS, ("train", "train", "ood")):
        rng = random.Random(5)
        for _ in range(60):
            problem, prompt, with_steps = world.arithmetic_chat(rng, split)
            step = problem.steps[0]
            assert problem.split == world.instance_split(split) and step.result == problem.answer
            assert forms[phrasing][prompt.replace(f"{step.a} {step.op} {step.b}", "E")] == with_steps
            question = world.phrase_question("Where does Sam live?", split, rng)
            framing = [f for f in world.QUESTION_FRAMINGS[phrasing]
                       if f.format(q="Where does Sam live?", lq="where does Sam live?") == question]
            assert framing, question
    same_seed = {split: world.arithmetic_chat(random.Random(9), split) for split in ("heldout", "ood")}
    assert same_seed["heldout"][0].key == same_seed["ood"][0].key
    # a held-out form's own words never occur in the corpus
    for framing in world.QUESTION_FRAMINGS["ood"] + [f for f, _ in world.ARITHMETIC_FORMS["ood"]] + \
            list(world.ASK_FORMS["ood"]):
        for part in re.split(r"\{\w+\}", framing):
            if len(part.strip(" .?!:,").split()) >= 3:
                assert part.strip(" .?!:,") not in corpus, part


# ---- the memory plan (memory_plan.py) and the fp16 path


MEMORY_CONFIGS = {  # chapter 02's presets at a small width: every branch of the formula is taken by one
    "tiny-fp32": ("tiny", "fp32", {}),
    "tiny-bf16": ("tiny", "bf16", {}),
    "tiny-fp16-manual": ("tiny", "fp16", dict(attn_impl="manual")),
    "llama-tiny-fp32": ("llama-tiny", "fp32", {}),
    "llama-tiny-bf16-manual": ("llama-tiny", "bf16", dict(attn_impl="manual")),
}


@pytest.mark.parametrize("name", MEMORY_CONFIGS)
def test_activation_formula_matches_the_tensors_autograd_saves(name):
    """memory_plan's activations (+ the 16-bit weight copies under autocast) against the bytes autograd
    really keeps for backward, measured with saved_tensors_hooks: the issue's bar is 15 %; on torch 2.13
    the two agree to the byte."""
    import memory_plan
    from gpt import GPT, GPTConfig
    preset, precision, overrides = MEMORY_CONFIGS[name]
    config = GPTConfig.from_preset(preset, vocab_size=512, block_size=40, n_layer=2, n_head=4, n_embd=64, **overrides)
    torch.manual_seed(0)
    model = GPT(config).train()
    B, T = 3, 40
    x, y = torch.randint(512, (B, T)), torch.randint(512, (B, T))
    measured = memory_plan.measure_saved_bytes(model, (x, y), precision=precision)
    plan = memory_plan.memory_plan(config, B, precision)
    formula = plan["activations"] + plan["weight_copies"]
    assert formula == pytest.approx(measured, rel=0.15), (formula, measured)
    assert formula == pytest.approx(measured, rel=0.01), (formula, measured)  # derived, not fitted: exact here
    # one more sequence in the micro-batch costs per_sequence bytes
    more = memory_plan.measure_saved_bytes(model, (torch.randint(512, (B + 1, T)), torch.randint(512, (B + 1, T))),
                                           precision=precision)
    assert more - measured == pytest.approx(plan["per_sequence"] - memory_plan.loss_backward_bytes(config, 1, T),
                                            rel=0.01)


@pytest.mark.parametrize("kind", ["ours", "torch"])
def test_state_bytes_match_the_optimizer_after_one_step(kind):
    """params 4N, grads 4N, AdamW 8N: the plan against the real tensors of chapter 03's optimizer."""
    import memory_plan
    from gpt import GPT, GPTConfig
    config = GPTConfig.from_preset("tiny", vocab_size=256, block_size=16, n_layer=2, n_embd=48, n_head=4)
    model = GPT(config)
    opt = optimizer.make_optimizer(model, lr=1e-3, kind=kind)
    _, loss = model(torch.randint(256, (2, 16)), torch.randint(256, (2, 16)))
    loss.backward()
    opt.step()
    storage_bytes = lambda tensors: sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                                         for t in tensors}.values())
    real = {"params": storage_bytes(model.parameters()),
            "grads": storage_bytes(p.grad for p in model.parameters()),
            "optimizer": storage_bytes(t for state in opt.state.values() for t in state.values()
                                       if isinstance(t, torch.Tensor))}
    counts = memory_plan.count_params(config)
    assert counts == (model.num_params(), sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)))
    plan = memory_plan.state_bytes(*counts, "fp32")
    assert plan["params"] == real["params"] and plan["grads"] == real["grads"]
    # torch's AdamW adds a 4-byte step tensor per parameter tensor
    assert plan["optimizer"] == pytest.approx(real["optimizer"], rel=0.001)
    assert memory_plan.state_bytes(*counts, "bf16")["weight_copies"] == 2 * counts[1]


def test_fit_micro_batch_keeps_the_global_batch_and_fits(monkeypatch):
    """The largest divisor of the global batch whose plan fits in 90 % of the free bytes; None if none does;
    and the lines a script prints on a GPU (torch.cuda.mem_get_info faked: the plan only reads it)."""
    import memory_plan
    from gpt import GPT, GPTConfig
    config = GPTConfig.from_preset("tiny", vocab_size=512, block_size=64)
    total = lambda b: memory_plan.memory_plan(config, b, "bf16")["total"]
    free = (total(8) + 1) / memory_plan.USABLE_FRACTION  # room for 8 sequences, not for 12
    assert memory_plan.fit_micro_batch(config, 48, free, "bf16") == (8, 6)
    assert memory_plan.fit_micro_batch(config, 48, free * 10, "bf16")[0] > 8
    assert memory_plan.fit_micro_batch(config, 7, free, "bf16") == (7, 1)
    assert memory_plan.fit_micro_batch(config, 48, total(1) / 2, "bf16") is None
    model = GPT(config)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free), int(2 * free)))
    text = memory_plan.describe(model, 16, 3, "bf16", "cuda")
    assert "does NOT fit" in text and "--batch-size 8 --grad-accum 6" in text
    assert "fits;" in memory_plan.describe(model, 4, 12, "bf16", "cuda")
    assert "micro-batch 16 x 3" in memory_plan.describe(model, 16, 3, "bf16", "cpu")


def test_rl_plan_counts_the_models_a_ppo_stage_holds():
    """PPO: policy (16 N + the value head), reference and reward model (4 N each); GRPO has no reward model."""
    import memory_plan
    from gpt import GPTConfig
    config = GPTConfig.from_preset("tiny", vocab_size=512, block_size=64)
    n, n_mm = memory_plan.count_params(config)
    ppo = memory_plan.rl_plan(config, rows=8, minibatches=2, sequence_length=64, precision="fp32")
    grpo = memory_plan.rl_plan(config, rows=8, minibatches=2, sequence_length=64, precision="fp32", algorithm="grpo")
    assert ppo["policy"] == 16 * n + 16 * (config.n_embd + 1) and ppo["reference"] == ppo["reward_model"] == 4 * n
    assert grpo["reward_model"] == 0 and grpo["policy"] == 16 * n
    assert ppo["kv_cache"] == 2 * config.n_layer * config.n_embd * 4 * 8 * 64
    assert ppo["total"] == 24 * n + 16 * (config.n_embd + 1) + max(ppo["kv_cache"], ppo["scoring"], ppo["update"])


def test_fp16_path_scales_the_loss_and_unscales_before_clipping(tmp_path):
    """The loop's fp16 branch on the CPU (torch 2.13 has float16 autocast and GradScaler("cpu"), and
    hardware.resolve_precision allows fp16 on the CPU so that a T4 run can be rehearsed). With the scaler on, the losses and the clipped gradient norms are fp32's (the loss is scaled by 2^16
    and the gradients unscaled before clipping); a loss that overflows in fp16 makes the scaler skip the
    step and halve its scale, and the weights stay finite."""
    from gpt import GPT, GPTConfig

    def run(precision, out, loss_fn=train.next_token_loss, steps=6):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=2, n_head=2, n_embd=32, attn_impl="sdpa"))
        config = tiny_train_config(tmp_path / out, steps=steps, log_interval=1, eval_interval=steps,
                                   sample_interval=0, precision=precision)
        summary = train.train(model, make_get_batch(), config, quiet=True, loss_fn=loss_fn)
        records = [r for r in train_log.read_metrics(tmp_path / out / "metrics.jsonl") if r["kind"] == "train"]
        return model, summary, records, checkpoint.read_checkpoint(tmp_path / out / "ckpt.pt")["scaler"]

    _, _, fp32, scaler32 = run("fp32", "fp32")
    _, summary, fp16, scaler16 = run("fp16", "fp16")
    assert summary["precision"] == "fp16" and scaler32 == {}
    assert scaler16["scale"] == 2.0**16 and scaler16["_growth_tracker"] == 6  # six steps taken, none skipped
    for a, b in zip(fp32, fp16):
        assert b["loss"] == pytest.approx(a["loss"], rel=5e-3)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=5e-3)  # unscaled: not 65536x
    huge = lambda model, batch: train.next_token_loss(model, batch) * 1e4  # x 2^16 overflows fp16's 65504
    model, _, _, scaler = run("fp16", "overflow", loss_fn=huge, steps=2)
    assert scaler["scale"] < 2.0**16
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---- torch.compile on the CPU: inductor with the system C++ compiler


def test_compile_unavailable_is_one_clear_line(tmp_path, monkeypatch):
    """No C++ compiler (faked: inductor searches only a name that does not exist) or no Python.h: the
    reason in one line, before anything is written; a preset's compile falls back to eager with a note,
    a typed --compile is refused (exit 2 through cli.run), and the loop itself refuses compile=True."""
    import sysconfig
    import torch._inductor.config as inductor_config
    import pretrain

    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, "no-such-c++-compiler"))
    problem = hardware.compile_problem("cpu")
    assert problem.startswith("no C++ compiler found") and "install g++" in problem
    assert hardware.resolve_compile(False, "cpu", asked=False) == (False, None)
    compile, note = hardware.resolve_compile(True, "cpu", asked=False)
    assert not compile and note.startswith("torch.compile is unavailable here") and problem in note
    with pytest.raises(RuntimeError, match=r"^--compile: torch.compile cannot work here: no C\+\+ compiler.*--no-compile"):
        pretrain.main(["--preset", "tiny", *SMALL_RUN, "--out-dir", str(tmp_path / "run"), "--compile"])
    assert not (tmp_path / "run").exists()
    with pytest.raises(RuntimeError, match=r"^compile=True: torch.compile cannot work here: no C\+\+ compiler"):
        train.train(TinyLM(TinyConfig()), make_get_batch(), tiny_train_config(tmp_path, compile=True), quiet=True)
    monkeypatch.undo()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"include": str(tmp_path)})  # a folder without Python.h
    problem = hardware.compile_problem("cpu")  # (a machine without a compiler stops at the compiler)
    assert "Python.h" in problem and "python3-dev" in problem or problem.startswith("no C++ compiler")


def test_compiled_training_equals_eager_on_the_cpu(tmp_path, monkeypatch):
    """The loop with compile=True: chapter 02's GPT through inductor (C++ kernels built by the system
    compiler) trains 2 steps with the eager run's losses and weights (to float32 rounding). Cold, the
    ~27 kernels take about a minute to build on a busy 2-core CPU (seconds from inductor's cache)."""
    from gpt import GPT, GPTConfig
    import torch._dynamo
    import torch._inductor.config as inductor_config

    if hardware.compile_problem("cpu"):
        pytest.skip(f"torch.compile cannot work here: {hardware.compile_problem('cpu')}")
    monkeypatch.setattr(inductor_config, "compile_threads", 1)  # build in this process: no worker pool

    def run(compile):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=32, attn_impl="sdpa"))
        out = tmp_path / ("compiled" if compile else "eager")
        config = tiny_train_config(out, steps=2, grad_accum=1, log_interval=1, eval_interval=2, eval_batches=1,
                                   sample_interval=0, precision="fp32", compile=compile)
        summary = train.train(model, make_get_batch(), config, quiet=True)
        losses = [r["loss"] for r in train_log.read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
        return model, losses + [summary["train_loss"], summary["val_loss"]]

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager_model, eager = run(compile=False)
    assert not torch._dynamo.utils.counters["stats"]
    compiled_model, compiled = run(compile=True)
    try:
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # the training and the eval graph
        assert len(compiled) == 4 and compiled == pytest.approx(eager, rel=1e-5)
        for (name, a), b in zip(eager_model.state_dict().items(), compiled_model.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")  # Adam: lr 3e-2
    finally:
        torch._dynamo.reset()


PEAK_RSS_SCRIPT = r"""
import re, sys, torch
import hardware, memory_plan
from gpt import GPT, GPTConfig
precision = sys.argv[1]
torch.manual_seed(0)
config = GPTConfig.from_preset("tiny", vocab_size=16384, block_size=256, n_layer=2, n_head=4, n_embd=64)
model = GPT(config).train()
x, y = torch.randint(16384, (4, 256)), torch.randint(16384, (4, 256))
status = lambda key: int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to what is resident now (not ru_maxrss: a child inherits its parent's)
before = status("VmRSS")
with hardware.autocast("cpu", precision):
    loss = model(x, y)[1]  # (the logits are not kept: as in the loop's loss hook)
loss.backward()
plan = memory_plan.memory_plan(config, 4, precision)
print(status("VmHWM") - before, plan["activations"] + plan["weight_copies"] + plan["loss_backward"])
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/status and clear_refs")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_peak_memory_of_a_training_step_matches_the_plan(precision):
    """The whole peak, measured as the rise of the process's peak resident memory over one forward and
    backward (a fresh process; the vocabulary is large so that the loss's backward, which the saved-tensor
    check cannot see, dominates): within the issue's 15 % of activations + weight copies + loss backward."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, precision], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    measured, formula = int(out[0]), int(out[1])
    assert formula == pytest.approx(measured, rel=0.15), (formula, measured)


def test_a_presets_bf16_falls_back_to_fp32_only_on_a_cpu_without_bf16_instructions(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: False)
    precision, note = hardware.cpu_preset_precision("bf16", "cpu", asked=False)
    assert precision == "fp32" and "no bf16 instructions" in note
    assert hardware.cpu_preset_precision("bf16", "cpu", asked=True) == ("bf16", None)   # typed: it stands
    assert hardware.cpu_preset_precision("bf16", "cuda:0", asked=False) == ("bf16", None)
    assert hardware.cpu_preset_precision("fp32", "cpu", asked=False) == ("fp32", None)
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: True)
    assert hardware.cpu_preset_precision("bf16", "cpu", asked=False) == ("bf16", None)


# ---- the dry run of a GPU preset (pipeline.py --preset gpt2 --dry-run)

DRY_RUN_OUTPUTS = ["03_pretrain/ckpt.pt", "03_pretrain/loss.png", "04_sft/ckpt.pt", "04_sft/sft_eval.md",
                   "05_rlhf/preferences/train.jsonl", "05_rlhf/reward_model/ckpt.pt", "05_rlhf/ppo/ckpt.pt",
                   "05_rlhf/dpo/ckpt.pt", "05_rlhf/grpo/ckpt.pt", "05_rlhf/rlhf_eval.md", "06_quantize/results.md",
                   "06_quantize/gptq4_g128/ckpt.pt", "07_eval/report.md"]


def test_dry_run_of_the_gpt2_preset_at_a_reduced_width(tmp_path):
    """The gpt2 preset's code paths end to end, as `pipeline.py --preset gpt2 --dry-run` runs them, at a width
    a test can afford: chapter 03 (here in-process) with 1 layer of width 128 (a multiple of 06's group size
    128), context 128 and a 500-token BPE, padded to 512 rows as GPT-2's 50257 to 50304 (GPT-2's own tokenizer
    needs tiktoken's cache: the full-size dry run in the lesson's appendix uses it), then the pipeline runs
    04-07 with --dry-run into its own --runs-dir. Every chapter must end with the files a real run writes."""
    import pretrain
    runs = tmp_path / "runs"
    prefix = tmp_path / "bpe" / "tokenizer"
    dataset.train_tokenizer(world.make_corpus(60_000), vocab_size=500, save_prefix=prefix)  # padded to 512
    pretrain.main(["--preset", "gpt2", "--dry-run", "--tokenizer", str(prefix), "--n-layer", "1", "--n-embd", "128",
                   "--n-head", "2", "--context", "128", "--device", "cpu", "--out-dir", str(runs / "03_pretrain")])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(REPO / "pipeline.py"), "--preset", "gpt2", "--dry-run", "--runs-dir",
                           str(runs), "--start", "4", "--device", "cpu"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    missing = [path for path in DRY_RUN_OUTPUTS if not (runs / path).is_file()]
    assert not missing, missing
    assert "--dry-run" in done.stdout and "== 08_multimodal: no --dry-run" in done.stdout
    assert json.loads((runs / "05_rlhf" / "rlhf_eval.json").read_text())  # every stage of 05 ran to its end


def test_dry_run_without_gpt2s_tokenizer_says_where_tiktoken_keeps_it(tmp_path, monkeypatch, capsys):
    import cli
    import pretrain

    def offline(name):
        raise OSError("Failed to resolve 'openaipublic.blob.core.windows.net'")  # what requests says, and more

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(SystemExit) as exit_info:
        cli.run(pretrain.main, ["--preset", "gpt2", "--dry-run", "--device", "cpu", "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "GPT-2's tokenizer is not in tiktoken's cache" in err and "TIKTOKEN_CACHE_DIR" in err
    assert not (tmp_path / "out").exists(), "nothing is written before the tokenizer is there"
