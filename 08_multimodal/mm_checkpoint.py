"""Loading and saving chapter 08's models: every checkpoint read of the chapter goes through here.

    chat_model, tokenizer = load_chat_model("runs/04_sft/ckpt.pt")     # chapter 04's chat model
    llava, tokenizer = load_llava("runs/08_multimodal/llava/ckpt.pt")  # the LLaVA model and its tokenizer
    tool_model, tokenizer = load_tool_model("runs/08_multimodal/tools/ckpt.pt")
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from chat import load_chat_model as load_04_chat_model  # noqa: E402  (chapter 04)
from model_loader import load_model  # noqa: E402  (chapter 03: the one loader)
from checkpoint import read_checkpoint  # noqa: E402  (chapter 03)

DEFAULT_CHAT = REPO / "runs" / "04_sft" / "ckpt.pt"
DEFAULT_RUN = REPO / "runs" / "08_multimodal"


def load_chat_model(path=DEFAULT_CHAT, device="cpu"):
    """(model, tokenizer) of chapter 04's chat model; FileNotFoundError saying what to run when missing."""
    return load_04_chat_model(path, device)


def save_tokenizer(tokenizer, folder):
    """The tokenizer (with chapter 08's tokens) beside a stage's checkpoint: folder/tokenizer.tiktoken/.json."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    tokenizer.save(Path(folder) / "tokenizer")


def load_llava(path=DEFAULT_RUN / "llava" / "ckpt.pt", device="cpu"):
    """(LLaVA model, tokenizer) from multimodal.py's llava/ckpt.pt; FileNotFoundError saying what to run."""
    from bpe import Tokenizer
    from llava import build_llava
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no vision chat model at {path}. Train one first:\n    python "
                                f"08_multimodal/multimodal.py --preset tiny")
    checkpoint = read_checkpoint(path)
    if checkpoint.get("stage") != "llava" or "model_config" not in checkpoint:
        raise ValueError(f"{path} is not a chapter-08 LLaVA checkpoint (stage {checkpoint.get('stage')!r})")
    model = build_llava(checkpoint["model_config"], checkpoint["model"]).to(device)
    return model, Tokenizer.load(path.parent / "tokenizer")


def load_tool_model(path=DEFAULT_RUN / "tools" / "ckpt.pt", device="cpu"):
    """(GPT, tokenizer) of the tool-calling chat model (a chapter-02 GPT with chapter 08's tokens)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tool model at {path}. Train one first:\n    python "
                                f"08_multimodal/multimodal.py --preset tiny")
    model, tokenizer, _ = load_model(path, stage="tools", device=device)
    return model, tokenizer
