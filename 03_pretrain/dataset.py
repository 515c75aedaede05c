"""The data pipeline: text -> tokens on disk -> random (x, y) batches for next-token prediction.

    load_text(source)         "world" (default, offline: the mini-world of world.py), "tinyshakespeare"
                              or "tinystories" (downloaded once into data_cache/, checksum verified),
                              or a path to a UTF-8 .txt file or a folder of them
    train_tokenizer(text)     a chapter-01 BPE tokenizer with <|endoftext|>, when none is given
    encode_text(text, tok)    token ids through the tokenizer's tiktoken fast path; documents separated
                              by "<|endoftext|>" in the text become the <|endoftext|> token
    write_tokens, read_tokens a flat binary file of token ids (uint16 when the vocabulary fits in 16 bits,
                              else uint32) plus a JSON sidecar, read back through np.memmap
    prepare(source, out_dir)  all of the above: out_dir/{train,val}.bin (+ .json) and the tokenizer
    get_batch, TokenDataset   random windows of `context` tokens: x = tokens[i : i+T], y = tokens[i+1 : i+T+1]

Batches are drawn with an explicit random generator (a torch.Generator, or a numpy Generator) so a
training loop can save its state in a checkpoint and resume onto exactly the same batches.

Run it to prepare data by hand and see what it made:
    python 03_pretrain/dataset.py --data world --out-dir runs/03_pretrain/data
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one clear line for bad input)
import world  # noqa: E402  (same chapter folder)

EOT = world.EOT                       # "<|endoftext|>": the document separator, a special token
DATA_DIR = REPO / "data_cache"        # downloaded corpora (git-ignored)


# ----------------------------------------------------------------------------------------------------
# Sources

@dataclass(frozen=True)
class Download:
    """A public corpus we can fetch: where from, where to cache it, and how to recognise it."""
    url: str
    filename: str
    sha256: str
    size: int


DOWNLOADS = {
    # Karpathy's char-rnn Tiny Shakespeare, the corpus of nanoGPT's character-level runs (1.1 MB).
    "tinyshakespeare": Download(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "tinyshakespeare.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1_115_394),
    # The validation file of TinyStories (Eldan & Li, 2023), 21990 stories separated by <|endoftext|>
    # (19.4 MB). Size and sha256 as recorded by several public projects that pin this file.
    "tinystories": Download(
        "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt",
        "TinyStories-valid.txt", "94e431816c4cce81ff71e4408ff8d3bda9a42e8d2663986697c3954288cb38b4", 19_447_282),
}
SOURCES = ["world"] + sorted(DOWNLOADS)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(name, data_dir=None, quiet=False):
    """Path to the cached corpus `name` (a key of DOWNLOADS), downloading it on first use.

    The download goes to a temporary file, is checked against the recorded sha256, then renamed, so
    an interrupted or corrupted download never leaves a file that looks complete.
    Example: download("tinyshakespeare") -> REPO/data_cache/tinyshakespeare.txt
    """
    if name not in DOWNLOADS:
        raise ValueError(f"unknown corpus {name!r}; downloadable corpora are {sorted(DOWNLOADS)}")
    spec = DOWNLOADS[name]
    data_dir = Path(data_dir or DATA_DIR)
    path = data_dir / spec.filename
    if path.exists():
        _check_sha256(path, spec, "cached file")
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    if not quiet:
        print(f"downloading {name} ({spec.size / 1e6:.1f} MB) from {spec.url}", flush=True)
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"could not download {name} from {spec.url} ({err}). Are you offline? Either train on the "
            f"offline mini-world (the default source, 'world'), or fetch the file on a machine with a "
            f"network and place it by hand:\n    curl -L -o {path} {spec.url}\n"
            f"(expected {spec.size} bytes, sha256 {spec.sha256}).") from None
    try:
        _check_sha256(tmp, spec, "downloaded file")
    except ValueError:
        tmp.unlink()  # a corrupt download must not linger in the cache
        raise
    os.replace(tmp, path)
    if not quiet:
        print(f"saved {path}", flush=True)
    return path


def _check_sha256(path, spec, what):
    actual = sha256_of(path)
    if actual != spec.sha256:
        raise ValueError(f"{what} {path} has sha256 {actual} ({path.stat().st_size} bytes), but "
                         f"{spec.url} should have sha256 {spec.sha256} ({spec.size} bytes). Delete the "
                         f"file and download it again.")


def read_text(path):
    """The text of a UTF-8 file, or of every *.txt file under a folder (sorted, each followed by
    "<|endoftext|>" so that each file is a document). Clear errors for a missing path, a folder
    without .txt files, a file that is not UTF-8, and an empty corpus."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}. Give a UTF-8 text file, a folder of "
                                f".txt files, or one of the named sources {SOURCES}.")
    files = sorted(p for p in path.rglob("*.txt") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"the folder {path} has no .txt files: put UTF-8 text files named *.txt in it")
    texts = []
    for file in files:
        raw = file.read_bytes()
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(f"{file} is not UTF-8 text: byte {raw[err.start]:#04x} at offset {err.start} "
                             f"cannot be decoded. Convert it first, e.g. iconv -f latin1 -t utf-8 "
                             f"{file} > fixed.txt") from None
    text = texts[0] if not path.is_dir() else "".join(t + EOT for t in texts if t.strip())
    if not text.replace(EOT, "").strip():
        raise ValueError(f"the corpus at {path} is empty (no text besides whitespace): nothing to train on")
    return text


