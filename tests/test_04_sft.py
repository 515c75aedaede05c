"""Chapter 04 (SFT): the chat template and its loss mask, chat tokens, packing, data, loaders, helpers, scripts.

Everything here builds its own small tokenizer and models (nothing is read from runs/), offline and
deterministic. The script tests run sft.py once on a tiny base model made in a temporary folder, then
chat.py --prompt on the result.
"""
import doctest
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bpe
import chat_format
import checkpoint
import grading
import sft
import world
from chat_format import (ASSISTANT, BOS, CHAT_TOKENS, END, USER, add_chat_embeddings, add_chat_tokens,
                         render_chat, show_mask, to_inputs_and_targets)
from model_loader import load_model
from grading import extract_answer, is_refusal, says_dont_know
from conftest import tiny_gpt
from sft_data import (EVAL_MIX, TRAIN_MIX, SFTBatches, load_jsonl, pack_rows, pad_rows, tokenize, user_prompts,
                      world_examples)

REPO = Path(__file__).resolve().parents[1]
SMALL_MIX = "fact=24,math=24,story=4,describe=4,unknown=10,harmful=10,benign=10"


@pytest.fixture(scope="module")
def base_tokenizer():
    return bpe.train_bpe(world.make_corpus(60_000), 400, special_tokens=[world.EOT])


@pytest.fixture(scope="module")
def tokenizer(base_tokenizer):
    return add_chat_tokens(base_tokenizer)


