"""A conversation with a chat model: the history, fitting it into the context, streaming the reply.

    session = ChatSession(model, tokenizer, temperature=0.7, top_k=50, max_new_tokens=128)
    reply, ended = session.respond("Where does Mia live?", on_text=print)   # streamed piece by piece

chat.py (the REPL) and chat_web.py (the page) both talk through it (chat.py imports chat_web.py, never the reverse).
"""
import codecs
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from chat_format import END, render_chat  # noqa: E402  (this chapter)

# The chat defaults, shared by the REPL's flags, the chat page (chat_web.py) and the sampled
# robustness row (robustness.py).
TEMPERATURE, TOP_K, MAX_NEW_TOKENS = 0.7, 50, 128


class ChatSession:
    """A conversation with a chat model: the history, fitting it into the context, streaming replies."""

    def __init__(self, model, tokenizer, temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=MAX_NEW_TOKENS,
                 seed=None, system=None, notify=print):
        self.model, self.tokenizer = model, tokenizer
        self.temperature, self.top_k, self.max_new_tokens, self.seed = temperature, top_k, max_new_tokens, seed
        self.system = system
        self.notify = notify  # where notices go (dropped turns)
        self.end_id = tokenizer.special_tokens[END]
        self.reset()

    def reset(self):
        self.history = [{"role": "system", "content": self.system}] if self.system else []

    def reply_budget(self):
        """Tokens kept free for the reply: max_new_tokens, but at most half the context."""
        return min(self.max_new_tokens, self.model.config.block_size // 2)

    def prompt_ids(self):
        """The rendered history + <|assistant|>, dropping the oldest exchanges until it leaves room for
        the reply. Raises ValueError if the latest message alone is too long."""
        limit = self.model.config.block_size - self.reply_budget()
        first = 1 if self.history[0]["role"] == "system" else 0
        alone, _ = render_chat(self.history[:first] + self.history[-1:], self.tokenizer, add_generation_prompt=True)
        if len(alone) > limit:
            self.history.pop()
            raise ValueError(f"that message is {len(alone)} tokens with the template; this model's context holds "
                             f"{self.model.config.block_size}, {self.reply_budget()} of them kept for the reply. "
                             f"Write something shorter.")
        while True:
            ids, _ = render_chat(self.history, self.tokenizer, add_generation_prompt=True)
            if len(ids) <= limit:
                return ids
            # drop the oldest user message and everything up to the next user message
            drop = first + 1
            while drop < len(self.history) - 1 and self.history[drop]["role"] != "user":
                drop += 1
            del self.history[first:drop]
            self.notify(f"[the conversation is longer than the context of {self.model.config.block_size} tokens: "
                        f"dropped the oldest exchange]")

    def respond(self, text, on_text=None):
        """Add the user's message, stream the reply (on_text(piece) for every decoded piece), remember it.

        Returns (reply, ended): ended is False when the reply hit max_new_tokens before <|end|>.
        """
        self.history.append({"role": "user", "content": text})
        prompt = self.prompt_ids()
        room = min(self.max_new_tokens, self.model.config.block_size - len(prompt))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span tokens
        pieces, ended = [], False
        try:
            for token in self.model.stream(prompt, room, temperature=self.temperature, top_k=self.top_k,
                                           stop_tokens=[self.end_id], seed=self.seed):
                if token == self.end_id:
                    ended = True
                    break
                if token >= self.tokenizer.vocab_size:  # a row that only pads the embedding: no text (reply_text)
                    continue
                piece = decoder.decode(self.tokenizer.decode_bytes([token]))
                pieces.append(piece)
                if on_text and piece:
                    on_text(piece)
        except KeyboardInterrupt:
            self.notify("\n[stopped]")
        pieces.append(decoder.decode(b"", final=True))
        reply = "".join(pieces)
        self.history.append({"role": "assistant", "content": reply})
        if self.seed is not None:
            self.seed += 1  # a new draw for the next reply, still reproducible
        return reply, ended
