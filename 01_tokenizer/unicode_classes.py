r"""Exact Unicode character classes for Python's standard `re` module.

The GPT-2 and GPT-4 split patterns are written for regex engines that know Unicode properties:

    \p{L}   any letter      (general category L: Lu, Ll, Lt, Lm, Lo)
    \p{N}   any number      (general category N: Nd, Nl, No)
    \s      any White_Space (the Unicode property, 25 code points)

Python's `re` has no \p{...}, and its \s is not White_Space: it also matches the four
"information separators" U+001C..U+001F, because `str.isspace()` counts them. Using the `regex`
package would fix both, but we keep to the standard library, so we spell every class out as an
explicit list of code point ranges, built from `unicodedata`:

    >>> print(spell_out_classes(r"\s+"))
    [\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028-\u2029\u202f\u205f\u3000]+

That spelled-out pattern means the same in Python's `re` and in tiktoken's Rust engine (both read
\uXXXX and \UXXXXXXXX), so `Tokenizer.to_tiktoken()` hands it to tiktoken: both engines then use
the very same classes. The classes follow the Unicode version of the running Python (14.0 for
Python 3.11); tiktoken's own \p{L} knows a newer Unicode, and the tests check that the only
difference is code points that Python's Unicode has not assigned yet.

One more step makes it fast in `re`. `re` stores the part of a class below U+10000 as a bitmap
(one lookup per character), but checks the ranges above U+10000 (emoji, historic scripts, ...)
one by one, and \p{L} has 268 of them: testing a space against \p{L} would walk all 268.
`to_stdlib_pattern` therefore writes each class as "the bitmap part, or else a character above
U+10000 that is in the rest":

    (?:[<ranges below U+10000>]|[\U00010000-\U0010ffff](?<=[<ranges above>]))

which matches exactly the same characters, 4x faster on English text.
"""
import functools
import re
import sys
import unicodedata

# Unicode's White_Space property (PropList.txt). It has not changed since Unicode 6.1 (2012).
WHITE_SPACE_RANGES = [
    (0x0009, 0x000D),  # \t \n \v \f \r
    (0x0020, 0x0020),  # space
    (0x0085, 0x0085),  # next line
    (0x00A0, 0x00A0),  # no-break space
    (0x1680, 0x1680),  # ogham space mark
    (0x2000, 0x200A),  # en quad .. hair space
    (0x2028, 0x2029),  # line and paragraph separators
    (0x202F, 0x202F),  # narrow no-break space
    (0x205F, 0x205F),  # medium mathematical space
    (0x3000, 0x3000),  # ideographic space
]
ASTRAL = (0x10000, sys.maxunicode)  # the code points above the Basic Multilingual Plane


@functools.lru_cache(maxsize=1)
def _all_categories():
    """One string holding the two-letter general category of every code point, in order.

    Code point cp's category is at [2*cp : 2*cp+2], e.g. "Lu" for "A". Built once (about 0.1 s)
    with map() because a Python-level loop over 1.1 million code points is three times slower.
    """
    return "".join(map(unicodedata.category, map(chr, range(sys.maxunicode + 1))))


