"""Talk to the SFT model: a REPL that streams the reply token by token through the KV cache.

    python 04_sft/chat.py                                   # runs/04_sft/ckpt.pt, interactive
    python 04_sft/chat.py --prompt "What is the capital of Hihodand?"   # one reply, then exit (scripts, tests)
    python 04_sft/chat.py --temp 0 --max-new-tokens 200     # greedy, longer replies
    python 04_sft/chat.py --web                             # a chat page at http://127.0.0.1:8000 (chat_web.py)

Commands in the REPL: /reset (forget the conversation), /temp X (sampling temperature, 0 = greedy),
/quit (or Ctrl-D). Ctrl-C stops a reply that runs on.

Every turn renders the WHOLE conversation with the same render_chat() that training used, ending in
<|assistant|>, and GPT.stream() yields the reply one token at a time until <|end|>. The model's context is
short (256 tokens for the tiny preset), so the oldest exchanges are dropped, with a notice, when the
conversation and room for the reply no longer fit.
"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one clear line for bad input)
from chat_session import MAX_NEW_TOKENS, TEMPERATURE, TOP_K, ChatSession  # noqa: E402, F401  (this chapter)
from chat_web import serve  # noqa: E402  (this chapter: --web)
from hardware import pick_device  # noqa: E402  (chapter 03)
from model_loader import WrongStageError, find_chat_models, load_model  # noqa: E402  (chapter 03)

RUNS = REPO / "runs"
DEFAULT_CKPT = RUNS / "04_sft" / "ckpt.pt"
HELP = "commands: /reset (new conversation), /temp X (temperature, 0 = greedy), /quit"
def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help=f"the chat model (default: {DEFAULT_CKPT}; with --web: every chat model "
                        f"under runs/, this one first)")
    add_chat_arguments(parser)
    add_web_arguments(parser)
    return parser.parse_args(argv)


def add_chat_arguments(parser):
    """--prompt, --system, --temp, --top-k, --max-new-tokens, --seed, --device: chat.py's and chapter 06's
    chat_quantized.py's, with the chat defaults of chat_session.py."""
    parser.add_argument("--prompt", help="answer this one message and exit (no REPL)")
    parser.add_argument("--system", help="a system message that opens the conversation")
    parser.add_argument("--temp", type=cli.non_negative_float, default=TEMPERATURE,
                        help=f"sampling temperature, 0 = greedy (default {TEMPERATURE})")
    parser.add_argument("--top-k", type=cli.positive_int, default=TOP_K,
                        help=f"sample among the k likeliest tokens (default {TOP_K})")
    parser.add_argument("--max-new-tokens", type=cli.positive_int, default=MAX_NEW_TOKENS,
                        help=f"longest reply, in tokens (default {MAX_NEW_TOKENS})")
    parser.add_argument("--seed", type=cli.non_negative_int, default=None, help="make sampling repeatable")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")


def add_web_arguments(parser):
    """--web, --port, --host: chat.py's and chapter 06's chat_quantized.py's."""
    parser.add_argument("--web", action="store_true", help="serve a chat page in the browser instead of the REPL")
    parser.add_argument("--port", type=cli.non_negative_int, default=8000, help="--web: the port (default 8000; 0 = any free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="--web: the address to listen on (default 127.0.0.1: this machine only)")


def load_chat_model(path, device="cpu"):
    """(model, tokenizer) of a chat checkpoint (SFT, an RLHF policy, ...): FileNotFoundError (saying what to
    run) for a missing one, ValueError for a checkpoint that is not a chat model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no chat model at {path}. Fine-tune one first:\n    python 04_sft/sft.py "
                                f"--preset tiny\n(or pass --ckpt PATH)")
    try:
        model, tokenizer, meta = load_model(path, stage="chat", device=device)
    except WrongStageError as error:
        fix = f"; fine-tune it first: python 04_sft/sft.py --base {path}" if error.role == "base" else ""
        raise WrongStageError(f"{error}{fix}", error.stage, error.role) from None
    return model, tokenizer


def repl(session):
    print(f"chatting with a {session.model.num_params() / 1e6:.1f}M-parameter model "
          f"(context {session.model.config.block_size} tokens, temperature {session.temperature}). {HELP}")
    while True:
        try:
            text = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not text:
            continue
        if text.startswith("/"):
            command, _, value = text.partition(" ")
            if command in ("/quit", "/exit"):
                return
            if command == "/reset":
                session.reset()
                print("[new conversation]")
            elif command == "/temp":
                try:
                    session.temperature = cli.non_negative_float(value.strip())  # refuses nan and inf too
                    print(f"[temperature {session.temperature}]")
                except argparse.ArgumentTypeError as error:
                    print(f"[/temp needs a number >= 0, e.g. /temp 0.7 (0 = greedy): {error}]")
            else:
                print(f"[unknown command {command}] {HELP}")
            continue
        started = []

        def show(piece):  # the header comes with the first piece, after any notice about dropped turns
            if not started:
                print("assistant> ", end="")
                started.append(True)
            print(piece, end="", flush=True)

        try:
            _, ended = session.respond(text, on_text=show)
        except ValueError as error:
            print(f"[{error}]")
            continue
        if not started:
            print("assistant> ", end="")
        print("" if ended else "\n[reply cut at --max-new-tokens]")


def main(argv=None):
    """The script: `python chat.py ...` runs it through cli.run (a bad input is one line, exit code 2)."""
    args = parse_args(argv)
    device = pick_device(args.device)  # one clear line for a device this machine lacks
    if args.web:
        models = {name: (path, load_chat_model) for name, path in web_models(args).items()}
        return serve_web(models, args, device)
    model, tokenizer = load_chat_model(args.ckpt or DEFAULT_CKPT, device)
    return chat_with(model, tokenizer, args)


def web_models(args):
    """{name: path} for --web: --ckpt first if given, then the chat models under runs/ (chat_web.py)."""
    models = {args.ckpt: Path(args.ckpt)} if args.ckpt else {}
    given = Path(args.ckpt).resolve() if args.ckpt else None
    models.update({name: path for name, path in find_chat_models(RUNS).items() if path.resolve() != given})
    if not models:
        raise FileNotFoundError(f"no chat model under {RUNS}: fine-tune one first:\n    python 04_sft/sft.py "
                                f"--preset tiny\n(or pass --ckpt PATH)")
    return models


def serve_web(models, args, device):
    """--web: serve the chat page (chat_web.py) with models {name: (path, load)} until Ctrl-C."""
    if args.prompt is not None:
        raise ValueError("--web and --prompt do not go together: drop --prompt (the page asks the questions)")
    if args.system is not None:
        raise ValueError("--web has no --system: drop it (the page sends the conversation as it is)")
    settings = {"temperature": args.temp, "top_k": args.top_k, "max_new_tokens": args.max_new_tokens,
                "seed": args.seed}
    serve(models, args.host, args.port, device, settings)


def chat_with(model, tokenizer, args):
    """Answer --prompt once (printing the reply as it streams) and return it, or open the REPL.
    Chapter 06's chat_quantized.py ends the same way, with a quantized model."""
    session = ChatSession(model, tokenizer, args.temp, args.top_k, args.max_new_tokens, args.seed, args.system,
                          notify=lambda message: print(message, file=sys.stderr))
    if args.prompt is not None:
        reply, _ = session.respond(args.prompt, on_text=lambda piece: print(piece, end="", flush=True))
        print()
        return reply
    repl(session)


if __name__ == "__main__":
    cli.run(main)