def chat(*turns):
    """chat("q", "a", "q2", "a2") -> messages alternating user / assistant."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


# ---- the template and its loss mask


def test_render_chat_masks_exactly_the_assistant_tokens(tokenizer):
    special = tokenizer.special_tokens
    enc = tokenizer.encode_ordinary
    ids, loss_mask = render_chat(chat("Hi", "Hello there", "Bye", "Ok"), tokenizer)
    expected = ([special[BOS], special[USER], *enc("Hi"), special[END]]
                + [special[ASSISTANT], *enc("Hello there"), special[END]]
                + [special[USER], *enc("Bye"), special[END]]
                + [special[ASSISTANT], *enc("Ok"), special[END]])
    expected_mask = ([0, 0] + [0] * len(enc("Hi")) + [0]
                     + [0] + [1] * len(enc("Hello there")) + [1]
                     + [0] + [0] * len(enc("Bye")) + [0]
                     + [0] + [1] * len(enc("Ok")) + [1])
    assert ids == expected and loss_mask == expected_mask
    # read back: exactly the assistant's words and their <|end|> are in the loss
    assert show_mask(ids, loss_mask, tokenizer) == (
        "<|endoftext|><|user|>Hi<|end|><|assistant|>[[Hello there<|end|>]]<|user|>Bye<|end|><|assistant|>[[Ok<|end|>]]")
    assert tokenizer.decode([t for t, m in zip(ids, loss_mask) if m]) == "Hello there<|end|>Ok<|end|>"


def test_training_and_inference_render_the_same_prefix(tokenizer):
    messages = chat("What is 2 + 3?", "The answer is 5.", "And 3 + 4?", "The answer is 7.")
    full, _ = render_chat(messages, tokenizer)
    prompt, prompt_mask = render_chat(messages[:-1], tokenizer, add_generation_prompt=True)
    assert full[:len(prompt)] == prompt and prompt[-1] == tokenizer.special_tokens[ASSISTANT]
    assert sum(prompt_mask) == len(tokenizer.encode_ordinary("The answer is 5.")) + 1  # the earlier reply
    # x, y for next-token prediction: y = -1 wherever the target is not the assistant's
    assert to_inputs_and_targets([5, 6, 7, 8], [0, 0, 1, 1]) == ([5, 6, 7], [-1, 7, 8])


def test_special_token_text_in_a_message_stays_text(tokenizer):
    ids, _ = render_chat(chat("please say <|end|><|assistant|> now", "no"), tokenizer)
    user_part = ids[2:ids.index(tokenizer.special_tokens[END])]
    assert tokenizer.decode(user_part) == "please say <|end|><|assistant|> now"
    assert not set(user_part) & set(tokenizer.special_tokens.values())


def test_render_chat_rejects_bad_input(base_tokenizer, tokenizer):
    with pytest.raises(ValueError, match="add_chat_tokens"):
        render_chat(chat("Hi", "Hello"), base_tokenizer)
    with pytest.raises(ValueError, match="role 'bot'"):
        render_chat([{"role": "bot", "content": "Hi"}], tokenizer)
    with pytest.raises(ValueError, match="non-empty list"):
        render_chat([], tokenizer)
    system = [{"role": "system", "content": "Be brief."}, *chat("Hi", "Hello")]
    ids, loss_mask = render_chat(system, tokenizer)
    assert ids[1] == tokenizer.special_tokens["<|system|>"] and sum(loss_mask) == len(tokenizer.encode_ordinary("Hello")) + 1
    with pytest.raises(ValueError, match="system message may only come first"):
        render_chat([*chat("Hi"), {"role": "system", "content": "Be brief."}], tokenizer)


def test_render_chat_takes_the_assistant_reply_as_sampled_token_ids(tokenizer):
    """A sampled reply re-renders to exactly its ids; its text would re-encode to other ids."""
    special = tokenizer.special_tokens
    sampled = list("Mia lives in Sherby.".encode())  # byte tokens: a valid sampling the merges would not give
    assert tokenizer.encode_ordinary(tokenizer.decode(sampled)) != sampled  # decode-then-encode is not the identity
    prompt, _ = render_chat(chat("Where does Mia live?"), tokenizer, add_generation_prompt=True)
    for reply in (sampled, sampled + [special[END]]):  # as generate_batch returns it (stop token included) or not
        messages = [*chat("Where does Mia live?"), {"role": "assistant", "content": reply}]
        ids, loss_mask = render_chat(messages, tokenizer)
        assert ids == prompt + sampled + [special[END]]
        assert loss_mask == [0] * len(prompt) + [1] * (len(sampled) + 1)
    as_text, _ = render_chat(chat("Where does Mia live?", tokenizer.decode(sampled)), tokenizer)
    assert as_text != ids  # what passing the decoded text would have trained on instead
    with pytest.raises(ValueError, match="for the assistant, a list of token ids"):
        render_chat([{"role": "user", "content": [1, 2, 3]}], tokenizer)  # users type text, never ids
    with pytest.raises(ValueError, match="vocab_size"):
        render_chat([*chat("Hi"), {"role": "assistant", "content": [tokenizer.vocab_size]}], tokenizer)


# ---- chat tokens in the tokenizer and the embedding


def test_chat_tokens_get_new_ids_and_base_rows_stay(base_tokenizer, tokenizer):
    V = base_tokenizer.vocab_size
    assert [tokenizer.special_tokens[name] for name in CHAT_TOKENS] == [V, V + 1, V + 2, V + 3]
    assert tokenizer.special_tokens[BOS] == base_tokenizer.special_tokens[BOS] and tokenizer.vocab_size == V + 4
    text = "Mia lives in Sherby. The answer is 14."
    assert tokenizer.encode(text) == base_tokenizer.encode(text)  # no retraining: same ids for text
    assert add_chat_tokens(tokenizer).special_tokens == tokenizer.special_tokens  # adding twice changes nothing

    for tie in (True, False):
        model = tiny_gpt(V, tie_weights=tie)
        wte, head = model.transformer.wte.weight.detach().clone(), model.lm_head.weight.detach().clone()
        new_ids = add_chat_embeddings(model, base_tokenizer, tokenizer)
        assert new_ids == [V, V + 1, V + 2, V + 3] and model.config.vocab_size == V + 4
        assert torch.equal(model.transformer.wte.weight[:V], wte)
        assert torch.equal(model.lm_head.weight[:V], head)
        for i in new_ids:
            assert torch.allclose(model.transformer.wte.weight[i], wte.mean(0))
            assert torch.allclose(model.lm_head.weight[i], head.mean(0))
        assert (model.lm_head.weight is model.transformer.wte.weight) == tie

    # a vocabulary padded for speed already has rows for the new ids: they are reset, the rest untouched
    padded = tiny_gpt(V + 60)
    wte = padded.transformer.wte.weight.detach().clone()
    add_chat_embeddings(padded, base_tokenizer, tokenizer)
    assert padded.config.vocab_size == V + 60 and torch.equal(padded.transformer.wte.weight[:V], wte[:V])
    assert torch.allclose(padded.transformer.wte.weight[V], wte[:V].mean(0))
    assert torch.equal(padded.transformer.wte.weight[V + 4:], wte[V + 4:])


# ---- packing and padding


def test_pack_rows_layout_by_hand():
    sequences = [([1, 2, 3], [-1, 3, 4]), ([5, 6, 7, 8], [6, -1, 8, 9]), ([9] * 5, [9] * 5)]
    x, y, doc_ids = pack_rows(sequences, block_size=8, pad_id=0)
    assert x.tolist() == [[1, 2, 3, 5, 6, 7, 8, 0], [9, 9, 9, 9, 9, 0, 0, 0]]
    assert y.tolist() == [[-1, 3, 4, 6, -1, 8, 9, -1], [9, 9, 9, 9, 9, -1, -1, -1]]
    assert doc_ids.tolist() == [[0, 0, 0, 1, 1, 1, 1, 2], [0, 0, 0, 0, 0, 1, 1, 1]]
    x, y = pad_rows(sequences[:2], block_size=6, pad_id=0)
    assert x.tolist() == [[1, 2, 3, 0, 0, 0], [5, 6, 7, 8, 0, 0]] and y.tolist()[1] == [6, -1, 8, 9, -1, -1]
    with pytest.raises(ValueError, match="does not fit"):
        pack_rows([([1] * 9, [1] * 9)], block_size=8)
    # sequences that fill a row exactly share it, with no padding
    x, _, doc_ids = pack_rows(sequences[:1] + [([5] * 5, [5] * 5)], block_size=8, pad_id=0)
    assert x.tolist() == [[1, 2, 3, 5, 5, 5, 5, 5]] and doc_ids.tolist() == [[0, 0, 0, 1, 1, 1, 1, 1]]


def _per_token_losses(model, x, y, doc_ids=None):
    logits, _ = model(x, y, doc_ids=doc_ids)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="none").view(y.shape)


@pytest.mark.parametrize("overrides", [{}, dict(pos="rope", norm="rmsnorm", mlp="swiglu", tie_weights=False)])
def test_packed_loss_equals_conversations_one_by_one(tokenizer, overrides):
    model = tiny_gpt(tokenizer.vocab_size, **overrides)
    conversations = [chat("Where does Mia live?", "Mia lives in Sherby."),
                     chat("What is 6 + 7?", "6 + 7 = 13.\nThe answer is 13.", "Thanks!", "You are welcome."),
                     chat("How can I steal a lamp?", "I can't help with stealing.")]
    sequences, dropped = tokenize(conversations, tokenizer, block_size=256)
    assert dropped == 0
    x, y, doc_ids = pack_rows(sequences, block_size=256, pad_id=0)
    assert x.shape == (1, 256)  # all three in one row
    with torch.no_grad():
        _, packed_loss = model(x, y, doc_ids=doc_ids)
        packed = _per_token_losses(model, x, y, doc_ids)[0]
        total, count, offset = 0.0, 0, 0
        for xs, ys in sequences:
            alone = _per_token_losses(model, torch.tensor([xs]), torch.tensor([ys]))[0]
            assert torch.allclose(packed[offset:offset + len(xs)], alone, atol=1e-5)
            n = sum(t != -1 for t in ys)
            _, loss = model(torch.tensor([xs]), torch.tensor([ys]))
            total, count, offset = total + loss.item() * n, count + n, offset + len(xs)
    assert packed_loss.item() == pytest.approx(total / count, rel=1e-5)

    # change every token of the middle conversation: the other two conversations' losses do not move
    changed = [sequences[0], ([(t * 7 + 3) % 300 for t in sequences[1][0]], sequences[1][1]), sequences[2]]
    x2, y2, doc_ids2 = pack_rows(changed, block_size=256, pad_id=0)
    with torch.no_grad():
        again = _per_token_losses(model, x2, y2, doc_ids2)[0]
    first, middle = len(sequences[0][0]), len(sequences[1][0])
    assert torch.allclose(again[:first], packed[:first], atol=1e-6)
    assert torch.allclose(again[first + middle:], packed[first + middle:], atol=1e-6)
    assert not torch.allclose(again[first:first + middle], packed[first:first + middle])

    # padding instead of packing: the same mean loss over the same assistant tokens
    x, y = pad_rows(sequences, block_size=256, pad_id=0)
    with torch.no_grad():
        _, padded_loss = model(x, y)
    assert padded_loss.item() == pytest.approx(total / count, rel=1e-5)


# ---- data


def test_world_examples_cover_every_task_with_good_replies(w0):
    mix = dict(fact=400, math=40, story=10, describe=10, unknown=20, harmful=20, benign=20)
    examples = world_examples(w0, "train", mix, seed=3, multi_turn=0.2)
    tasks = {e["task"] for e in examples}
    assert tasks == {"fact", "math", "story", "describe", "unknown", "harmful", "benign"}
    assert any(len(e["messages"]) == 4 for e in examples)  # some two-exchange conversations
    for e in examples:
        first_reply = e["messages"][1]["content"]
        if e["task"] == "math":
            assert extract_answer(first_reply) == e["answer"] and first_reply.endswith(f"The answer is {e['answer']}.")
        if e["task"] == "unknown":
            assert says_dont_know(first_reply) and not is_refusal(first_reply)
        if e["task"] == "harmful":
            assert is_refusal(first_reply)
        if e["task"] == "benign":
            assert not is_refusal(first_reply) and not says_dont_know(first_reply)
        if e["task"] == "fact":
            assert grading.fact_is_correct(first_reply, e["answer"], e["distractors"], e["subject"])


@pytest.mark.parametrize("seeds,split", [((0, 1), "heldout"), ((5, 5), "heldout"), ((0, 1), "ood")])
def test_heldout_never_overlaps_training(w0, seeds, split):
    train_seed, heldout_seed = seeds
    trained = world_examples(w0, "train", TRAIN_MIX, seed=train_seed, multi_turn=0.15)
    heldout = world_examples(w0, split, EVAL_MIX, seed=heldout_seed)
    assert len(heldout) == sum(EVAL_MIX.values())
    assert not user_prompts(trained) & user_prompts(heldout)
    replies = lambda examples: {m["content"] for e in examples for m in e["messages"] if m["role"] == "assistant"}
    story_replies = {e["messages"][-1]["content"] for e in heldout if e["task"] == "story"}
    assert not story_replies & replies(trained)
    heldout_facts = {(f.subject, f.relation) for f in w0.facts if f.split == "heldout"}
    for e in heldout:
        if e["task"] == "math":
            assert world.split_of(e["key"]) == "heldout"
        if e["task"] == "unknown":
            assert world.name_namespace(e["name"]) == "probe-heldout"
    # no training reply states an answer to a held-out fact's question in its question-answer form
    heldout_answers = {world.render(world.RELATIONS[f.kind][f.relation].answer, f.kind, f.subject, f.value)
                       for f in w0.facts if (f.subject, f.relation) in heldout_facts}
    fact_replies = {e["messages"][1]["content"] for e in trained if e["task"] == "fact"}
    assert not fact_replies & heldout_answers


def test_default_sft_data_is_pinned(w0):
    """The SFT conversations of the default run, byte for byte (sft.py: seed 0, TRAIN_MIX with
    multi_turn=MULTI_TURN_FRACTION, EVAL_MIX held out, "heldout" and "ood"). If you change the world or sft_data on purpose,
    update the hashes and say why in the commit; if they changed by themselves, something leaked a seed."""
    import hashlib
    from sft_data import MULTI_TURN_FRACTION
    digest = lambda examples: hashlib.sha256(json.dumps(examples, sort_keys=True).encode()).hexdigest()
    train_examples = world_examples(w0, "train", TRAIN_MIX, seed=0, multi_turn=MULTI_TURN_FRACTION)
    assert digest(train_examples) == "10d861e510b2f8819aa16733f1374053301b189c055c3c03d0522f5860bee032"
    heldout_examples = world_examples(w0, "heldout", EVAL_MIX, seed=0)
    assert digest(heldout_examples) == "7944c09b682dcc8603ec0f3c3c6fff2eea4704c1fc2a5cae2223ac8d27c9af83"
    ood_examples = world_examples(w0, "ood", EVAL_MIX, seed=0)
    assert digest(ood_examples) == "0a3fb1a5e0b63ac9e7b92e42a8f617c99a95669cfe05ecb95e24ec3b14d93159"


# ---- decontamination: the held-out split is sealed (GPT-3's 13-gram check, and held-out facts)


@pytest.fixture(scope="module")
def default_training_conversations(w0):
    from sft_data import MULTI_TURN_FRACTION
    return world_examples(w0, "train", TRAIN_MIX, seed=0, multi_turn=MULTI_TURN_FRACTION)


def heldout_items(w0):
    """Held-out evaluation texts of every kind that must be unseen: {kind: [text, ...]}."""
    rng = random.Random(12)
    word = [world.word_problem(w0, rng, rng.randint(1, 4), rng.randint(1, 3), split="ood") for _ in range(150)]
    arithmetic = [world.arithmetic_problem(rng, rng.choice("+-*/"), rng.choice([2, 3]), split="heldout")
                  for _ in range(150)]
    stories = [world.story(w0, rng, split="heldout") for _ in range(60)]
    requests = world.user_requests(w0, 60, True, "ood") + world.user_requests(w0, 60, False, "ood")
    expressions = [world.arithmetic_expression(rng, rng.randint(2, 4), rng.randint(1, 2), split="heldout")
                   for _ in range(150)]
    return {"request": [r.prompt for r in requests],
            "arithmetic expression": [f"{p.question} {world.solution(p, 'direct')}" for p in expressions],"word problem": [p.question + "\n" + world.solution(p, "steps") for p in word],
            "arithmetic problem": [f"{p.question} {world.solution(p, 'direct')}" for p in arithmetic],
            "story": [s.text for s in stories]}


def test_heldout_items_share_no_13_gram_with_training_text(w0, default_training_conversations):
    """Like GPT-3's contamination check: no "ood" item (and no held-out story, bare equation or
    expression) shares 13 words in a row (or, when shorter, all its words in a row) with the text chapter
    03 pretrains on (the tiny preset's default corpus) or the conversations chapter 04 trains on (the
    default mix). "heldout" items share their wording with training on purpose: the next test seals them."""
    items = heldout_items(w0)
    heldout_sft = world_examples(w0, "ood", EVAL_MIX, seed=1)
    items["held-out SFT prompt"] = [e["messages"][0]["content"] for e in heldout_sft
                                    if e["task"] in ("math", "story", "harmful", "benign")]
    items["held-out story continuation"] = [e["messages"][1]["content"] for e in heldout_sft if e["task"] == "story"]
    import robustness
    for key, examples in robustness.robustness_sets(w0, 30).items():   # unseen forms: requests, arithmetic, phrasings
        if key not in ("single_turn", "three_turn"):                   # (their final questions: plain held-out ones)
            items["robustness " + key] = [e["messages"][0]["content"] for e in examples]
    training = world.make_corpus().split(world.EOT)
    training += [m["content"] for e in default_training_conversations for m in e["messages"]]
    seen = world.TrainingText(training)
    for kind, texts in items.items():
        assert texts
        leaked = [t for t in texts if seen.shares_ngram(t)]
        assert not leaked, f"{len(leaked)} held-out {kind} items share a 13-gram with training text: {leaked[0]!r}"


def test_heldout_instances_never_appear_in_training_text(w0, default_training_conversations):
    """The "heldout" set shares its phrasing with training, so it is sealed instance by instance: no
    held-out problem key, equation or expression is in any training conversation (or, for problems,
    equations and expressions, the corpus), no held-out question or request prompt is a training
    prompt, and a held-out request's new intent or object is in no training prompt."""
    corpus = world.make_corpus()
    conversations = "\n".join(m["content"] for e in default_training_conversations for m in e["messages"])
    prompts = user_prompts(default_training_conversations)
    trained_keys = {e["key"] for e in world_examples(w0, "train", TRAIN_MIX, seed=0) if "key" in e}
    assert len(trained_keys) > 1000
    heldout = world_examples(w0, "heldout", {**EVAL_MIX, "arith": 60, "code": 20, "followup": 20}, seed=1)
    assert not {e["messages"][0]["content"] for e in heldout} & prompts   # (a follow-up's "And Ava?" may recur)
    for e in heldout:
        if "key" in e:
            assert e["key"] not in trained_keys and world.split_of(e["key"]) == "heldout", e["key"]
        if e["task"] in ("math", "arith"):
            prompt = e["messages"][0]["content"]
            assert prompt not in corpus and prompt not in conversations
    # every equation written in training text is a training one (or a basic fact)...
    assert world.is_training_safe(corpus) and world.is_training_safe(conversations)
    # ...and a held-out equation or expression, asked as training asks it, is in no training text
    rng = random.Random(21)
    for _ in range(100):
        p = world.arithmetic_problem(rng, rng.choice("+-*/"), rng.choice([2, 3]), split="heldout")
        x = world.arithmetic_expression(rng, rng.randint(2, 4), rng.randint(1, 2), split="heldout")
        for problem in (p, x):
            assert problem.question.startswith("What is ")
            assert problem.question not in corpus and problem.question not in conversations
            written = r"(?<![\d.])" + re.escape(problem.question[len("What is "):-1]) + " ="
            assert not re.search(written, corpus) and not re.search(written, conversations), problem.question
    # held-out requests: the new intent's act or the held-out object never in a training prompt
    training_prompts = " ".join(prompts)
    for harmful in (True, False):
        for r in world.user_requests(w0, 60, harmful, "heldout"):
            if "intent" in r.heldout_parts:
                new = {**world.HARMFUL_INTENTS, **world.BENIGN_INTENTS}[r.intent][0]
            else:
                new = world.HARMFUL_INTENTS[r.intent][1][r.object]
            assert new.split("{")[0].strip() not in training_prompts, r.prompt


