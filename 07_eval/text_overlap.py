"""BLEU and ROUGE: how many words and word sequences a generated text shares with a reference text.

    corpus_bleu(hypotheses, references)       -> 0..100, sacrebleu's corpus_bleu (13a tokens, 4-grams, BP)
    sentence_bleu(hypothesis, reference)      -> 0..100, sacrebleu's sentence_bleu (exponential smoothing)
    rouge_n(reference, hypothesis, n)         -> (precision, recall, f), rouge-score's rouge1/rouge2
    rouge_l(reference, hypothesis)            -> (precision, recall, f), rouge-score's rougeL

BLEU (Papineni et al., 2002) is precision-oriented (of the hypothesis' n-grams, how many are in the
reference), made up for short outputs by a brevity penalty; ROUGE (Lin, 2004) is recall-oriented (of the
reference's n-grams, how many did the hypothesis produce). Both count surface overlap: a paraphrase
scores low and a fluent falsehood that reuses the reference's words scores high. tests/test_07_eval.py
compares every number with the sacrebleu and rouge-score packages when they are installed.
"""
import math
import re
from collections import Counter

# ----------------------------------------------------------------------------------------------------
# BLEU

_13A_RULES = [  # mteval-v13a's tokenization, as sacrebleu's default "13a" tokenizer applies it
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols become tokens
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),                # a period or comma not after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),                # a period or comma not before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),                     # a dash after a digit
]


