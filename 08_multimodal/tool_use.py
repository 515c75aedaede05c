"""A chat model that calls tools: the format, a calculator without eval, transcripts, and the runtime loop.

    calculate("23 + 45 * (2 - 1)")          # -> "68": our own parser, exact (fractions), never eval()
    ids, loss_mask = render_tool_transcript(question, [("calc(23+45)", "68")], "The answer is 68.", tokenizer)
    replies, traces = run_with_tools(model, tokenizer, questions, tools)     # generate, call, feed back, repeat

The format (four special tokens; the model writes the call, the RUNTIME writes the result):

    <|user|>What is 23 + 45?<|end|><|assistant|><|tool|>calc(23 + 45)<|/tool|><|result|>68<|/result|>The answer is 68.<|end|>
                                                 └──── model, learned ────┘└─ runtime, not learned ─┘└─── model, learned ───┘

Generation stops at <|/tool|> (a call) or <|end|> (the reply). On a call the runtime parses name(argument),
runs the tool, appends <|result|>…<|/result|> and lets the model continue; after MAX_CALLS calls it stops
the loop (a model that calls forever is cut off, with a note in the trace). This is the loop of Toolformer,
Visual ChatGPT, HuggingGPT and ChatGPT's plugins, at the size of a toy.
"""
import re
import sys
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import generation  # noqa: E402  (chapter 02)
from chat_format import END, render_chat, reply_text  # noqa: E402  (chapter 04)

TOOL, TOOL_END, RESULT, RESULT_END = "<|tool|>", "<|/tool|>", "<|result|>", "<|/result|>"
TOOL_TOKENS = [TOOL, TOOL_END, RESULT, RESULT_END]
MAX_CALLS = 4  # tool calls per reply before the runtime stops the loop
MAX_EXPRESSION = 200  # characters a calculator expression may have


# ----------------------------------------------------------------------------------------------------
# The calculator: a recursive-descent parser, never eval


class CalcError(ValueError):
    """An expression the calculator cannot evaluate (its message is what the model gets back)."""


def tokenize_expression(text):
    """'12*(3+4)' -> ['12', '*', '(', '3', '+', '4', ')']; CalcError on any other character."""
    tokens = re.findall(r"\d+|[-+*/()]|\S", text)
    bad = [t for t in tokens if not re.fullmatch(r"\d+|[-+*/()]", t)]
    if bad:
        raise CalcError(f"unexpected {bad[0]!r}: the calculator knows digits, + - * / and parentheses")
    return tokens


def calculate(text):
    """Evaluate an arithmetic expression exactly: integers, + - * /, unary minus, parentheses.

        expression := term (("+" | "-") term)*
        term       := factor (("*" | "/") factor)*
        factor     := ("-" | "+") factor | integer | "(" expression ")"

    Arithmetic is on fractions.Fraction, so 7/2*2 is 7, not 7.000000001. Returns the value as text: an
    integer ("68"), else a decimal with at most 6 places ("3.5"). Raises CalcError (a ValueError) for
    anything else: unknown characters, a malformed expression, division by zero, an expression longer
    than MAX_EXPRESSION characters. Nothing is ever passed to eval or exec.

    >>> calculate("23 + 45"), calculate("2 * (3 - 5) / 4"), calculate("7 / 2")
    ('68', '-1', '3.5')
    """
    if len(text) > MAX_EXPRESSION:
        raise CalcError(f"expression longer than {MAX_EXPRESSION} characters")
    tokens = tokenize_expression(text)
    if not tokens:
        raise CalcError("empty expression")
    position = 0

    def peek():
        return tokens[position] if position < len(tokens) else None

    def take():
        nonlocal position
        position += 1
        return tokens[position - 1]

    # --- student part: the calculator's grammar (lesson: "6. Tools") ---
    def expression():
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    def term():
        value = factor()
        while peek() in ("*", "/"):
            op, right = take(), factor()
            if op == "/" and right == 0:
                raise CalcError("division by zero")
            value = value * right if op == "*" else value / right
        return value

    def factor():
        token = peek()
        if token in ("-", "+"):
            take()
            return -factor() if token == "-" else factor()
        if token == "(":
            take()
            value = expression()
            if peek() != ")":
                raise CalcError("a '(' without its ')'")
            take()
            return value
        if token is not None and token.isdigit():
            return Fraction(int(take()))
        raise CalcError(f"expected a number, got {token or 'the end'}")
    # --- end of student part ---

    value = expression()
    if position != len(tokens):
        raise CalcError(f"unexpected {tokens[position]!r} after a complete expression")
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


