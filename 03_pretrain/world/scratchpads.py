"""Arithmetic scratchpads that spell out every small step, and the equations written in a text.

Column addition, subtraction and multiplication and long division, digit by digit, as a small model
can follow them; equation_key and is_training_safe tell which equations are held out.
"""
import re

from .splits import split_of

BASIC_LIMIT = 20               # an equation whose numbers on the left are all <= this is a "basic fact"
PLACES = ["ones", "tens", "hundreds", "thousands", "ten thousands", "hundred thousands", "millions"]
EQUATION = re.compile(r"(?<![\d.])(\d+(?: [-+*/] \d+)+) = (\d+)(?!\d)")   # "7 + 5 + 1 = 13"


def _place(i):
    return PLACES[i] if i < len(PLACES) else f"digit {i + 1}"


def _digits(n, width):
    """Digits of n from the ones upwards, padded with zeros: _digits(347, 4) -> [7, 4, 3, 0]."""
    return [int(c) for c in str(n).zfill(width)[::-1]]


def column_addition(a, b):
    """Add a + b column by column, ones first, carrying: the scratchpad a small model can follow.

    Each column adds two digits and the carry (always written, 0 or 1), writes the ones digit and
    carries the tens digit.

    >>> print("\\n".join(column_addition(347, 285)))
    ones: 7 + 5 + 0 = 12, write 2, carry 1.
    tens: 4 + 8 + 1 = 13, write 3, carry 1.
    hundreds: 3 + 2 + 1 = 6, write 6, carry 0.
    So 347 + 285 = 632.
    >>> column_addition(95, 8)[-2:]
    ['last carry: write 1.', 'So 95 + 8 = 103.']
    """
    width = max(len(str(a)), len(str(b)))
    lines, carry = [], 0
    for i, (x, y) in enumerate(zip(_digits(a, width), _digits(b, width))):
        total = x + y + carry
        lines.append(f"{_place(i)}: {x} + {y} + {carry} = {total}, write {total % 10}, carry {total // 10}.")
        carry = total // 10
    if carry:
        lines.append(f"last carry: write {carry}.")
    return lines + [f"So {a} + {b} = {a + b}."]


def column_subtraction(a, b):
    """Subtract a - b (a >= b) column by column, ones first, borrowing.

    When the top digit is too small, borrow 10 from the next column (and take 1 more there).

    >>> print("\\n".join(column_subtraction(532, 285)))
    ones: 2 < 5 + 0, borrow 10: 12 - 5 - 0 = 7, write 7, borrow 1.
    tens: 3 < 8 + 1, borrow 10: 13 - 8 - 1 = 4, write 4, borrow 1.
    hundreds: 5 - 2 - 1 = 2, write 2, borrow 0.
    So 532 - 285 = 247.
    """
    if a < b:
        raise ValueError(f"column_subtraction needs a >= b, got {a} - {b}")
    width = len(str(a))
    lines, borrow = [], 0
    for i, (x, y) in enumerate(zip(_digits(a, width), _digits(b, width))):
        if x < y + borrow:
            lines.append(f"{_place(i)}: {x} < {y} + {borrow}, borrow 10: "
                         f"{x + 10} - {y} - {borrow} = {x + 10 - y - borrow}, write {x + 10 - y - borrow}, borrow 1.")
            borrow = 1
        else:
            lines.append(f"{_place(i)}: {x} - {y} - {borrow} = {x - y - borrow}, write {x - y - borrow}, borrow 0.")
            borrow = 0
    return lines + [f"So {a} - {b} = {a - b}."]


