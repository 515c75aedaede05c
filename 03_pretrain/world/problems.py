"""Problems with worked solutions as data: Step, Problem, solution(problem, style), wrong_problem_solution,
and bare arithmetic problems "What is a op b?".
"""
import re
from dataclasses import dataclass

from .naming import _capitalize
from .scratchpads import apply, equation_key, is_training_safe, scratchpad
from .splits import check_split, phrasing, split_of, unit_hash, _rng, _sample


@dataclass(frozen=True)
class Step:
    """One operation of a worked solution: a op b = result. `action` is what happens in the story
    ("She buys 285 more", or "" for a pure computation) and `says` the sentence around the
    equation, with {eq} where it goes ("so she has {eq} apples")."""
    a: int
    op: str
    b: int
    result: int
    action: str = ""
    says: str = "{eq}"


@dataclass(frozen=True)
class Problem:
    """A problem with its worked solution as data: render it with solution(problem, style).

    kind "arithmetic" or "word"; `question` the text to answer; `opening` the solution's first
    sentence ("Mia starts with 12 apples.", or ""); `steps` the operations; `answer` the final number;
    `key` the content key that decides `split`.
    """
    kind: str
    question: str
    steps: tuple
    answer: int
    key: str
    split: str
    opening: str = ""
    digits: int = 0


STYLES = ("direct", "steps", "column")

# How a bare problem is asked: "What is {e}?" in training text (and for split "heldout"); split "ood"
# asks in one of the held-out forms, which training text never uses (chat_phrasings.ARITHMETIC_FORMS["ood"]
# holds them too). The form is picked by a hash of the key, so "heldout" and "ood" draw the same numbers.
ASK_FORMS = {"train": ("What is {e}?",), "ood": ("How much is {e}?", "Could you figure out {e} for me?")}


def ask(expression, key, split):
    """The question of a bare problem of `split`: ask("12 + 7", "eq:7+12", "train") -> "What is 12 + 7?"."""
    forms = ASK_FORMS[phrasing(split)]
    return forms[int(unit_hash("ask:" + key) * len(forms))].format(e=expression)


def solution(problem, style="steps"):
    """The worked solution of a Problem, ending in "The answer is N.".

    style "direct": only the final line; "steps": one line per operation; "column": the same, with the
    digit-by-digit scratchpad (column_addition etc.) before every operation that is not a basic fact.

    Example, the word problem "Lily has 13 wobrovels. She gives 7 to Clara. Then she buys 8 more.
    How many wobrovels does Lily have in the end?" (see word_problem):
        direct:  The answer is 14.
        steps:   Lily starts with 13 wobrovels.
                 She gives 7 to Clara, so she has 13 - 7 = 6 wobrovels.
                 She buys 8 more, so she has 6 + 8 = 14 wobrovels.
                 The answer is 14.
        column:  the same here (every step is a basic fact); for 347 + 285 the step would be
                 preceded by the lines of column_addition(347, 285).
    """
    if style not in STYLES:
        raise ValueError(f"unknown solution style {style!r}; use one of {STYLES}")
    lines = [] if style == "direct" or not problem.opening else [problem.opening]
    for step in problem.steps if style != "direct" else ():
        eq = f"{step.a} {step.op} {step.b} = {step.result}"
        work = scratchpad(step.a, step.op, step.b) if style == "column" else []
        if work:
            if step.action:
                lines.append(f"{step.action}. Work out {step.a} {step.op} {step.b}:")
            lines += work[:-1]
            says = step.says.format(eq=eq)
            lines.append(_capitalize(says if says.startswith("so ") else "so " + says) + ".")
        else:
            sentence = f"{step.action}, {step.says.format(eq=eq)}" if step.action else step.says.format(eq=eq)
            lines.append(_capitalize(sentence) + ".")
    lines.append(f"The answer is {problem.answer}.")
    return "\n".join(lines)


def _number(rng, digits):
    """A random number with exactly `digits` digits (2..9 for one digit)."""
    return rng.randrange(2, 10) if digits == 1 else rng.randrange(10 ** (digits - 1), 10 ** digits)


