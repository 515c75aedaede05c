"""The model interface of the harness: the two calls every task is built on, as in lm-evaluation-harness.

    lm = LanguageModel.load("runs/04_sft/ckpt.pt")
    context = lm.prompt_ids(Prompt("What is 3 + 4?"))                  # the chat template, or "Q: ...\\nA:"
    lm.loglikelihood([(context, lm.continuation_ids(" 7")), ...])   # [log p(continuation | context), ...]
    lm.generate([context, ...], max_new_tokens=64)                  # greedy replies, cut at the stop
    lm.generate([context] * 10, 64, temperature=0.8, seed=0)        # 10 samples of one prompt

Both calls are batched: prompts of different lengths are left-padded (chapter 02's padding.py), so one
forward pass (log-likelihood) or one generation loop (generate) serves a whole batch.

One prompt, two renderings. A task writes its prompt once, as a Prompt (the user's message, k-shot
exemplars as earlier exchanges, and optionally the first words of the reply); the model renders it in
the form it was trained on:
    a chat model (SFT, RLHF):  render_chat: <|user|>Q1<|end|><|assistant|>A1<|end|>...<|user|>Q<|end|><|assistant|>
    a base model:              <|endoftext|>Q: Q1\\nA: A1\\n\\n...Q: Q\\nA:   (the quiz form of the pretraining text)
A reply ends at <|end|> (chat) or at a blank line or the next "Q:" (base), or after max_new_tokens.
"""
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from chat_format import BOS, END, render_chat, reply_text  # noqa: E402  (chapter 04)
from generation import generate_batch  # noqa: E402  (chapter 02)
from hardware import autocast  # noqa: E402  (chapter 03)
from logprobs import sequence_logprobs  # noqa: E402  (chapter 02)
from model_loader import load_model  # noqa: E402  (chapter 03: the one loader)
from padding import left_pad  # noqa: E402  (chapter 02)

BASE_STOPS = ["\n\n", "\nQ:"]  # where a base model's answer ends in the quiz form


@dataclass
class Prompt:
    """What a task asks: `user` (the question), `shots` (k exemplar (question, answer) pairs from the
    TRAINING split, shown as earlier exchanges) and `reply_start` (text the reply begins with, e.g.
    "Let's think step by step." for zero-shot chain of thought)."""
    user: str
    shots: list = field(default_factory=list)
    reply_start: str = ""