def column_multiplication(a, b):
    """Multiply a * b. A one-digit b: column by column with carries. A longer b: one partial product
    per digit of b (each worked the same way), then column additions of the partial products.

    >>> print("\\n".join(column_multiplication(347, 6)))
    ones: 7 * 6 + 0 = 42, write 2, carry 4.
    tens: 4 * 6 + 4 = 28, write 8, carry 2.
    hundreds: 3 * 6 + 2 = 20, write 0, carry 2.
    last carry: write 2.
    So 347 * 6 = 2082.
    """
    if b < 10:
        lines, carry = [], 0
        for i, x in enumerate(_digits(a, len(str(a)))):
            total = x * b + carry
            lines.append(f"{_place(i)}: {x} * {b} + {carry} = {total}, write {total % 10}, carry {total // 10}.")
            carry = total // 10
        if carry:
            lines.append(f"last carry: write {carry}.")
        return lines + [f"So {a} * {b} = {a * b}."]
    lines, partials = [], []
    for i, digit in enumerate(_digits(b, len(str(b)))):
        if digit == 0:
            continue
        lines += column_multiplication(a, digit)[:-1] if a >= 10 else []
        shifted = a * digit * 10**i
        lines.append(f"{a} * {digit} = {a * digit}, so {a} * {digit * 10**i} = {shifted}." if i
                     else f"{a} * {digit} = {a * digit}.")
        partials.append(shifted)
    total = partials[0]
    for p in partials[1:]:
        lines += column_addition(total, p)
        total += p
    return lines + [f"So {a} * {b} = {a * b}."]


def long_division(a, b):
    """Divide a / b exactly (b one digit, b divides a), digit by digit from the left.

    >>> print("\\n".join(long_division(936, 4)))
    hundreds: take 9; 2 * 4 = 8 fits, 9 - 8 = 1 left, write 2.
    tens: take 13; 3 * 4 = 12 fits, 13 - 12 = 1 left, write 3.
    ones: take 16; 4 * 4 = 16 fits, 16 - 16 = 0 left, write 4.
    So 936 / 4 = 234.
    """
    if not 1 <= b <= 9 or a % b:
        raise ValueError(f"long_division needs a one-digit divisor that divides exactly, got {a} / {b}")
    lines, rest = [], 0
    digits = str(a)
    for i, c in enumerate(digits):
        part = rest * 10 + int(c)
        q = part // b
        rest = part - q * b
        lines.append(f"{_place(len(digits) - 1 - i)}: take {part}; {q} * {b} = {q * b} fits, "
                     f"{part} - {q * b} = {rest} left, write {q}.")
    return lines + [f"So {a} / {b} = {a // b}."]


def scratchpad(a, op, b):
    """The digit-by-digit work for `a op b` (lines, the last one "So a op b = c."), or [] for a basic
    fact, which a model simply remembers."""
    if is_basic(a, b):
        return []
    if op == "*" and a < 10 <= b:       # 7 * 45: put the long number on top, as on paper
        a, b = b, a
    return {"+": column_addition, "-": column_subtraction, "*": column_multiplication,
            "/": long_division}[op](a, b)


def apply(a, op, b):
    """The value of a op b for + - * and exact /: apply(84, "/", 7) -> 12."""
    return a // b if op == "/" else {"+": a + b, "-": a - b, "*": a * b}[op]


def is_basic(*numbers):
    """A basic fact uses only numbers <= BASIC_LIMIT: 7 + 5, 14 - 8, 6 * 7. Basic facts are the
    building blocks of every scratchpad, so they are always training material, never held out."""
    return all(n <= BASIC_LIMIT for n in numbers)


def equation_key(expression):
    """The content key of an equation's left side: "eq:" + the expression, operands of a pure sum or
    product sorted (347 + 285 and 285 + 347 are the same fact), or None for a basic fact.

    >>> equation_key("347 + 285"), equation_key("7 * 6 + 4"), equation_key("532 - 285")
    ('eq:285+347', None, 'eq:532-285')
    """
    tokens = expression.split()
    numbers = [int(t) for t in tokens[::2]]
    if is_basic(*numbers):
        return None
    ops = set(tokens[1::2])
    if ops in ({"+"}, {"*"}):
        return "eq:" + next(iter(ops)).join(str(n) for n in sorted(numbers))
    return "eq:" + "".join(tokens)


def equations(text):
    """Every equation written in `text`, as (left side, right side): [("7 + 5 + 0", "12"), ...]."""
    return EQUATION.findall(text)


def is_training_safe(text):
    """True if no equation in `text` belongs to the held-out split (basic facts always pass)."""
    for left, _ in equations(text):
        key = equation_key(left)
        if key is not None and split_of(key) == "heldout":
            return False
    return True
