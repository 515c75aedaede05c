"""pytest set-up: put every chapter folder on sys.path, as each chapter does for the earlier ones.

Chapter folders start with a digit (01_tokenizer, ...), so they cannot be packages; their module names
are unique across the repo, which is what makes one shared sys.path safe.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
for chapter in sorted(REPO.glob("[0-9][0-9]_*")):
    if chapter.is_dir() and str(chapter) not in sys.path:
        sys.path.append(str(chapter))
