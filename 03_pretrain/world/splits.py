"""The split rule: what is held out, and how each kind of held-out item is kept out of training.

A record's CONTENT decides whether it is held out, never the seed that made it (split_of: a hash of a
content key), so a held-out record is held out whatever generator or seed makes it. Training text means
everything a model is trained on: the pretraining corpus (chapter 03) and every conversation of
chapters 04-05.

Every generator of items takes `split`, one of three (SPLITS), which says two things: which instances
it draws, and in which phrasing it tells them:

    split       instance (split_of)   phrasing                         measures
    "train"     training              a training phrasing              what the model memorised
    "heldout"   held out              a training phrasing              whether it learned the skill
    "ood"       held out              a held-out phrasing (or plot)    whether it is robust to new phrasing

    word_problem(world, rng, split="heldout")   a held-out problem (key) told in a training wording
    word_problem(world, rng, split="ood")       the same draws told in the held-out wording (WORDINGS["ood"]):
                                                with equal seeds both give the same problem, in two wordings
    arithmetic_chat(rng, "heldout")             a held-out equation in a training chat form ("What is ...?")
    arithmetic_expression(rng, split="ood")     a held-out expression asked in a held-out form ("How much is ...?")
    phrase_question(q, "heldout", rng)          a question in a training framing (q about a held-out fact)
    user_requests(world, n, split="heldout")    held-out intents and objects in training framings

instance_split(split) ("train" or "heldout") is what a record's `.split` says (the content split), and
phrasing(split) ("train" or "ood") says which dict of wordings a generator tells it in: every table of
phrasings (WORDINGS, QUESTION_FRAMINGS, ARITHMETIC_FORMS, FRAMINGS) has the keys "train" and "ood".
Kinds without a phrasing of their own (stories: a held-out story IS a held-out plot; descriptions,
probes, code tasks, dialogues) give the same held-out items for "heldout" and "ood".

The rules, one per kind of held-out item (tests/test_03_pretrain.py and tests/test_04_sft.py check each):

    facts            Fact.split, by the fact ("person.home|Sam"; a capital's country fact shares the
                     capital fact's key, since each states the other). A held-out fact is STATED in
                     the pretraining corpus (paragraphs, stories, dialogues) but never ASKED there,
                     and no assistant turn of a training conversation states it: replying with it
                     to a user is answering it. describe(..., split="train") is the form for replies.
    equations        equation_key, by the numbers (285 + 347 = 347 + 285). A held-out equation is
                     never written in training text, not even as a step of a scratchpad; basic facts
                     (all numbers <= 20) are always train.
    problems         Problem.key, by the math ("word:count:13|-7|+8"; names and items do not count).
                     A held-out problem (its key, its question) is never in training text. "heldout"
                     tells it in a training wording; "ood" in the held-out wording
                     (word_problems.WORDINGS["ood"]), which shares no 13 words in a row with training text.
    expressions      by the expression ("expr:12+7*3-4"); a held-out expression is never in training
                     text, and the steps of a training one are never held-out equations.
    descriptions     by the entity's name ("describe:Sam"); a training description states only
                     training facts (the facts rule above), a held-out one is graded on all of them.
    dialogues        a held-out dialogue (dialogue_item) asks a held-out fact or problem.
    stories          held-out stories come only from held-out plots, openings and endings
                     (stories._HELDOUT_ARCS), so none of their wording is in training text.
    requests         "heldout": a held-out intent or object (assistant_requests.HELDOUT_INTENTS, the last
                     object of each harmful action) in a training framing; "ood": always a held-out
                     framing (FRAMINGS["ood"]), and a part of them a held-out intent or object too.
                     Request.heldout_parts says which.
    code tasks       by the family and its parameter ("code:add|7"): a held-out task asks for a
                     function the model was never shown in that family (code_tasks.py).
    chat phrasings   "ood" world questions are asked in held-out framings and "ood" bare arithmetic
                     comes in held-out forms (chat_phrasings.py; chapter 04's chat data is the only
                     training text that uses any of these forms).
    probes           names of entities that do not exist: name_namespace splits them into world,
                     probe-train and probe-heldout names, so a held-out probe name is never seen.

Two kinds of decontamination check verify the rules on the real data (the default pretraining corpus
and the SFT training conversations at the default mix): instance-level for "heldout" (no held-out
problem key, equation, expression or question in training text, no held-out fact stated in an
assistant turn, no held-out intent's act or held-out object in a training prompt), and the 13-gram
check (decontamination.py, after GPT-3) for "ood" and for free text (stories, requests). Not checked by
a test: bigger mixes (--mix-scale; the small preset of 04_sft/sft.py uses 2; the generators are the
same, only the seeds' counts grow), and the worked scratchpads of held-out problems, which share digit
lines with training on purpose (that format is what is taught).
"""
import hashlib
import random