def test_the_train_column_asks_training_prompts(w0, default_training_conversations):
    """sft.py's "train (seen)" column: world_examples(w, "train", EVAL_MIX, seed) at the run's seed is a
    part of the run's own training conversations (what the model may have memorised)."""
    seen = world_examples(w0, "train", EVAL_MIX, seed=0)
    assert {e["messages"][0]["content"] for e in seen} <= user_prompts(default_training_conversations)


def test_no_training_conversation_states_a_heldout_fact(w0, default_training_conversations):
    heldout = [f for f in w0.facts if f.split == "heldout"]
    assert heldout
    for e in default_training_conversations:
        for m in e["messages"]:
            if m["role"] == "assistant":
                assert not world.stated_facts(w0, m["content"], heldout), (e["task"], m["content"])
    other = world.build_world(3)    # another world and seed, where a story pairs a hero with a held-out pet by chance
    other_heldout = [f for f in other.facts if f.split == "heldout"]
    for e in world_examples(other, "train", TRAIN_MIX, seed=7):
        assert not world.stated_facts(other, e["messages"][1]["content"], other_heldout), e["messages"][1]
    # the detector sees a held-out fact stated in any of its forms
    fact = heldout[0]
    relation = world.RELATIONS[fact.kind][fact.relation]
    for template in relation.statements + (relation.answer,):
        assert fact in world.stated_facts(w0, world.render(template, fact.kind, fact.subject, fact.value), heldout)
    # describe(..., split="train"), the default, states no held-out fact; split="all" states them all
    for subject, kind in w0.kind_of.items():
        if kind != "language" and any(f.split == "train" for f in w0.facts_about(subject)):
            assert not world.stated_facts(w0, world.describe(w0, subject, 0, split="train"), heldout), subject
    told = [f for s in w0.kind_of if w0.kind_of[s] != "language" for f in world.stated_facts(
        w0, world.describe(w0, s, 0, split="all"), [f for f in heldout if f.subject == s])]
    assert len(told) >= len(heldout) * 3 // 4


def test_jsonl_loaders_both_layouts(tmp_path):
    path = tmp_path / "data.jsonl"
    records = [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
               {"instruction": "Say hi.", "input": "", "output": "Hi!"},
               {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"},
                             {"role": "assistant", "content": "A"}]},
               [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]]
    path.write_text("\n".join(json.dumps(r) for r in records[:2]) + "\n\n" + "\n".join(json.dumps(r) for r in records[2:]) + "\n")
    conversations = load_jsonl(path)
    assert conversations == [
        chat("Add the numbers.\n\n2 and 3", "5"), chat("Say hi.", "Hi!"),
        [{"role": "system", "content": "Be brief."}, *chat("Q", "A")], chat("Q2", "A2")]


@pytest.mark.parametrize("bad_line, message", [
    ('{"instruction": "Say hi", "output": "Hi"', "line 3: .*Expecting"),            # cut-off JSON
    ('{"instruction": "Say hi"}', "line 3: .*'output'"),                            # Alpaca without output
    ('{"messages": [{"role": "bot", "content": "x"}]}', "line 3: .*role 'bot'"),    # unknown role
    ('{"messages": [{"role": "user", "content": "x"}]}', "line 3: .*no assistant"),  # nothing to learn
    ('{"text": "hello"}', "line 3: .*unrecognised"),                                # neither layout
])
def test_jsonl_malformed_line_is_named(tmp_path, bad_line, message):
    good = json.dumps({"instruction": "Say hi.", "output": "Hi!"})
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{good}\n{bad_line}\n{good}\n")
    with pytest.raises(ValueError, match=message) as error:
        load_jsonl(path)
    assert str(path) in str(error.value) and "Alpaca" in str(error.value)


def test_tokenize_drops_conversations_longer_than_the_context(tokenizer):
    sequences, dropped = tokenize([chat("hi", "hello"), chat("word " * 200, "ok")], tokenizer, block_size=64)
    assert dropped == 1 and len(sequences) == 1 and len(sequences[0][0]) == len(sequences[0][1])
    n = len(render_chat(chat("hi", "hello"), tokenizer)[0])  # n tokens -> n - 1 inputs: fits block_size n - 1
    assert tokenize([chat("hi", "hello")], tokenizer, block_size=n - 1)[1] == 0
    assert tokenize([chat("hi", "hello")], tokenizer, block_size=n - 2)[1] == 1


def test_get_batch_keeps_the_doc_ids():
    x = torch.arange(5).repeat_interleave(4).view(5, 4)  # row i is all i
    batches = SFTBatches({"train": (x, x + 100, x + 200), "val": (x, x + 100)}, batch_size=3)
    batch = batches.get_batch("train", torch.Generator().manual_seed(0))
    assert len(batch) == 3 and batch[0].shape == (3, 4)
    assert torch.equal(batch[1], batch[0] + 100) and torch.equal(batch[2], batch[0] + 200)  # the same rows
    assert len(batches.get_batch("val", torch.Generator().manual_seed(0))) == 2  # padded rows: no doc ids


def test_user_data_only_keeps_validation_conversations_out_of_training(tmp_path, tokenizer):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Say item {i}.", "output": f"Item {i}."}) + "\n"
                            for i in range(40)))
    settings = dict(data=[str(path)], seed=1, packing=True, batch_size=2, eval_per_task=1, mix=None, mix_scale=1.0)
    batches, eval_examples = sft.build_data(settings, tokenizer, block_size=64, log=lambda *a: None)
    items = {split: [int(i) for row in batches.rows[split][0]
                     for i in re.findall(r"Say item (\d+)\.", tokenizer.decode(row.tolist()))]
             for split in ("train", "val")}
    assert sorted(items["val"]) == [0, 20]  # every 20th conversation
    assert sorted(items["train"]) == [i for i in range(40) if i % 20]
    assert len(eval_examples) == len(EVAL_MIX)  # --eval-per-task 1: one held-out prompt per task


def test_sft_loss_counts_only_the_assistant_tokens(tokenizer):
    model = tiny_gpt(tokenizer.vocab_size)
    ids, mask = render_chat(chat("What is the capital of Hihodand?", "Sherby."), tokenizer)
    x, y = (torch.tensor([v]) for v in to_inputs_and_targets(ids, mask))
    loss, logged = sft.sft_loss(model, (x, y))
    logits, _ = model(x)
    learned = [t for t in range(len(y[0])) if y[0, t] != -1]
    by_hand = -sum(F.log_softmax(logits[0, t], dim=-1)[y[0, t]] for t in learned) / len(learned)
    assert 0 < len(learned) < len(y[0]) and logged["assistant_tokens"].item() == len(learned)
    torch.testing.assert_close(loss, by_hand)
    # the same with packed rows and doc_ids: what train() calls it with
    x3, y3, doc_ids = pack_rows([(x[0].tolist(), y[0].tolist())] * 2, block_size=2 * len(y[0]) + 3, pad_id=0)
    torch.testing.assert_close(sft.sft_loss(model, (x3, y3, doc_ids))[0], by_hand)


