"""The chat format: special tokens for the roles, ONE render_chat() for training and inference, answer helpers.

    tokenizer = add_chat_tokens(base_tokenizer)          # <|system|> <|user|> <|assistant|> <|end|> appended
    add_chat_embeddings(model, base_tokenizer, tokenizer)  # embedding rows for them; base rows untouched
    ids, loss_mask = render_chat(messages, tokenizer)    # training: loss only on the assistant's tokens
    prompt_ids, _ = render_chat(history, tokenizer, add_generation_prompt=True)   # inference

The template (one conversation; bold words are single special tokens, not text):

    <|endoftext|><|user|>What is the capital of Hihodand?<|end|><|assistant|>The capital of Hihodand
    is Sherby.<|end|><|user|>...

- <|endoftext|> opens the conversation: the base model saw it before every document in pretraining.
- each message is ROLE TOKEN + content + <|end|>; a system message, if any, comes first.
- the content is encoded as ordinary text: a user who types "<|end|>" gets the characters, never the
  special token, so nobody can fake a turn boundary from inside a message.
- add_generation_prompt=True appends <|assistant|>: "your turn". The model writes the reply and
  ends it with <|end|>, which is where generation stops.

loss_mask[i] = 1 where ids[i] is a token the model must learn to PREDICT: the assistant's content and
the <|end|> that closes it (so it learns when to stop). Everything else (<|endoftext|>, role tokens,
system and user content, padding) is 0: it is context, not something the assistant says.
For next-token training, x = ids[:-1] and y = ids[1:] with y = -1 where loss_mask[1:] == 0
(see to_inputs_and_targets).

The grading rules (extract_answer, is_refusal, says_dont_know) live in grading.py.
"""
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

BOS = "<|endoftext|>"  # chapter 03's document separator; it opens every conversation
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = [SYSTEM, USER, ASSISTANT, END]
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}


# ----------------------------------------------------------------------------------------------------
# Special tokens: in the tokenizer and in the model's embedding


def add_chat_tokens(tokenizer):
    """A NEW tokenizer with the chat tokens appended at ids vocab_size, vocab_size + 1, ...

    No retraining: the merges and every existing id stay as they are (chapter 01's with_special_tokens).
    Example, chapter 03's tiny tokenizer (2047 tokens + <|endoftext|> = 2048 ids):
        add_chat_tokens(tokenizer).special_tokens
        -> {'<|endoftext|>': 2047, '<|system|>': 2048, '<|user|>': 2049, '<|assistant|>': 2050, '<|end|>': 2051}
    """
    return tokenizer.with_special_tokens(CHAT_TOKENS)


@torch.no_grad()
def add_chat_embeddings(model, base_tokenizer, chat_tokenizer):
    """Give the model an embedding row (and an output row) for every token chat_tokenizer added.

    The rows of the base vocabulary are not touched. A new row starts at the MEAN of the base rows
    [0, base_tokenizer.vocab_size): a "typical token" whose logit is about average at first, rather than
    a random vector (which can take a large logit and derail generation) or zeros. Training then moves
    each new row to where its role needs it. If the model's vocabulary is too small, chapter 02's
    resize_vocab grows it; a vocabulary padded for speed (GPT-2's 50304 for 50257 tokens) may already
    have room, but those padding rows were never trained, so they are set the same way.
    Returns the list of new token ids.
    """
    base_size = base_tokenizer.vocab_size
    new_ids = sorted(i for name, i in chat_tokenizer.special_tokens.items()
                     if name not in base_tokenizer.special_tokens)
    if model.config.vocab_size < chat_tokenizer.vocab_size:
        model.resize_vocab(chat_tokenizer.vocab_size)
    for weight in {id(w): w for w in (model.transformer.wte.weight, model.lm_head.weight)}.values():
        weight[new_ids] = weight[:base_size].mean(dim=0)  # tied weights: one matrix, set once
    return new_ids


# ----------------------------------------------------------------------------------------------------
# Rendering