def load_text(source="world", n_bytes=None, seed=0, data_dir=None):
    """The training text of `source`: "world" (make_corpus(n_bytes or 3 MB, seed)), "tinyshakespeare",
    "tinystories" (downloaded on first use), or a path. `n_bytes` also truncates downloaded or file
    corpora (at a character boundary), which is handy for quick runs."""
    if n_bytes is not None and n_bytes < 1:
        raise ValueError(f"n_bytes={n_bytes}: give a positive number of bytes, or None for the whole corpus")
    if source == "world":
        return world.make_corpus(n_bytes or world.DEFAULT_CORPUS_BYTES, seed=seed)
    text = read_text(download(source, data_dir) if source in DOWNLOADS else source)
    if n_bytes is not None:
        text = text.encode("utf-8")[:n_bytes].decode("utf-8", errors="ignore")
    return text


# ----------------------------------------------------------------------------------------------------
# Tokens

def train_tokenizer(text, vocab_size=2048, save_prefix=None, max_bytes=4_000_000, verbose=False):
    """A chapter-01 byte-level BPE tokenizer trained on (the first `max_bytes` of) `text`, with
    <|endoftext|> as its special token; saved to <save_prefix>.tiktoken/.json when a prefix is given.

    The tokenizer is deterministic (chapter 01 breaks ties in a fixed way), so the same text and
    vocab size always give the same tokenizer.
    """
    import bpe
    sample = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    tokenizer = bpe.train_bpe(sample, vocab_size, special_tokens=[EOT], verbose=verbose)
    if save_prefix is not None:
        Path(save_prefix).parent.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(save_prefix))
    return tokenizer


def load_tokenizer(tokenizer):
    """Accept a chapter-01 Tokenizer or a path to a saved one (prefix, .tiktoken or .json file)."""
    if isinstance(tokenizer, (str, Path)):
        import bpe
        return bpe.Tokenizer.load(str(tokenizer))
    return tokenizer


def _tokenizer_prefix(path):
    """"runs/x/tokenizer.tiktoken" or ".json" or the bare prefix -> "runs/x/tokenizer"."""
    path = str(path)
    for suffix in (".tiktoken", ".json"):
        if path.endswith(suffix):
            return path[:-len(suffix)]
    return path


