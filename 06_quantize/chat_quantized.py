"""Talk to a quantized chat model: chapter 04's REPL (ChatSession, streaming through the KV cache) on a
checkpoint written by quantize.py.

    python 06_quantize/chat_quantized.py                                  # runs/06_quantize/gptq4/ckpt.pt
    python 06_quantize/chat_quantized.py --ckpt runs/06_quantize/llm_int8/ckpt.pt
    python 06_quantize/chat_quantized.py --prompt "What is the capital of Hihodand?" --temp 0   # one reply
    python 06_quantize/chat_quantized.py --web       # chat page: the chat models of 04-05 and the quantized ones

Commands in the REPL: /reset, /temp X, /quit (see 04_sft/chat.py). Any full-precision chat checkpoint
(chapter 04 or 05) loads too, so the same question can be put to the model before and after quantization.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01)
import quant_checkpoint  # noqa: E402, F401  (this chapter: registers the "quantized" format with the loader)
from chat import (RUNS, add_chat_arguments, add_web_arguments, chat_with,  # noqa: E402  (chapter 04)
                  serve_web)
from hardware import pick_device  # noqa: E402  (chapter 03)
from model_loader import find_chat_models, load_model  # noqa: E402  (chapter 03: the one loader)

DEFAULT_CKPT = REPO / "runs" / "06_quantize" / "gptq4" / "ckpt.pt"


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help=f"a quantized chat model (default: {DEFAULT_CKPT}; with --web: every chat "
                        f"model under runs/, this one first)")
    add_chat_arguments(parser)
    add_web_arguments(parser)
    args = parser.parse_args(argv)
    device = pick_device(args.device)

    if args.web:  # chapter 04's page, with every chat model the loader can rebuild (the quantized ones too)
        models = {args.ckpt: (Path(args.ckpt), load_quantized_chat_model)} if args.ckpt else {}
        given = Path(args.ckpt).resolve() if args.ckpt else None  # listed once, first
        models.update((name, (path, load_quantized_chat_model)) for name, path in find_chat_models(RUNS).items()
                      if path.resolve() != given)
        if not models:
            raise FileNotFoundError(f"no chat model under {RUNS}: fine-tune one (python 04_sft/sft.py --preset "
                                    f"tiny) and quantize it (python 06_quantize/quantize.py --preset tiny)")
        return serve_web(models, args, device)
    path = args.ckpt or DEFAULT_CKPT
    model, tokenizer, checkpoint = load_quantized_chat_model(path, device, with_checkpoint=True)
    print(f"[{checkpoint.get('stage', 'float')} model from {checkpoint.get('source') or path}]", file=sys.stderr)
    return chat_with(model, tokenizer, args)


def load_quantized_chat_model(path, device="cpu", with_checkpoint=False):
    """(model, tokenizer) of a quantized (or float) chat checkpoint, + its metadata if asked:
    FileNotFoundError saying what to run for a missing one, ValueError for one that is not a chat model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no quantized model at {path}: make them with  python 06_quantize/quantize.py "
                                f"--preset tiny  (or pass --ckpt PATH)")
    model, tokenizer, meta = load_model(path, stage="chat", device=device)
    return (model, tokenizer, meta) if with_checkpoint else (model, tokenizer)


if __name__ == "__main__":
    cli.run(main)
