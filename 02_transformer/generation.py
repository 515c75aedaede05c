"""Generation: the KV cache, sampling, and the loops that turn a GPT into a text generator.

    out = generate(model, idx, max_new_tokens=50)                   # (B, T) -> (B, T + 50), as GPT.generate
    replies = generate_batch(model, prompts, 64, temperature=0)      # prompts of different lengths
    for token in stream(model, prompt, 64): ...                      # one prompt, token by token (a chat UI)
    r = rollout(model, prompts, 64, temperature=1.0, seed=0)         # RL: ids, masks and the sampled log-probs

Every loop runs on generate_steps(): the prompt runs once through the model (prefill) and fills the
KV cache; then each step feeds only the newest token, whose keys and values are the only new ones.
Prompts of different lengths are left-padded (padding.py) so that every row's newest token is in the
last column. GPT.generate, GPT.generate_batch and GPT.stream call the functions here.

What the log-probs of a rollout are: for each sampled token y_t, log p(y_t) with
p = softmax(logits_t / temperature), the model's distribution at that temperature BEFORE any top-k or
top-p cut (temperature 0, greedy, is read as temperature 1). logprobs.sequence_logprobs(model, r.ids,
r.response_mask, r.attention_mask, temperature) computes the same numbers in one forward pass.
"""
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from padding import left_pad


class KVCache:
    """The keys and values every layer has computed so far, so that a new token needs only its own.

    keys[layer], values[layer]: (B, H, max_len, D), filled up to `length`. Allocated on first use, in
    the dtype attention produces (bf16 under autocast). Without a cache, generating token t recomputes
    the keys and values of all t - 1 earlier tokens in every layer; with it, each token is computed once.
    """

    def __init__(self, n_layer, max_len):
        self.keys = [None] * n_layer
        self.values = [None] * n_layer
        self.max_len = max_len
        self.length = 0  # positions stored; advanced by GPT after all layers ran

    def update(self, layer, k, v):
        """Store k, v (B, H, T, D) after the cached ones; return all keys and values (B, H, length + T, D)."""
        # --- student part: the KV cache's update (lesson: "9. Generation and what the KV cache saves") ---
        start, end = self.length, self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, {end} requested")
        if self.keys[layer] is None:
            shape = (k.size(0), k.size(1), self.max_len, k.size(3))
            self.keys[layer] = k.new_empty(shape)
            self.values[layer] = v.new_empty(shape)
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]
        # --- end of student part ---


# ----------------------------------------------------------------------------- one token at a time

def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Pick one token per row from logits (B, vocab) -> (B,) LongTensor.

    temperature 0: argmax. Otherwise p = softmax(logits / temperature), restricted to the top_k
    likeliest tokens and/or to the smallest set of likeliest tokens with total probability >= top_p,
    renormalised, then sampled.
    """
    # --- student part: sampling with temperature, top-k and top-p (lesson: "9. Generation and what the KV cache saves") ---
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth_best = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = F.softmax(sorted_logits, dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the better tokens
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))  # the best one always stays
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
    # --- end of student part ---


def sampled_logprob(logits, tokens, temperature):
    """log p(token) under p = softmax(logits / temperature), no top-k/top-p cut; temperature 0 reads as 1.

    logits (B, vocab) float, tokens (B,) -> (B,) float32. The distribution a rollout reports.
    """
    scale = temperature if temperature > 0 else 1.0
    return F.log_softmax(logits.float() / scale, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)


@torch.no_grad()
def generate_steps(model, idx, max_new_tokens, attention_mask=None, temperature=1.0, top_k=None, top_p=None,
                   seed=None, use_cache=True):
    """Yield (next_token (B,), logits (B, vocab) float32) for every row, max_new_tokens times.

    idx (B, T0): the prompts, left-padded where attention_mask (B, T0) bool is False (None: no padding).
    Padding is invisible: no real token attends to it and positions count only real tokens
    (padding.py), so each row computes what it would alone. With use_cache, the prompt runs once
    (prefill), then each step feeds only the newest token and reads every earlier key and value from
    the KV cache. Past block_size tokens, both paths slide a window over the last block_size tokens
    and recompute it (learned positions all shift by one). The caller decides when to stop: a row
    that is done still gets tokens, which change nothing in the other rows.
    """
    block_size = model.config.block_size
    model.check_length(idx.size(1))
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no cut), got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (or None for no cut), got {top_p}")
    generator = None if seed is None else torch.Generator(device=idx.device).manual_seed(seed)
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # no padding: plain causal attention (torch's fast path)
    capacity = min(block_size, idx.size(1) + max_new_tokens)
    kv_cache = KVCache(model.config.n_layer, capacity) if use_cache else None
    seq, mask = idx, attention_mask
    for _ in range(max_new_tokens):
        if kv_cache is not None and seq.size(1) <= capacity:
            new = seq if kv_cache.length == 0 else seq[:, -1:]  # the prompt (prefill), then one token
            hidden = model.hidden(new, attention_mask=mask, kv_cache=kv_cache)
        else:  # no cache (or past the context): run the model on the whole (windowed) sequence
            window_mask = None if mask is None else mask[:, -block_size:]
            hidden = model.hidden(seq[:, -block_size:], attention_mask=window_mask)
        logits = model.lm_head(hidden[:, -1, :]).float()  # (B, vocab): only the last position is needed
        next_token = sample_next_token(logits, temperature, top_k, top_p, generator)  # (B,)
        yield next_token, logits
        seq = torch.cat([seq, next_token[:, None]], dim=1)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)


class eval_mode:
    """Run a block in eval mode (no dropout), then restore the mode the model was in."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def token_set(tokens):
    """Stop tokens given as None, a list, a set or a tensor -> a set of ints."""
    return set() if tokens is None else {int(t) for t in tokens}