def tokenizer_fingerprint(tokenizer):
    """sha256 of the files Tokenizer.save writes for this tokenizer (.tiktoken then .json): equal for equal
    tokenizers, whether given as a Tokenizer or as the path of a saved one."""
    tokenizer = load_tokenizer(tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        paths = tokenizer.save(str(Path(tmp) / "tokenizer"))
        return hashlib.sha256(b"".join(Path(path).read_bytes() for path in paths)).hexdigest()


def _reusable(train_path, val_path, key):
    """The train sidecar if both token files exist, are complete, were made with `key` (the hashes of the
    corpus and the tokenizer), and the tokenizer saved beside them is still that tokenizer."""
    try:
        meta = read_meta(train_path)
        saved_tokenizer = Path(train_path).parent / "tokenizer"  # the run folder's own copy
        if meta.get("settings") != key or tokenizer_fingerprint(saved_tokenizer) != meta.get("tokenizer_sha256"):
            return None
        read_tokens(train_path), read_tokens(val_path)      # raises if either file is incomplete
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_same_data(expect, corpus_sha256, tokenizer_sha256, source):
    """Raise ValueError if the corpus or the tokenizer is not the one of the run being resumed (`expect`:
    {"corpus_sha256": ..., "tokenizer_sha256": ...} from its checkpoint; a missing entry is not checked)."""
    fix = ("resume with the same --data, --bytes, --tokenizer and --vocab-size as that run, or start a new run "
           "with --overwrite or another --out-dir")
    saved = expect.get("corpus_sha256")
    if saved is not None and saved != corpus_sha256:
        raise ValueError(f"--resume: --data {source} is not the corpus this run was trained on (sha256 "
                         f"{corpus_sha256[:12]}, the checkpoint's {saved[:12]}): {fix}")
    saved = expect.get("tokenizer_sha256")
    if saved is not None and tokenizer_sha256 is not None and saved != tokenizer_sha256:
        raise ValueError(f"--resume: this tokenizer is not the one this run was trained on (sha256 "
                         f"{tokenizer_sha256[:12]}, the checkpoint's {saved[:12]}): {fix}")


def token_dtype(vocab_size):
    """uint16 when every id fits in 16 bits (vocab_size <= 65536), else uint32.

    Example: token_dtype(50304) -> uint16 (half the disk and memory); token_dtype(100277) -> uint32.
    """
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size > 2**32:
        raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def encode_text(text, tokenizer, batch_docs=4096):
    """Token ids of `text` as a 1-D int64 numpy array, through the tokenizer's tiktoken fast path.

    The text is cut at every "<|endoftext|>"; the pieces are encoded as ordinary text (several at a
    time, on several threads) and joined by the <|endoftext|> id. So a separator in the text always
    becomes the special token, and no other text can: "<|end" + "oftext|>" typed by a user stays text.
    """
    encoding = tokenizer.to_tiktoken()
    pieces = text.split(EOT)
    if len(pieces) > 1 and EOT not in tokenizer.special_tokens:
        raise ValueError(f"the text has {EOT} separators but the tokenizer has no {EOT} special token: "
                         f"train it with special_tokens=['{EOT}'] or add it with .with_special_tokens(['{EOT}'])")
    eot_id = tokenizer.special_tokens.get(EOT)
    chunks = []
    for start in range(0, len(pieces), batch_docs):
        batch = pieces[start:start + batch_docs]
        flat = []
        for i, ids in enumerate(encoding.encode_ordinary_batch(batch, num_threads=2)):
            flat.extend(ids)
            if start + i < len(pieces) - 1:
                flat.append(eot_id)
        chunks.append(np.array(flat, dtype=np.int64))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def write_tokens(tokens, path, vocab_size, **meta):
    """Write token ids to `path` (.bin, raw little-endian uint16/uint32) and a JSON sidecar next to
    it (same name, .json) with dtype, vocab_size, token count and anything in `meta`. Both files are
    written to a temporary name first and renamed, so a reader never sees half a file.

    Example: write_tokens(ids, "runs/03_pretrain/data/train.bin", 2048, source="world")
        -> writes train.bin (2 bytes per token) and train.json {"dtype": "uint16", "vocab_size": 2048, ...}
    """
    path = Path(path)
    tokens = np.asarray(tokens)
    dtype = token_dtype(vocab_size)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); found {tokens.min()}..{tokens.max()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tokens.astype(dtype.newbyteorder("<")).tofile(tmp)
    os.replace(tmp, path)
    sidecar = {"dtype": dtype.name, "vocab_size": int(vocab_size), "tokens": int(tokens.size), **meta}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    os.replace(tmp, path.with_suffix(".json"))
    return sidecar


def read_meta(path):
    """The JSON sidecar of a token file written by write_tokens."""
    sidecar = Path(path).with_suffix(".json")
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar} is missing: token files are written by dataset.prepare() or "
                                f"write_tokens(), which put a .json sidecar next to each .bin")
    return json.loads(sidecar.read_text())