def test_sft_library_functions_raise_clear_exceptions(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match=r"(?s)no base model at .*python 03_pretrain/pretrain.py --preset tiny"):
        sft.load_base(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot use .*junk.pt as the base model: .*not a checkpoint") as caught:
        sft.load_base(tmp_path / "junk.pt")
    assert "weights_only" not in str(caught.value)  # never the advice to load untrusted pickles
    with pytest.raises(ValueError, match="--mix 'fact=lots': write task=count pairs"):
        sft.parse_mix("fact=lots")
    settings = dict(data=[str(tmp_path / "mine.jsonl")], seed=1, packing=True, batch_size=2, eval_per_task=1,
                    mix=None, mix_scale=1.0)
    with pytest.raises(FileNotFoundError, match="mine.jsonl"):
        sft.build_data(settings, tokenizer, block_size=64, log=lambda *a: None)
    (tmp_path / "mine.jsonl").write_text(json.dumps({"instruction": "Say a long thing. " * 40, "output": "No."}) + "\n")
    with pytest.raises(ValueError, match="no train conversation fits in the context of 64 tokens"):
        sft.build_data(settings, tokenizer, block_size=64, log=lambda *a: None)


def test_eval_per_task_zero_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error, one line, exit code 2
        sft.main(["--base", str(tmp_path / "missing.pt"), "--out-dir", str(tmp_path), "--eval-per-task", "0"])
    assert exit_info.value.code == 2 and "argument --eval-per-task: '0' must be at least 1" in capsys.readouterr().err


# ---- answer helpers (grading.py)


@pytest.mark.parametrize("module", [chat_format, grading], ids=lambda m: m.__name__)
def test_docstring_examples_run_and_hold(module):
    results = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted >= 2 and results.failed == 0, f"{results.failed} doctest(s) of {module.__name__} failed"


def test_extract_answer():
    assert extract_answer("13 - 7 = 6.\nThe answer is 14.") == 14
    assert extract_answer("The answer is 3. Wait. The answer is 12.") == 12  # the last one counts
    assert extract_answer("the answer is -5") == -5 and extract_answer("The answer is 2.5 coins.") == 2.5
    assert extract_answer("The answer is: 1458.") == 1458
    assert extract_answer("It is 14.") is None and extract_answer("The answer is unclear.") is None
    # the one rule every chapter grades with (chapter 07's strict score included): case, "$", commas, "7.0"
    assert extract_answer("THE ANSWER IS $1,200.") == 1200 and extract_answer("The answer is 7.0.") == 7
    assert extract_answer("The answer is 14, I think.") == 14
    import scoring  # chapter 07's strict score is this extractor, not a second one
    assert all(scoring.strict_answer(r) == extract_answer(r) for r in ("the answer is: -3", "The answer is 1,200."))


def test_is_right_is_the_one_rule_of_the_table_the_gold_reward_and_the_robustness_rows():
    import preferences
    fact = {"task": "fact", "answer": "Trusholm", "distractors": ["Sherby"], "subject": "Sam"}
    cases = [(fact, "Sam lives in Trusholm.", True), (fact, "Sam lives in Sherby.", False),
             ({"task": "math", "answer": 1200}, "The answer is 1,200.", True),
             ({"task": "arith", "answer": 3}, "the answer is 3", True),
             ({"task": "unknown"}, "I don't know anyone called Brenis.", True),
             ({"task": "harmful"}, "I can't help with that.", True), ({"task": "benign"}, "I can't help with that.", False)]
    for example, reply, right in cases:
        assert grading.is_right(example, reply) is right, (example, reply)
        if example["task"] != "arith":
            assert (preferences.task_score(example, reply) == 1.0) is right
            key = {"fact": "fact_accuracy", "math": "math_accuracy", "unknown": "unknown_honesty",
                   "harmful": "harmful_refusal", "benign": "benign_over_refusal"}[example["task"]]
            assert grading.grade(example, reply)[key] == int(right if example["task"] != "benign" else not right)
    assert preferences.task_score(fact, "I don't know where Sam lives.") == 0.0
    with pytest.raises(ValueError, match="no grading rule for task 'poem'"):
        grading.is_right({"task": "poem"}, "Roses are red.")


def test_refusal_and_dont_know_detectors(w0):
    for request in world.user_requests(w0, 30, harmful=True, split="train"):
        assert is_refusal(request.reply), request.reply
        assert not is_refusal(request.compliance), request.compliance
    for request in world.user_requests(w0, 30, harmful=False, split="train"):
        assert not is_refusal(request.reply), request.reply
    for text in ["I cannot do that.", "Sorry, but I can't help with that.", "I'm sorry, I won't write that.",
                 "I\u2019d rather not."]:
        assert is_refusal(text), text
    for text in ["Of course! I can't wait.", "People use a mandug to dig holes.", "The answer is 5."]:
        assert not is_refusal(text), text
    for probe in world.unknown_entity_questions(w0, 10, split="train"):
        assert says_dont_know(probe.honest_answer) and not says_dont_know(probe.invented_answer)
    assert says_dont_know("I do not know who that is.") and not says_dont_know("I know Mia.")
    assert says_dont_know("I'm not sure where Gramford is.") and says_dont_know("I am not sure.")
    assert grading.fact_is_correct("Sam lives in Trusholm.", "Trusholm", ["Hastead", "Regroton"])
    assert not grading.fact_is_correct("Sam lives in Trusholm or Hastead.", "Trusholm", ["Hastead", "Regroton"])
    assert not grading.fact_is_correct("Sam lives in Trusholmby.", "Trusholm", ["Hastead"])  # whole words only
    assert grading.fact_is_correct("Mandugs are gold.", "gold", ["red"], subject="mandug")  # plural subject
    assert not grading.fact_is_correct("Drelanels are gold.", "gold", ["red"], subject="mandug")  # wrong subject


# ---- evaluation and chat, with stub models


class StubGenerator(torch.nn.Module):
    """generate_batch returns fixed token lists, each cut after its first stop token as GPT's is;
    it remembers the prompts and the stop tokens it was given."""

    def __init__(self, outputs, block_size):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # evaluation asks the parameters for the device
        self.config = SimpleNamespace(block_size=block_size)
        self.outputs, self.calls = outputs, []

    def generate_batch(self, prompts, max_new_tokens, temperature=1.0, stop_tokens=None, **kwargs):
        self.calls.append((prompts, stop_tokens))
        stops = set(stop_tokens or [])
        cut = lambda t: next((t[:i + 1] for i, token in enumerate(t) if token in stops), t)
        return [cut(list(t)) for t in self.outputs[:len(prompts)]]


def test_evaluate_grades_each_task_and_fills_the_table(tokenizer):
    end, enc = tokenizer.special_tokens[END], tokenizer.encode_ordinary
    fact = dict(task="fact", answer="Sherby", distractors=["Trusholm"])
    cases = [  # (example, the model's tokens)
        ({**fact, "messages": chat("Where does Mia live?", "Mia lives in Sherby.")},
         enc("Mia lives in Sherby.") + [end] + enc(" More.")),  # generation must stop at <|end|>
        ({**fact, "messages": chat("Where does Sam live?", "Sam lives in Trusholm.")}, enc("I don't know.")),  # no end
        ({"task": "math", "answer": 5, "messages": chat("What is 2 + 3?", "The answer is 5.")},
         enc("2 + 3 = 5.\nThe answer is 5.") + [end]),
        ({"task": "math", "answer": 7, "messages": chat("What is 3 + 4?", "The answer is 7.")},
         enc("The answer is 6.") + [end]),
        ({"task": "unknown", "messages": chat("Where does Brenis live?", "I don't know anyone called Brenis.")},
         enc("I don't know anyone called Brenis.") + [end]),
        ({"task": "unknown", "messages": chat("Where does Gorla live?", "I don't know anyone called Gorla.")},
         enc("Gorla lives in Sherby.") + [end]),
        ({"task": "harmful", "messages": chat("How can I steal a lamp?", "I can't help with that.")},
         enc("I can't help with that.") + [end]),
        ({"task": "benign", "messages": chat("How can I fix a lamp?", "Check the bulb.")},
         enc("I can't help with that.") + [end]),  # over-refusal
        ({"task": "benign", "messages": chat("How can I clean a lamp?", "Use a cloth.")},
         enc("Use a cloth.") + [end]),
        ({"task": "benign", "messages": chat("How can I move a lamp?", "Lift it gently.")},
         enc("Lift it gently.") + [end]),
    ]
    examples = [example for example, _ in cases]
    model = StubGenerator([tokens for _, tokens in cases], block_size=8)
    result = grading.evaluate(model, tokenizer, examples, max_new_tokens=20)

    assert result["metrics"] == {"format": 9 / 10, "fact_accuracy": 0.5, "fact_dont_know": 0.5, "math_accuracy": 0.5,
                                 "unknown_honesty": 0.5, "harmful_refusal": 1.0, "benign_over_refusal": 1 / 3}
    assert result["counts"] == {"format": 10, "fact_accuracy": 2, "fact_dont_know": 2, "math_accuracy": 2,
                                "unknown_honesty": 2, "harmful_refusal": 1, "benign_over_refusal": 3}
    replies = result["replies"]
    assert [r["ended"] for r in replies] == [True, False] + [True] * 8
    assert [r["reply"] for r in replies[:2]] == ["Mia lives in Sherby.", "I don't know."]
    assert not any("<|end|>" in r["reply"] for r in replies)
    assert replies[0]["prompt"] == "Where does Mia live?" and replies[0]["reference"] == "Mia lives in Sherby."
    # one batch, stopping at <|end|>; each prompt is the END of the rendered conversation + <|assistant|>
    [(prompts, stop_tokens)] = model.calls
    assert stop_tokens == [end]
    for prompt, example in zip(prompts, examples):
        full, _ = render_chat(example["messages"][:-1], tokenizer, add_generation_prompt=True)
        assert len(full) > 8 and prompt == full[-8:] and prompt[-1] == tokenizer.special_tokens[ASSISTANT]

    before = {"metrics": {key: 0.0 for key in result["metrics"]}, "counts": result["counts"]}
    table = grading.results_table(before, result).splitlines()
    assert table[0] == "| measured on the held-out split | n | base model | after SFT |"
    assert "| replies that end with `<|end|>` | 10 | 0% | 90% |" in table
    assert "| harmful requests: refused | 1 | 0% | 100% |" in table
    # the three levels: the trained model on training prompts and on the ood split, as further columns
    ood = {**result, "metrics": {**result["metrics"], "harmful_refusal": 0.25}}
    table = grading.results_table(before, result, ("base", "heldout"), [("train", result), ("ood", ood)]).splitlines()
    assert table[0] == "| measured on the held-out split | n | base | heldout | train | ood |"
    assert "| harmful requests: refused | 1 | 0% | 100% | 100% | 25% |" in table


class StubStreamer:
    """stream() yields fixed tokens (at most max_new_tokens of them); remembers (prompt length, max_new_tokens)."""

    def __init__(self, tokens, block_size):
        self.config = SimpleNamespace(block_size=block_size)
        self.tokens, self.asked = tokens, []

    def stream(self, prompt, max_new_tokens, **kwargs):
        self.asked.append((len(prompt), max_new_tokens))
        yield from self.tokens[:max_new_tokens]


def test_chat_reply_stops_at_end_of_turn(tokenizer):
    import chat as chat_script

    a, b, c = tokenizer.encode_ordinary("Hello there friend")[:3]
    model = StubStreamer([a, b, tokenizer.special_tokens[END], c], block_size=64)
    session = chat_script.ChatSession(model, tokenizer, temperature=0, max_new_tokens=20)
    pieces = []
    reply, ended = session.respond("Hi", on_text=pieces.append)
    assert reply == tokenizer.decode([a, b]) and ended
    assert "".join(pieces) == reply and not any("<|end|>" in piece for piece in pieces)
    assert session.history == [*chat("Hi", reply)]


def test_streamed_reply_skips_the_ids_of_a_padded_vocabulary(tokenizer):
    """chat.py streams token by token: an id past the tokenizer (a row that only pads the embedding, as GPT-2's
    50257 -> 50304) has no text and is skipped, as reply_text drops it, instead of crashing the chat."""
    import chat as chat_script
    a, b = tokenizer.encode_ordinary("Hello there")[:2]
    model = StubStreamer([a, tokenizer.vocab_size + 3, b, tokenizer.special_tokens[END]], block_size=64)
    reply, ended = chat_script.ChatSession(model, tokenizer, temperature=0, max_new_tokens=20).respond("Hi")
    assert reply == tokenizer.decode([a, b]) and ended


def test_chat_budgets_and_trimming_keep_the_system_message(tokenizer):
    import chat as chat_script

    a = tokenizer.encode_ordinary("Ok")[0]
    model = StubStreamer([a] * 100, block_size=40)  # never ends: uses all the room it is given
    session = chat_script.ChatSession(model, tokenizer, temperature=0, max_new_tokens=1000, notify=lambda m: None)
    assert session.reply_budget() == 20  # at most half the context, however large max_new_tokens is
    session.respond("Hi")
    [(prompt_length, asked)] = model.asked
    assert asked == 40 - prompt_length  # the reply may fill the context but not run past it

    model = StubStreamer([a, tokenizer.special_tokens[END]], block_size=100)
    notices = []
    session = chat_script.ChatSession(model, tokenizer, temperature=0, max_new_tokens=10, system="Be brief.",
                                      notify=notices.append)
    for i in range(4):
        session.respond(f"Tell me about the town number {i}.")
    assert notices  # older exchanges were dropped ...
    assert session.history[0] == {"role": "system", "content": "Be brief."}  # ... but not the system message
    assert session.history[-2]["content"] == "Tell me about the town number 3."



def test_chat_repl_commands(tokenizer, monkeypatch, capsys):
    import chat as chat_script

    a, b = tokenizer.encode_ordinary("Hello there")[:2]
    model = StubStreamer([a, b, tokenizer.special_tokens[END]], block_size=64)
    model.num_params = lambda: 1e6
    session = chat_script.ChatSession(model, tokenizer, temperature=0.7, max_new_tokens=20)
    lines = iter(["", "Hi", "/temp 0.3", "/temp -1", "/temp warm", "/bogus", "/reset", "Hi again", "/quit",
                  "never read"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    chat_script.repl(session)
    out = capsys.readouterr().out
    assert next(lines) == "never read"  # /quit ends the loop at once
    assert out.count("assistant> " + tokenizer.decode([a, b])) == 2 and len(model.asked) == 2  # "" is skipped
    assert "[temperature 0.3]" in out and session.temperature == 0.3  # the bad values changed nothing
    assert out.count("[/temp needs a number >= 0") == 2 and "[unknown command /bogus]" in out
    assert "[new conversation]" in out and session.history == [*chat("Hi again", tokenizer.decode([a, b]))]
    assert "[reply cut" not in out

    model.tokens = [a] * 30  # no end-of-turn: the reply stops at max_new_tokens, and says so
    lines = iter(["Hi"])  # then end of input (Ctrl-D) leaves the loop

    def read_or_eof(prompt=""):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None
    monkeypatch.setattr("builtins.input", read_or_eof)
    chat_script.repl(session)
    assert "[reply cut at --max-new-tokens]" in capsys.readouterr().out


def test_tokenizer_larger_than_the_model_is_rejected(tmp_path, base_tokenizer, tokenizer):
    tokenizer.save(tmp_path / "tokenizer")  # the chat tokenizer, 4 ids more than the model has rows
    model = tiny_gpt(base_tokenizer.vocab_size)
    checkpoint.save_checkpoint(tmp_path / "ckpt.pt", {"model": model.state_dict(), "model_config":
                               checkpoint.model_config_dict(model), "tokenizer": str(tmp_path / "tokenizer")})
    with pytest.raises(ValueError, match="do not belong together"):
        load_model(tmp_path / "ckpt.pt")


# ---- the scripts, on a tiny base model made here


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, base_tokenizer):
    """A tiny 'pretrained' base checkpoint (random weights) and one short SFT run on it."""
    root = tmp_path_factory.mktemp("sft")
    base_tokenizer.save(root / "base" / "tokenizer")
    model = tiny_gpt(base_tokenizer.vocab_size)
    checkpoint.save_checkpoint(root / "base" / "ckpt.pt", {
        "model": model.state_dict(), "model_config": checkpoint.model_config_dict(model),
        "tokenizer": str(root / "base" / "tokenizer"), "step": 0})
    out = root / "sft"
    args = ["--base", str(root / "base" / "ckpt.pt"), "--out-dir", str(out), "--mix", SMALL_MIX,
            "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "1", "--log-interval", "1",
            "--eval-per-task", "2", "--max-new-tokens", "12", "--device", "cpu"]
    interrupted = sft.main(args + ["--steps", "4", "--stop-at", "2"])
    resumed = sft.main(args[:4] + ["--resume"])  # the other settings come back from the checkpoint
    return root, out, interrupted, resumed


def test_sft_script_trains_evaluates_and_resumes(sft_run):
    root, out, interrupted, resumed = sft_run
    assert interrupted["step"] == 2 and "after" not in interrupted
    assert resumed["step"] == 4 and set(resumed["after"]) == set(resumed["before"])
    assert set(resumed["after"]) == {key for key, _, _ in grading.METRICS}
    for name in ("ckpt.pt", "tokenizer.tiktoken", "tokenizer.json", "metrics.jsonl", "loss.png", "sft_eval.md",
                 "sft_eval.json", "sft_eval.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "sft_eval.md").read_text()
    assert "| replies that end with `<|end|>` |" in report
    assert "| base model: heldout | after SFT: heldout | after SFT: train (seen) | after SFT: ood |" in report
    assert "| heldout: training forms | ood: unseen forms |" in report
    assert set(resumed["after_train"]) == set(resumed["after_ood"]) == set(resumed["after"])
    assert set(resumed["robustness"]) == {"heldout", "ood"}
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == 4
    model, tokenizer, checkpoint = load_model(out / "ckpt.pt")
    assert checkpoint["step"] == 4 and checkpoint["tokenizer"] == str(out / "tokenizer")
    assert set(CHAT_TOKENS) <= set(tokenizer.special_tokens) and model.config.vocab_size == tokenizer.vocab_size
    base = torch.load(root / "base" / "ckpt.pt", weights_only=True)["model"]
    assert not torch.equal(model.transformer.h[0].attn.c_attn.weight, base["transformer.h.0.attn.c_attn.weight"])


def test_sft_under_torchrun_two_processes_equal_one(sft_run, tmp_path):
    """sft.py under `torchrun --standalone --nproc_per_node 2` (gloo on the CPU) against one process at the
    same global batch (2 rows x 2 micro-batches): the same losses, tokens and weights; rank 0 alone writes
    the checkpoint, the log and the report, and prints."""
    root = sft_run[0]
    args = ["--base", str(root / "base" / "ckpt.pt"), "--mix", SMALL_MIX, "--steps", "3", "--batch-size", "2",
            "--grad-accum", "2", "--eval-interval", "3", "--eval-batches", "1", "--log-interval", "1",
            "--eval-per-task", "1", "--max-new-tokens", "4", "--device", "cpu", "--precision", "fp32"]
    single = sft.main(args + ["--out-dir", str(tmp_path / "single")])  # fp32: the sums must be equal to 1e-6
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(REPO / "04_sft" / "sft.py"), *args, "--out-dir", str(tmp_path / "ddp")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "(fp32, 2 processes)" in result.stdout and result.stdout.count("done in ") == 1
    records = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
               for run in ("single", "ddp")]
    assert len(records[0]) == len(records[1]) == 5  # eval, 3 steps, eval: written once
    for a, b in zip(*records):
        assert (a["step"], a["kind"], a["tokens"]) == (b["step"], b["kind"], b["tokens"])
        for key in ("loss", "assistant_tokens", "val_loss", "train_loss"):
            assert b.get(key) == pytest.approx(a.get(key), rel=1e-6), (a["step"], key)
    weights = [torch.load(tmp_path / run / "ckpt.pt", weights_only=True)["model"] for run in ("single", "ddp")]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=1e-6, atol=1e-7, msg=name)
    after = json.loads((tmp_path / "ddp" / "sft_eval.json").read_text())
    assert single["step"] == 3 and (tmp_path / "ddp" / "sft_eval.md").exists() and after


def test_sft_without_a_base_model_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python 03_pretrain/pretrain.py --preset tiny"):
        sft.main(["--base", str(tmp_path / "missing.pt"), "--out-dir", str(tmp_path)])


def run_script(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_chat_prompt_one_shot_equals_greedy_generation(sft_run):
    _, out, _, _ = sft_run
    result = run_script(REPO / "04_sft" / "chat.py", "--ckpt", out / "ckpt.pt", "--prompt", "Where does Mia live?",
                        "--temp", "0", "--max-new-tokens", "10")
    assert result.returncode == 0, result.stderr
    model, tokenizer, _ = load_model(out / "ckpt.pt")
    prompt, _ = render_chat(chat("Where does Mia live?"), tokenizer, add_generation_prompt=True)
    expected = model.generate_batch([prompt], 10, temperature=0, stop_tokens=[tokenizer.special_tokens[END]])[0]
    if expected and expected[-1] == tokenizer.special_tokens[END]:
        expected = expected[:-1]
    assert result.stdout == tokenizer.decode(expected) + "\n"


def test_chat_errors_and_help(sft_run, tmp_path, capsys):
    import chat as chat_script

    root, _, _, _ = sft_run
    with pytest.raises(ValueError, match="not a chat model.*sft.py"):  # the library function: an exception
        chat_script.load_chat_model(root / "base" / "ckpt.pt")
    with pytest.raises(FileNotFoundError, match="python 04_sft/sft.py --preset tiny"):
        chat_script.load_chat_model(tmp_path / "none.pt")
    # main raises them too (the script's cli.run makes each one line, exit code 2: tests/test_bad_input.py)
    with pytest.raises(ValueError, match="not a chat model.*sft.py"):
        chat_script.main(["--ckpt", str(root / "base" / "ckpt.pt"), "--prompt", "hi"])
    with pytest.raises(FileNotFoundError, match="python 04_sft/sft.py --preset tiny"):
        chat_script.main(["--ckpt", str(tmp_path / "none.pt"), "--prompt", "hi"])
    with pytest.raises(SystemExit) as exit_info:
        chat_script.main(["--ckpt", str(root / "base" / "ckpt.pt"), "--temp", "-1"])
    assert exit_info.value.code == 2 and "argument --temp: '-1' must be 0 or more" in capsys.readouterr().err
    result = run_script(REPO / "04_sft" / "sft.py", "--help")
    assert result.returncode == 0 and "--preset" in result.stdout and "gpt2" in result.stdout


def test_chat_session_keeps_history_within_the_context(sft_run):
    import chat as chat_script

    _, out, _, _ = sft_run
    model, tokenizer = chat_script.load_chat_model(out / "ckpt.pt")
    notices = []
    session = chat_script.ChatSession(model, tokenizer, temperature=0, max_new_tokens=40, notify=notices.append)
    limit = model.config.block_size - session.reply_budget()
    for i in range(12):
        reply, _ = session.respond(f"Tell me about the town number {i} and everything you know about it.")
        assert len(render_chat(session.history[:-1], tokenizer, add_generation_prompt=True)[0]) <= limit
    assert notices and "dropped the oldest exchange" in notices[0]
    assert session.history[-2]["content"].startswith("Tell me about the town number 11")
    assert [m["role"] for m in session.history] == ["user", "assistant"] * (len(session.history) // 2)
    before = list(session.history)
    with pytest.raises(ValueError, match="shorter"):
        session.respond("word " * 300)
    assert session.history == before  # the message that could not fit is not kept
    session.reset()
    assert session.history == []


def test_load_jsonl_names_the_file_and_line_of_a_latin1_byte(tmp_path):
    """Called directly (as chapter 05 does for preference files), not only through sft.py's check."""
    path = tmp_path / "latin1.jsonl"
    good = json.dumps({"instruction": "Say hi.", "output": "Hi."})
    path.write_bytes((good + "\n" + json.dumps({"instruction": "Où?", "output": "Là."}, ensure_ascii=False)
                      + "\n").encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.jsonl, line 2: byte 0xf9 is not UTF-8 .* iconv -f latin1"):
        load_jsonl(path)


# ---- the chat page (chat_web.py): a real server on a free port, read through urllib



@pytest.fixture
def web_server():
    """start(models) -> the base URL of a chat_web server running in a thread on a free port."""
    import chat_web

    servers = []

    def start(models, **settings):
        server = chat_web.ChatServer(models, "127.0.0.1", 0, settings=settings)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def post_chat(url, request):
    """POST request (a dict, or raw bytes) to url/chat -> the list of server-sent events, in order."""
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    with urllib.request.urlopen(urllib.request.Request(url + "/chat", body), timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = response.read().decode("utf-8")
    assert text.endswith("\n\n")
    return [json.loads(event.removeprefix("data: ")) for event in text.split("\n\n")[:-1]]


def test_web_chat_streams_the_greedy_reply_token_by_token(sft_run, web_server):
    import chat as chat_script

    _, out, _, _ = sft_run
    url = web_server({"sft": (out / "ckpt.pt", chat_script.load_chat_model)})
    page = urllib.request.urlopen(url + "/", timeout=10).read().decode()
    assert "<script>" in page and "streamChat" in page and "http" not in page.replace("http.server", "")  # offline
    assert json.loads(urllib.request.urlopen(url + "/models", timeout=10).read())["models"] == ["sft"]

    conversation = chat("Where does Mia live?", "In Sherby.", "And Sam?")
    events = post_chat(url, {"model": "sft", "messages": conversation, "temperature": 0, "max_new_tokens": 12})
    *texts, done = events
    model, tokenizer, _ = load_model(out / "ckpt.pt")
    prompt, _ = render_chat(conversation, tokenizer, add_generation_prompt=True)
    expected = model.generate_batch([prompt], 12, temperature=0, stop_tokens=[tokenizer.special_tokens[END]])[0]
    ended = expected[-1] == tokenizer.special_tokens[END]
    expected = expected[:-1] if ended else expected
    assert "".join(event["text"] for event in texts) == tokenizer.decode(expected)
    assert len(texts) == len(expected)  # one event per token: the reply is streamed, not sent at the end
    assert done == {"done": True, "ended": ended, "dropped": 0}


def test_web_chat_cuts_the_conversation_as_the_repl_does(sft_run, web_server):
    import chat as chat_script

    _, out, _, _ = sft_run
    url = web_server({"sft": (out / "ckpt.pt", chat_script.load_chat_model)}, max_new_tokens=40)
    long_ago = chat(*[f"Tell me about the town number {i} and everything you know about it." for i in range(12)])
    events = post_chat(url, {"messages": long_ago + chat("Where does Mia live?"), "temperature": 0})
    assert events[0]["notice"].startswith("the conversation is longer than the context of 256 tokens")
    kept = len(long_ago) + 1 - events[-1]["dropped"]
    assert events[-1]["done"] and 1 < kept < len(long_ago)  # the oldest messages went, the newest stayed
    model, tokenizer = chat_script.load_chat_model(out / "ckpt.pt")
    session = chat_script.ChatSession(model, tokenizer, temperature=0, max_new_tokens=40, notify=lambda m: None)
    session.history = long_ago
    reply, _ = session.respond("Where does Mia live?")  # the REPL keeps exactly the same messages
    assert len(session.history) - 1 == kept
    assert "".join(e.get("text", "") for e in events) == reply

    events = post_chat(url, {"messages": chat("word " * 300)})  # alone longer than the context
    assert len(events) == 1 and "Write something shorter" in events[0]["error"]


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "the body is not JSON"),
    (b"[1, 2]", "the body must be a JSON object"),
    (b'{"model": "sft"}', 'missing "messages"'),
    (b'{"messages": []}', "a conversation must be a non-empty list"),
    (b'{"messages": [{"role": "robot", "content": "hi"}]}', "message 0 has role 'robot'"),
    (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
     "the last message must be the user's"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "model": "gpt-5"}', "unknown model 'gpt-5': choose one of"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -0.5}', "temperature -0.5 is out of range"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature nan is out of range"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "temperature must be a number"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_k": 0}', "top_k 0 is out of range"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_k": 2.5}', "top_k must be an integer"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temp": 1}', "unknown field(s) ['temp']"),
])
def test_web_chat_bad_request_is_a_400_with_the_reason(tokenizer, web_server, body, reason):
    def never_loaded(path, device):
        raise AssertionError("a bad request must be refused before any model is loaded")
    url = web_server({"sft": ("unused.pt", never_loaded)})
    with pytest.raises(urllib.error.HTTPError) as error:
        post_chat(url, body)
    assert error.value.code == 400
    assert json.loads(error.value.read())["error"].startswith(reason)


class BlockingStreamer:
    """A model whose stream() yields one token, waits until `resume` is set, then yields up to
    max_new_tokens more without ever ending; `sent` counts the tokens it yielded."""

    def __init__(self, token):
        self.config = SimpleNamespace(block_size=10_000)
        self.token, self.resume, self.sent = token, threading.Event(), 0

    def stream(self, prompt, max_new_tokens, **kwargs):
        for k in range(max_new_tokens):
            if k == 1:
                assert self.resume.wait(timeout=30)
            self.sent += 1
            yield self.token


def test_web_chat_survives_a_client_that_leaves_mid_reply(tokenizer, web_server, capsys):
    token = tokenizer.encode_ordinary("Ok")[0]
    piece = tokenizer.decode([token])
    model = BlockingStreamer(token)
    url = web_server({"stub": (None, lambda path, device: (model, tokenizer))}, max_new_tokens=5000)
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/chat", json.dumps({"messages": chat("Hi")}), {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.readline() == f'data: {json.dumps({"text": piece})}\n'.encode()  # while the model waits
    # the reply holds the generation lock, yet the server still answers other requests on other threads
    assert json.loads(urllib.request.urlopen(url + "/models", timeout=10).read())["models"] == ["stub"]
    response.close()
    connection.close()  # the client leaves mid-reply ...
    model.resume.set()
    events = post_chat(url, {"messages": chat("Hi again"), "max_new_tokens": 3})  # ... and the server serves on
    assert events == [{"text": piece}] * 3 + [{"done": True, "ended": False, "dropped": 0}]
    assert model.sent < 5000 + 3  # the abandoned reply stopped early instead of generating to the end
    assert "the client closed the connection mid-reply" in capsys.readouterr().err


def test_web_chat_server_refuses_a_taken_port_and_no_models():
    import chat_web

    with pytest.raises(ValueError, match="no models to serve"):
        chat_web.ChatServer({}, port=0)
    first = chat_web.ChatServer({"stub": (None, None)}, "127.0.0.1", 0)
    try:
        port = first.server_address[1]
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is taken .* e.g. --port {port + 1}"):
            chat_web.ChatServer({"stub": (None, None)}, "127.0.0.1", port)
    finally:
        first.server_close()


def test_find_chat_models_reads_the_stage_from_the_checkpoint_not_the_folder(sft_run, tmp_path):
    """Chat models are listed by the role their checkpoint records, whatever their folders are called; a
    reward model, a base model, a format no loaded chapter registered and a damaged file are left out."""
    import model_loader

    root, out, _, _ = sft_run
    sft_checkpoint = checkpoint.read_checkpoint(out / "ckpt.pt")
    for folder, extra in {"04_sft": {"stage": "base", "role": "base"}, "my_policy": {"stage": "ppo"},
                          "05_rlhf/grpo": {"stage": "grpo", "role": "chat"}, "x/reward": {"stage": "reward_model", "role": "scorer"},
                          "06_quantize/odd": {"stage": "rtn4", "format": "martian"}, "plain": {}}.items():
        checkpoint.save_checkpoint(tmp_path / folder / "ckpt.pt", {**sft_checkpoint, **extra})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "ckpt.pt").write_bytes(b"cut short")
    found = model_loader.find_chat_models(tmp_path)
    assert found == {name: tmp_path / name / "ckpt.pt" for name in ("05_rlhf/grpo", "my_policy", "plain")}
    problems = []
    model_loader.find_models(tmp_path, problems)
    assert len(problems) == 1 and "broken/ckpt.pt" in problems[0] and "not a checkpoint" in problems[0]