# ----------------------------------------------------------------------------- the loops

def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None, seed=None,
             use_cache=True):
    """Continue every row of idx (B, T) by up to max_new_tokens tokens -> (B, T + n_new) LongTensor.

    temperature=0 is greedy (argmax); top_k keeps the k likeliest tokens; top_p keeps the smallest set
    whose probabilities sum to >= top_p (nucleus sampling); seed makes sampling repeatable.
    stop_tokens: generation ends once every row has produced one of them; a row that stopped early
    repeats its stop token. A prompt longer than block_size raises ValueError; generating past
    block_size slides the context window (the model sees the last block_size tokens).
    """
    stop_tokens = token_set(stop_tokens)
    out = [idx]
    stopped = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    stop_set = torch.tensor(sorted(stop_tokens), dtype=torch.long, device=idx.device)
    with eval_mode(model):
        for token, _ in generate_steps(model, idx, max_new_tokens, None, temperature, top_k, top_p, seed, use_cache):
            if stop_tokens:
                token = torch.where(stopped, out[-1][:, -1], token)  # a finished row repeats its stop token
                stopped = stopped | torch.isin(token, stop_set)
            out.append(token[:, None])
            if stop_tokens and bool(stopped.all()):
                break
    return torch.cat(out, dim=1)


def row_budgets(max_new_tokens, n_rows):
    """max_new_tokens as an int (every row) or one int per row -> a list of n_rows ints >= 0."""
    if isinstance(max_new_tokens, numbers.Integral):
        budgets = [int(max_new_tokens)] * n_rows
    else:
        budgets = [int(n) for n in max_new_tokens]
    if len(budgets) != n_rows or any(n < 0 for n in budgets):
        raise ValueError(f"max_new_tokens must be an int >= 0 or one per prompt ({n_rows}), got {max_new_tokens!r}")
    return budgets


@torch.no_grad()
def _sample_rows(model, prompts, max_new_tokens, temperature, top_k, top_p, stop_tokens, stop_strings, decode,
                 seed, use_cache):
    """The shared loop of generate_batch and rollout -> (responses: list of lists, logprobs: list of lists).

    A row ends after its budget, right after a stop token, or right after the token whose decoded text
    completes one of stop_strings (that token included).
    """
    if stop_strings and decode is None:
        raise ValueError("stop_strings need decode=, a function from a list of token ids to text")
    budgets = row_budgets(max_new_tokens, len(prompts))
    idx, attention_mask, _ = left_pad(prompts, device=model.lm_head.weight.device)
    stop_set = token_set(stop_tokens)
    # A stop string completed by the newest token lies within its row's last 4 * len tokens (a character
    # is at most 4 UTF-8 bytes, a token at least one byte): decode only that tail, not the whole reply.
    tail = 4 * max(len(s) for s in stop_strings) + 1 if stop_strings else 0
    responses, logprobs = [[] for _ in prompts], [[] for _ in prompts]
    done = [n == 0 for n in budgets]
    if all(done):
        return responses, logprobs
    with eval_mode(model):
        steps = generate_steps(model, idx, max(budgets), attention_mask, temperature, top_k, top_p, seed, use_cache)
        for token, logits in steps:
            token_logprobs = sampled_logprob(logits, token, temperature).tolist()
            for row, t in enumerate(token.tolist()):
                if done[row]:
                    continue
                responses[row].append(t)
                logprobs[row].append(token_logprobs[row])
                done[row] = (t in stop_set or len(responses[row]) >= budgets[row]
                             or bool(stop_strings) and any(s in decode(responses[row][-tail:]) for s in stop_strings))
            if all(done):
                break
    return responses, logprobs