class LanguageModel:
    """A checkpoint as the harness sees it: loglikelihood() and generate(), plus how prompts are rendered.

    model: chapter 02's GPT (or anything with its forward, hidden, lm_head and config); tokenizer:
    chapter 01's; chat: whether it was trained on the chat template (its tokenizer has <|end|>).
    """

    def __init__(self, model, tokenizer, name="model", stage="?", batch_size=64, precision="fp32"):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.name, self.stage = name, stage
        self.chat = END in tokenizer.special_tokens
        self.batch_size, self.precision = batch_size, precision
        self.device = next(model.parameters()).device
        self.block_size = model.config.block_size

    @classmethod
    def load(cls, ckpt_path, name=None, stage=None, device="cpu", **kwargs):
        """Any checkpoint of a model that writes text (base, chat, or a quantized one once chapter 06's
        quant_checkpoint is imported) -> LanguageModel; FileNotFoundError if it is missing."""
        ckpt_path = Path(ckpt_path)
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"no checkpoint at {ckpt_path}: run the chapter that makes it, or fix the path")
        model, tokenizer, checkpoint = load_model(ckpt_path, stage=("base", "chat"), device=device)
        return cls(model, tokenizer, name or ckpt_path.parent.name, stage or checkpoint.get("stage", "?"), **kwargs)

    # ---- prompts

    def prompt_ids(self, prompt):
        """Render a Prompt to token ids (the chat template for a chat model, the quiz form for a base one)."""
        if self.chat:
            messages = []
            for question, answer in prompt.shots:
                messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            ids, _ = render_chat(messages + [{"role": "user", "content": prompt.user}], self.tokenizer,
                                 add_generation_prompt=True)
            return ids + self.tokenizer.encode_ordinary(prompt.reply_start)
        text = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in prompt.shots) + f"Q: {prompt.user}\nA:"
        if prompt.reply_start:
            text += " " + prompt.reply_start
        return [self.tokenizer.special_tokens[BOS]] + self.tokenizer.encode_ordinary(text)

    def continuation_ids(self, text):
        """A continuation to score after prompt_ids: the base model's quiz form puts a space after "A:"."""
        return self.tokenizer.encode_ordinary(text if self.chat else " " + text)

    # ---- call 1: log-likelihood

    @torch.no_grad()
    def loglikelihood(self, requests):
        """log p(continuation | context) for each (context ids, continuation ids) pair -> list of floats.

        = sum over the continuation's tokens y_j of log p(y_j | context, y_<j), from one forward pass per
        batch (logprobs.sequence_logprobs with the continuation as the response mask). A pair longer
        than the context window loses tokens from the left of its context.
        """
        out = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            rows, masks = [], []
            for context, continuation in chunk:
                if not continuation or not context:
                    raise ValueError("loglikelihood needs a non-empty context and continuation")
                row = (list(context) + list(continuation))[-(self.block_size + 1):]
                rows.append(row)
                masks.append([False] * (len(row) - len(continuation)) + [True] * len(continuation))
            ids, attention_mask, _ = left_pad(rows, device=self.device)
            response_mask = torch.zeros_like(attention_mask)
            for i, mask in enumerate(masks):
                response_mask[i, ids.size(1) - len(mask):] = torch.tensor(mask, device=self.device)
            with autocast(self.device.type, self.precision):
                result = sequence_logprobs(self.model, ids, response_mask, attention_mask)
            out += result.sequence_logprob.tolist()
        return out

    @torch.no_grad()
    def token_nll(self, windows):
        """Total negative log-likelihood (nats) of every token but the first of each window (lists of
        ids, each at most block_size + 1 long) -> (total nll, number of tokens predicted)."""
        total, count = 0.0, 0
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start:start + self.batch_size]
            ids, attention_mask, _ = left_pad(chunk, device=self.device)
            with autocast(self.device.type, self.precision):
                result = sequence_logprobs(self.model, ids, None, attention_mask)
            total -= float(result.sequence_logprob.sum())
            count += sum(len(w) - 1 for w in chunk)
        return total, count

    # ---- call 2: generation

    def generate(self, prompts, max_new_tokens, temperature=0.0, seed=None, top_k=None):
        """The reply to each prompt (token ids) as text, cut at the model's stop, trailing space removed
        -> list of str. (A base model's quiz reply starts with the space after "A:".)

        temperature 0: greedy; otherwise sampled (among the top_k likeliest tokens if given) with the seed
        (each batch of rows gets seed + its index, so a run is repeatable). Prompts keep their last
        block_size - max_new_tokens tokens.
        """
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        keep = max(1, self.block_size - max_new_tokens)
        stop_tokens = [self.tokenizer.special_tokens[END]] if self.chat else [self.tokenizer.special_tokens[BOS]]
        stop_strings = None if self.chat else BASE_STOPS
        replies = []
        for batch, start in enumerate(range(0, len(prompts), self.batch_size)):
            chunk = [list(p)[-keep:] for p in prompts[start:start + self.batch_size]]
            with autocast(self.device.type, self.precision):
                outputs = generate_batch(self.model, chunk, max_new_tokens, temperature=temperature, top_k=top_k,
                                         stop_tokens=stop_tokens, seed=None if seed is None else seed + batch,
                                         stop_strings=stop_strings, decode=lambda ids: reply_text(self.tokenizer, ids))
            for tokens in outputs:
                if tokens and tokens[-1] in stop_tokens:
                    tokens = tokens[:-1]
                text = reply_text(self.tokenizer, tokens)
                for stop in stop_strings or []:
                    text = text.split(stop)[0]
                replies.append(text.rstrip())  # leading spaces stay: a base model's code body is indented
        return replies