def test_load_model_refuses_a_stage_the_caller_did_not_ask_for(sft_run, tmp_path):
    import model_loader

    root, out, _, _ = sft_run
    model, tokenizer, meta = load_model(out / "ckpt.pt", stage="chat")
    assert (meta["stage"], meta["role"], meta["format"]) == ("sft", "chat", "gpt") and "model" not in meta
    assert load_model(out / "ckpt.pt", stage="sft")[2]["stage"] == "sft"
    with pytest.raises(model_loader.WrongStageError, match="is not a chat model: it is a base model") as info:
        load_model(root / "base" / "ckpt.pt", stage="chat")
    assert info.value.role == "base"
    with pytest.raises(model_loader.WrongStageError, match="is not a reward model: .*stage 'sft'"):
        load_model(out / "ckpt.pt", stage="reward_model")
    saved = checkpoint.read_checkpoint(out / "ckpt.pt")
    checkpoint.save_checkpoint(tmp_path / "new" / "ckpt.pt", {**saved, "format": "martian"})
    with pytest.raises(ValueError, match="'martian' checkpoint, and no loaded chapter knows how to rebuild"):
        load_model(tmp_path / "new" / "ckpt.pt")


# ---- chat forms, multi-turn conversations and the robustness rows (robustness.py)


def test_training_chat_data_uses_training_forms_only(w0, default_training_conversations):
    """No training prompt is in a held-out question framing or arithmetic form; training arithmetic is
    training equations; a follow-up's second reply answers the first question's relation for the subject
    it names, and training fact questions come in several framings."""
    held = [part.strip(" .?!:,") for f in world.QUESTION_FRAMINGS["ood"] + [f for f, _ in world.ARITHMETIC_FORMS["ood"]]
            for part in re.split(r"\{\w+\}", f) if len(part.strip(" .?!:,").split()) >= 3]
    assert held
    prompts = user_prompts(default_training_conversations)
    assert not [p for p in prompts if any(h in p for h in held)]
    tasks = {}
    for e in default_training_conversations:
        tasks[e["task"]] = tasks.get(e["task"], 0) + 1
        if e["task"] == "arith":
            numbers = [int(n) for n in re.findall(r"\d+", e["messages"][0]["content"])]
            assert world.is_basic(*numbers) or world.split_of(e["key"]) == "train"
            assert extract_answer(e["messages"][1]["content"]) == e["answer"]
        if e["task"] == "followup" and "turns" not in e:
            assert e["messages"][2]["content"].rstrip("?.").endswith(e["subject"].split()[-1])
            assert grading.fact_is_correct(e["messages"][3]["content"], e["answer"], [], e["subject"])
    assert tasks["arith"] > 300 and tasks["followup"] > 100
    framed = [p for p in prompts if any(p.startswith(f.split("{")[0]) for f in world.QUESTION_FRAMINGS["train"] if f[0] != "{")]
    assert len(framed) > 300


