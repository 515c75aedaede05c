"""The decontamination report: for each evaluation item, the longest run of words it shares with the
training text (GPT-3's 13-gram check, chapter 03's world/decontamination.py, made into a number).

    index = NgramIndex(training_texts)          # every n-gram of words, n = 1 .. MAX_N, hashed
    index.longest_shared("Mia has 12 apples.")  # -> 4 if "mia has 12 apples" occurs in training text

An item that shares 13 words in a row (or, if shorter, all of its words) with the training text would
be contaminated: the model could have memorized it. The world's splits are built so that none does;
the report shows the longest overlap per task, so you can see how close each task comes. Short overlaps
are expected and harmless: "How many apples does" is a template every problem shares.
"""
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for chapter in ["03_pretrain"]:  # the earlier chapter this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from world import NGRAM, words  # noqa: E402  (chapter 03: the same word rule as the 13-gram check)

MAX_N = 24  # longer shared runs are reported as MAX_N
_PRIME = np.uint64(1_000_003)


def rolling_hashes(ids, max_n):
    """Yield (n, hashes of every n-gram of `ids`) for n = 1 .. max_n: polynomial hashes mod 2^64,
    h_n[i] = h_{n-1}[i] * P + ids[i + n - 1], so each length costs one pass over the array."""
    ids = ids.astype(np.uint64)
    h = np.zeros(len(ids), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for n in range(1, min(max_n, len(ids)) + 1):
            h = h[:len(ids) - n + 1] * _PRIME + ids[n - 1:]
            yield n, h


class NgramIndex:
    """The hashed n-grams (n = 1 .. max_n) of the words of many texts, one sorted array per n (for
    np.searchsorted; duplicates do no harm, and np.unique is 10x slower here). Texts are
    joined with a separator word (id 0) that no text contains, so no n-gram spans two texts."""

    def __init__(self, texts, max_n=MAX_N):
        self.max_n = max_n
        self.vocab = {}
        stream = []
        for text in texts:
            stream += [self.vocab.setdefault(w, len(self.vocab) + 1) for w in words(text)]
            stream.append(0)
        self.sets = {n: np.sort(h) for n, h in rolling_hashes(np.array(stream, dtype=np.int64), max_n)}

    def longest_shared(self, text):
        """The length of the longest run of words of `text` that occurs in the training text (at most max_n).
        A shared run of n words contains shared runs of every shorter length, so grow n until none is.
        A word the training text never uses (id 0 here) ends any run."""
        ids = np.array([self.vocab.get(x, 0) for x in words(text)], dtype=np.int64)
        unknown = np.concatenate([[0], np.cumsum(ids == 0)])  # unknown words before each position
        best = 0
        for n, h in rolling_hashes(ids, self.max_n):
            clean = unknown[n:] - unknown[:-n] == 0  # (len - n + 1,): the n-gram has no unknown word
            table = self.sets[n]
            found = table[np.clip(np.searchsorted(table, h), 0, len(table) - 1)] == h
            if not (found & clean).any():
                break
            best = n
        return best


def contamination_report(index, items_by_task, text_of):
    """{task: {"items", "max", "mean", "contaminated"}}: the longest shared n-gram per item, summarized.

    An item counts as contaminated when it shares NGRAM (13) words in a row, or all of its words when it
    is shorter than that (GPT-3's rule)."""
    report = {}
    for task, items in items_by_task.items():
        longest = [index.longest_shared(text_of(task, item)) for item in items]
        lengths = [len(words(text_of(task, item))) for item in items]
        contaminated = sum(n >= min(NGRAM, length) for n, length in zip(longest, lengths))
        report[task] = {"items": len(items), "max": max(longest, default=0),
                        "mean": float(np.mean(longest)) if longest else 0.0, "contaminated": int(contaminated),
                        "longest": longest}
    return report