HELDOUT_FRACTION = 0.1         # share of problems, facts' questions and stories reserved for evaluation


def unit_hash(text):
    """A number in [0, 1) that depends only on `text` (sha256), the same on every machine.

    >>> round(unit_hash("eq:285+347"), 6)
    0.031441
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def split_of(key):
    """"train" or "heldout" for a record (its instance split), from a hash of its content key (e.g. "eq:285+347").

    The key names only what the record *is* (the numbers of a problem, the fact a question asks
    about, the text of a story), never the seed that produced it, so a record lands in the same split
    whatever generator or seed makes it, and held-out records can be excluded from training text.

    >>> split_of("eq:165+263"), split_of("eq:285+347")
    ('train', 'heldout')
    """
    return "heldout" if unit_hash(key) < HELDOUT_FRACTION else "train"


def name_namespace(name):
    """Which names may be real: "world" (80%), "probe-train" (10%) or "probe-heldout" (10%).

    World entities are drawn only from the "world" namespace and questions about entities that do not
    exist only from the probe namespaces, so the two can never meet, whatever the seed.

    >>> name_namespace("Dorvia")
    'world'
    """
    u = unit_hash("name:" + name.lower())
    return "world" if u < 0.8 else ("probe-train" if u < 0.9 else "probe-heldout")


SPLITS = ("train", "heldout", "ood")


def check_split(split, splits=SPLITS):
    """Raise ValueError unless `split` is one of `splits` (by default "train", "heldout" or "ood")."""
    if split not in splits:
        raise ValueError(f"split must be one of {', '.join(map(repr, splits))}, got {split!r}")


def instance_split(split):
    """The content split of the instances a generator of `split` draws: "train", or "heldout" for both
    held-out sets (a "heldout" and an "ood" item are both held-out instances; they differ in phrasing).

    >>> [instance_split(s) for s in SPLITS]
    ['train', 'heldout', 'heldout']
    """
    check_split(split)
    return "train" if split == "train" else "heldout"


def phrasing(split):
    """The phrasing a generator of `split` tells its item in: "train" (for "train" and "heldout") or "ood",
    the key into every table of wordings (WORDINGS, QUESTION_FRAMINGS, ARITHMETIC_FORMS, FRAMINGS).

    >>> [phrasing(s) for s in SPLITS]
    ['train', 'train', 'ood']
    """
    check_split(split)
    return "ood" if split == "ood" else "train"


def _rng(seed_or_rng):
    """Accept a random.Random or a seed (int or str): every generator below takes either."""
    return seed_or_rng if isinstance(seed_or_rng, random.Random) else random.Random(seed_or_rng)


def _sample(make, split, what):
    """Call make() until its record lands in instance_split(split) (rejection sampling on the content hash)."""
    want = instance_split(split)
    for _ in range(10_000):
        record = make()
        if record is not None and record.split == want:
            return record
    raise ValueError(f"could not draw a {split} {what} in 10000 tries: all such records are basic "
                     f"facts (always train), or the knobs leave too few distinct ones")