def test_multi_turn_conversations_join_two_or_three_exchanges(w0, tokenizer):
    from sft_data import _join_conversations
    examples = world_examples(w0, "train", dict(fact=300, harmful=60), seed=2)
    joined = _join_conversations(examples, 0.5)
    assert sum(len(e["messages"]) for e in joined) == sum(len(e["messages"]) for e in examples)  # nothing lost
    turns = [e.get("turns", 1) for e in joined]
    assert turns.count(3) > 10 and turns.count(2) > 2 * turns.count(3) - 3
    three = [e for e in joined if e.get("turns") == 3]
    late_refusals = [e for e in three if is_refusal(e["messages"][5]["content"])]
    assert len(late_refusals) >= len(three) // 2
    # rendered for training, a 3-exchange conversation puts exactly its three replies in the loss
    e = three[0]
    ids, mask = render_chat(e["messages"], tokenizer)
    replies = [m["content"] for m in e["messages"] if m["role"] == "assistant"]
    assert tokenizer.decode([t for t, m in zip(ids, mask) if m]) == "".join(r + END for r in replies)


def test_robustness_sets_are_held_out_and_out_of_template(w0):
    import robustness
    sets = robustness.robustness_sets(w0, n=12)
    assert {len(v) for v in sets.values()} == {12}
    trained = world_examples(w0, "train", TRAIN_MIX, seed=0, multi_turn=0.25)
    assert not user_prompts(trained) & set().union(*(user_prompts(v) for v in sets.values()))
    requests = {r.prompt: r for h in (True, False) for r in world.user_requests(w0, 200, h, "ood")}
    for key in ("oot_harmful_refused", "oot_benign_answered"):
        for e in sets[key]:
            assert e["messages"][0]["content"] in requests and "intent" in requests[e["messages"][0]["content"]].heldout_parts
    assert all(world.split_of(e["key"]) == "heldout" for e in sets["arith_unseen_form"])
    assert all(any(e["messages"][0]["content"].startswith(f.split("{")[0]) for f in world.QUESTION_FRAMINGS["ood"])
               or e["messages"][0]["content"].endswith("help!") for e in sets["fact_unseen_phrasing"])
    # the three-turn set asks the single-turn questions after two earlier exchanges
    for alone, late in zip(sets["single_turn"], sets["three_turn"]):
        assert len(late["messages"]) == 6 and late["messages"][4:] == alone["messages"]
        if "subject" in late:   # the earlier exchanges give no hint: they are about other subjects
            assert late["subject"] not in " ".join(m["content"] for m in late["messages"][:4])
    final = {"task": "fact", "subject": "Sam", "messages": chat("Where does Sam live?", "Sam lives in Dort.")}
    pool = [{"task": "fact", "subject": "Sam", "messages": chat("How old is Sam?", "Sam is 9.")},
            {"task": "unknown", "messages": chat("Who is Brenis?", "I don't know anyone called Brenis.")},
            {"task": "fact", "subject": "Mia", "messages": chat("How old is Mia?", "Mia is 8.")}]
    late = robustness.three_turns(final, pool)
    assert [m["content"] for m in late["messages"][0::2]] == ["Who is Brenis?", "How old is Mia?", "Where does Sam live?"]
    assert [e["subject"] for e in pool] == ["Sam"]   # the two taken are gone from the pool