def generate_batch(model, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None,
                   seed=None, use_cache=True, stop_strings=None, decode=None):
    """Generate for prompts (lists of ids) of different lengths at once -> each prompt's NEW tokens (list of lists).

    max_new_tokens: an int, or one int per prompt (a per-row budget). A row's list ends with the first
    stop token (included), or with the token whose text completes one of stop_strings (e.g. "\\nQ:" in
    few-shot evaluation): decode(ids) -> str must be given, the row's new ids are decoded after every
    token, and the ids returned go up to AND INCLUDING the token that completed the string (its text
    may run past the stop string: cut the decoded text at the string yourself). Same sampling options as
    generate(); with temperature=0 each result equals what generate() gives for that prompt alone.
    """
    responses, _ = _sample_rows(model, prompts, max_new_tokens, temperature, top_k, top_p, stop_tokens, stop_strings,
                                decode, seed, use_cache)
    return responses


def stream(model, prompt, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None, seed=None,
           use_cache=True):
    """Yield the new token ids of one prompt (list of ints) one at a time, as they are generated.

    Ends after max_new_tokens or right after yielding a stop token. A chat interface prints each
    token's text as it arrives instead of waiting for the whole answer.
    """
    if len(prompt) == 0:
        raise ValueError("stream needs a prompt with at least one token")
    idx = torch.tensor([list(prompt)], dtype=torch.long, device=model.lm_head.weight.device)
    stop_set = token_set(stop_tokens)
    with eval_mode(model):
        for token, _ in generate_steps(model, idx, max_new_tokens, None, temperature, top_k, top_p, seed, use_cache):
            t = int(token[0])
            yield t
            if t in stop_set:
                return


@dataclass
class Rollout:
    """What rollout() sampled, as tensors that line up column for column with ids (B, P + N).

    ids: int64, each prompt left-padded to P = prompt_len, then its response right-padded to N (the
      longest response) with pad_id.
    attention_mask: bool, True on real tokens (prompt and response), False on padding.
    response_mask: bool, True on the sampled tokens (a stop token that ended a row included).
    logprobs: float32, at each sampled token y_t: log softmax(logits_t / temperature)[y_t], the log-prob
      under the temperature-scaled model BEFORE top-k/top-p (temperature 0 reads as 1); 0 elsewhere.
    responses: the sampled ids of each row as lists (what generate_batch returns).
    """
    ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    prompt_len: int
    responses: list


def rollout(model, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None,
            seed=None, use_cache=True, stop_strings=None, decode=None, pad_id=0):
    """Sample a response to each prompt (lists of ids of different lengths) -> Rollout (see its fields).

    Same options and stopping rules as generate_batch (per-row budgets, stop tokens, stop strings). The
    log-probs of the sampled tokens come from the sampling pass itself, so a policy-gradient step needs
    no second pass to know what it sampled:
        logprobs.sequence_logprobs(model, r.ids, r.response_mask, r.attention_mask, temperature)
    gives the same numbers (up to float rounding) in one forward pass over r.ids, with gradients.
    The prompt plus max_new_tokens must fit in block_size (past it the window slides, and the context
    a token was sampled from is no longer a prefix of r.ids): ValueError otherwise.
    """
    budgets = row_budgets(max_new_tokens, len(prompts))
    P = max((len(p) for p in prompts), default=0)
    if P + max(budgets, default=0) > model.config.block_size:
        raise ValueError(f"prompt ({P} tokens) + max_new_tokens ({max(budgets)}) exceeds block_size "
                         f"{model.config.block_size}: shorten the prompts or the budget")
    responses, logprobs = _sample_rows(model, prompts, budgets, temperature, top_k, top_p, stop_tokens, stop_strings,
                                       decode, seed, use_cache)
    device = model.lm_head.weight.device
    N = max(len(r) for r in responses)
    ids, attention_mask, _ = left_pad(prompts, pad_id, device)
    B = ids.size(0)
    ids = torch.cat([ids, torch.full((B, N), pad_id, dtype=torch.long, device=device)], dim=1)
    response_mask = torch.zeros(B, P + N, dtype=torch.bool, device=device)
    sampled = torch.zeros(B, P + N, dtype=torch.float32, device=device)
    for row, (response, row_logprobs) in enumerate(zip(responses, logprobs)):
        n = len(response)
        ids[row, P:P + n] = torch.tensor(response, dtype=torch.long, device=device)
        response_mask[row, P:P + n] = True
        sampled[row, P:P + n] = torch.tensor(row_logprobs, dtype=torch.float32, device=device)
    attention_mask = torch.cat([attention_mask, response_mask[:, P:]], dim=1)
    return Rollout(ids, attention_mask, response_mask, sampled, P, responses)