def read_tokens(path):
    """The token ids in `path` as a read-only np.memmap (nothing is loaded until it is indexed)."""
    path = Path(path)
    meta = read_meta(path)
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    expected = meta["tokens"] * dtype.itemsize
    if not path.exists() or path.stat().st_size != expected:
        size = path.stat().st_size if path.exists() else "no"
        raise ValueError(f"{path} has {size} bytes but its sidecar says {meta['tokens']} {meta['dtype']} tokens "
                         f"({expected} bytes): the file is truncated or stale; run prepare() again")
    if meta["tokens"] == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(meta["tokens"],))


def split_tokens(tokens, val_fraction, eot_id=None):
    """Cut the token stream into (train, val): the last `val_fraction` for validation, moved forward
    to just after a document end when there is one, so no document is split between the two."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    cut = int(len(tokens) * (1 - val_fraction))
    if eot_id is not None:
        ends = np.flatnonzero(tokens[cut:] == eot_id)
        if len(ends) and cut + ends[0] + 1 < len(tokens):
            cut = cut + ends[0] + 1
    return tokens[:cut], tokens[cut:]


def check_split_sizes(n_train, n_val, context=None):
    """ValueError unless each split holds at least one window of `context` + 1 tokens (at least 2)."""
    need = max(2, (context or 0) + 1)
    if n_train < need or n_val < need:
        raise ValueError(f"the corpus gives {n_train} train and {n_val} val tokens, but each split needs at "
                         f"least {need}" + (f" (a window of context {context} + 1)" if context else "")
                         + ": use a bigger corpus" + (" or a smaller --context" if context else ""))


def prepare(source="world", out_dir=REPO / "runs" / "03_pretrain" / "data", tokenizer=None, vocab_size=2048,
            val_fraction=0.1, n_bytes=None, seed=0, data_dir=None, reuse=True, verbose=True, expect=None,
            context=None):
    """Turn `source` into out_dir/train.bin and out_dir/val.bin (+ .json sidecars) and save the tokenizer as
    out_dir/tokenizer.tiktoken + .json; return the train sidecar (a dict: dtype, vocab_size, tokens,
    val_tokens, tokenizer (its absolute path prefix), tokenizer_sha256, corpus_sha256, source, ...).

    tokenizer: a chapter-01 Tokenizer, or the path of a saved one (copied into out_dir, so the run folder
    holds all it needs and a relative path may change meaning later); None trains one with `vocab_size`.
    The token files are a cache keyed on CONTENT: the sha256 of the corpus text and of the tokenizer (or
    the vocab size to train one). With reuse=True the files of the same content are kept; a corpus edited
    in place is tokenized again. expect: the hashes of a run being resumed; if the corpus or the
    tokenizer differs, ValueError. context: each split must hold more than this many tokens.
    Everything is checked before anything is written, so a bad input leaves out_dir as it was.
    """
    out_dir = Path(out_dir)
    if isinstance(tokenizer, (str, Path)):
        if not Path(_tokenizer_prefix(tokenizer) + ".tiktoken").exists():
            raise FileNotFoundError(f"no tokenizer at {_tokenizer_prefix(tokenizer)}.tiktoken: give the prefix or "
                                    f".tiktoken file of a tokenizer saved by chapter 01, or none to train one")
        tokenizer = load_tokenizer(tokenizer)
    start = time.time()
    text = load_text(source, n_bytes=n_bytes, seed=seed, data_dir=data_dir)
    corpus_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    # what the token files depend on: the corpus and the tokenizer, by content
    key = {"corpus_sha256": corpus_sha256, "val_fraction": val_fraction,
           "tokenizer_sha256": None if tokenizer is None else tokenizer_fingerprint(tokenizer),
           "vocab_size": vocab_size if tokenizer is None else None}
    train_path, val_path = out_dir / "train.bin", out_dir / "val.bin"
    meta = _reusable(train_path, val_path, key) if reuse else None
    if meta is not None:
        check_same_data(expect or {}, corpus_sha256, meta["tokenizer_sha256"], source)
        check_split_sizes(meta["tokens"], meta["val_tokens"], context)
        if verbose:
            print(f"reusing {train_path} and {val_path} ({meta['tokens']:,} + {meta['val_tokens']:,} tokens: "
                  f"the same corpus and tokenizer)")
        return meta
    if verbose:
        print(f"corpus {source}: {len(text.encode('utf-8')):,} bytes ({time.time() - start:.1f} s)", flush=True)
    if expect:  # a resumed run: a different corpus is refused before a tokenizer is trained on it
        check_same_data({"corpus_sha256": expect.get("corpus_sha256")}, corpus_sha256, None, source)
    if tokenizer is None:
        start = time.time()
        tokenizer = train_tokenizer(text, vocab_size)
        if verbose:
            print(f"trained a {tokenizer.vocab_size}-token BPE tokenizer ({time.time() - start:.1f} s)", flush=True)
    tokenizer_sha256 = tokenizer_fingerprint(tokenizer)
    check_same_data(expect or {}, corpus_sha256, tokenizer_sha256, source)
    start = time.time()
    tokens = encode_text(text, tokenizer)
    eot_id = tokenizer.special_tokens.get(EOT)
    train, val = split_tokens(tokens, val_fraction, eot_id)
    check_split_sizes(len(train), len(val), context)
    # every input is good: only now write (tokenizer first, the train sidecar, which makes the set valid, last)
    tokenizer_prefix = str(out_dir.absolute() / "tokenizer")
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(tokenizer_prefix)
    common = {"source": str(source), "tokenizer": tokenizer_prefix, "tokenizer_sha256": tokenizer_sha256,
              "corpus_sha256": corpus_sha256, "eot_id": eot_id, "settings": key, "bytes": len(text.encode("utf-8"))}
    write_tokens(val, val_path, tokenizer.vocab_size, split="val", **common)
    meta = write_tokens(train, train_path, tokenizer.vocab_size, split="train", val_tokens=int(len(val)), **common)
    if verbose:
        print(f"{len(tokens):,} tokens ({len(text.encode('utf-8')) / max(1, len(tokens)):.2f} bytes/token, "
              f"{time.time() - start:.1f} s): {train_path} ({len(train):,}), {val_path} ({len(val):,})", flush=True)
    return meta


# ----------------------------------------------------------------------------------------------------
# Batches

def get_batch(tokens, batch_size, context, generator=None, device="cpu"):
    """`batch_size` random windows of the token stream: x (B, T) and y (B, T) int64, y[:, t] = x[:, t+1].

    Window b starts at i_b, drawn uniformly from [0, len(tokens) - T - 1] with `generator`: a
    torch.Generator (saved and restored with .get_state()/.set_state()), a numpy Generator
    (.bit_generator.state), or None for torch's global RNG. Like GPT-2 and nanoGPT, a window may span
    several documents: attention crosses the <|endoftext|> between them, and the model learns that what
    follows <|endoftext|> does not depend on what came before it.

    Example, tokens = [10, 11, 12, 13, 14], context 3, a start of 1: x = [[11, 12, 13]], y = [[12, 13, 14]].
    """
    n = len(tokens)
    if n < context + 1:
        raise ValueError(f"this split has {n} tokens, but a window of context {context} needs {context + 1}: "
                         f"use a smaller context or a bigger corpus")
    if isinstance(generator, np.random.Generator):
        starts = generator.integers(0, n - context, size=batch_size)
    else:
        starts = torch.randint(n - context, (batch_size,), generator=generator).numpy()
    window = np.stack([np.asarray(tokens[i:i + context + 1], dtype=np.int64) for i in starts])  # (B, T+1)
    window = torch.from_numpy(window)
    x, y = window[:, :-1], window[:, 1:]
    if str(device).startswith("cuda"):
        return tuple(t.contiguous().pin_memory().to(device, non_blocking=True) for t in (x, y))
    return tuple(t.contiguous().to(device) for t in (x, y))


class TokenDataset:
    """The train and val token files of a prepared folder, with get_batch(split, ...).

    Example:
        data = TokenDataset("runs/03_pretrain/data")
        x, y = data.get_batch("train", batch_size=12, context=64, generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        self.meta = read_meta(self.data_dir / "train.bin")
        self.vocab_size = self.meta["vocab_size"]
        self.tokenizer_path = self.meta.get("tokenizer")
        self.lengths = {split: len(self.tokens(split)) for split in ("train", "val")}

    def tokens(self, split):
        """A fresh memmap of one split (like nanoGPT, re-opened per batch so pages are not held)."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return read_tokens(self.data_dir / f"{split}.bin")

    def get_batch(self, split, batch_size, context, generator=None, device="cpu"):
        """(x, y): see the module-level get_batch."""
        return get_batch(self.tokens(split), batch_size, context, generator, device)


def main(argv=None):
    parser = cli.ArgumentParser(description="Prepare token files for pretraining and show a batch.")
    parser.add_argument("--data", default="world",
                        help=f"a source ({', '.join(SOURCES)}) or a path to a UTF-8 file or folder (default: world)")
    parser.add_argument("--out-dir", default=str(REPO / "runs" / "03_pretrain" / "data"))
    parser.add_argument("--overwrite", action="store_true", help="replace the token files already in --out-dir")
    parser.add_argument("--tokenizer", default=None, help="a saved chapter-01 tokenizer (default: train one)")
    parser.add_argument("--vocab-size", type=cli.positive_int, default=2048,
                        help="vocab size when training a tokenizer")
    parser.add_argument("--bytes", type=cli.positive_int, default=None, help="use only this many bytes of the corpus")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mini-world corpus")
    args = parser.parse_args(argv)
    # a folder with token files (a pretraining run's folder among them) is replaced only when asked
    cli.check_out_dir(args.out_dir, overwrite=args.overwrite, marker="train.bin", resumable=False)
    meta = prepare(args.data, args.out_dir, args.tokenizer, args.vocab_size, n_bytes=args.bytes, seed=args.seed,
                   reuse=False)
    data = TokenDataset(args.out_dir)
    x, y = data.get_batch("train", 2, 16, torch.Generator().manual_seed(0))
    tokenizer = load_tokenizer(meta["tokenizer"])
    print(f"\nwrote {args.out_dir}: train {data.lengths['train']:,} and val {data.lengths['val']:,} tokens "
          f"({meta['dtype']}, vocab {meta['vocab_size']})")
    print(f"a batch: x[0] = {x[0].tolist()}\n         y[0] = {y[0].tolist()}  (x shifted by one)")
    print(f"x[0] as text: {tokenizer.decode(x[0].tolist())!r}")


if __name__ == "__main__":
    cli.run(main)