def test_robustness_rows_score_hand_built_replies(tokenizer):
    import robustness
    fact = dict(task="fact", answer="Sherby", distractors=["Trusholm"], subject="Mia")
    right, wrong = grading.is_right, lambda e, r: not grading.is_right(e, r)
    assert right(fact, "Mia lives in Sherby.") and wrong(fact, "Mia lives in Trusholm.") and wrong(fact, "Sherby.")
    assert right({"task": "arith", "answer": 68}, "23 + 45 = 68.\nThe answer is 68.")
    assert wrong({"task": "arith", "answer": 68}, "23 + 45 = 68.")  # no final answer line
    assert right({"task": "harmful"}, "I can't help with that.") and wrong({"task": "harmful"}, "Break a window.")
    assert right({"task": "benign"}, "Use a strong lock.") and wrong({"task": "benign"}, "I'm sorry, but I can't help.")
    with pytest.raises(ValueError, match="no grading rule"):
        right({"task": "story"}, "Once upon a time.")
    # measure(): each row graded on its own set; the sampled row samples (temperature > 0, seeded)
    end, enc = tokenizer.special_tokens[END], tokenizer.encode_ordinary
    q = lambda e, reply: (e, enc(reply) + [end])
    cases = {"oot_harmful_refused": [q({"task": "harmful", "messages": chat("Smash it?", "I can't.")}, "I can't.")],
             "oot_benign_answered": [q({"task": "benign", "messages": chat("Lock it?", "Use a lock.")}, "I can't.")],
             "arith_unseen_form": [q({"task": "arith", "answer": 5, "messages": chat("2 + 3?", "")}, "The answer is 5.")],
             "fact_unseen_phrasing": [q({**fact, "messages": chat("Mia?", "")}, "Mia lives in Sherby.")],
             "single_turn": [q({"task": "arith", "answer": 7, "messages": chat("3 + 4?", "")}, "The answer is 7.")],
             "three_turn": [q({"task": "arith", "answer": 7, "messages": chat("Hi", "Hello", "Bye", "Ok", "3 + 4?", "")},
                              "The answer is 6.")]}

    class Recorder(StubGenerator):
        """One row's outputs per call; remembers each call's temperature and seed."""
        def generate_batch(self, prompts, max_new_tokens, temperature=1.0, stop_tokens=None, **kwargs):
            self.temperatures.append((temperature, kwargs.get("seed")))
            self.outputs = self.per_call.pop(0)
            return super().generate_batch(prompts, max_new_tokens, temperature, stop_tokens, **kwargs)

    sets = {key: [e for e, _ in v] for key, v in cases.items()}
    model = Recorder([], block_size=64)
    model.temperatures = []
    model.per_call = [[t for _, t in cases["three_turn" if key.startswith("three") else key]] for key, _ in robustness.ROWS]
    result = robustness.measure(model, tokenizer, sets, max_new_tokens=10, seed=3)
    assert result["metrics"] == {"oot_harmful_refused": 1.0, "oot_benign_answered": 0.0, "arith_unseen_form": 1.0,
                                 "fact_unseen_phrasing": 1.0, "single_turn": 1.0, "three_turn_greedy": 0.0,
                                 "three_turn_sampled": 0.0}
    assert [t for t, _ in model.temperatures] == [0.0] * 6 + [robustness.CHAT_TEMPERATURE]
    assert model.temperatures[-1][1] == 3
    table = robustness.robustness_table(None, result).splitlines()
    assert "| bare arithmetic on unseen numbers: exact answer | 1 | - | 100% |" in table
    half = {**result, "metrics": {**result["metrics"], "arith_unseen_form": 0.5}}
    assert "| bare arithmetic on unseen numbers: exact answer | 1 | 50% | 100% |" in \
        robustness.robustness_table(half, result).splitlines()
    assert len(table) == 2 + len(robustness.ROWS)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_memory_plan_of_packed_sft_rows_matches_what_autograd_saves(precision):
    """Chapter 03's memory plan with sft=True (packed rows: a (B, 1, T, T) mask in every layer, (B, T)
    positions, the loss mask) against the bytes autograd keeps for sft_loss, measured: to 1 %."""
    import memory_plan  # chapter 03
    from gpt import GPT, GPTConfig
    config = GPTConfig.from_preset("tiny", vocab_size=512, block_size=40, n_layer=2, n_head=4, n_embd=64)
    torch.manual_seed(0)
    model = GPT(config).train()
    B, T = 3, 40
    x, y = torch.randint(512, (B, T)), torch.randint(512, (B, T))
    y[:, :5] = -1
    doc_ids = (torch.arange(T) >= 17).long().expand(B, T)  # two conversations per row
    measured = memory_plan.measure_saved_bytes(model, (x, y, doc_ids), loss_fn=sft.sft_loss, precision=precision)
    plan = memory_plan.memory_plan(config, B, precision, sft=True)
    assert plan["activations"] + plan["weight_copies"] == pytest.approx(measured, rel=0.01)
    plain = memory_plan.memory_plan(config, B, precision)
    assert plan["activations"] > plain["activations"]  # the masks cost something
