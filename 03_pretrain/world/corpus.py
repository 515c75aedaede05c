"""The pretraining corpus: documents of every kind, joined by "<|endoftext|>".
"""
import random

from .code_tasks import code_document
from .facts import describe, fact_question
from .dialogues import dialogue
from .expressions import arithmetic_expression
from .knowledge import build_world
from .problems import arithmetic_problem, solution
from .scratchpads import apply
from .splits import _rng
from .stories import story
from .word_problems import word_problem

EOT = "<|endoftext|>"          # the document separator (a special token of the chapter-01 tokenizer)
DEFAULT_CORPUS_BYTES = 3_000_000

# Share of documents of each kind (by count; word problems are the longest documents, facts the shortest).
# "code": tiny Python functions of the training split (code_tasks.py), so the base model has seen Python.
DOC_MIX = {"facts": 0.24, "quiz": 0.06, "story": 0.27, "arithmetic": 0.18, "word_problem": 0.12,
           "dialogue": 0.13, "code": 0.03}


def document(world, kind, rng):
    """One training document of `kind` (a key of DOC_MIX); only training-split material is used."""
    rng = _rng(rng)
    if kind == "facts":
        subjects = [s for s in world.kind_of if world.kind_of[s] != "language"]
        return "\n\n".join(describe(world, s, rng, split="all") for s in rng.sample(subjects, rng.randint(1, 3)))
    if kind == "quiz":
        facts = [f for f in world.facts if f.split == "train"]
        pairs = [fact_question(world, f, rng) for f in rng.sample(facts, rng.randint(3, 6))]
        if rng.random() < 0.5:
            return "\n".join(f"Q: {q.question}\nA: {q.answer_sentence}" for q in pairs)
        return "\n".join(f"Question: {q.question}\nAnswer: {q.answer}" for q in pairs)
    if kind == "story":
        return story(world, rng).text
    if kind == "dialogue":
        return dialogue(world, rng)
    if kind == "arithmetic":
        return _arithmetic_document(rng)
    if kind == "code":
        return code_document(rng)
    if kind == "word_problem":
        problems = [word_problem(world, rng, n_steps=rng.choice([1, 2, 2, 3, 3, 4]), digits=rng.choice([1, 2, 2, 3]))
                    for _ in range(rng.randint(1, 3))]
        return "\n\n".join(_framed(p, rng.choice(["direct", "steps", "steps", "column"]), rng) for p in problems)
    raise ValueError(f"unknown document kind {kind!r}; use one of {sorted(DOC_MIX)}")


def _framed(problem, style, rng):
    frame = rng.choice(["Q: {q}\nA: {a}", "Question: {q}\nAnswer: {a}", "{q}\n{a}", "Problem: {q}\nSolution:\n{a}"])
    return frame.format(q=problem.question, a=solution(problem, style))


def _arithmetic_document(rng):
    """Basic-fact tables, drills (direct answers), worked problems (column scratchpads), or expressions
    of several operators worked with precedence ("What is 12 + 7 * 3 - 4?")."""
    form = rng.choice(["table", "drill", "drill", "worked", "worked", "worked", "expression", "expression"])
    if form == "expression":
        problems = [arithmetic_expression(rng, rng.choice([2, 2, 3, 4]), rng.choice([1, 1, 2]))
                    for _ in range(rng.randint(2, 4))]
        return "\n\n".join(_framed(p, rng.choice(["steps", "steps", "column", "direct"]), rng) for p in problems)
    if form == "table":
        op = rng.choice("+*-")
        n = rng.randrange(2, 13)
        if op == "-":   # n + k - n with n, k <= 10: basic facts only
            n = min(n, 10)
            return "\n".join(f"{n + k} - {n} = {k}" for k in range(0, 11))
        return "\n".join(f"{n} {op} {k} = {apply(n, op, k)}" for k in range(1, 13))
    if form == "drill":
        op, digits = rng.choice("++-*"), rng.choice([1, 2, 2, 3])
        return "\n".join(f"{p.steps[0].a} {op} {p.steps[0].b} = {p.answer}"
                         for p in (arithmetic_problem(rng, op, digits) for _ in range(rng.randint(4, 10))))
    op = rng.choice("++--*/")
    digits = rng.choice([2, 3, 3, 4]) if op in "+-" else rng.choice([2, 3])
    problems = [arithmetic_problem(rng, op, digits) for _ in range(rng.randint(1, 3))]
    return "\n\n".join(_framed(p, rng.choice(["column", "column", "direct"]), rng) for p in problems)


def corpus_documents(world=None, seed=0, n_docs=None, n_bytes=None, mix=None):
    """Yield training documents (strings without separators) until `n_docs` documents or `n_bytes`
    UTF-8 bytes (counting one "<|endoftext|>" after each) are reached.

    Document i depends only on (seed, i): a bigger corpus starts with exactly the smaller one.
    `mix` maps document kinds to weights (default DOC_MIX). Only training-split material appears:
    held-out facts are stated but never asked, held-out problems, equations and stories never occur.

    Example: next(corpus_documents(build_world(0), seed=0, n_docs=1))
        -> "A hurar eats flowers. A hurar is silver. It has 6 legs. Hurars are big animals. They live
            in the desert. Adam's pet is a hurar.\\n\\nLuke's home is in ..."
    """
    world = world or build_world(0)
    if n_docs is None and n_bytes is None:
        raise ValueError("corpus_documents: give n_docs or n_bytes")
    mix = mix or DOC_MIX
    unknown = set(mix) - set(DOC_MIX)
    if unknown:
        raise ValueError(f"unknown document kinds {sorted(unknown)}; use some of {sorted(DOC_MIX)}")
    kinds, weights = list(mix), list(mix.values())
    total, i = 0, 0
    while (n_docs is None or i < n_docs) and (n_bytes is None or total < n_bytes):
        rng = random.Random(f"corpus:{seed}:{i}")
        doc = document(world, rng.choices(kinds, weights)[0], rng)
        total += len(doc.encode("utf-8")) + len(EOT)
        i += 1
        yield doc


def make_corpus(n_bytes=DEFAULT_CORPUS_BYTES, seed=0, world=None, n_docs=None, mix=None):
    """The pretraining text: documents, each followed by "<|endoftext|>". Byte-identical for a given
    (n_bytes or n_docs, seed, world); the default world is build_world(0), the project's one world.

    Example: text = make_corpus(3_000_000)   # about 3 MB in a couple of seconds
             docs = text.split("<|endoftext|>")[:-1]
    """
    if n_docs is not None:
        n_bytes = None
    return "".join(doc + EOT for doc in corpus_documents(world, seed, n_docs=n_docs, n_bytes=n_bytes, mix=mix))
