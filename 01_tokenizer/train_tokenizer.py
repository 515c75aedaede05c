"""Train a byte-level BPE tokenizer and look at what it learned.

    python 01_tokenizer/train_tokenizer.py                       # --preset tiny: built-in sample corpus
    python 01_tokenizer/train_tokenizer.py --input my.txt --vocab-size 8192 --pattern gpt2
    python 01_tokenizer/train_tokenizer.py --show "Hello world! 1234567 ünïcödé 你好 🙂"

Writes to runs/01_tokenizer/ (or --out-dir):
    tokenizer.tiktoken   the ranked vocabulary, in tiktoken's own file format
    tokenizer.json       split pattern, special tokens and merges
    compression.png      bytes per token against vocabulary size, on training and held-out text
"""
import argparse
import random
import sys
import time
from pathlib import Path

import bpe
import cli

REPO = Path(__file__).resolve().parents[1]
SPECIAL_TOKENS = ["<|endoftext|>"]
EXAMPLE = "Once upon a time, Grace didn't find 12345 cookies in the café 🙂."  # shown after training

PRESETS = {
    # A few seconds on a laptop CPU: the built-in sample corpus (0.65 MB), a 1024-token vocabulary.
    "tiny": {"vocab_size": 1024, "pattern": "gpt4", "documents": 3000},
    # GPT-2's settings (50,257 = 256 bytes + 50,000 merges + <|endoftext|>, GPT-2's pattern), meant
    # for --input with tens of megabytes of real text. Without --input it trains on 40,000 sample
    # documents (8.7 MB, about 10 s), which hold only enough distinct words for about 18,000 merges.
    "gpt2": {"vocab_size": 50257, "pattern": "gpt2", "documents": 40_000},
}
PRESETS["small"] = PRESETS["tiny"]  # `pipeline.py --preset small`: chapter 01's demo needs nothing bigger


# -----------------------------------------------------------------------------------------------
# The built-in sample corpus: small, varied documents from templates, deterministic for a seed.

NAMES = ["Ada", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Inès", "José", "Kai", "Lena", "Mia"]
ANIMALS = ["cat", "dog", "fox", "owl", "rabbit", "turtle", "horse", "parrot", "bear", "goat"]
PLACES = ["garden", "forest", "village", "market", "library", "river", "beach", "kitchen", "school", "hill"]
ADJECTIVES = ["little", "happy", "brave", "curious", "sleepy", "clever", "tiny", "old", "kind", "noisy"]
THINGS = ["ball", "book", "kite", "cake", "lamp", "map", "boat", "key", "hat", "box"]
VERBS = ["found", "lost", "painted", "carried", "shared", "fixed", "hid", "opened", "built", "saw"]
FEELINGS = ["happy", "sad", "surprised", "proud", "tired", "excited"]
PHRASES = [  # other scripts, so that the tokenizer meets multi-byte UTF-8
    "Bonjour, ça va ? Très bien, merci.", "Grüße aus München: Straße, Käse und Brötchen.",
    "¿Dónde está la biblioteca?", "Καλημέρα κόσμε.", "Привет, как дела?", "你好，世界。今天天气很好。",
    "こんにちは、元気ですか？", "안녕하세요, 반갑습니다.", "मैं ठीक हूँ, धन्यवाद।", "مرحبا بالعالم", "Let's go! 🎉🙂👍",
    "E = mc² and x³ + y³ ≠ z³", "½ + ¼ = ¾ · π ≈ 3.14159",
]


def story(rng):
    name, friend = rng.sample(NAMES, 2)
    animal, place, adjective = rng.choice(ANIMALS), rng.choice(PLACES), rng.choice(ADJECTIVES)
    thing, verb, feeling = rng.choice(THINGS), rng.choice(VERBS), rng.choice(FEELINGS)
    sentences = [
        f"Once upon a time, {name} lived near the {place} with a {adjective} {animal}.",
        f"One day, the {animal} {verb} a {thing} in the {place}.",
        f"{name} said, \"Look, {friend}! It's a {thing}!\"",
        f"{friend} was {feeling}, and they didn't stop laughing.",
        f"They played until the sun went down, and {name} {verb} the {thing} again.",
        f"The end. {name} and {friend} will always remember that day.",
    ]
    return " ".join(sentences[: rng.randint(3, len(sentences))]) + "\n"


def arithmetic(rng):
    lines = []
    for _ in range(rng.randint(2, 5)):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        op = rng.choice("+-*")
        result = {"+": a + b, "-": a - b, "*": a * b}[op]
        lines.append(f"Q: What is {a} {op} {b}?\nA: {a} {op} {b} = {result}.")
    return "\n".join(lines) + "\n"


def code(rng):
    function, variable, thing = rng.choice(VERBS), rng.choice(ANIMALS), rng.choice(THINGS)
    n = rng.randint(2, 20)
    return (
        f"def {function}_{thing}({variable}s, limit={n}):\n"
        f"    \"\"\"Return the first {n} {variable}s that have a {thing}.\"\"\"\n"
        f"    result = []\n"
        f"    for {variable} in {variable}s:\n"
        f"        if {variable}.{thing} is not None and len(result) < limit:\n"
        f"            result.append({variable})\n"
        f"    return result\n"
    )


SYLLABLES = ["ka", "lo", "mi", "ra", "to", "ven", "sha", "dor", "el", "an", "qu", "ix", "bel", "mor", "tha", "zu", "pe",
             "ri", "gon", "ly", "str", "oo", "ne", "vi", "ast"]


def invented_word(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))


