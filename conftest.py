"""pytest set-up: put every chapter folder on sys.path, as each chapter does for the earlier ones; and
the two things several chapters' tests share (the world fixture `w0`, the function `tiny_gpt`).

Chapter folders start with a digit (01_tokenizer, ...), so they cannot be packages; their module names
are unique across the repo, which is what makes one shared sys.path safe.
"""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
for chapter in sorted(REPO.glob("[0-9][0-9]_*")):
    if chapter.is_dir() and str(chapter) not in sys.path:
        sys.path.append(str(chapter))


@pytest.fixture(scope="module")
def w0():
    """The mini-world the chapters' data comes from: world.build_world(0)."""
    import world  # chapter 03, on sys.path from here on
    return world.build_world(0)


def tiny_gpt(vocab_size, seed=0, **overrides):
    """A seeded 2-layer GPT of width 32 (context 256) in eval mode: the chat model of tests 04 and 05.
    Use it in a test file with `from conftest import tiny_gpt`."""
    import torch
    from gpt import GPT, GPTConfig  # chapter 02

    torch.manual_seed(seed)
    config = dict(vocab_size=vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=32, attn_impl="sdpa")
    return GPT(GPTConfig(**{**config, **overrides})).eval()
