"""Multi-step word problems about the world's people: count, shop and together.
"""
import random

from .knowledge import _person_words
from .naming import plural
from .problems import STYLES, Problem, Step, _number, solution
from .scratchpads import is_training_safe
from .splits import check_split, phrasing, split_of, _rng, _sample


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
    split="heldout" tells a held-out problem in the training wording (WORDINGS["train"]): the skill,
    on numbers never seen. split="ood" tells it in the held-out wording (WORDINGS["ood"]), which training
    text never uses, so it shares no 13 words in a row with any training text (tests check both). The
    same seed gives the same problem (key, answer, names) for "heldout" and "ood", in the two wordings.

    Example (world 0): word_problem(world, random.Random(34), n_steps=2, digits=2, family="count")
        -> Problem(question="Lily has 13 wobrovels. She gives 7 to Clara. Then she buys 8 more. How
                   many wobrovels does Lily have in the end?", answer=14, key="word:count:13|-7|+8", ...)
    """
    check_split(split)
    if n_steps < 1 or digits < 1:
        raise ValueError(f"word_problem needs n_steps >= 1 and digits >= 1, got {n_steps} and {digits}")
    rng = _rng(rng)
    make = {"count": _count_problem, "shop": _shop_problem, "together": _together_problem}

    def attempt():
        maker = make[family or rng.choice(FAMILIES)]
        state = rng.getstate()
        problem = maker(world, rng, n_steps, digits, WORDINGS["train"])
        if problem.split == "heldout" and phrasing(split) == "ood":   # the same draws, in the held-out wording
            again = random.Random()
            again.setstate(state)
            problem = maker(world, again, n_steps, digits, WORDINGS["ood"])
        elif problem.split == "train" and not all(is_training_safe(solution(problem, s)) for s in STYLES[1:]):
            return None
        return problem
    return _sample(attempt, split, "word problem")


# Every sentence a word problem is told in, in two wordings: "train" (training text, and held-out problems
# of split "heldout") and "ood" (held-out problems of split "ood" only, never in training text), with
# lists of the same length so both draw the same random numbers.
# Fields: {p} the person, {f} a friend, {n} {k} {m} {d} numbers, {items}, {She} {she} {Her} {her} {him}.
WORDINGS = {
    "train": {
        "start": ["{p} has {n} {items}.", "{p} starts the day with {n} {items}.", "{p} has a box with {n} {items} in it."],
        "opening": "{p} starts with {n} {items}.",
        "give": ("{She} gives {k} to {f}.", "{She} gives {k} to {f}"),
        "lose": ("{She} loses {k} on the way home.", "{She} loses {k}"),
        "buy": ("Then {she} buys {k} more.", "{She} buys {k} more"),
        "receive": ("{f} gives {him} {k} {items}.", "{f} gives {him} {k}"),
        "has": "so {she} has {{eq}} {items}",
        "bags": ("{She} buys {m} bags with {k} {items} in each bag.", "{She} buys {m} bags of {k}", "that is {{eq}} {items}"),
        "double": ("{Her} grandma gives {him} as many {items} as {she} already has.", "{Her} {items} double"),
        "split": ("{She} puts {her} {items} into {d} equal groups and keeps one group.",
                  "{She} keeps one of {d} equal groups"),
        "ask": ["How many {items} does {p} have now?", "How many {items} does {p} have in the end?"],
        "goods": "{n} {items} for {k} coins each",
        "shop": "At the market in {town}, {p} buys {what}. {She} pays with {m} coins. How many coins does {she} get back?",
        "cost": "{n} {items} cost {{eq}} coins", "sum": "together that is {{eq}} coins",
        "pays": "{She} pays {m} coins", "change": "so {she} gets back {{eq}} coins",
        "together": "{p} has {n} {items}. {f} has {k} {relation} {items} than {p}. "
                    "How many {items} do {p} and {f} have together?",
        "friend_has": "{f} has {{eq}} {items}", "both": "together they have {{eq}} {items}",
        "together_opening": "{p} has {n} {items}.",
    },
    "ood": {
        "start": ["{p} owns {n} {items}.", "In the morning, {p} holds exactly {n} {items}.", "{p} keeps {n} {items} in a tin."],
        "opening": "At first {p} owns {n} {items}.",
        "give": ("Next, {p} hands {k} over to {f}.", "{She} hands {k} over to {f}"),
        "lose": ("Sadly, {she} drops {k} and never finds them.", "{She} drops {k}"),
        "buy": ("After that {she} gets {k} extra at a shop.", "{She} gets {k} extra"),
        "receive": ("{f} sends {him} another {k} {items}.", "{f} sends {him} {k}"),
        "has": "leaving {him} with {{eq}} {items}",
        "bags": ("{She} picks up {m} packs holding {k} {items} apiece.", "{She} picks up {m} packs of {k}",
                 "which makes {{eq}} {items}"),
        "double": ("An uncle hands {him} one more for every one {she} owns.", "{Her} pile doubles"),
        "split": ("{She} sorts {her} {items} into {d} fair piles and keeps a single pile.",
                  "{She} keeps one pile out of {d}"),
        "ask": ["What number of {items} does {p} own at the finish?", "Counting at the finish, how many {items} does {p} own?"],
        "goods": "{n} {items} at {k} coins apiece",
        "shop": "{p} goes shopping in {town} and picks {what}. {She} hands the seller {m} coins. "
                "What change should {she} receive?",
        "cost": "{n} {items} come to {{eq}} coins", "sum": "the bill is {{eq}} coins",
        "pays": "{She} hands over {m} coins", "change": "and receives {{eq}} coins in change",
        "together": "{p} collected {n} {items}. {f} collected {k} {relation} than {p} did. "
                    "What is the total number of {items} the two of them collected?",
        "friend_has": "{f} collected {{eq}} {items}", "both": "the two of them collected {{eq}} {items}",
        "together_opening": "{p} collected {n} {items}.",
    },
}


def _count_problem(world, rng, n_steps, digits, wording):
    person, friend = rng.sample(world.names["person"], 2)
    w = _person_words(world, person)
    items = rng.choice(ITEMS + [plural(o) for o in world.names["object"]])
    start = current = _number(rng, digits)
    say = lambda template, **more: template.format(p=person, f=friend, items=items, **w, **more)
    question = [say(rng.choice(wording["start"]), n=current)]
    opening = say(wording["opening"], n=current)
    has = say(wording["has"])
    steps, ops = [], []
    for _ in range(n_steps):
        kinds = ["give", "lose", "buy", "receive", "bags", "double"] if current > 1 else ["buy", "receive", "bags"]
        divisors = [d for d in range(2, 6) if current % d == 0 and current // d > 1]
        kinds += ["split"] if divisors else []
        kind = rng.choice(kinds)
        if kind in ("give", "lose"):
            k = rng.randrange(1, current)      # never all of them: the count stays positive
            question.append(say(wording[kind][0], k=k))
            steps.append(Step(current, "-", k, current - k, say(wording[kind][1], k=k), has))
            ops.append(f"-{k}")
            current -= k
        elif kind in ("buy", "receive"):
            k = _number(rng, rng.randrange(1, digits + 1))
            question.append(say(wording[kind][0], k=k))
            steps.append(Step(current, "+", k, current + k, say(wording[kind][1], k=k), has))
            ops.append(f"+{k}")
            current += k
        elif kind == "bags":
            m, k = rng.randrange(2, 6), rng.randrange(2, 11)
            question.append(say(wording["bags"][0], m=m, k=k))
            steps.append(Step(m, "*", k, m * k, say(wording["bags"][1], m=m, k=k), say(wording["bags"][2])))
            steps.append(Step(current, "+", m * k, current + m * k, "", has))
            ops.append(f"+{m}*{k}")
            current += m * k
        elif kind == "double":
            question.append(say(wording["double"][0]))
            steps.append(Step(current, "*", 2, current * 2, say(wording["double"][1]), has))
            ops.append("*2")
            current *= 2
        else:
            d = rng.choice(divisors)
            question.append(say(wording["split"][0], d=d))
            steps.append(Step(current, "/", d, current // d, say(wording["split"][1], d=d), has))
            ops.append(f"/{d}")
            current //= d
    question.append(say(rng.choice(wording["ask"])))
    key = f"word:count:{start}|" + "|".join(ops)
    return Problem("word", " ".join(question), tuple(steps), current, key, split_of(key), opening, digits)


def _shop_problem(world, rng, n_steps, digits, wording):
    person = rng.choice(world.names["person"])
    w = _person_words(world, person)
    town = world.get(person, "home")
    goods = rng.sample(ITEMS, n_steps)
    buys = [(rng.randrange(2, 10), _number(rng, max(1, digits - 1)), g) for g in goods]
    lists = [wording["goods"].format(n=n, k=price, items=g) for n, price, g in buys]
    what = lists[0] if len(lists) == 1 else ", ".join(lists[:-1]) + " and " + lists[-1]
    steps, totals = [], []
    for n, price, g in buys:
        steps.append(Step(n, "*", price, n * price, "", wording["cost"].format(n=n, items=g)))
        totals.append(n * price)
    cost = totals[0]
    for t in totals[1:]:
        steps.append(Step(cost, "+", t, cost + t, "", wording["sum"].format()))
        cost += t
    unit = 10 ** max(1, len(str(cost)) - 1)
    pay = (cost // unit + rng.randrange(1, 4)) * unit
    steps.append(Step(pay, "-", cost, pay - cost, wording["pays"].format(m=pay, **w), wording["change"].format(**w)))
    question = wording["shop"].format(p=person, town=town, what=what, m=pay, **w)
    key = "word:shop:" + "+".join(f"{n}*{price}" for n, price, _ in buys) + f"|pay{pay}"
    return Problem("word", question, tuple(steps), pay - cost, key, split_of(key), "", digits)


def _together_problem(world, rng, n_steps, digits, wording):
    person, friend = rng.sample(world.names["person"], 2)
    items = rng.choice(ITEMS)
    a = _number(rng, digits)
    more = rng.random() < 0.5 or a < 3
    k = _number(rng, rng.randrange(1, digits + 1)) if more else rng.randrange(1, a)
    b = a + k if more else a - k
    relation = "more" if more else "fewer"
    say = lambda template: template.format(p=person, f=friend, n=a, k=k, items=items, relation=relation)
    steps = (Step(a, "+" if more else "-", k, b, "", say(wording["friend_has"])),
             Step(a, "+", b, a + b, "", say(wording["both"])))
    key = f"word:together:{a}|{'+' if more else '-'}{k}"
    return Problem("word", say(wording["together"]), steps, a + b, key, split_of(key),
                   say(wording["together_opening"]), digits)