def tokenize_13a(text):
    """The 13a tokenizer: split off punctuation, keep "3.5" and "1,000" whole -> a list of tokens.

    >>> tokenize_13a("Sam's cat, 3.5 years old.")
    ["Sam's", 'cat', ',', '3.5', 'years', 'old', '.']
    """
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in text:
        text = text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    text = f" {text} "
    for pattern, replacement in _13A_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def ngram_counts(tokens, n):
    """Counter of the n-grams (tuples) of a token list: ngram_counts("a b a b".split(), 2)[("a", "b")] == 2."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_statistics(hypothesis, reference, max_n=4):
    """What BLEU sums over a corpus for one pair: (matches[n], totals[n] for n = 1..max_n, hyp_len, ref_len).

    matches[n-1] = sum over the hypothesis' n-grams g of min(count_hyp(g), count_ref(g))  (clipped counts)
    totals[n-1]  = number of n-grams in the hypothesis
    """
    # --- student part: BLEU's clipped n-gram matches and totals (lesson: "7. BLEU and ROUGE, and why they disagree with people") ---
    hyp, ref = tokenize_13a(hypothesis), tokenize_13a(reference)
    matches, totals = [], []
    for n in range(1, max_n + 1):
        h, r = ngram_counts(hyp, n), ngram_counts(ref, n)
        matches.append(sum(min(count, r[g]) for g, count in h.items()))
        totals.append(max(0, len(hyp) - n + 1))
    return matches, totals, len(hyp), len(ref)
    # --- end of student part ---


def bleu_from_statistics(matches, totals, hyp_len, ref_len, effective_order=False):
    """BLEU = BP * exp( 1/N * sum_{n=1}^{N} log p_n ), in 0..100, with sacrebleu's exponential smoothing.

        p_n = matches_n / totals_n                      (modified n-gram precision)
        BP  = 1 if hyp_len >= ref_len else exp(1 - ref_len / hyp_len)     (brevity penalty)
    Exponential smoothing ("exp", mteval-v13a): the j-th order with no match at all gets
    p_n = 1 / (2^j * totals_n) instead of 0 (j = 1, 2, ...), so one missing 4-gram does not make the
    score 0. An order with no n-gram at all (a hypothesis shorter than n) ends the sum; without
    effective_order it still counts as log 0 (BLEU 0); with it (sentence BLEU), N is the last order
    that had n-grams. No match of any order at all gives 0 (no smoothing can rescue that).
    """
    # --- student part: BLEU from its statistics (lesson: "7. BLEU and ROUGE, and why they disagree with people") ---
    max_n = len(matches)
    if not any(matches) or hyp_len == 0:
        return 0.0
    precisions = [0.0] * max_n
    smooth, order = 1.0, max_n
    for n in range(1, max_n + 1):
        if totals[n - 1] == 0:
            break
        if effective_order:
            order = n
        if matches[n - 1] == 0:
            smooth *= 2
            precisions[n - 1] = 100.0 / (smooth * totals[n - 1])
        else:
            precisions[n - 1] = 100.0 * matches[n - 1] / totals[n - 1]
    brevity_penalty = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    if any(p == 0.0 for p in precisions[:order]):
        return 0.0
    return brevity_penalty * math.exp(sum(math.log(p) for p in precisions[:order]) / order)
    # --- end of student part ---


def corpus_bleu(hypotheses, references, max_n=4):
    """Corpus BLEU: the statistics are SUMMED over all pairs first, then combined once. This is not the
    mean of the sentence BLEUs: a short hypothesis is penalized by the corpus-wide brevity penalty, and a
    pair with no 4-gram match does not zero the score.

    >>> round(corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
    100.0
    """
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError("corpus_bleu needs one reference per hypothesis, and at least one pair")
    matches, totals, hyp_len, ref_len = [0] * max_n, [0] * max_n, 0, 0
    for hypothesis, reference in zip(hypotheses, references):
        m, t, h, r = bleu_statistics(hypothesis, reference, max_n)
        matches = [a + b for a, b in zip(matches, m)]
        totals = [a + b for a, b in zip(totals, t)]
        hyp_len, ref_len = hyp_len + h, ref_len + r
    return bleu_from_statistics(matches, totals, hyp_len, ref_len)


def sentence_bleu(hypothesis, reference, max_n=4):
    """BLEU of one pair with exponential smoothing and the effective order (sacrebleu's sentence_bleu)."""
    return bleu_from_statistics(*bleu_statistics(hypothesis, reference, max_n), effective_order=True)


# ----------------------------------------------------------------------------------------------------
# ROUGE

def rouge_tokens(text):
    """rouge-score's tokenizer without stemming: lower case, runs of [a-z0-9] only.

    >>> rouge_tokens("Sam's cat, 3.5 years old!")
    ['sam', 's', 'cat', '3', '5', 'years', 'old']
    """
    return re.findall(r"[a-z0-9]+", text.lower())


def f_measure(precision, recall):
    """F1 = 2PR / (P + R), 0 when both are 0."""
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def rouge_n(reference, hypothesis, n=1):
    """ROUGE-N -> (precision, recall, F1): overlap = sum over n-grams g of min(count_hyp(g), count_ref(g)),
    precision = overlap / hypothesis n-grams, recall = overlap / reference n-grams.

    >>> rouge_n("the cat sat", "the cat ran", 1)[2]
    0.6666666666666666
    """
    ref, hyp = ngram_counts(rouge_tokens(reference), n), ngram_counts(rouge_tokens(hypothesis), n)
    overlap = sum(min(count, ref[g]) for g, count in hyp.items())
    precision = overlap / max(1, sum(hyp.values()))
    recall = overlap / max(1, sum(ref.values()))
    return precision, recall, f_measure(precision, recall)


def lcs_length(a, b):
    """Length of the longest common SUBSEQUENCE of two token lists (in order, not necessarily adjacent),
    by dynamic programming: L[i][j] = L[i-1][j-1] + 1 if a[i] == b[j] else max(L[i-1][j], L[i][j-1]).

    >>> lcs_length("a b c d e".split(), "a x c y e".split())   # a . c . e
    3
    """
    # --- student part: the longest common subsequence (lesson: "7. BLEU and ROUGE, and why they disagree with people") ---
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]
    # --- end of student part ---


def rouge_l(reference, hypothesis):
    """ROUGE-L -> (precision, recall, F1) with LCS = lcs_length(reference tokens, hypothesis tokens):
    precision = LCS / len(hypothesis), recall = LCS / len(reference). Word order counts, gaps do not."""
    # --- student part: ROUGE-L's precision, recall and F1 (lesson: "7. BLEU and ROUGE, and why they disagree with people") ---
    ref, hyp = rouge_tokens(reference), rouge_tokens(hypothesis)
    if not ref or not hyp:
        return 0.0, 0.0, 0.0
    lcs = lcs_length(ref, hyp)
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return precision, recall, f_measure(precision, recall)
    # --- end of student part ---
