"""A byte-level BPE tokenizer, trained from scratch, exact against tiktoken.

    tokenizer = train_bpe("some text ...", vocab_size=512, special_tokens=["<|endoftext|>"])
    tokenizer = train_bpe(Path("corpus.txt"), 512)  # a file is a pathlib.Path; a str is always text
    ids = tokenizer.encode("hello world<|endoftext|>", allowed_special="all")
    text = tokenizer.decode(ids)
    tokenizer.save("runs/01_tokenizer/tokenizer")   # tokenizer.tiktoken + tokenizer.json
    fast = tokenizer.to_tiktoken()                  # same ids, encoded by tiktoken's Rust core

Conventions (stated once, so two implementations can be compared number for number):
- Token ids 0..255 are the single bytes 0..255; merge number k (k = 0, 1, ...) creates token id
  256 + k; special tokens come after the merges. A token's id is also its *rank*: lower ranks
  were learned earlier and are merged first when encoding.
- Training: text is split on the special tokens, each part is split into pre-tokens by the split
  pattern, and merges never cross a pre-token. The pair merged next is the most frequent one;
  ties go to the lexicographically greatest pair of byte strings (compare first parts, then
  second parts, as Python compares (bytes, bytes) tuples).
- Encoding follows tiktoken exactly: a pre-token that is itself a token becomes that token;
  otherwise start from its bytes and repeatedly merge the adjacent pair whose concatenation has
  the lowest rank (the leftmost one on ties) until no adjacent pair is a token.
"""
import base64
import heapq
import json
import numbers
import os
import re
import time
import warnings
from collections import Counter, defaultdict
from itertools import chain
from pathlib import Path

from unicode_classes import spell_out_classes, to_stdlib_pattern

# -----------------------------------------------------------------------------------------------
# Split patterns, as published with tiktoken (\p{L} = letter, \p{N} = number, \s = White_Space).
# `++`, `?+`, `*+` are possessive quantifiers: they never give back what they matched, which
# makes matching faster and does not change the result for these patterns.
GPT2_PATTERN_TIKTOKEN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_PATTERN_TIKTOKEN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# The same patterns with the classes spelled out (see unicode_classes.py): they mean the same in
# Python's `re` and in tiktoken's engine. We compile them with to_stdlib_pattern(), which only
# rewrites the classes into a form that Python's `re` checks faster.
GPT2_SPLIT_PATTERN = spell_out_classes(GPT2_PATTERN_TIKTOKEN)
GPT4_SPLIT_PATTERN = spell_out_classes(GPT4_PATTERN_TIKTOKEN)
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}


# -----------------------------------------------------------------------------------------------
# The one operation of BPE


def merge(ids, pair, new_id):
    """Replace every occurrence of `pair` in `ids` (left to right, no overlaps) by `new_id`.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([7, 7, 7], (7, 7), 8)
    [8, 7]
    """
    # --- student part: BPE's merge step (lesson: "2. The merge loop") ---
    first, second = pair
    out = []
    i = 0
    while i < len(ids):
        if ids[i] == first and i + 1 < len(ids) and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
    # --- end of student part ---


# -----------------------------------------------------------------------------------------------
# Reading the corpus and splitting it into pre-tokens


