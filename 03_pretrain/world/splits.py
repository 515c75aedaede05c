"""The split rule: what is held out, and how each kind of held-out item is kept out of training.

A record's CONTENT decides its split, never the seed that made it (split_of: a hash of a content key),
so a held-out record is held out whatever generator or seed makes it. Training text means everything
a model is trained on: the pretraining corpus (chapter 03) and every conversation of chapters 04-05.

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
                     A held-out problem is never in training text, and is told in held-out words
                     (word_problems.WORDINGS["heldout"]), so it shares no 13 words in a row with it.
    expressions      by the expression ("expr:12+7*3-4"); a held-out expression is never in training
                     text, and the steps of a training one are never held-out equations.
    descriptions     by the entity's name ("describe:Sam"); a training description states only
                     training facts (the facts rule above), a held-out one is graded on all of them.
    dialogues        a held-out dialogue (dialogue_item) asks a held-out fact or problem.
    stories          held-out stories come only from held-out plots, openings and endings
                     (stories._HELDOUT_ARCS), so none of their wording is in training text.
    requests         a held-out request is always in a held-out framing, and a part of them have a
                     held-out intent or object (assistant_requests.FRAMINGS["heldout"],
                     HELDOUT_INTENTS, the last object of each harmful action); Request.heldout_parts.
    code tasks       by the family and its parameter ("code:add|7"): a held-out task asks for a
                     function the model was never shown in that family (code_tasks.py).
    chat phrasings   a held-out world question is also asked in a held-out framing, and held-out bare
                     arithmetic is a held-out equation in a held-out form (chat_phrasings.py; chapter 04's
                     chat data is the only training text that uses any of these forms).
    probes           names of entities that do not exist: name_namespace splits them into world,
                     probe-train and probe-heldout names, so a held-out probe name is never seen.

The 13-gram check (decontamination.py, after GPT-3) and stated_facts verify the rules on the real data:
the default pretraining corpus and the SFT training conversations at the default mix, against the
held-out word problems, expressions, stories and requests (13-grams) and every held-out fact (stated
in an assistant turn). Not checked by a test: bigger mixes (--mix-scale; the small preset of
04_sft/sft.py uses 2; the generators are the same, only the seeds' counts grow), and the worked
scratchpads of held-out problems, which share digit lines with training on purpose (that format is what
is taught).
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
    """"train" or "heldout" for a record, from a hash of its content key (e.g. "eq:285+347").

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


def check_split(split):
    """Raise ValueError unless split is "train" or "heldout" (what every generator of items takes)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")


def _rng(seed_or_rng):
    """Accept a random.Random or a seed (int or str): every generator below takes either."""
    return seed_or_rng if isinstance(seed_or_rng, random.Random) else random.Random(seed_or_rng)


def _sample(make, split, what):
    """Call make() until its record lands in `split` (rejection sampling on the content hash)."""
    for _ in range(10_000):
        record = make()
        if record is not None and record.split == split:
            return record
    raise ValueError(f"could not draw a {split} {what} in 10000 tries: all such records are basic "
                     f"facts (always train), or the knobs leave too few distinct ones")
