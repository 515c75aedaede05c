"""The metrics of the harness, one small function per formula: perplexity and bits per byte, multiple
choice (acc and acc_norm), answer extraction (strict and flexible), majority vote, and pass@k.

    bits_per_byte(total_nll_nats=693.1, n_bytes=1000)          -> 1.0
    multiple_choice_scores([-4.0, -6.0], ["no", "a yes"])      -> (0, 1): acc picks option 0, acc_norm option 1
    strict_answer("so 3 + 4 = 7.\\nThe answer is 7.")           -> 7
    flexible_answer("I think 3 + 4 = 7, so 7 apples")          -> 7
    pass_at_k(n=10, c=3, k=1)                                   -> 0.3 (up to rounding)
"""
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from grading import _NUMBER, extract_answer, normalize_number  # noqa: E402  (chapter 04: the one answer extractor)

# ----------------------------------------------------------------------------------------------------
# Language modelling


def perplexity(total_nll_nats, n_tokens):
    """exp of the mean negative log-likelihood per token:  PPL = exp( -1/N * sum_t log p(x_t | x_<t) ).

    Only comparable between models that share a tokenizer: a tokenizer with longer tokens has fewer,
    harder predictions per text."""
    if n_tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    # --- student part: perplexity (lesson: "2. Perplexity and bits per byte") ---
    return math.exp(total_nll_nats / n_tokens)
    # --- end of student part ---


def bits_per_byte(total_nll_nats, n_bytes):
    """The same log-likelihood per byte of UTF-8 text, in bits:  BPB = -sum_t log2 p(x_t | x_<t) / n_bytes.

    The text's byte count does not depend on the tokenizer, so BPB compares any two models on the same
    text (GPT-2's 50k tokens, our 2k BPE, a byte-level model). sum log2 = sum ln / ln 2.

    >>> round(bits_per_byte(693.147, 1000), 3)
    1.0
    """
    if n_bytes <= 0:
        raise ValueError("bits_per_byte needs at least one byte of text")
    # --- student part: bits per byte (lesson: "2. Perplexity and bits per byte") ---
    return total_nll_nats / (math.log(2) * n_bytes)
    # --- end of student part ---


# ----------------------------------------------------------------------------------------------------
# Multiple choice, as lm-evaluation-harness scores it


def multiple_choice_scores(option_logprobs, options):
    """The option each rule picks -> (acc_choice, acc_norm_choice), indices into `options`.

    option_logprobs[i] = log p(option_i | question) = sum of the option's token log-probs.
        acc:       argmax_i  log p(option_i | question)
        acc_norm:  argmax_i  log p(option_i | question) / len(option_i in UTF-8 bytes)
    A long option is a product of many probabilities, so plain acc is biased towards short options;
    acc_norm divides by the length (in bytes, so it does not depend on the tokenizer).

    >>> multiple_choice_scores([-4.0, -6.0], ["no", "a yes"])   # -4/2 = -2.0 < -6/5 = -1.2
    (0, 1)
    """
    if len(option_logprobs) != len(options) or not options:
        raise ValueError("give one log-prob per option, and at least one option")
    # --- student part: acc and acc_norm (lesson: "3. Multiple choice: acc, acc_norm, and the letter") ---
    lengths = [max(1, len(o.encode("utf-8"))) for o in options]
    acc = int(np.argmax(option_logprobs))
    acc_norm = int(np.argmax([lp / n for lp, n in zip(option_logprobs, lengths)]))
    return acc, acc_norm
    # --- end of student part ---


def letter_choice(reply, n_options=4):
    """The option a generated reply picks by letter ("B", "(b)", "The answer is C.") -> index, or None.

    The first standalone letter among A.. (one per option) counts. "A" alone is also an English word:
    it counts only when it is the whole reply's first token or is followed by ".", ")" or ":".

    >>> letter_choice("B"), letter_choice("The answer is (c)."), letter_choice("A kalar is a pet.")
    (1, 2, None)
    """
    for match in re.finditer(r"(?<![A-Za-z'])\(?([A-Ha-h])\)?(?![A-Za-z'])", reply):
        letter = match.group(1)
        if letter in "aA" and not match.group(0).startswith("(") and re.match(r" [a-z]", reply[match.end():]):
            continue  # "a" / "A" the article: "A kalar is a pet."
        index = "abcdefgh".index(letter.lower())
        if index < n_options:
            return index
    return None


# ----------------------------------------------------------------------------------------------------
# Math answers, as GSM8K is scored

def strict_answer(reply):
    """The number after the LAST "The answer is" (the format the training replies end with), or None: chapter
    04's extract_answer, the one extractor every chapter grades with (it forgives case, ":", "$", thousands
    commas and "7.0"; see its docstring).

    Strict scoring rewards the format as much as the math: a right number said any other way is wrong.

    >>> strict_answer("13 - 7 = 6.\\nThe answer is 6."), strict_answer("It is 6.")
    (6, None)
    """
    return extract_answer(reply)


def flexible_answer(reply):
    """The LAST number anywhere in the reply, or None (lm-eval's flexible-extract for GSM8K).

    >>> flexible_answer("She has 6 left, so 6 + 8 = 14 apples."), flexible_answer("no idea")
    (14, None)
    """
    found = _NUMBER.findall(reply)
    return normalize_number(found[-1]) if found else None


def first_answer(reply):
    """The FIRST number of the reply, or None: the answer of a reply made to start with it (the chain of
    thought's "answer at once"), before any steps a model may go on to write after it.

    >>> first_answer(" 4 eggs.\\nShe loses 2, so 4 - 2 = 2 eggs.\\nThe answer is 2."), first_answer(" no")
    (4, None)
    """
    found = _NUMBER.findall(reply)
    return normalize_number(found[0]) if found else None


def majority_vote(answers):
    """Self-consistency (Wang et al., 2023): the most common answer among k sampled chains, None
    answers ignored; ties go to the answer seen first. None if no chain gave an answer.

    >>> majority_vote([7, None, 5, 7, 5, 9])
    7
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


# ----------------------------------------------------------------------------------------------------
# Code: pass@k


def pass_at_k(n, c, k):
    """The unbiased estimate of pass@k from n samples of which c pass (Chen et al., 2021, HumanEval):

        pass@k = E[ 1 - C(n - c, k) / C(n, k) ]

    the chance that at least one of k samples drawn without replacement from the n passes. The ratio of
    binomials overflows for big n, so it is computed as the product it simplifies to:

        C(n - c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)

    (when n - c < k, every k-subset contains a passing sample: pass@k = 1). Sampling k and counting
    "any pass" directly would be unbiased too, but with far more variance than using all n samples.

    >>> round(pass_at_k(10, 3, 1), 6), pass_at_k(10, 0, 10), pass_at_k(10, 1, 10)
    (0.3, 0.0, 1.0)
    """
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError("pass_at_k takes integers n, c, k")
    if k < 1 or n < 1:
        raise ValueError(f"pass_at_k needs n >= 1 and k >= 1, got n={n}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least k samples per task, got n={n}: sample n >= {k} (--samples)")
    if not 0 <= c <= n:
        raise ValueError(f"the number of passing samples c={c} must be between 0 and n={n}")
    # --- student part: the unbiased pass@k, as a product (lesson: "6. Code: pass@k and the sandbox") ---
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
    # --- end of student part ---