def encyclopedia(rng, lexicon):
    """A made-up encyclopedia entry. Words come from a lexicon with Zipf-like frequencies (the k-th
    word is about k times rarer than the first), like words in real text: a long tail of rare
    words is what makes BPE learn pieces of words, not just whole words."""
    weights = [1 / (rank + 1) for rank in range(len(lexicon))]
    word, food, enemy, friend, town = rng.choices(lexicon, weights, k=5)
    year, count, price = rng.randint(1200, 2024), rng.randint(2, 90_000), rng.randint(1, 9999) / 100
    sentences = [
        f"The {word} is a {rng.choice(ADJECTIVES)} {rng.choice(ANIMALS)} first described in {town.title()} in {year}.",
        f"It eats {food}s, avoids the {enemy} and often lives with the {friend}.",
        f"About {count:,} {word}s live near the {rng.choice(PLACES)} of {rng.choice(lexicon).capitalize()}.",
        f"A young {word} costs ${price:.2f} at the market ({year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}).",
        f"See also: {', '.join(rng.choices(lexicon, weights, k=3))}.",
    ]
    return " ".join(sentences[: rng.randint(2, len(sentences))]) + "\n"


def dialogue(rng):
    name, thing, place = rng.choice(NAMES), rng.choice(THINGS), rng.choice(PLACES)
    return (
        f"User: Where did {name} leave the {thing}?\n"
        f"Assistant: {name} left the {thing} in the {place}. {rng.choice(PHRASES)}\n"
    )


def sample_corpus(documents=3000, seed=0):
    """`documents` random documents (stories, arithmetic, code, dialogues, encyclopedia entries about
    invented words) joined by <|endoftext|>. Deterministic for a given seed, and offline."""
    rng = random.Random(seed)
    lexicon = sorted({invented_word(random.Random(i)) for i in range(3000)})  # the same for every seed
    random.Random(0).shuffle(lexicon)
    kinds = [story, story, arithmetic, code, dialogue] + [lambda rng: encyclopedia(rng, lexicon)] * 3
    return SPECIAL_TOKENS[0].join(rng.choice(kinds)(rng) for _ in range(documents))


# -----------------------------------------------------------------------------------------------
# Looking at the result


