"""Decontamination checks, in the spirit of GPT-3's 13-gram overlap test (Brown et al., 2020, app. C).

Two questions a held-out set must answer with "no":
- does a held-out item share a run of 13 words with any text the model trains on?
  TrainingText(texts).shares_ngram(item). An item shorter than 13 words is looked up whole (all its
  words in a row), as GPT-3 did for short items.
- does a training text STATE a held-out fact (a sentence naming the fact's subject, or a pronoun
  after the subject was named, together with the fact's value)? stated_facts(world, text).

The rules these checks enforce, kind by kind, are written once, in splits.py.
"""
import functools
import re

from .naming import plural

NGRAM = 13
_WORD = re.compile(r"[a-z0-9']+|[-+*/=]")     # words, numbers, and the signs of arithmetic
_PRONOUNS = {"person": re.compile(r"^(she|he|her|his)\b"),     # a pronoun can only refer to its kind
             "other": re.compile(r"^(it|its|they|their)\b")}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_UNITS = {("person", "age"): "{v} years old", ("town", "population"): "{v} people", ("animal", "legs"): "{v} legs"}
# A favourite food ("plums") is also a thing people count in word problems: it needs a word of eating.
_CUES = {("person", "food"): re.compile(r"\b(eat|eats|ate|food|bowl|lunch|loves|loved)\b")}


def words(text):
    """Lower-case words, numbers and arithmetic signs of `text`, punctuation dropped.

    >>> words("Sam's 2 cats! 7 + 5 = 12.")
    ["sam's", '2', 'cats', '7', '+', '5', '=', '12']
    """
    return _WORD.findall(text.lower())


def word_ngrams(text, n=NGRAM):
    """The set of hashed n-grams of words of `text` (none if it has fewer than n words).

    >>> len(word_ngrams("one two three four five six seven eight nine ten eleven twelve thirteen fourteen"))
    2
    """
    w = words(text)
    return {hash(tuple(w[i:i + n])) for i in range(len(w) - n + 1)}


class TrainingText:
    """Everything a model trains on, indexed for the 13-gram check.

        seen = TrainingText(corpus_documents + sft_messages)
        seen.shares_ngram("Mia has 12 apples ...")   # True if 13 words in a row occur in training text

    An item of fewer than 13 words is looked up whole (all its words in a row), as GPT-3 did for
    short items.
    """

    def __init__(self, texts, n=NGRAM):
        self.n = n
        self.ngrams = set()
        lines = []
        for text in texts:
            w = words(text)
            self.ngrams.update(hash(tuple(w[i:i + n])) for i in range(len(w) - n + 1))
            lines.append(" ".join(w))
        self.joined = " \n " + " \n ".join(lines) + " \n "     # for the whole-item look-up of short items

    def shares_ngram(self, text):
        w = words(text)
        if len(w) < self.n:
            return bool(w) and f" {' '.join(w)} " in self.joined
        return any(hash(tuple(w[i:i + self.n])) in self.ngrams for i in range(len(w) - self.n + 1))


@functools.lru_cache(maxsize=None)
def _value_pattern(fact):
    unit = _UNITS.get((fact.kind, fact.relation), "{v}")
    return re.compile(r"(?<![\w'])" + re.escape(unit.format(v=fact.value.lower())) + r"(?![\w'])")


@functools.lru_cache(maxsize=None)
def _subject_pattern(fact):
    forms = {fact.subject.lower(), plural(fact.subject).lower()}
    return re.compile(r"(?<![\w'])(" + "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)) + r")(?![\w])")


def stated_facts(world, text, facts=None):
    """The facts among `facts` (default: the world's held-out facts) that `text` states.

    A sentence states a fact if it contains the fact's value (with its unit for numbers: "34 years old",
    "8700 people", "6 legs") and names the fact's subject, or starts with a pronoun after the subject was
    named earlier in the text. Deliberately eager: a sentence that merely puts the two side by side
    counts, so a generator that avoids every match is safe. (When checking many texts, pass `facts`:
    the default recomputes the held-out facts on every call.)

    >>> import world
    >>> w = world.build_world(0)
    >>> stated_facts(w, "Sam has a cat. He lives in Trusholm.", [w.fact("Sam", "home")])
    [Fact(kind='person', subject='Sam', relation='home', value='Trusholm')]
    """
    facts = [f for f in world.facts if f.split == "heldout"] if facts is None else facts
    lower = text.lower()
    sentences = [s.strip() for s in _SENTENCE_END.split(lower) if s.strip()]
    found = []
    for fact in facts:
        if fact.subject.lower() not in lower:     # (fast path: the subject is never named)
            continue
        subject, value = _subject_pattern(fact), _value_pattern(fact)
        named = False
        for sentence in sentences:
            here = bool(subject.search(sentence))
            pronoun = _PRONOUNS["person" if fact.kind == "person" else "other"]
            cue = _CUES.get((fact.kind, fact.relation))
            if value.search(sentence) and (here or (named and pronoun.match(sentence))) and \
                    (cue is None or cue.search(sentence)):
                found.append(fact)
                break
            named = named or here
    return found