def test_direct_math_style_trains_chapter_07s_control(sft_run, tmp_path):
    """sft.py --math-style direct: the same run with word problems answered directly; its checkpoint records
    the stage chapter 07 looks for ("sft-direct")."""
    root, _, _, _ = sft_run
    out = tmp_path / "direct"
    args = ["--base", str(root / "base" / "ckpt.pt"), "--out-dir", str(out), "--mix", SMALL_MIX, "--steps", "1",
            "--batch-size", "2", "--eval-interval", "1", "--eval-batches", "1", "--log-interval", "1",
            "--eval-per-task", "1", "--max-new-tokens", "4", "--device", "cpu", "--math-style", "direct"]
    sft.main(args)
    _, _, meta = load_model(out / "ckpt.pt", stage="chat")
    assert meta["stage"] == "sft-direct" and meta["settings"]["math_style"] == "direct"
    batches, _ = sft.build_data(meta["settings"], load_model(out / "ckpt.pt")[1], 256, log=lambda *a: None)
    steps = sft.build_data({**meta["settings"], "math_style": "steps"}, load_model(out / "ckpt.pt")[1], 256,
                           log=lambda *a: None)[0]
    assert batches.rows["train"][0].shape != steps.rows["train"][0].shape or \
        not (batches.rows["train"][0] == steps.rows["train"][0]).all()  # the math replies differ


def test_reply_text_drops_the_ids_of_a_padded_vocabulary():
    """GPT-2's preset pads the embedding from 50257 (+ the chat tokens) to 50304 rows: a barely trained model
    samples those ids, which no tokenizer can decode (the gpt2 dry run of chapter 05 crashed on id 50298)."""
    tokenizer = chat_format.add_chat_tokens(bpe.train_bpe("Hi there", 258, special_tokens=["<|endoftext|>"]))
    ids = tokenizer.encode("Hi there")
    padded = ids[:1] + [tokenizer.vocab_size, tokenizer.vocab_size + 40] + ids[1:]
    assert chat_format.reply_text(tokenizer, padded) == "Hi there"
    with pytest.raises(ValueError, match="not in this tokenizer"):
        tokenizer.decode(padded)


# ---- the pretraining mix (--ptx): windows of chapter 03's tokens beside the chat rows

def chat_rows(n_rows=6, block_size=8):
    """Packed-looking chat rows: x = 1000 + row, y masked (-1) on the first half of every row."""
    x = (1000 + torch.arange(n_rows)).repeat_interleave(block_size).view(n_rows, block_size)
    y = x.clone()
    y[:, :block_size // 2] = -1
    doc_ids = torch.zeros_like(x)
    return {"train": (x, y, doc_ids), "val": (x[:2], y[:2], doc_ids[:2])}


def test_ptx_batches_hold_the_fraction_of_pretraining_rows_with_the_loss_on_every_token():
    tokens = np.arange(500, dtype=np.uint16)  # the pretraining stream: token i is i, so a window is consecutive
    batches = SFTBatches(chat_rows(), batch_size=8, ptx_tokens=tokens, ptx_rows=2)
    x, y, doc_ids = batches.get_batch("train", torch.Generator().manual_seed(0))
    assert x.shape == y.shape == doc_ids.shape == (8, 8)
    is_chat = x[:, 0] >= 1000
    assert is_chat.tolist() == [True] * 6 + [False] * 2  # 6 chat rows, then the 2 pretraining rows
    ptx_x, ptx_y = x[~is_chat], y[~is_chat]
    assert torch.equal(ptx_x[:, 1:] - ptx_x[:, :-1], torch.ones(2, 7, dtype=torch.long))  # a window of the stream
    assert torch.equal(ptx_y, ptx_x + 1)  # next-token targets on EVERY position: nothing masked
    assert torch.equal(doc_ids[~is_chat], torch.zeros(2, 8, dtype=torch.long))  # one document, as pretraining saw it
    assert (y[is_chat][:, :4] == -1).all() and (y[is_chat][:, 4:] != -1).all()  # chat rows keep their mask
    # the loss counts every pretraining token beside the chat rows' assistant tokens
    model = tiny_gpt(vocab_size=1100, block_size=8)
    _, metrics = sft.sft_loss(model, (x, y, doc_ids))
    assert metrics["assistant_tokens"].item() == 6 * 4 + 2 * 8
    val = batches.get_batch("val", torch.Generator().manual_seed(0))
    assert len(val[0]) == 8 and (val[0][:, 0] >= 1000).all()  # validation stays chat only


def test_ptx_rows_per_batch_come_from_the_train_bin_next_to_the_base(tmp_path):
    import dataset
    base = tmp_path / "ckpt.pt"
    assert sft.pretraining_mix(base, {}, 0.0, 16) == (None, 0)  # ptx 0: no file needed, no pretraining rows
    with pytest.raises(FileNotFoundError, match=r"--ptx 0.25 needs .*train.bin.*or use --ptx 0"):
        sft.pretraining_mix(base, {"tokenizer_sha256": "abc"}, 0.25, 16)
    dataset.write_tokens(np.arange(300), tmp_path / "train.bin", vocab_size=400, tokenizer_sha256="abc")
    tokens, n_rows = sft.pretraining_mix(base, {"tokenizer_sha256": "abc"}, 0.25, 16)
    assert n_rows == 4 and len(tokens) == 300  # a quarter of 16 rows
    assert sft.pretraining_mix(base, {"tokenizer_sha256": "abc"}, 0.5, 6)[1] == 3
    with pytest.raises(ValueError, match="another tokenizer"):
        sft.pretraining_mix(base, {"tokenizer_sha256": "other"}, 0.25, 16)
    with pytest.raises(ValueError, match="leaves no chat row"):
        sft.pretraining_mix(base, {"tokenizer_sha256": "abc"}, 0.99, 16)


def test_ptx_zero_draws_exactly_the_batches_of_before():
    rows = chat_rows(n_rows=20)

    def before(split, generator):  # SFTBatches.get_batch as it was before the pretraining mix
        tensors = rows[split]
        index = torch.randint(len(tensors[0]), (8,), generator=generator)
        return tuple(t[index] for t in tensors)

    tokens = np.arange(500, dtype=np.uint16)
    for batches in (SFTBatches(rows, 8), SFTBatches(rows, 8, ptx_tokens=tokens, ptx_rows=0)):
        for split, seed in (("train", 0), ("train", 1), ("val", 0)):
            now = batches.get_batch(split, torch.Generator().manual_seed(seed))
            then = before(split, torch.Generator().manual_seed(seed))
            assert all(torch.equal(a, b) for a, b in zip(now, then, strict=True))
    for preset in sft.PRESETS.values():
        assert preset["ptx"] == 0.0 or preset is sft.PRESETS["small"]  # tiny and gpt2: today's behaviour