def show_tokens(tokenizer, text, colour=True):
    """Text with token boundaries marked by alternating background colours (or [brackets])."""
    ids = tokenizer.encode(text, allowed_special="all")
    backgrounds = [44, 42, 45, 46, 43, 41]  # blue, green, magenta, cyan, yellow, red
    shown, pending, count = [], b"", 0
    for token_id in ids:
        # A character can be split over several tokens (é is two bytes); show it once it is whole.
        pending += tokenizer.decode_bytes([token_id])
        try:
            piece = pending.decode("utf-8")
        except UnicodeDecodeError:
            if len(pending) < 4:
                continue
            piece = pending.decode("utf-8", errors="replace")
        pending = b""
        piece = piece.replace("\n", "↵\n")
        shown.append(f"\x1b[30;{backgrounds[count % len(backgrounds)]}m{piece}\x1b[0m" if colour else f"[{piece}]")
        count += 1
    if pending:
        shown.append(pending.decode("utf-8", errors="replace"))
    n_bytes = len(text.encode("utf-8"))
    ratio = n_bytes / max(len(ids), 1)
    return f"{''.join(shown)}\n{len(ids)} tokens for {n_bytes} bytes ({ratio:.2f} bytes/token): {ids}"


def readable(token):
    """A token as text if it is whole UTF-8, else as bytes: ' the', b'\\xe4\\xbd'."""
    try:
        return repr(token.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(token)


def compression_curve(merges, pattern, texts):
    """Bytes per token of each text for vocabularies made of the first k merges.

    Training is greedy, so the first k merges are exactly what training to 256 + k tokens learns:
    one training run gives the whole curve. tiktoken does the encoding (same ids, faster).
    """
    sizes = sorted({min(256 + len(merges), round(256 * 2 ** (step / 4))) for step in range(0, 80)})
    curve = {name: [] for name in texts}
    for size in sizes:
        encoding = bpe.Tokenizer(merges=merges[: size - 256], pattern=pattern).to_tiktoken()
        for name, documents in texts.items():
            tokens = sum(len(ids) for ids in encoding.encode_ordinary_batch(documents))
            curve[name].append(sum(len(doc.encode("utf-8")) for doc in documents) / max(tokens, 1))
    return sizes, curve


def plot_compression(sizes, curve, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, (name, values) in enumerate(curve.items()):
        ax.plot(sizes, values, marker="o", markersize=3, label=f"{name} text")
        last = (sizes[-1], values[-1])
        ax.annotate(f"{values[-1]:.2f}", last, textcoords="offset points", xytext=(4, 4 - 12 * k), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size (256 bytes + merges)")
    ax.set_ylabel("bytes per token (higher = shorter sequences)")
    ax.set_title("Compression of byte-level BPE")
    ax.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -----------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                        help="settings to start from (small: the same as tiny)")
    parser.add_argument("--input", type=Path,
                        help="UTF-8 text file to train on; its last 10%% is held out to measure compression "
                             "(default: the built-in sample corpus)")
    parser.add_argument("--vocab-size", type=cli.positive_int, help="256 bytes + merges + 1 special token (tiny: 1024)")
    parser.add_argument("--pattern", choices=sorted(bpe.PATTERNS), help="split pattern (tiny: gpt4, gpt2: gpt2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample corpus")
    parser.add_argument("--out-dir", type=Path, default=REPO / "runs" / "01_tokenizer",
                        help="where to write (default: runs/01_tokenizer)")
    parser.add_argument("--show", metavar="TEXT",
                        help="print TEXT with token boundaries coloured, using the tokenizer in --out-dir "
                             "(trains one first if there is none)")
    parser.add_argument("--no-colour", action="store_true", help="mark tokens with [brackets] instead of colours")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the tokenizer already in --out-dir (otherwise the script refuses)")
    return parser.parse_args(argv)


def training_text(args, preset, vocab_size, pattern_name):
    """The text to train on and the text held out to measure compression on: the last ~10% of --input, or
    the built-in sample corpus and fresh documents of it. Prints where it comes from."""
    if args.input is not None:
        text = bpe.read_text(args.input)
        cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1 or int(len(text) * 0.9)
        text, held_out = text[:cut], text[cut:]  # the last ~10% is not trained on
        source = str(args.input)
    else:
        text = sample_corpus(preset["documents"], seed=args.seed)
        held_out = sample_corpus(preset["documents"] // 10, seed=args.seed + 1)  # fresh documents
        source = f"built-in sample corpus (seed {args.seed}, {preset['documents']:,} documents)"
        if vocab_size > 8192:
            print(f"note: the sample corpus supports about 18,000 merges; for {vocab_size:,} tokens pass --input")
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"corpus: {source}, {megabytes:.2f} MB; pattern: {pattern_name}; vocab_size: {vocab_size}")
    return text, held_out


def measure_compression(tokenizer, text, held_out, plot_path):
    """Bytes per token against vocabulary size, on the training and the held-out text (at most 1 MB of each:
    plenty to measure compression, and quick for big inputs); plots it and prints the final figures."""
    texts = {"training": text[:1_000_000], "held-out": held_out[:1_000_000]}
    texts = {name: part.split(SPECIAL_TOKENS[0]) for name, part in texts.items() if part}
    sizes, curve = compression_curve(tokenizer.merges, tokenizer.pattern, texts)
    plot_compression(sizes, curve, plot_path)
    print("bytes per token:  " + "  ".join(f"{name} {values[-1]:.2f}" for name, values in curve.items()))
    n_merges, n_special = len(tokenizer.merges), len(SPECIAL_TOKENS)
    print(f"  (vocabulary: 256 bytes + {n_merges} merges + {n_special} special = {tokenizer.vocab_size})")


def main(argv=None):
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    vocab_size = args.vocab_size if args.vocab_size is not None else preset["vocab_size"]
    pattern_name = args.pattern or preset["pattern"]
    prefix = args.out_dir / "tokenizer"
    colour = not args.no_colour

    if args.show is not None:
        try:
            args.show.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("--show: the text is not valid Unicode (it holds lone surrogates, e.g. from "
                             "undecodable bytes on the command line); pass UTF-8 text") from None
    trained_before = prefix.with_suffix(".tiktoken").exists()
    if args.show is not None and trained_before and args.input is None and args.vocab_size is None:
        tokenizer = bpe.Tokenizer.load(prefix)
        print(f"tokenizer: {prefix}.tiktoken ({tokenizer.vocab_size} tokens)")
        print(show_tokens(tokenizer, args.show, colour))
        return tokenizer

    # Never replace an earlier tokenizer unless asked: later chapters' checkpoints may depend on it.
    cli.check_out_dir(args.out_dir, overwrite=args.overwrite, marker="tokenizer.tiktoken", resumable=False)

    # 1. The text: a file, or the built-in sample corpus. Keep some aside to measure compression on.
    text, held_out = training_text(args, preset, vocab_size, pattern_name)

    # 2. Train.
    start = time.perf_counter()
    tokenizer = bpe.train_bpe(text, vocab_size, SPECIAL_TOKENS, bpe.PATTERNS[pattern_name], verbose=True)
    print(f"trained {len(tokenizer.merges)} merges in {time.perf_counter() - start:.2f} s")
    paths = tokenizer.save(prefix)

    # 3. Compression against vocabulary size, on the training text and on held-out text.
    plot_path = args.out_dir / "compression.png"
    measure_compression(tokenizer, text, held_out, plot_path)
    print("\nfirst merges learned:", ", ".join(readable(a + b) for a, b in tokenizer.merges[:8]))
    print("last merges learned: ", ", ".join(readable(a + b) for a, b in tokenizer.merges[-8:]))
    print(show_tokens(tokenizer, args.show if args.show is not None else EXAMPLE, colour))
    print("\nwrote:")
    for path in (*paths, plot_path):
        print(f"  {path}")
    print("next: open compression.png, try --show 'your own text', then chapter 02: python 02_transformer/tour_gpt.py")
    return tokenizer


if __name__ == "__main__":
    cli.run(main)
