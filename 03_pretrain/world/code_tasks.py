"""Tiny Python function tasks, in the style of HumanEval: a signature, a docstring, hidden unit tests.

    tasks = code_tasks("heldout")       # every held-out task: chapter 07 samples completions, runs the tests
    t = tasks[0]
    t.prompt      'def add_7(x):\\n    \\"\\"\\"Return x plus 7.\\"\\"\\"\\n'   what the model sees
    t.solution    'def add_7(x):\\n    return x + 7\\n'               the reference (the SFT reply)
    t.tests       ('assert add_7(3) == 10', ...)                       hidden: never shown to the model

A task is a FAMILY (add a number, count an item in a list, ...) with one PARAMETER (the number, the
item). The split is decided by the content key "code:add|7" (splits.split_of), so a held-out task is
one whose parameter the model never saw in that family: it has to apply the pattern it learned
("Return x plus 5." -> "return x + 5") to a number it was never asked about. The docstring wordings
are shared by both splits; every held-out prompt is still unseen text, since the parameter is part of
it (a prompt is shorter than 13 words of decontamination.words, so the check looks it up whole).

The expected values of the hidden tests come from the family's plain Python function (`compute`), not
from running the reference solution, so generating tasks never executes code given as text.
"""
import functools
import random
from dataclasses import dataclass

from .splits import instance_split, split_of
from .word_problems import ITEMS


@dataclass(frozen=True)
class CodeTask:
    """One function to write. `prompt` is the signature and docstring, `solution` a correct function
    (signature and body, no docstring), `tests` the hidden asserts, `entry_point` the function's name."""
    prompt: str
    solution: str
    tests: tuple
    entry_point: str
    key: str
    split: str


# family -> (name, argument, docstrings, body, compute(parameter, x), test inputs(rng, parameter), parameters)
# {k} is the parameter. A family's docstrings are alternative wordings of the same task.
_FAMILIES = {
    "add": ("add_{k}", "x", ["Return x plus {k}.", "Add {k} to x and return the result."], "return x + {k}",
            lambda k, x: x + k, lambda rng, k: [rng.randrange(-20, 100) for _ in range(4)], range(2, 41)),
    "times": ("times_{k}", "x", ["Return x times {k}.", "Multiply x by {k} and return the result."],
              "return x * {k}", lambda k, x: x * k, lambda rng, k: [rng.randrange(-9, 50) for _ in range(4)],
              range(2, 21)),
    "minus": ("subtract_{k}", "x", ["Return x minus {k}.", "Subtract {k} from x and return the result."],
              "return x - {k}", lambda k, x: x - k, lambda rng, k: [rng.randrange(0, 100) for _ in range(4)],
              range(2, 41)),
    "multiple": ("is_multiple_of_{k}", "x", ["Return True if x is a multiple of {k}, else False.",
                                             "Is x divisible by {k}? Return True or False."],
                 "return x % {k} == 0", lambda k, x: x % k == 0,
                 lambda rng, k: [k * rng.randrange(1, 9), k * rng.randrange(1, 9) + 1, rng.randrange(1, 60), 0],
                 range(2, 13)),
    "first": ("first_{k}", "items", ["Return the first {k} items of the list items.",
                                     "Return a list of the first {k} elements of items."],
              "return items[:{k}]", lambda k, xs: xs[:k],
              lambda rng, k: [[rng.randrange(10) for _ in range(rng.randrange(0, 12))] for _ in range(4)],
              range(1, 16)),
    "above": ("count_above_{k}", "numbers", ["Return how many numbers in the list are greater than {k}.",
                                             "Count the numbers bigger than {k} in numbers and return the count."],
              "return len([n for n in numbers if n > {k}])", lambda k, xs: len([n for n in xs if n > k]),
              lambda rng, k: [[rng.randrange(0, 30) for _ in range(rng.randrange(0, 9))] for _ in range(4)],
              range(0, 31)),
    "count": ("count_{k}", "items", ['Return how many times "{k}" is in the list items.',
                                     'Count the words "{k}" in items and return the count.'],
              'return items.count("{k}")', lambda k, xs: xs.count(k),
              lambda rng, k: [[rng.choice([k, k, "hats", "cups"]) for _ in range(rng.randrange(0, 7))]
                              for _ in range(4)],
              ITEMS),
    "repeat": ("repeat_{k}", "n", ['Return the word "{k}" written n times, with no spaces.',
                                   'Repeat "{k}" n times and return the string.'],
               'return "{k}" * n', lambda k, n: k * n, lambda rng, k: [0, 1, rng.randrange(2, 5), rng.randrange(5, 8)],
               ITEMS),
}
FAMILIES = tuple(_FAMILIES)


def code_task(family, parameter, wording=0):
    """The CodeTask of one family and parameter, its docstring in wording 0 or 1.

    >>> t = code_task("add", 7)
    >>> print(t.prompt + t.solution.split("\\n", 1)[1], end="")
    def add_7(x):
        \"\"\"Return x plus 7.\"\"\"
        return x + 7
    >>> t.tests[0], t.key
    ('assert add_7(45) == 52', 'code:add|7')
    """
    if family not in _FAMILIES:
        raise ValueError(f"unknown code-task family {family!r}; use one of {FAMILIES}")
    name, argument, docstrings, body, compute, inputs, _ = _FAMILIES[family]
    name, body = name.format(k=parameter), body.format(k=parameter)
    signature = f"def {name}({argument}):\n"
    prompt = signature + f'    """{docstrings[wording].format(k=parameter)}"""\n'
    key = f"code:{family}|{parameter}"
    rng = random.Random(key)
    tests = tuple(f"assert {name}({x!r}) == {compute(parameter, x)!r}" for x in inputs(rng, parameter))
    return CodeTask(prompt, signature + f"    {body}\n", tests, name, key, split_of(key))


def code_document(rng):
    """A pretraining document: 2-4 TRAINING tasks written out in full (signature, docstring, body) with
    one of their tests each, so a base model has seen Python functions before it is asked for one.

    >>> doc = code_document(random.Random(1))
    >>> doc.startswith('def count_coins(items):'), doc.count('def '), doc.count('assert ')
    (True, 2, 2)
    """
    tasks = _training_tasks()
    parts = []
    for task in rng.sample(tasks, rng.randint(2, 4)):
        body = task.solution.split("\n", 1)[1]
        parts.append(task.prompt + body + "\n" + rng.choice(task.tests))
    return "\n\n".join(parts)


@functools.lru_cache(maxsize=1)
def _training_tasks():
    return [code_task(family, parameter, wording) for family, spec in _FAMILIES.items() for parameter in spec[-1]
            for wording in (0, 1) if split_of(f"code:{family}|{parameter}") == "train"]


def code_tasks(split="train", seed=0):
    """Every CodeTask of `split` ("train", "heldout" or "ood": the same), each in a docstring wording drawn with `seed`,
    family by family in a fixed order."""
    split = instance_split(split)     # "ood" is "heldout": a task has no phrasing of its own
    rng = random.Random(f"code-tasks:{split}:{seed}")
    tasks = []
    for family, spec in _FAMILIES.items():
        for parameter in spec[-1]:
            task = code_task(family, parameter, rng.randrange(2))
            if task.split == split:
                tasks.append(task)
    return tasks