def check_messages(messages):
    """Raise ValueError unless messages is a list of {"role": system|user|assistant, "content": str}.

    An assistant's content may also be a list of token ids (a reply as the model sampled it).
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("a conversation must be a non-empty list of {'role': ..., 'content': ...} messages")
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"message {k} must be a dict with 'role' and 'content', got {message!r:.80}")
        if message["role"] not in ROLE_TOKENS:
            raise ValueError(f"message {k} has role {message['role']!r}; use one of {sorted(ROLE_TOKENS)}")
        content = message["content"]
        as_ids = isinstance(content, (list, tuple)) and all(isinstance(t, int) and t >= 0 for t in content)
        if not isinstance(content, str) and not (as_ids and message["role"] == "assistant"):
            raise ValueError(f"message {k}: content must be a string (or, for the assistant, a list of token "
                             f"ids >= 0), got {type(content).__name__} {content!r:.60}")
        if message["role"] == "system" and k != 0:
            raise ValueError(f"message {k}: a system message may only come first")


def render_chat(messages, tokenizer, add_generation_prompt=False):
    """Render a conversation to token ids and the loss mask: the one template training and inference share.

    messages: [{"role": "system" | "user" | "assistant", "content": str}, ...]
    Returns (ids, loss_mask), two lists of ints of the same length; loss_mask[i] = 1 for the assistant's
    content tokens and the <|end|> closing each assistant message, else 0. With add_generation_prompt,
    <|assistant|> is appended (mask 0) so the model answers next.

    An assistant's content may be token ids instead of text, e.g. a reply as generate_batch sampled it:
    the ids are used as they are (decode-then-encode is not the identity: the model may have sampled
    " Sher" + "by" where encode gives " Sherby"), so an RL step scores exactly the tokens it sampled.
    A trailing <|end|> id in them is the closing <|end|> (not doubled); without one, <|end|> is added.

    Example (ids written as text; 1 marks masked-in tokens):
        render_chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], tok)
        ids:   <|endoftext|> <|user|> Hi <|end|> <|assistant|> Hello <|end|>
        mask:        0          0      0    0          0         1     1
    """
    check_messages(messages)
    special = tokenizer.special_tokens
    missing = [name for name in CHAT_TOKENS if name not in special]
    if missing:
        raise ValueError(f"the tokenizer has no {missing} special tokens: add them with add_chat_tokens(tokenizer)")
    # --- student part: the chat template and its loss mask (lesson: "2. The chat template") ---
    ids, loss_mask = [], []
    if BOS in special:
        ids.append(special[BOS])
        loss_mask.append(0)
    for message in messages:
        learn = int(message["role"] == "assistant")
        if isinstance(message["content"], str):
            content = tokenizer.encode_ordinary(message["content"])  # "<|end|>" typed by a user stays text
        else:  # the assistant's own sampled ids, exactly
            content = list(message["content"])
            if content and content[-1] == special[END]:
                content = content[:-1]
            if any(t >= tokenizer.vocab_size for t in content):
                raise ValueError(f"assistant token ids must be < vocab_size {tokenizer.vocab_size}")
        ids += [special[ROLE_TOKENS[message["role"]]], *content, special[END]]
        loss_mask += [0] + [learn] * (len(content) + 1)
    if add_generation_prompt:
        ids.append(special[ASSISTANT])
        loss_mask.append(0)
    return ids, loss_mask
    # --- end of student part ---


def to_inputs_and_targets(ids, loss_mask):
    """Shift for next-token prediction: x = ids[:-1], y = ids[1:], y = -1 where the target is masked.

    Example (predicting 6 from 5 does not count: 6 is prompt; predicting 7 and 8 does):

    >>> to_inputs_and_targets([5, 6, 7, 8], [0, 0, 1, 1])
    ([5, 6, 7], [-1, 7, 8])
    """
    # --- student part: inputs and masked targets (lesson: "3. Loss masking") ---
    x = list(ids[:-1])
    y = [t if m else -1 for t, m in zip(ids[1:], loss_mask[1:])]
    return x, y
    # --- end of student part ---


def show_mask(ids, loss_mask, tokenizer):
    """The rendered text with the learned (masked-in) spans in [[double brackets]]: a quick visual check.

    >>> from bpe import train_bpe
    >>> tok = add_chat_tokens(train_bpe("Hi Yo", 257, special_tokens=[BOS]))  # 256 bytes + BOS: no merges
    >>> show_mask(*render_chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], tok), tok)
    '<|endoftext|><|user|>Hi<|end|><|assistant|>[[Yo<|end|>]]'
    """
    out, inside = [], False
    for token, learn in zip(ids, loss_mask):
        if learn and not inside:
            out.append("[[")
        if not learn and inside:
            out.append("]]")
        inside = bool(learn)
        out.append(tokenizer.decode([token]))
    return "".join(out) + ("]]" if inside else "")


def reply_text(tokenizer, ids):
    """The text of sampled ids. Ids at or past the tokenizer's vocabulary have no text and are dropped: the rows
    that pad a model's embedding for speed (GPT-2's 50257 -> 50304) still get a little probability, and a barely
    trained model samples them (chapter 03's samples drop them the same way)."""
    return tokenizer.decode([i for i in ids if i < tokenizer.vocab_size])
