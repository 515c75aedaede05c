"""Bare arithmetic expressions with several operators, "What is 12 + 7 * 3 - 4?", worked with precedence.

Times and divide come first, left to right, then plus and minus, left to right; each operation is one
Step, so solution(problem, "steps") shows the order and solution(problem, "column") adds the digit
scratchpads. The plausible wrong answer ignores precedence and works strictly left to right, the
classic mistake (or, when that gives the same number, slips by a little in one step).
"""
import re

from .problems import Problem, Step, ask, solution, wrong_problem_solution
from .scratchpads import apply, is_training_safe
from .splits import check_split, split_of, _rng, _sample

OPENING = "Times and divide come first, then plus and minus, from left to right."


def expression_steps(numbers, ops, precedence=True, slip=None):
    """Evaluate numbers/ops one operation at a time -> (steps, value), or None if a step would divide
    inexactly or go below zero. precedence=False works strictly left to right (the classic mistake);
    slip=(i, delta) adds delta to the result of step i (a wrong solution).

    >>> steps, value = expression_steps([12, 7, 3, 4], ["+", "*", "-"])
    >>> value, [s.says.format(eq=f"{s.a} {s.op} {s.b} = {s.result}") for s in steps]
    (29, ['7 * 3 = 21, so we have 12 + 21 - 4', '12 + 21 = 33, so we have 33 - 4', '33 - 4 = 29'])
    """
    numbers, ops, steps = list(numbers), list(ops), []
    while ops:
        first = [i for i, op in enumerate(ops) if op in "*/"] if precedence else []
        i = first[0] if first else 0
        a, op, b = numbers[i], ops[i], numbers[i + 1]
        if (op == "/" and (b == 0 or a % b)) or (op == "-" and a < b):
            return None
        result = apply(a, op, b)
        if slip is not None and slip[0] == len(steps):
            result = max(0, result + slip[1])
        numbers[i:i + 2] = [result]
        ops.pop(i)
        rest = " ".join(str(n) if k == 0 else f"{ops[k - 1]} {n}" for k, n in enumerate(numbers))
        steps.append(Step(a, op, b, result, "", "{eq}" + (f", so we have {rest}" if ops else "")))
    return steps, numbers[0]


def _is_scratchpad_line(numbers, ops):
    """True if `numbers` `ops` is written, with its value, in a column scratchpad: "6 + 9 + 1" (a column
    of an addition and its carry), "12 - 5 - 1" (a subtraction's borrow), "7 * 6 + 4" (a multiplication's)."""
    a, b, c = (list(numbers) + [0, 0, 0])[:3]
    return len(ops) == 2 and ((ops == ["+", "+"] and a <= 9 and b <= 9 and c == 1)
                              or (ops == ["-", "-"] and a <= 19 and b <= 9 and c == 1)
                              or (ops == ["*", "+"] and a <= 9 and b <= 9 and c <= 8))


def arithmetic_expression(rng, n_ops=3, digits=1, split="train"):
    """A bare expression of `n_ops` operators (+ - * /) on numbers of up to `digits` digits, as a
    Problem of kind "expression": question "What is 12 + 7 * 3 - 4?", answer 29, one Step per operation.

    Every division is exact and no step goes below zero. The split is decided by the expression itself
    (key "expr:12+7*3-4"); a "train" expression is drawn again if a step of its solutions is a held-out
    equation, and a held-out one is never a line of the column scratchpads ("6 + 9 + 1 = 16",
    _is_scratchpad_line). Held-out expressions are never in training text: split="heldout" asks one as training
    text asks ("What is ...?"), split="ood" in a held-out form ("How much is ...?", problems.ASK_FORMS).
    """
    check_split(split)
    if n_ops < 2 or digits < 1:
        raise ValueError(f"an expression needs n_ops >= 2 and digits >= 1, got {n_ops} and {digits}")
    rng = _rng(rng)

    def make():
        ops = [rng.choice("++--*/") for _ in range(n_ops)]
        numbers = [rng.randrange(1, 10 ** digits)]
        for op in ops:      # the right side of * and / is one digit, as in the scratchpads
            numbers.append(rng.randrange(2, 10) if op in "*/" else rng.randrange(1, 10 ** digits))
        worked = expression_steps(numbers, ops)
        if worked is None:
            return None
        steps, value = worked
        text = " ".join(str(n) if k == 0 else f"{ops[k - 1]} {n}" for k, n in enumerate(numbers))
        key = "expr:" + text.replace(" ", "")
        problem = Problem("expression", ask(text, key, split), tuple(steps), value, key, split_of(key), OPENING, digits)
        if problem.split == "heldout" and _is_scratchpad_line(numbers, ops):
            return None     # "6 + 9 + 1" is written in training text ("ones: 6 + 9 + 1 = 16"): never held out
        if problem.split == "train" and not all(is_training_safe(solution(problem, s)) for s in ("steps", "column")):
            return None
        return problem
    return _sample(make, split, f"expression of {n_ops} operators")


def wrong_expression_solution(problem, rng, style="steps"):
    """A plausible wrong worked solution of an expression: strictly left to right (ignoring precedence)
    when that changes the answer, otherwise a slip of a little in one step."""
    rng = _rng(rng)
    tokens = re.findall(r"\d+|[-+*/]", problem.key[len("expr:"):])     # the key: "expr:12+7*3-4"
    numbers, ops = [int(t) for t in tokens[::2]], tokens[1::2]
    worked, opening = expression_steps(numbers, ops, precedence=False), "Work from left to right."
    for _ in range(1000):
        if worked is not None and worked[1] != problem.answer:
            steps, value = worked
            wrong = Problem(problem.kind, problem.question, tuple(steps), value, problem.key, problem.split,
                            opening, problem.digits)
            return solution(wrong, style)
        slip = (rng.randrange(len(ops)), rng.choice([-2, -1, 1, 2, 10]))
        worked, opening = expression_steps(numbers, ops, slip=slip), problem.opening
    raise ValueError(f"could not make a wrong solution for {problem.key}")


def wrong_solution(problem, rng, style="steps"):
    """A plausible wrong worked solution of any problem (chapter 05's rejected side): an arithmetic
    expression's from wrong_expression_solution, a word problem's from problems.wrong_problem_solution.
    (It lives here, not in problems.py, so that this module imports problems.py and never the reverse.)"""
    if problem.kind == "expression":
        return wrong_expression_solution(problem, rng, style)
    return wrong_problem_solution(problem, rng, style)
