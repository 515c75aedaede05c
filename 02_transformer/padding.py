"""Batches of sequences of different lengths: left-padding, the attention mask and the positions.

    ids, attention_mask, positions = left_pad([[5, 6, 7], [8]], pad_id=0)
    # ids            [[5, 6, 7], [0, 0, 8]]        (B, T) int64, padding on the LEFT
    # attention_mask [[1, 1, 1], [0, 0, 1]]        (B, T) bool, True = a real token
    # positions      [[0, 1, 2], [0, 0, 0]]        (B, T) int64, 0 at each row's first real token
    logits, _ = model(ids, attention_mask=attention_mask)   # each row's real tokens: the logits it has alone

Why the left: every row's last token is then in the last column, so generation appends the next
token of every row in one column, and the KV cache stays one rectangle. Two things keep the padding
invisible: no real token attends to a pad (padded_causal_mask), and positions count only real tokens
(positions_from_mask), so row 2's token 8 is at position 0, as it is when that row runs alone.
Packing several documents into one row (training) is the other kind of mask: doc_positions_and_mask.
"""
import torch


def left_pad(sequences, pad_id=0, device=None):
    """Left-pad lists of token ids to one (B, T) batch, T = the longest -> (ids, attention_mask, positions).

    ids (B, T) int64 with pad_id on the left; attention_mask (B, T) bool, True on the real tokens;
    positions (B, T) int64 = positions_from_mask(attention_mask). Raises ValueError on an empty list or
    an empty sequence (a row with no real token has nothing to attend to).
    """
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("left_pad needs a non-empty list of sequences, each with at least one token")
    T = max(len(s) for s in sequences)
    ids = torch.tensor([[pad_id] * (T - len(s)) + [int(t) for t in s] for s in sequences], dtype=torch.long,
                       device=device)
    attention_mask = torch.tensor([[False] * (T - len(s)) + [True] * len(s) for s in sequences], device=device)
    return ids, attention_mask, positions_from_mask(attention_mask)


def positions_from_mask(attention_mask):
    """Position of each token counting only real tokens: (B, S) bool -> (B, S) int64.

    position_t = (number of real tokens up to and including t) - 1, clamped at 0 (a left pad gets 0;
    its value never matters since no real token attends to it). [0, 0, 1, 1, 1] -> [0, 0, 0, 1, 2].
    """
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def padded_causal_mask(attention_mask, n_query):
    """The attention mask of a padded batch: (B, S) bool -> (B, 1, T, S) bool, True = may attend.

    The T = n_query queries are the LAST T of the S positions (the earlier ones may be in a KV cache).
    Query t (at position i = S - T + t) may attend key s when s <= i (causal) and s is a real token;
    a pad query may also attend itself, so no row of the softmax is empty (0/0 = nan). Real tokens
    therefore never see padding, wherever it is (left-padding, or right-padding after a response).
    """
    B, S = attention_mask.shape
    query_at = torch.arange(S - n_query, S, device=attention_mask.device)[:, None]  # (T, 1)
    key_at = torch.arange(S, device=attention_mask.device)[None, :]  # (1, S)
    allowed = (key_at <= query_at) & attention_mask[:, None, :]  # (B, T, S)
    allowed = allowed | (key_at == query_at)  # a pad sees itself
    return allowed[:, None]  # (B, 1, T, S)


def doc_positions_and_mask(doc_ids):
    """Per-token positions and the attention mask of a row packed with several documents.

    doc_ids: (B, T) ints; a document is a run of equal ids (a new run starts where the id changes).
    Returns positions (B, T), restarting at 0 at each document start, and mask (B, 1, T, T), True where
    query t may attend key s: s <= t and both in the same run. Example, doc_ids = [[7, 7, 7, 2, 2]]:
    positions [[0, 1, 2, 0, 1]]; token 3 sees only itself, token 4 sees tokens 3 and 4.
    """
    B, T = doc_ids.shape
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    run = starts.cumsum(dim=1)  # (B, T): 1, 1, 1, 2, 2 - which run each token is in
    t = torch.arange(T, device=doc_ids.device).expand(B, T)
    run_start = torch.where(starts, t, 0).cummax(dim=1).values  # (B, T): index where my run began
    positions = t - run_start
    same_run = run[:, :, None] == run[:, None, :]  # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return positions, (same_run & causal)[:, None]  # (B, T), (B, 1, T, T)