def read_text(path):
    """The text of a UTF-8 file (a pathlib.Path or a str naming it), with clear errors."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a text file; pass one UTF-8 text file")
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist; pass an existing text file "
                                f"(relative paths start from the current folder, {os.getcwd()})")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not valid UTF-8 (bad byte at offset {error.start}); convert it first, "
            f"e.g. `iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8.txt`"
        ) from None


def corpus_text(text):
    """The training text. A str is always the text itself, never a file name; a file is given as a
    pathlib.Path (any os.PathLike) and read as UTF-8.

    >>> corpus_text("corpus")   # the six-character text "corpus", not a file called corpus
    'corpus'
    """
    if isinstance(text, os.PathLike):
        return read_text(text)
    if not isinstance(text, str):
        raise TypeError(f"expected the text (a str) or a file (a pathlib.Path), "
                        f"got {type(text).__name__}")
    # A str is never read as a file; but a lone word that looks like a file name was most likely
    # meant as one, and training on it would silently give a useless tokenizer: say so.
    if re.fullmatch(r"\S{1,255}", text) and (
        "/" in text or "\\" in text or os.path.isfile(text)
        or re.search(r"\.(?:txt|md|json|jsonl|csv|tsv|text|en)$", text)
    ):
        warnings.warn(
            f"training on the {len(text)}-character text {text!r}, which looks like a file name. A str is "
            f"always the training text itself; to train on a file, pass pathlib.Path({text!r})",
            stacklevel=3,
        )
    return text


def check_special_tokens(special_tokens):
    """Validate special token names: non-empty strings, no duplicates. Returns them as a list."""
    if isinstance(special_tokens, str):
        special_tokens = [special_tokens]  # a single name, not a list of characters
    special_tokens = list(special_tokens)
    for name in special_tokens:
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"special token {name!r} is invalid: special tokens must be non-empty strings like '<|endoftext|>'"
            )
    duplicates = sorted(name for name, n in Counter(special_tokens).items() if n > 1)
    if duplicates:
        raise ValueError(f"special token(s) {duplicates} given more than once; list each special token once")
    return special_tokens


def special_token_regex(names):
    """A regex matching any of the special tokens; the longest wins where several match at one place."""
    alternatives = sorted(names, key=lambda name: (-len(name), name))
    return re.compile("|".join(map(re.escape, alternatives)))


def _without_surrogates(text):
    """Lone surrogates ('\\ud800') cannot be UTF-8 encoded: replace them as tiktoken does."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def count_pretokens(text, pattern=GPT4_SPLIT_PATTERN, special_tokens=()):
    """Split text into pre-tokens and count each distinct one.

    Special tokens are cut out first, so no pre-token (and so no merge) spans one.

    >>> count_pretokens("the cat, the hat")
    Counter({'the': 1, ' cat': 1, ',': 1, ' the': 1, ' hat': 1})
    """
    split_re = re.compile(to_stdlib_pattern(pattern))
    if split_re.groups:
        raise ValueError("the split pattern must not have capturing groups; write (?:...) instead of (...)")
    parts = special_token_regex(special_tokens).split(text) if special_tokens else [text]
    counts = Counter()
    for part in parts:
        counts.update(split_re.findall(part))
    return counts


# -----------------------------------------------------------------------------------------------
# Training


def _descending_key(token):
    """A sort key that orders byte strings in *reverse* lexicographic order.

    heapq is a min-heap, so to pop the greatest pair first we store keys that sort the other way:
    negate every byte, and end with 1, which sorts after every negated byte, so that a string sorts
    after the strings it is a prefix of.  b"ab" < b"b" and b"a" < b"ab" become
    (-97, -98, 1) > (-98, 1) and (-97, 1) > (-97, -98, 1).
    """
    return tuple(-byte for byte in token) + (1,)


