"""Multi-step word problems about the world's people: count, shop and together.
"""
from .knowledge import _person_words
from .naming import plural
from .problems import STYLES, Problem, Step, _number, solution
from .scratchpads import is_training_safe
from .splits import _rng, _sample, split_of


ITEMS = ["apples", "marbles", "stickers", "shells", "coins", "pencils", "cookies", "stamps", "buttons",
         "flowers", "books", "eggs", "plums", "beads", "cards", "stones", "feathers", "kites"]
FAMILIES = ("count", "shop", "together")

def word_problem(world, rng, n_steps=2, digits=2, family=None, split="train"):
    """A multi-step word problem about the world's people, with its solution steps as data.

    family "count" (someone's collection changes `n_steps` times: gives, loses, buys, receives,
    buys bags of, doubles, splits), "shop" (`n_steps` kinds of goods bought, then change from a
    payment), "together" (two people's totals, always two steps); None picks one. `digits` sets the size of the
    numbers (the starting amount has exactly that many digits).

    The split is decided by the math alone (the key "word:count:12|-5|+7"; names and items do not
    count), and a "train" problem is drawn again until no equation in any of its solutions is a
    held-out equation, so no held-out arithmetic leaks into training text through a word problem.

    Example (world 0): word_problem(world, random.Random(34), n_steps=2, digits=2, family="count")
        -> Problem(question="Lily has 13 wobrovels. She gives 7 to Clara. Then she buys 8 more. How
                   many wobrovels does Lily have in the end?", answer=14, key="word:count:13|-7|+8", ...)
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if n_steps < 1 or digits < 1:
        raise ValueError(f"word_problem needs n_steps >= 1 and digits >= 1, got {n_steps} and {digits}")
    rng = _rng(rng)
    make = {"count": _count_problem, "shop": _shop_problem, "together": _together_problem}

    def attempt():
        problem = make[family or rng.choice(FAMILIES)](world, rng, n_steps, digits)
        if problem.split == "train" and not all(is_training_safe(solution(problem, s)) for s in STYLES[1:]):
            return None
        return problem
    return _sample(attempt, split, "word problem")


def _count_problem(world, rng, n_steps, digits):
    person, friend = rng.sample(world.names["person"], 2)
    w = _person_words(world, person)
    items = rng.choice(ITEMS + [plural(o) for o in world.names["object"]])
    start = current = _number(rng, digits)
    question = [rng.choice([f"{person} has {current} {items}.", f"{person} starts the day with {current} {items}.",
                            f"{person} has a box with {current} {items} in it."])]
    opening = f"{person} starts with {current} {items}."
    steps, ops = [], []
    for _ in range(n_steps):
        kinds = ["give", "lose", "buy", "receive", "bags", "double"] if current > 1 else ["buy", "receive", "bags"]
        divisors = [d for d in range(2, 6) if current % d == 0 and current // d > 1]
        kinds += ["split"] if divisors else []
        kind = rng.choice(kinds)
        if kind in ("give", "lose"):
            k = rng.randrange(1, current)      # never all of them: the count stays positive
            text = {"give": (f"{w['She']} gives {k} to {friend}.", f"{w['She']} gives {k} to {friend}"),
                    "lose": (f"{w['She']} loses {k} on the way home.", f"{w['She']} loses {k}")}[kind]
            question.append(text[0])
            steps.append(Step(current, "-", k, current - k, text[1], f"so {w['she']} has {{eq}} {items}"))
            ops.append(f"-{k}")
            current -= k
        elif kind in ("buy", "receive"):
            k = _number(rng, rng.randrange(1, digits + 1))
            text = {"buy": (f"Then {w['she']} buys {k} more.", f"{w['She']} buys {k} more"),
                    "receive": (f"{friend} gives {w['him']} {k} {items}.", f"{friend} gives {w['him']} {k}")}[kind]
            question.append(text[0])
            steps.append(Step(current, "+", k, current + k, text[1], f"so {w['she']} has {{eq}} {items}"))
            ops.append(f"+{k}")
            current += k
        elif kind == "bags":
            m, k = rng.randrange(2, 6), rng.randrange(2, 11)
            question.append(f"{w['She']} buys {m} bags with {k} {items} in each bag.")
            steps.append(Step(m, "*", k, m * k, f"{w['She']} buys {m} bags of {k}", f"that is {{eq}} {items}"))
            steps.append(Step(current, "+", m * k, current + m * k, "", f"so {w['she']} has {{eq}} {items}"))
            ops.append(f"+{m}*{k}")
            current += m * k
        elif kind == "double":
            question.append(f"{w['Her']} grandma gives {w['him']} as many {items} as {w['she']} already has.")
            steps.append(Step(current, "*", 2, current * 2, f"{w['Her']} {items} double",
                              f"so {w['she']} has {{eq}} {items}"))
            ops.append("*2")
            current *= 2
        else:
            d = rng.choice(divisors)
            question.append(f"{w['She']} puts {w['her']} {items} into {d} equal groups and keeps one group.")
            steps.append(Step(current, "/", d, current // d, f"{w['She']} keeps one of {d} equal groups",
                              f"so {w['she']} has {{eq}} {items}"))
            ops.append(f"/{d}")
            current //= d
    question.append(rng.choice([f"How many {items} does {person} have now?",
                                f"How many {items} does {person} have in the end?"]))
    key = f"word:count:{start}|" + "|".join(ops)
    return Problem("word", " ".join(question), tuple(steps), current, key, split_of(key), opening, digits)


def _shop_problem(world, rng, n_steps, digits):
    person = rng.choice(world.names["person"])
    w = _person_words(world, person)
    town = world.get(person, "home")
    goods = rng.sample(ITEMS, n_steps)
    buys = [(rng.randrange(2, 10), _number(rng, max(1, digits - 1)), g) for g in goods]
    lists = [f"{n} {g} for {price} coins each" for n, price, g in buys]
    what = lists[0] if len(lists) == 1 else ", ".join(lists[:-1]) + " and " + lists[-1]
    steps, totals = [], []
    for n, price, g in buys:
        steps.append(Step(n, "*", price, n * price, "", f"{n} {g} cost {{eq}} coins"))
        totals.append(n * price)
    cost = totals[0]
    for t in totals[1:]:
        steps.append(Step(cost, "+", t, cost + t, "", "together that is {eq} coins"))
        cost += t
    unit = 10 ** max(1, len(str(cost)) - 1)
    pay = (cost // unit + rng.randrange(1, 4)) * unit
    steps.append(Step(pay, "-", cost, pay - cost, f"{w['She']} pays {pay} coins",
                      f"so {w['she']} gets back {{eq}} coins"))
    question = (f"At the market in {town}, {person} buys {what}. {w['She']} pays with {pay} coins. "
                f"How many coins does {w['she']} get back?")
    key = "word:shop:" + "+".join(f"{n}*{price}" for n, price, _ in buys) + f"|pay{pay}"
    return Problem("word", question, tuple(steps), pay - cost, key, split_of(key), "", digits)


def _together_problem(world, rng, n_steps, digits):
    person, friend = rng.sample(world.names["person"], 2)
    items = rng.choice(ITEMS)
    a = _number(rng, digits)
    more = rng.random() < 0.5 or a < 3
    k = _number(rng, rng.randrange(1, digits + 1)) if more else rng.randrange(1, a)
    b = a + k if more else a - k
    relation = "more" if more else "fewer"
    steps = (Step(a, "+" if more else "-", k, b, "", f"{friend} has {{eq}} {items}"),
             Step(a, "+", b, a + b, "", f"together they have {{eq}} {items}"))
    question = (f"{person} has {a} {items}. {friend} has {k} {relation} {items} than {person}. "
                f"How many {items} do {person} and {friend} have together?")
    key = f"word:together:{a}|{'+' if more else '-'}{k}"
    return Problem("word", question, steps, a + b, key, split_of(key), f"{person} has {a} {items}.", digits)
