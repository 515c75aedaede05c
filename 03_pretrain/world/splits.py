"""The split rule: a record's CONTENT decides whether it is "train" or "heldout", never the seed.

Every generator of the world that yields evaluation items draws its records through split_of, so a
held-out record is held out whatever generator or seed makes it.
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