@functools.lru_cache(maxsize=None)
def category_ranges(category):
    """Runs of consecutive code points in a general category, as [(first, last), ...].

    `category` is a group ("L", "N", ...) or a single category ("Lu", "Nd", ...).

    >>> category_ranges("Nd")[:2]
    [(48, 57), (1632, 1641)]
    """
    if not re.fullmatch(r"[LMNPSZC][a-z]?", category):
        raise ValueError(f"unknown Unicode category {category!r}; use a general category such as L, N, Lu or Nd")
    # Every category code is an upper-case letter then a lower-case one, so a match of the regex
    # below can only start at an even offset: matches are always aligned to whole code points.
    code = category if len(category) == 2 else category + "[a-z]"
    return [(m.start() // 2, m.end() // 2 - 1) for m in re.finditer(f"(?:{code})+", _all_categories())]


# --- sets of code points as sorted lists of (first, last) ranges -------------------------------


def union(*range_lists):
    """[(0, 5)], [(3, 9), (11, 11)] -> [(0, 9), (11, 11)]: sorted, overlaps and neighbours joined."""
    out = []
    for first, last in sorted(r for ranges in range_lists for r in ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def complement(ranges):
    """Every code point not in `ranges`: [(1, 5)] -> [(0, 0), (6, 1114111)]."""
    out, next_free = [], 0
    for first, last in union(ranges):
        if first > next_free:
            out.append((next_free, first - 1))
        next_free = last + 1
    if next_free <= sys.maxunicode:
        out.append((next_free, sys.maxunicode))
    return out


def _escape(cp):
    """A code point as an escape that both Python's `re` and tiktoken's Rust engine understand."""
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


def class_body(ranges):
    r"""The inside of a [...] class for the given code point ranges: [(48, 57)] -> '\u0030-\u0039'."""
    return "".join(_escape(first) if first == last else f"{_escape(first)}-{_escape(last)}" for first, last in ranges)


def fast_class(ranges):
    """A regex for 'one character in `ranges`' that Python's re checks quickly (see the top)."""
    ranges = union(ranges)
    below = [(first, min(last, 0xFFFF)) for first, last in ranges if first <= 0xFFFF]
    above = [(max(first, ASTRAL[0]), last) for first, last in ranges if last >= ASTRAL[0]]
    if not above:
        return f"[{class_body(below)}]" if below else "(?!)"  # (?!) never matches
    astral = f"[{class_body([ASTRAL])}]"
    if above != [ASTRAL]:
        astral += f"(?<=[{class_body(above)}])"
    return f"(?:[{class_body(below)}]|{astral})" if below else astral


# --- reading a pattern ---------------------------------------------------------------------------

_CONTROL_ESCAPES = {"n": 0x0A, "r": 0x0D, "t": 0x09, "f": 0x0C, "v": 0x0B, "a": 0x07}


def _escape_ranges(letter, name):
    r"""Ranges of a class escape: \s -> White_Space, \d -> Nd, \p{X} -> category X (capitals negate,
    which the caller handles)."""
    if letter in "sS":
        return WHITE_SPACE_RANGES
    if letter in "dD":
        return category_ranges("Nd")
    return category_ranges(name)


def _read_escape(pattern, i):
    """Read the escape starting at pattern[i] == "\\". Returns (kind, value, next index):
    ("class", (ranges, negated), ...), ("char", code point, ...) or ("other", its text, ...)."""
    letter = pattern[i + 1 : i + 2]
    if not letter:
        raise ValueError("the pattern ends with a lone backslash")
    if letter in "pP":  # \pL or \p{Lu}
        if pattern[i + 2 : i + 3] == "{":
            end = pattern.find("}", i)
            if end < 0:
                raise ValueError(f"unclosed \\{letter}{{ in the pattern")
            return "class", (_escape_ranges(letter, pattern[i + 3 : end]), letter == "P"), end + 1
        return "class", (_escape_ranges(letter, pattern[i + 2 : i + 3]), letter == "P"), i + 3
    if letter in "sSdD":
        return "class", (_escape_ranges(letter, None), letter.isupper()), i + 2
    if letter in "wWbB":
        raise ValueError(
            f"\\{letter} means different things in Python's re and in tiktoken; "
            "spell it out with \\p{L}, \\p{N}, ..."
        )
    if letter == "x" and pattern[i + 2 : i + 3] == "{":  # Rust's \x{1F600}
        end = pattern.find("}", i)
        return "char", int(pattern[i + 3 : end], 16), end + 1
    for prefix, digits in (("x", 2), ("u", 4), ("U", 8)):
        if letter == prefix:
            return "char", int(pattern[i + 2 : i + 2 + digits], 16), i + 2 + digits
    if letter in _CONTROL_ESCAPES:
        return "char", _CONTROL_ESCAPES[letter], i + 2
    if not letter.isalnum():  # \. \[ \- ... : the character itself
        return "char", ord(letter), i + 2
    return "other", pattern[i : i + 2], i + 2  # \A, \z, \Z, backreferences, ...


def _read_class(pattern, i):
    """Read the [...] class starting at pattern[i] == "[".

    Returns (ranges of its items, negated, whether it uses a class escape, next index).
    """
    negated = pattern[i + 1 : i + 2] == "^"
    i += 2 if negated else 1
    ranges, has_class_escape, first = [], False, True
    while True:
        if i >= len(pattern):
            raise ValueError("unclosed [ in the pattern")
        char = pattern[i]
        if char == "]" and not first:
            break
        if char == "[" or pattern[i : i + 2] in ("&&", "--", "~~"):
            raise ValueError("nested classes and set operations ([a[b]], &&, --, ~~) are not supported; flatten it")
        first = False
        if char == "\\":
            kind, value, i = _read_escape(pattern, i)
            if kind == "class":
                escape_ranges, escape_negated = value
                ranges += complement(escape_ranges) if escape_negated else escape_ranges
                has_class_escape = True
                continue
            if kind == "other":
                raise ValueError(f"{value} cannot be used inside [...]")
            low = value
        else:
            low, i = ord(char), i + 1
        high = low
        if pattern[i : i + 1] == "-" and pattern[i + 1 : i + 2] not in ("]", ""):  # a range a-z
            if pattern[i + 1] == "\\":
                kind, high, i = _read_escape(pattern, i + 1)
                if kind != "char":
                    raise ValueError("a range in [...] must end with a single character")
            else:
                high, i = ord(pattern[i + 1]), i + 2
        ranges.append((low, high))
    return union(ranges), negated, has_class_escape, i + 1


def _rewrite(pattern, write_class, astral_classes_too=False):
    """Copy the pattern, replacing each class escape, and each [...] that uses one (or, with
    astral_classes_too, that lists code points above U+FFFF), by write_class(ranges, negated)."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            kind, value, end = _read_escape(pattern, i)
            if kind == "class":
                out.append(write_class(*value))
            elif pattern[i + 1] == "z":  # end of text: Rust writes \z, Python writes \Z
                out.append("\\Z")
            elif pattern[i + 1] == "x" and pattern[i + 2 : i + 3] == "{":
                out.append(_escape(value))
            else:
                out.append(pattern[i:end])
            i = end
        elif char == "[":
            ranges, negated, has_class_escape, end = _read_class(pattern, i)
            rewrite = has_class_escape or (astral_classes_too and ranges and ranges[-1][1] > 0xFFFF)
            out.append(write_class(ranges, negated) if rewrite else pattern[i:end])
            i = end
        else:
            out.append(char)
            i += 1
    return "".join(out)


def spell_out_classes(pattern):
    r"""Replace \p{X}, \s, \d (and their negations) by explicit classes that mean the same in Python's
    re and in tiktoken's engine. The result is portable and exact, but slow in re (see the top).
    Spelling out an already spelled-out pattern changes nothing.

    >>> print(spell_out_classes(r" ?\p{N}++")[:48], "...")
     ?[\u0030-\u0039\u00b2-\u00b3\u00b9\u00bc-\u00be ...
    """

    def write_class(ranges, negated):
        # Rust rejects surrogates (U+D800..U+DFFF) in a class, and mis-negates a class that touches
        # them; they never occur in text that tiktoken sees. So near them, write [^X] as [not X].
        if negated and any(first <= 0xE000 and last >= 0xD7FF for first, last in ranges):
            ranges, negated = complement(ranges), False
        without_surrogates = complement(union(complement(ranges), [(0xD800, 0xDFFF)]))
        return f"[{'^' if negated else ''}{class_body(without_surrogates)}]"

    return _rewrite(pattern, write_class)


def to_stdlib_pattern(pattern):
    r"""The pattern to give Python's re.compile: the same matches as tiktoken gives, quickly.

    Accepts tiktoken's dialect (\p{L}, ...) or a spelled-out pattern: every class that involves a
    Unicode class or code points above U+FFFF is rewritten with fast_class.
    """
    write_class = lambda ranges, negated: fast_class(complement(ranges) if negated else ranges)  # noqa: E731
    return _rewrite(pattern, write_class, astral_classes_too=True)