def train_bpe(text, vocab_size, special_tokens=(), pattern=GPT4_SPLIT_PATTERN, verbose=False):
    """Learn byte-level BPE merges so that 256 bytes + merges + special tokens = vocab_size.

    `text` is the training text (a str, always the text itself) or a file (a pathlib.Path):
    train_bpe("the cat sat", 300) trains on those 11 characters, train_bpe(Path("corpus.txt"), 300)
    on the file's contents.

    The incremental algorithm (each step costs only the words that contain the merged pair):
      1. count each distinct pre-token once:            words[w] = list of ids, freqs[w] = count
      2. count pairs over words, weighted by frequency: pair_counts[(a, b)] = sum of freqs
         and index which words contain each pair:       pair_words[(a, b)] = {w, ...}
      3. repeat: pop the best pair from a heap keyed (-count, bytes descending); merge it in the
         words that contain it; update the counts of the pairs in those words only.
    A heap entry is not removed when its pair's count changes ("lazy invalidation"): when it comes
    out on top we compare it with the true count and push it back with that count if it was stale.
    This is correct because a pair's count can only go *down* once it exists (new pairs always
    contain the new token), so a stale entry never sits below where its pair belongs.
    """
    special_tokens = check_special_tokens(special_tokens)
    if not isinstance(vocab_size, numbers.Integral):
        raise ValueError(f"vocab_size={vocab_size!r} is not an integer; pass a whole number of tokens, e.g. 512")
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(
            f"vocab_size={vocab_size!r} is too small: it must hold the 256 byte tokens plus "
            f"{len(special_tokens)} special token(s); pass vocab_size >= {256 + len(special_tokens)}"
        )
    num_merges = int(vocab_size) - 256 - len(special_tokens)
    text = corpus_text(text)
    try:
        word_counts = count_pretokens(text, pattern, special_tokens)
    except re.error as error:
        raise ValueError(f"the split pattern does not compile with Python's re: {error}") from None
    if not word_counts:
        raise ValueError("the corpus is empty (no text besides special tokens); pass a non-empty text or file")

    # 1. Distinct pre-tokens as lists of byte ids, with their frequencies.
    try:
        words = [list(word.encode("utf-8")) for word in word_counts]
    except UnicodeEncodeError:
        words = [list(_without_surrogates(word).encode("utf-8")) for word in word_counts]
    freqs = list(word_counts.values())
    if verbose:
        print(f"pre-tokens: {sum(freqs):,} in the text, {len(words):,} distinct; learning {num_merges:,} merges")

    # --- student part: BPE's trainer loop: count the pairs, merge the most frequent (lesson: "4. Why the incremental trainer is fast") ---
    # 2. Pair counts and the index pair -> words that contain it.
    pair_counts = defaultdict(int)
    pair_words = defaultdict(set)
    for w, ids in enumerate(words):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += freqs[w]
            pair_words[pair].add(w)

    # 3. The merge loop.
    vocab = {i: bytes([i]) for i in range(256)}
    sort_key = [_descending_key(vocab[i]) for i in range(256)]  # by token id, computed once per token
    heap = [(-count, sort_key[a], sort_key[b], a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    progress = _Progress(num_merges) if verbose else None
    while len(merges) < num_merges and heap:
        negative_count, _, _, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count != -negative_count:  # stale entry: push it back with its true count, if any
            if count > 0:
                heapq.heappush(heap, (-count, sort_key[a], sort_key[b], a, b))
            continue

        new_id = 256 + len(merges)
        merges.append((vocab[a], vocab[b]))
        vocab[new_id] = vocab[a] + vocab[b]
        sort_key.append(_descending_key(vocab[new_id]))
        new_pairs = set()
        for w in pair_words.pop((a, b)):
            ids = words[w]
            merged = merge(ids, (a, b), new_id)
            if len(merged) == len(ids):
                continue  # the word lost this pair to an earlier merge; the index is allowed to lag
            freq = freqs[w]
            # Words are short (a few ids), so recounting the whole word is simpler than patching
            # neighbours and costs about the same.
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] -= freq
            for pair in zip(merged, merged[1:]):
                pair_counts[pair] += freq
                if new_id in pair:
                    pair_words[pair].add(w)
                    new_pairs.add(pair)
            words[w] = merged
        del pair_counts[(a, b)]
        for pair in new_pairs:
            heapq.heappush(heap, (-pair_counts[pair], sort_key[pair[0]], sort_key[pair[1]], *pair))
        if progress:
            progress.update(len(merges))
    # --- end of student part ---

    if progress:
        progress.done(len(merges))
    if len(merges) < num_merges:
        warnings.warn(
            f"the corpus ran out of pairs after {len(merges)} merges; the vocabulary has "
            f"{256 + len(merges) + len(special_tokens)} tokens instead of {vocab_size}. Use more text."
        )
    specials = {name: 256 + len(merges) + i for i, name in enumerate(special_tokens)}
    return Tokenizer(merges=merges, pattern=pattern, special_tokens=specials)


class _Progress:
    """Prints `merges done / total, merges/s, ETA` at 10% of the merges, then every 10% that comes
    at least 0.2 s after the last line, and when done."""

    def __init__(self, total):
        self.total, self.start, self.next_report, self.last_print = total, time.perf_counter(), total / 10, None

    def update(self, done):
        if done >= self.next_report and done < self.total:
            self.next_report += self.total / 10
            elapsed = time.perf_counter() - self.start
            if self.last_print is not None and elapsed - self.last_print < 0.2:
                return
            self.last_print = elapsed
            rate = done / max(elapsed, 1e-9)
            eta = (self.total - done) / rate
            print(f"  merges {done:>7,}/{self.total:,}  {rate:9,.0f} merges/s  ETA {eta:6.2f} s", flush=True)

    def done(self, done):
        elapsed = time.perf_counter() - self.start
        rate = done / max(elapsed, 1e-9)
        print(f"  merges {done:>7,}/{self.total:,}  {rate:9,.0f} merges/s  done in {elapsed:.2f} s", flush=True)


# -----------------------------------------------------------------------------------------------
# The tokenizer

_CACHE_LIMIT = 200_000  # pre-tokens remembered by an encoder; bounds memory on endless streams


class _PieceCache(dict):
    """pre-token (str) -> its token ids. On a miss, dict calls __missing__, which runs BPE.

    Looking pieces up with `map(cache.__getitem__, pieces)` keeps the hot loop of encoding in C.
    """

    def __init__(self, encode_piece):
        super().__init__()
        self.encode_piece = encode_piece

    def __missing__(self, piece):
        ids = self.encode_piece(piece.encode("utf-8"))
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[piece] = ids
        return ids


class Tokenizer:
    """A byte-level BPE tokenizer: a vocabulary of byte strings ranked by id, a split pattern,
    and special tokens.

    Build it from `merges` (pairs of byte strings in the order they were learned), from a `vocab`
    (id -> bytes; the id is the rank), or from both. Ids 0..255 are the bytes when only merges are
    given. `special_tokens` maps names like "<|endoftext|>" to ids outside the vocabulary.

    `pattern` is the split pattern (a regex string such as GPT2_SPLIT_PATTERN or GPT4_SPLIT_PATTERN).
    A vocabulary gives its trained ids only with the pattern it was trained with, and merges or a
    vocab do not say which that was, so with them the pattern must be given: GPT-2's
    vocab.json/merges.txt need pattern=GPT2_SPLIT_PATTERN, and leaving it out is a ValueError, not a
    silent GPT-4 default. Only a bytes-only tokenizer, where the pattern changes no id, may leave it
    out (GPT-4's is used). train_bpe, load and from_tiktoken pass the vocabulary's own pattern.
    """

    def __init__(self, merges=None, vocab=None, pattern=None, special_tokens=None):
        merges = [(bytes(a), bytes(b)) for a, b in (merges or [])]
        if vocab is None:  # ids: the 256 bytes, then one new token per merge
            vocab = {i: bytes([i]) for i in range(256)}
            for k, (a, b) in enumerate(merges):
                vocab[256 + k] = a + b
        vocab = {int(i): bytes(token) for i, token in vocab.items()}
        ranks = {token: i for i, token in vocab.items()}
        if len(ranks) != len(vocab):
            raise ValueError("the vocabulary lists the same byte string under two ids; each token must appear once")
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"the vocabulary lacks the single bytes {missing[:5]}...: byte-level BPE needs all 256")
        for k, (a, b) in enumerate(merges):
            if a not in ranks or b not in ranks or a + b not in ranks:
                raise ValueError(f"merge #{k} {(a, b)} uses or makes a token not in the vocabulary; check the merges")

        if pattern is None:
            if len(vocab) > 256:
                raise ValueError(
                    "no split pattern given for a vocabulary with merges: pass the pattern it was trained "
                    "with, e.g. pattern=bpe.GPT2_SPLIT_PATTERN for GPT-2's vocab/merges or "
                    "pattern=bpe.GPT4_SPLIT_PATTERN for GPT-4's (cl100k); with another pattern the ids differ"
                )
            pattern = GPT4_SPLIT_PATTERN  # bytes only: every pattern gives the same ids

        special_tokens = dict(special_tokens or {})
        check_special_tokens(special_tokens)
        for name, i in special_tokens.items():
            if not isinstance(i, int) or i < 0 or i in vocab or list(special_tokens.values()).count(i) > 1:
                raise ValueError(f"special token {name!r} has id {i!r}, which is invalid or taken; use a free id")

        try:
            self._split_re = re.compile(to_stdlib_pattern(pattern))
        except re.error as error:
            raise ValueError(f"the split pattern does not compile with Python's re: {error}") from None
        if self._split_re.groups:
            raise ValueError("the split pattern must not have capturing groups; write (?:...) instead of (...)")

        self.merges = merges  # as given or trained; empty when built from ranks only (e.g. from tiktoken)
        self.vocab = vocab  # id -> bytes, without the special tokens
        self.pattern = pattern
        self.special_tokens = special_tokens
        self._ranks = ranks  # bytes -> id
        self._decoder = {**vocab, **{i: name.encode("utf-8") for name, i in special_tokens.items()}}
        self._cache = _PieceCache(self._encode_piece)
        self._special_regexes = {}  # frozenset of names -> compiled regex
        self._vocab_size = max(self._decoder) + 1

    @property
    def vocab_size(self):
        """Size of the embedding a model needs: the largest id + 1 (= len(vocab) + len(special_tokens)
        when ids have no gaps, as for every trained tokenizer)."""
        return self._vocab_size

    def __repr__(self):
        specials = self.special_tokens
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, special_tokens={specials})"

    # --- encoding -------------------------------------------------------------------------------

    def _encode_piece(self, piece):
        """BPE on one pre-token (bytes) -> ids, with tiktoken's rules (see the module docstring).

        The parts of the piece form a linked list over byte offsets, and a heap holds the candidate
        merges as (rank of the concatenation, start offset), so a piece of n bytes takes
        O(n log n) instead of the O(n^2) of rescanning every pair after every merge.
        """
        # --- student part: encoding a pre-token: apply the merges by rank (lesson: "5. Encoding") ---
        ranks = self._ranks
        if piece in ranks:
            return (ranks[piece],)
        n = len(piece)
        end = list(range(1, n + 1))  # end[i]: where the part starting at byte i ends
        start_before = list(range(-1, n))  # start_before[i]: start of the part before the one at i
        heap = [(ranks[piece[i : i + 2]], i) for i in range(n - 1) if piece[i : i + 2] in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            # Stale if the part at i was absorbed (end[i] == -1), or its pair changed since the push.
            j = end[i]
            if j < 0 or j >= n or ranks.get(piece[i : end[j]]) != rank:
                continue
            k = end[j]
            end[i], end[j] = k, -1  # the part at i now runs to k; the part at j is gone
            if k < n:
                start_before[k] = i
                pair = piece[i : end[k]]
                if pair in ranks:
                    heapq.heappush(heap, (ranks[pair], i))
            before = start_before[i]
            if before >= 0 and piece[before:k] in ranks:
                heapq.heappush(heap, (ranks[piece[before:k]], before))
        ids = []
        i = 0
        while i < n:
            ids.append(ranks[piece[i : end[i]]])
            i = end[i]
        return tuple(ids)
        # --- end of student part ---

    def encode_ordinary(self, text):
        """Encode text, treating special token strings as ordinary text."""
        try:
            # findall runs the split pattern in C; each distinct pre-token is encoded once and then
            # comes from the cache, so this line is about as fast as the regex itself.
            return list(chain.from_iterable(map(self._cache.__getitem__, self._split_re.findall(text))))
        except UnicodeEncodeError:
            return self.encode_ordinary(_without_surrogates(text))

    def _special_regex(self, names):
        names = frozenset(names)
        if names not in self._special_regexes:
            self._special_regexes[names] = special_token_regex(names)
        return self._special_regexes[names]

    def _allowed_specials(self, allowed_special):
        if allowed_special == "all":
            return set(self.special_tokens)
        if allowed_special in ("none_raise", "none"):
            return set()
        if isinstance(allowed_special, str):
            raise ValueError(f"allowed_special={allowed_special!r}: use 'all', 'none', 'none_raise' or a set of names")
        allowed = set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            known = sorted(self.special_tokens)
            raise ValueError(f"unknown special token(s) {sorted(unknown)}; this tokenizer has {known}")
        return allowed

    def _reject_disallowed(self, text, allowed, start=0, end=None):
        """Raise if text[start:end] contains a special token that is not in `allowed`."""
        disallowed = set(self.special_tokens) - allowed
        found = disallowed and self._special_regex(disallowed).search(text, start, len(text) if end is None else end)
        if found:
            raise ValueError(
                f"the text contains the special token {found.group()!r}, which is not allowed here. "
                f"Pass allowed_special='all' (or a set with it) to encode it as a special token, "
                f"or use encode_ordinary() / allowed_special='none' to encode it as plain text."
            )

    def encode(self, text, allowed_special="none_raise"):
        """Encode text to ids, with tiktoken's rules for special tokens.

        allowed_special: "none_raise" (default): a special token string in the text is an error;
        "all": every special token string becomes its special id; a set of names: those become
        special ids and any other special token string is an error; "none": all are plain text.
        Where special tokens overlap, the longest one that starts first wins.
        """
        allowed = self._allowed_specials(allowed_special)
        if allowed_special == "none":
            return self.encode_ordinary(text)
        self._reject_disallowed(text, allowed)
        if not allowed:
            return self.encode_ordinary(text)
        ids = []
        position = 0
        for found in self._special_regex(allowed).finditer(text):
            ids += self.encode_ordinary(text[position : found.start()])
            ids.append(self.special_tokens[found.group()])
            position = found.end()
        ids += self.encode_ordinary(text[position:])
        return ids

    def encode_iterable(self, lines, allowed_special="none_raise", buffer_chars=1 << 16):
        """Encode an iterable of strings (e.g. an open file) lazily, yielding ids one at a time.

        Yields exactly encode("".join(lines), allowed_special), in bounded memory: text is buffered
        up to `buffer_chars` characters, then the part of it that more text cannot change is
        encoded (see _encode_final_part) and the rest stays in the buffer.
        """
        self._allowed_specials(allowed_special)  # fail early on a bad argument
        buffer = ""
        for line in lines:
            buffer += line
            if len(buffer) >= buffer_chars:
                ids, buffer = self._encode_final_part(buffer, allowed_special)
                yield from ids
        yield from self.encode(buffer, allowed_special)

    def _encode_final_part(self, text, allowed_special):
        """Encode the start of `text` that no text appended later could change: (ids, rest of text).

        Pre-tokens are final up to the last one that starts at least `_HOLD_BACK` characters
        before the end: the GPT-2/GPT-4 patterns never look more than 3 characters past the end
        of a pre-token that has another one after it, so later text cannot move those boundaries.
        We encode those pre-tokens as found in the whole buffer (cutting the text there and
        re-splitting would let the last one see a false end of text). Text up to an allowed special
        token is final too, and we never cut through a special token, allowed or not (a disallowed
        one must be seen whole to raise its error).
        """
        allowed = set() if allowed_special == "none" else self._allowed_specials(allowed_special)
        limit = len(text) - max(_HOLD_BACK, max(map(len, self.special_tokens), default=0))
        if self.special_tokens:
            for found in self._special_regex(self.special_tokens).finditer(text):
                if found.start() < limit < found.end():
                    limit = found.start()
        if limit <= 0:
            return [], text
        # 1. Everything up to the last allowed special token before the limit is final.
        head_end, segment_end = 0, len(text)
        if allowed:
            for found in self._special_regex(allowed).finditer(text):
                if found.end() > limit:
                    segment_end = found.start()
                    break
                head_end = found.end()
        ids = self.encode(text[:head_end], allowed_special)
        # 2. After it, the pre-tokens before the last one that starts at or before the limit.
        pieces, cut = [], head_end
        for found in self._split_re.finditer(text[head_end:segment_end]):
            if head_end + found.start() > limit:
                break
            pieces.append(found.group())
            cut = head_end + found.start()
        pieces = pieces[:-1]  # the one starting at `cut` stays in the buffer
        if allowed_special != "none":
            self._reject_disallowed(text, allowed, head_end, cut)
        try:
            ids += chain.from_iterable(map(self._cache.__getitem__, pieces))
        except UnicodeEncodeError:
            return self._encode_final_part(_without_surrogates(text), allowed_special)
        return ids, text[cut:]

    # --- decoding -------------------------------------------------------------------------------

    def decode_bytes(self, ids):
        """The raw bytes of a list of ids (special tokens as their UTF-8 names)."""
        if hasattr(ids, "tolist"):  # numpy arrays, torch tensors
            ids = ids.tolist()
        elif not isinstance(ids, (list, tuple)):
            ids = list(ids)
        # 104.0 == 104 would find a token in the dict, so check the types first (once per type).
        if not all(issubclass(kind, numbers.Integral) for kind in set(map(type, ids))):
            bad = next(i for i in ids if not isinstance(i, numbers.Integral))
            raise ValueError(f"token id {bad!r} is not an integer; token ids are ints (a float tensor? use .long())")
        try:
            return b"".join(map(self._decoder.__getitem__, ids))
        except KeyError:
            bad = next(i for i in ids if i not in self._decoder)
            raise ValueError(
                f"token id {bad!r} is not in this tokenizer (ids run 0..{self.vocab_size - 1}); "
                "was it made by another tokenizer or model?"
            ) from None

    def decode(self, ids):
        """Ids -> text. Byte sequences that are not valid UTF-8 become U+FFFD (the '?' diamond)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # --- files and tiktoken ---------------------------------------------------------------------

    def save(self, path_prefix):
        """Write <prefix>.tiktoken (one "base64(token) rank" line per token, tiktoken's own format)
        and <prefix>.json (split pattern, special tokens, merges as id pairs). Returns both paths."""
        prefix = _strip_suffix(path_prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        ranks_text = "".join(f"{base64.b64encode(token).decode()} {i}\n" for i, token in sorted(self.vocab.items()))
        config = {
            "format": "bytes2chat-bpe-1",
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "merges": [[self._ranks[a], self._ranks[b]] for a, b in self.merges],
        }
        paths = (prefix.with_name(prefix.name + ".tiktoken"), prefix.with_name(prefix.name + ".json"))
        for path, content in zip(paths, (ranks_text, json.dumps(config, ensure_ascii=False, indent=1))):
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(content, encoding="utf-8")
            os.replace(temporary, path)  # atomic: a reader never sees half a file
        return paths

    @classmethod
    def load(cls, path_prefix_or_file):
        """Load what save() wrote; pass the prefix, either file's path, or a folder holding
        tokenizer.tiktoken and tokenizer.json."""
        prefix = _strip_suffix(path_prefix_or_file)
        if prefix.is_dir():
            prefix = prefix / "tokenizer"
        ranks_path, config_path = prefix.with_name(prefix.name + ".tiktoken"), prefix.with_name(prefix.name + ".json")
        for path in (ranks_path, config_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found; train one first: python 01_tokenizer/train_tokenizer.py")
        try:
            vocab = {}
            for line in ranks_path.read_text(encoding="ascii").splitlines():
                if line:
                    token, rank = line.split()
                    vocab[int(rank)] = base64.b64decode(token, validate=True)
            config = json.loads(config_path.read_text(encoding="utf-8"))
            merges = [(vocab[a], vocab[b]) for a, b in config["merges"]]
            pattern, special_tokens = config["pattern"], config["special_tokens"]
        except (ValueError, KeyError, TypeError) as error:  # bad base64, bad JSON, missing keys, bad ids
            raise ValueError(f"{prefix}.tiktoken/.json is not a tokenizer that save() wrote (corrupt, truncated "
                             f"or another format: {type(error).__name__}); train it again: "
                             f"python 01_tokenizer/train_tokenizer.py") from None
        return cls(merges=merges, vocab=vocab, pattern=pattern, special_tokens=special_tokens)

    def to_tiktoken(self, name="bytes2chat"):
        """A tiktoken.Encoding with the same ranks, split pattern and special tokens: same ids, faster."""
        import tiktoken  # imported here so that the rest of the chapter works without it

        # Hand tiktoken the spelled-out classes too, so both engines use the same Unicode tables.
        return tiktoken.Encoding(
            name,
            pat_str=spell_out_classes(self.pattern),
            mergeable_ranks=dict(self._ranks),
            special_tokens=dict(self.special_tokens),
        )

    @classmethod
    def from_tiktoken(cls, encoding):
        """Our tokenizer with a tiktoken.Encoding's ranks, split pattern and special tokens.

        The pattern comes from the encoding, so from_tiktoken(tiktoken.get_encoding("gpt2")) splits
        with GPT-2's pattern and "cl100k_base" with GPT-4's: the safe way to rebuild a published one.
        """
        # tiktoken has no public accessors for these three; they have been stable for years.
        vocab = {rank: token for token, rank in encoding._mergeable_ranks.items()}
        return cls(vocab=vocab, pattern=encoding._pat_str, special_tokens=dict(encoding._special_tokens))

    def with_special_tokens(self, names):
        """A new tokenizer with extra special tokens at ids vocab_size, vocab_size + 1, ...

        Existing ids do not change; names that are already special tokens keep their ids.
        """
        names = check_special_tokens(names)
        special_tokens = dict(self.special_tokens)
        next_id = self.vocab_size
        for name in names:
            if name not in special_tokens:
                special_tokens[name] = next_id
                next_id += 1
        return Tokenizer(merges=self.merges, vocab=self.vocab, pattern=self.pattern, special_tokens=special_tokens)


_HOLD_BACK = 256  # characters encode_iterable keeps back at the end of its buffer (see there)


def _strip_suffix(path):
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".tiktoken", ".json") else path


def gpt2_byte_alphabet():
    """GPT-2's printable stand-in character for each byte, as used in its vocab.json / merges.txt.

    Bytes that are printable Latin-1 characters stand for themselves; the other 68 (space, control
    characters, ...) get the characters 256, 257, ... in byte order. So b" " is shown as "Ġ".

    >>> gpt2_byte_alphabet()[ord(" ")], gpt2_byte_alphabet()[ord("a")]
    ('Ġ', 'a')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in alphabet:
            alphabet[b] = chr(256 + extra)
            extra += 1
    return alphabet