def arithmetic_problem(rng, op="+", digits=3, split="train"):
    """A bare arithmetic problem "What is a op b?" whose numbers have `digits` digits.

    "+", "-" (a >= b), "*" (b has one digit when digits > 1) and "/" (exact, one-digit divisor).
    The split is decided by the equation (equation_key), so "What is 347 + 285?" is held out exactly
    when "285 + 347" is; basic facts are always "train" (asking for a held-out one raises). split="ood"
    asks a held-out equation in a held-out form ("How much is 347 + 285?", ASK_FORMS). A "train"
    problem is drawn again if a step of its scratchpad (say 27 - 27 = 0 in a long division) is a
    held-out equation: no held-out equation is ever written in training text.

    Example: p = arithmetic_problem(random.Random(0), "+", 3)
        p.question -> "What is 964 + 494?"; p.answer -> 1458
        solution(p, "column") -> "ones: 4 + 4 + 0 = 8, write 8, carry 0.\\n...\\nThe answer is 1458."
    """
    if op not in "+-*/" or len(op) != 1:
        raise ValueError(f"unknown operation {op!r}; use one of + - * /")
    check_split(split)
    rng = _rng(rng)

    def make():
        a, b = _number(rng, digits), _number(rng, digits)
        if op == "-" and a < b:
            a, b = b, a
        if op == "*" and digits > 1:
            b = rng.randrange(2, 10)
        if op == "/":
            b = rng.randrange(2, 10)
            a = b * max(1, _number(rng, digits) // b)
        key = equation_key(f"{a} {op} {b}")  # None for a basic fact (both numbers small): always "train"
        problem_split = "train" if key is None else split_of(key)
        step = Step(a, op, b, apply(a, op, b))
        key = key or f"eq:{a}{op}{b}"
        problem = Problem("arithmetic", ask(f"{a} {op} {b}", key, split), (step,), step.result,
                          key, problem_split, digits=digits)
        if problem.split == "train" and not is_training_safe(solution(problem, "column")):
            return None     # a step of its scratchpad is a held-out equation
        return problem
    return _sample(make, split, f"{digits}-digit {op} problem")


def wrong_problem_solution(problem, rng, style="steps"):
    """A plausible but wrong worked solution of `problem`: one step's result is off by a little, and
    every later step that uses it carries the error on, so the final answer is wrong too. The
    rejected side of a preference pair (chapter 05) next to solution(problem, style).

    Example (world 0), for "Lily has 13 wobrovels. She gives 7 to Clara. Then she buys 8 more. ..."
    (see word_problem), wrong_problem_solution(problem, 0) ->
        "Lily starts with 13 wobrovels.\\nShe gives 7 to Clara, so she has 13 - 7 = 6 wobrovels.\\n
         She buys 8 more, so she has 6 + 8 = 16 wobrovels.\\nThe answer is 16."
    """
    rng = _rng(rng)
    # The slip is carried on by value: a later operand equal to an earlier step's result is that
    # result. A number the question itself states must never change ("She buys 2 more" stays 2),
    # so only a step whose result is not such a number may slip (the last step always may).
    literals = {int(n) for n in re.findall(r"\d+", problem.question)}
    last = len(problem.steps) - 1
    may_slip = [i for i, s in enumerate(problem.steps) if i == last or s.result not in literals]
    for _ in range(1000):
        broken = rng.choice(may_slip)
        changed, steps = {}, []
        try:
            for i, step in enumerate(problem.steps):
                a, b = changed.get(step.a, step.a), changed.get(step.b, step.b)
                result = apply(a, step.op, b)      # (a division left inexact by the slip rounds down)
                if i == broken:
                    result += rng.choice([-2, -1, 1, 2, 10]) if result > 2 else rng.choice([1, 2, 10])
                if result != step.result:
                    changed[step.result] = result
                steps.append(Step(a, step.op, b, result, step.action, step.says))
        except ZeroDivisionError:      # the slip made a later divisor 0: draw again
            continue
        # only earlier results may have changed, never a number of the question; a later division
        # could round the slip away, or a subtraction go below zero: draw again
        moved = {old for s, w in zip(problem.steps, steps) for old, new in ((s.a, w.a), (s.b, w.b)) if old != new}
        if (not moved & literals and steps[-1].result != problem.answer and all(s.result >= 0 for s in steps)):
            break
    else:
        raise ValueError(f"could not make a wrong solution for {problem.key}")
    wrong = Problem(problem.kind, problem.question, tuple(steps), steps[-1].result, problem.key, problem.split,
                    problem.opening, problem.digits)
    return solution(wrong, style)