CALL = re.compile(r"^\s*([a-z_]+)\((.*)\)\s*$", re.S)


def run_tool(call, tools):
    """'calc(2+3)' -> the tool's result as text; every failure comes back as 'error: ...' (the model sees it)."""
    match = CALL.match(call)
    if not match:
        return "error: write a call as name(argument)"
    name, argument = match.groups()
    if name not in tools:
        return f"error: no tool {name!r} (tools: {', '.join(sorted(tools))})"
    try:
        return str(tools[name](argument))
    except ValueError as error:
        return f"error: {error}"


# ----------------------------------------------------------------------------------------------------
# Transcripts: what SFT trains on


def render_tool_transcript(question, calls, final, tokenizer):
    """A tool-use conversation rendered for training: (ids, loss_mask).

    calls: [(call text, result text), ...] in order, e.g. [("calc(23 + 45)", "68")]; final: the reply after
    them. Learned (mask 1): each <|tool|>call<|/tool|>, the final reply and its <|end|>. Not learned (mask 0):
    the prompt and each <|result|>…<|/result|>, which the runtime writes.
    """
    special = tokenizer.special_tokens
    ids, loss_mask = render_chat([{"role": "user", "content": question}], tokenizer, add_generation_prompt=True)
    # --- student part: the tool transcript's loss mask (lesson: "6. Tools") ---
    for call, result in calls:
        learned = [special[TOOL], *tokenizer.encode_ordinary(call), special[TOOL_END]]
        written = [special[RESULT], *tokenizer.encode_ordinary(result), special[RESULT_END]]
        ids += learned + written
        loss_mask += [1] * len(learned) + [0] * len(written)
    reply = tokenizer.encode_ordinary(final) + [special[END]]
    ids += reply
    loss_mask += [1] * len(reply)
    return ids, loss_mask
    # --- end of student part ---


# ----------------------------------------------------------------------------------------------------
# The runtime


def run_with_tools(model, tokenizer, questions, tools, max_calls=MAX_CALLS, max_new_tokens=40, context=None):
    """Answer questions with tools: generate until <|/tool|> or <|end|>, run each call, feed the result back.

    tools: {name: function(argument text) -> result}; a tool may also take the row index as a keyword
    (context=row) to know whose picture it describes: pass context=True for that. All questions run
    together (chapter 02's batched generation, greedy), one round per call. A reply that still calls a tool
    after max_calls calls is stopped. Returns (replies, traces): the final texts and, per question, the
    list of (call, result) pairs.
    """
    special = tokenizer.special_tokens
    stops = [special[TOOL_END], special[END]]
    prompts = [render_chat([{"role": "user", "content": q}], tokenizer, add_generation_prompt=True)[0]
               for q in questions]
    replies, traces = [None] * len(questions), [[] for _ in questions]
    active = list(range(len(questions)))
    text_since = [[] for _ in questions]  # the reply's ids since the last result
    while active:
        outputs = generation.generate_batch(model, [prompts[i] for i in active], max_new_tokens, temperature=0.0,
                                            stop_tokens=stops)
        still = []
        for i, out in zip(active, outputs):
            prompts[i] = prompts[i] + out
            text_since[i] += out
            if out and out[-1] == special[TOOL_END]:
                if len(traces[i]) >= max_calls:
                    replies[i] = f"(stopped: more than {max_calls} tool calls)"
                    continue
                piece = text_since[i]
                start = max((k for k, t in enumerate(piece) if t == special[TOOL]), default=-1)
                call = tokenizer.decode(piece[start + 1:-1])
                bound = {name: (lambda arg, f=f: f(arg, row=i)) if context else f for name, f in tools.items()}
                result = run_tool(call, bound)
                traces[i].append((call, result))
                prompts[i] += [special[RESULT], *tokenizer.encode_ordinary(result), special[RESULT_END]]
                text_since[i] = []
                if len(prompts[i]) + max_new_tokens > model.config.block_size:
                    replies[i] = "(stopped: the conversation no longer fits the context)"
                    continue
                still.append(i)
            else:
                ended = [t for t in text_since[i] if t != special[END]]
                replies[i] = reply_text(tokenizer, [t for t in ended if t not in (special[TOOL], special[TOOL_END])])
        active = still
    return [r.strip() for r in replies], traces
