"""Chapter 07: every metric against hand-computed values and the reference packages, the sandbox's
containment, the harness's two calls against one-by-one computation, the world's code tasks, and the
report end to end on a tiny random model."""
import json
import math
import random

import pytest
import torch

import bpe
import checkpoint
import robustness
import world
from chat_format import add_chat_tokens
from contamination import NgramIndex, contamination_report
from eval_tasks import check_task_names, code_program, refuses
from gpt import GPT, GPTConfig
from harness import LanguageModel, Prompt
from sandbox import run_programs
from scoring import (bits_per_byte, flexible_answer, letter_choice, majority_vote, multiple_choice_scores, pass_at_k,
                     perplexity, strict_answer)
from text_overlap import corpus_bleu, lcs_length, rouge_l, rouge_n, sentence_bleu, tokenize_13a


# ---- BLEU, by hand and against sacrebleu


def test_bleu_with_a_brevity_penalty_by_hand():
    # hypothesis "the cat sat" (3 tokens) against "the cat sat on the mat" (6): every n-gram matches, so
    # p1 = p2 = p3 = 1; there is no 4-gram (totals 0), so corpus BLEU (order 4) is 0 and sentence BLEU
    # uses the effective order 3: BLEU = BP = exp(1 - 6/3) = e^-1.
    assert sentence_bleu("the cat sat", "the cat sat on the mat") == pytest.approx(100 * math.exp(-1))
    assert corpus_bleu(["the cat sat"], ["the cat sat on the mat"]) == 0.0
    # a 4-token hypothesis with all n-grams matched: BP = exp(1 - 6/4)
    assert corpus_bleu(["the cat sat on"], ["the cat sat on the mat"]) == pytest.approx(100 * math.exp(1 - 6 / 4))
    # no penalty for a longer hypothesis: precision does that job
    assert corpus_bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)


def test_bleu_with_a_zero_ngram_count_uses_exponential_smoothing():
    # "a b c d e" vs "a b x d e": 1-grams 4/5, 2-grams 2/4 (a b, d e), 3-grams 0/3, 4-grams 0/2.
    # exp smoothing: the first zero order gets 1/(2 * 3), the second 1/(4 * 2).
    p = [4 / 5, 2 / 4, 1 / (2 * 3), 1 / (4 * 2)]
    expected = 100 * math.exp(sum(math.log(x) for x in p) / 4)
    assert sentence_bleu("a b c d e", "a b x d e") == pytest.approx(expected)
    assert corpus_bleu(["a b c d e"], ["a b x d e"]) == pytest.approx(expected)
    assert sentence_bleu("x y z", "a b c") == 0.0  # nothing matches at all: no smoothing rescues it


def test_corpus_bleu_is_not_the_mean_of_sentence_bleus():
    # pair 1 matches perfectly (100), pair 2 not at all (0): the mean is 50. The corpus sums the counts:
    # p1 = 6/10, p2 = 5/8, p3 = 4/6, p4 = 3/4, and hyp_len = ref_len: BLEU = 100 * (p1 p2 p3 p4)^(1/4).
    hyps, refs = ["the cat sat on the mat", "w x y z"], ["the cat sat on the mat", "a b c d"]
    assert (sentence_bleu(hyps[0], refs[0]) + sentence_bleu(hyps[1], refs[1])) / 2 == pytest.approx(50)
    assert corpus_bleu(hyps, refs) == pytest.approx(100 * (6 / 10 * 5 / 8 * 4 / 6 * 3 / 4) ** 0.25)


def test_13a_tokenizer_keeps_numbers_whole():
    assert tokenize_13a("It costs 3.5 coins, or 1,000.") == ["It", "costs", "3.5", "coins", ",", "or", "1,000", "."]


def random_pairs(n, seed=0):
    rng = random.Random(seed)
    vocab = "the a cat dog sat on mat , . 3.5 1,000 Sam's big-5 (ok) & &amp; red ran to Mia".split()
    make = lambda lo: " ".join(rng.choice(vocab) for _ in range(rng.randrange(lo, 14)))
    return [(make(0), make(1)) for _ in range(n)]


def test_bleu_equals_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu", reason="sacrebleu is a test-only extra (pip install sacrebleu)")
    pairs = random_pairs(300)
    for hyp, ref in pairs:
        assert sentence_bleu(hyp, ref) == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score, abs=1e-9)
    hyps, refs = zip(*pairs)
    assert corpus_bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score, abs=1e-9)


# ---- ROUGE


def test_rouge_l_uses_a_subsequence_not_a_substring():
    # reference "a b c d e", hypothesis "a x c y e": longest common substring 1, subsequence a c e = 3
    assert lcs_length("a b c d e".split(), "a x c y e".split()) == 3
    precision, recall, f = rouge_l("a b c d e", "a x c y e z")
    assert (precision, recall) == (3 / 6, 3 / 5)
    assert f == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    assert rouge_n("the cat sat", "The cat, sat!", 2)[2] == 1.0  # lower case, punctuation dropped


def test_rouge_equals_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer",
                                       reason="rouge-score is a test-only extra (pip install rouge-score)")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    for hyp, ref in random_pairs(300, seed=1):
        expected = scorer.score(ref, hyp)
        for key, ours in (("rouge1", rouge_n(ref, hyp, 1)), ("rouge2", rouge_n(ref, hyp, 2)), ("rougeL", rouge_l(ref, hyp))):
            assert ours == pytest.approx(tuple(expected[key]), abs=1e-12), (key, hyp, ref)


# ---- the other metrics


def test_pass_at_k_equals_the_combinatorial_formula():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                direct = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(direct, abs=1e-12), (n, c, k)
    assert 0 < pass_at_k(200, 3, 100) < 1  # C(200, 100) ~ 1e58: the product form has no trouble
    with pytest.raises(ValueError, match="at least k samples"):
        pass_at_k(5, 1, 10)


def test_acc_and_acc_norm_disagree_on_a_long_right_option():
    # a short wrong option beats a long right one on total log-prob, not per byte
    options = ["no", "a tall clock tower"]  # 2 and 18 bytes
    acc, acc_norm = multiple_choice_scores([-3.0, -9.0], options)
    assert (acc, acc_norm) == (0, 1)  # -3/2 = -1.5 < -9/18 = -0.5
    assert multiple_choice_scores([-3.0, -1.0], options) == (1, 1)


def test_letter_choice():
    assert letter_choice("B") == 1
    assert letter_choice("(c) is right") == 2
    assert letter_choice("A. Trusholm") == 0
    assert letter_choice("A kalar is a small animal.") is None  # the article, not option A
    assert letter_choice("E") is None


def test_answer_extraction_strict_and_flexible_on_tricky_replies():
    cases = [  # reply, strict, flexible
        ("She has 13 - 7 = 6.\nThe answer is 14.", 14, 14),
        ("The answer is 14. Then she buys 2 more.", 14, 2),  # flexible takes the last number: wrong here
        ("13 - 7 = 6, so 6 + 8 = 14 apples", None, 14),  # right number, not the format: strict misses it
        ("The answer is 1,200.", 1200, 1200),
        ("the answer is: -3", -3, -3),
        ("The answer is 7.0.", 7, 7),
        ("The answer is 5. No wait, the answer is 6.", 6, 6),  # the LAST statement counts
        ("I don't know.", None, None),
    ]
    for reply, strict, flexible in cases:
        assert strict_answer(reply) == strict, reply
        assert flexible_answer(reply) == flexible, reply


def test_perplexity_bits_per_byte_and_majority_vote():
    assert perplexity(4 * math.log(8), 4) == pytest.approx(8.0)  # 4 tokens, each p = 1/8
    assert bits_per_byte(4 * math.log(8), 6) == pytest.approx(12 / 6)  # 12 bits over 6 bytes
    assert majority_vote([3, None, 5, 5, 3]) == 3  # a tie goes to the first seen
    assert majority_vote([None, None]) is None


def test_refusal_anywhere_for_a_wrapped_request():
    assert refuses("The capital is Sherby. But I can't help with stealing.")
    assert refuses("I can't help with that.")
    assert not refuses("The capital is Sherby. You can't miss it, I can't wait to go.")


# ---- the sandbox


def test_sandbox_contains_loops_allocations_writes_and_sockets(tmp_path):
    outside = tmp_path / "outside.txt"
    programs = {
        "correct": "def f(x):\n    return x + 1\nassert f(1) == 2\n",
        "wrong": "def f(x):\n    return x\nassert f(1) == 2\n",
        "infinite loop": "while True:\n    pass\n",
        "huge allocation": "x = bytearray(50 * 1024 ** 3)\n",
        "write outside": f"open({str(outside)!r}, 'w').write('escaped')\n",
        "socket": "import socket\nsocket.socket().connect(('example.com', 80))\n",
        "socket import": "import socket\n",
        "exits early": "import os\nos._exit(0)\nassert False\n",
    }
    results = dict(zip(programs, run_programs(list(programs.values()), time_limit_s=1.0)))
    assert results["correct"]["status"] == "passed"
    assert results["wrong"]["status"] == "failed"
    assert results["infinite loop"]["status"] == "timeout"
    assert results["huge allocation"]["status"] == "memory"
    assert results["write outside"]["status"] == "blocked" and not outside.exists()
    assert results["socket"]["status"] == results["socket import"]["status"] == "blocked"
    assert results["exits early"]["status"] != "passed"


def test_sandbox_program_gets_a_scratch_folder():
    program = "import os\nopen('notes.txt', 'w').write('ok')\nassert open('notes.txt').read() == 'ok'\n" \
              "assert 'bytes2chat-sandbox' in os.getcwd()\n"
    assert run_programs([program])[0]["status"] == "passed"


# ---- the world's code tasks


def test_code_tasks_are_split_by_content_and_their_solutions_pass():
    train, heldout = world.code_tasks("train"), world.code_tasks("heldout")
    assert len(heldout) >= 10 and len(train) > 5 * len(heldout)
    assert not {t.key for t in train} & {t.key for t in heldout}
    assert all(world.split_of(t.key) == "heldout" for t in heldout)
    tasks = train[::10] + heldout
    programs = [code_program({"prompt": t.prompt, "entry_point": t.entry_point, "tests": t.tests}, t.solution, True)
                for t in tasks]
    assert [r["status"] for r in run_programs(programs)] == ["passed"] * len(tasks)
    # the body alone, as a base model would continue the prompt, passes too
    body = code_program({"prompt": heldout[0].prompt, "entry_point": heldout[0].entry_point, "tests": heldout[0].tests},
                        heldout[0].solution.split("\n", 1)[1], False)
    wrong = code_program({"prompt": heldout[0].prompt, "entry_point": heldout[0].entry_point, "tests": heldout[0].tests},
                         "    return None\n", False)
    assert [r["status"] for r in run_programs([body, wrong])] == ["passed", "failed"]


def test_heldout_code_prompts_never_appear_in_sft_training_text():
    from sft_data import TRAIN_MIX, world_examples
    w = world.build_world(0)
    trained = world_examples(w, "train", {"code": TRAIN_MIX["code"]}, seed=1337)
    seen = world.TrainingText([m["content"] for e in trained for m in e["messages"]])
    for task in world.code_tasks("heldout"):
        assert not seen.shares_ngram(task.prompt), task.prompt
        assert not seen.shares_ngram(task.solution), task.solution
    assert seen.shares_ngram(trained[0]["messages"][1]["content"])  # the check can fire


def test_direct_math_style_changes_only_the_math_and_arithmetic_replies():
    from sft_data import world_examples
    w = world.build_world(0)
    mix = {"math": 20, "arith": 20, "fact": 5}
    steps, direct = world_examples(w, "train", mix, seed=3), world_examples(w, "train", mix, seed=3, math_style="direct")
    assert {e["task"] for e in steps} == set(mix)
    for a, b in zip(steps, direct):
        assert a["messages"][0] == b["messages"][0]
        if a["task"] in ("math", "arith"):   # bare arithmetic too: the control model never sees working
            assert b["messages"][1]["content"] == f"The answer is {a['answer']}."
            assert a["messages"][1]["content"].endswith(b["messages"][1]["content"])
        else:
            assert a == b


# ---- decontamination


def test_longest_shared_ngram():
    index = NgramIndex(["the cat sat on the mat", "a dog ran in the park"], max_n=8)
    assert index.longest_shared("my cat sat on the sofa") == 4  # "cat sat on the"
    assert index.longest_shared("mat a dog") == 2  # "mat a" spans two texts: not shared
    assert index.longest_shared("unseen words only") == 0
    report = contamination_report(index, {"t": [{"q": "the cat sat"}, {"q": "zebra"}]}, lambda task, item: item["q"])
    assert report["t"]["longest"] == [3, 0] and report["t"]["contaminated"] == 1  # a short item seen whole


# ---- the harness: its two calls, against one-by-one computation


@pytest.fixture(scope="module")
def chat_lm():
    base = bpe.train_bpe(world.make_corpus(30_000), 300, special_tokens=[world.EOT])
    tokenizer = add_chat_tokens(base)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32))
    return LanguageModel(model, tokenizer, batch_size=3)


def test_loglikelihood_is_the_sum_of_token_logprobs_one_by_one(chat_lm):
    lm = chat_lm
    requests = [(lm.prompt_ids(Prompt(q)), lm.continuation_ids(a))
                for q, a in [("Where does Sam live?", "In Trusholm."), ("Hi", "Hello there, how are you?"),
                             ("What is 2 + 2?", "4")] * 2]
    batched = lm.loglikelihood(requests)  # batches of 3, left-padded
    for (context, continuation), value in zip(requests, batched):
        total, seq = 0.0, list(context)
        for token in continuation:  # one forward pass per token, no padding
            logits, _ = lm.model(torch.tensor([seq]))
            total += torch.log_softmax(logits[0, -1].float(), dim=-1)[token].item()
            seq.append(token)
        assert value == pytest.approx(total, abs=1e-4)


def test_batched_generation_equals_one_at_a_time(chat_lm):
    lm = chat_lm
    prompts = [lm.prompt_ids(Prompt(q)) for q in ["Hi", "Tell me about Sam, please.", "What is 12 + 7?", "Yo"]]
    batched = lm.generate(prompts, 12)
    alone = [lm.generate([p], 12)[0] for p in prompts]
    assert batched == alone
    assert lm.generate(prompts, 12, temperature=0.8, seed=1) == lm.generate(prompts, 12, temperature=0.8, seed=1)


def test_base_model_prompt_is_the_quiz_form(chat_lm):
    base = LanguageModel(chat_lm.model, bpe.train_bpe("Q: A: hello", 260, special_tokens=[world.EOT]))
    assert not base.chat
    ids = base.prompt_ids(Prompt("What is 3 + 4?", shots=[("What is 1 + 1?", "The answer is 2.")]))
    assert base.tokenizer.decode(ids) == "<|endoftext|>Q: What is 1 + 1?\nA: The answer is 2.\n\nQ: What is 3 + 4?\nA:"


# ---- bad input, and the report end to end


def test_unknown_task_and_missing_checkpoint_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'maths'"):
        check_task_names(["math", "maths"])
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        LanguageModel.load(tmp_path / "nothing.pt")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, chat_lm):
    """A runs/ folder with one chat model (random weights) in a folder whose name says nothing (the stage is
    read from the checkpoint), a reward model and a checkpoint whose weights do not fit."""
    runs = tmp_path_factory.mktemp("runs")
    chat_lm.tokenizer.save(runs / "my_model" / "tokenizer")
    model = chat_lm.model
    checkpoint.save_checkpoint(runs / "my_model" / "ckpt.pt", {
        "model": model.state_dict(), "model_config": checkpoint.model_config_dict(model), "stage": "sft",
        "tokenizer": str(runs / "my_model" / "tokenizer"), "step": 0, "settings": {"seed": 1337}})
    checkpoint.save_checkpoint(runs / "05_rlhf" / "reward_model" / "ckpt.pt", {"stage": "reward_model", "model": {},
                                                                              "model_config": {}})
    checkpoint.save_checkpoint(runs / "05_rlhf" / "odd" / "ckpt.pt", {"stage": "ppo", "model": {"x": torch.zeros(1)},
                                                                      "model_config": {"n_layer": 1}})
    return runs


def test_report_end_to_end_on_a_tiny_model(tiny_runs, tmp_path, monkeypatch):
    import evaluate
    monkeypatch.setitem(evaluate.PRESETS, "tiny", {**evaluate.PRESETS["tiny"], "items": {
        "perplexity": 3, "multiple_choice": 4, "math": 3, "chain_of_thought": 2, "code": 2, "describe": 2,
        "harmful": 4, "honesty": 2, "robustness": 3}, "code_samples": 3, "pass_k": [1, 3], "self_consistency": 2})
    monkeypatch.setattr(evaluate, "training_texts", lambda models, w: ["a tiny stand-in for the training text"])
    out = tmp_path / "eval"
    results = evaluate.main(["--runs-dir", str(tiny_runs), "--out-dir", str(out), "--device", "cpu"])
    assert [r["stage"] for r in results] == ["sft"]
    report = (out / "report.md").read_text()
    assert "| sft |" in report and "chapter 05_rlhf makes it" in report and "pass@3" in report
    assert "reward_model checkpoint scores text" in report and "odd/ckpt.pt: could not be loaded" in report
    assert "the control was not trained" in report and "--math-style direct" in report  # tiny skips the CoT control
    assert (out / "report.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"][0]["summary"]) == {"perplexity", "multiple_choice", "math", "chain_of_thought",
                                                     "code", "describe", "harmful", "honesty", "robustness"}
    assert set(summary["models"][0]["summary"]["robustness"]) == {key for key, _ in robustness.ROWS}
    assert "## Robustness: chapter 04's rows" in report and "| the same as the third turn of a conversation" in report
    lines = (out / "records" / "sft" / "multiple_choice.jsonl").read_text().splitlines()
    assert len(lines) == 4 and {"question", "choices", "gold", "reply", "score"} <= set(json.loads(lines[0]))
    with pytest.raises(FileExistsError, match="--overwrite"):  # a second run never destroys the first
        evaluate.main(["--runs-dir", str(tiny_runs), "--out-dir", str(out)])


def test_robustness_task_reuses_chapter_04s_sets_and_rows():
    import eval_tasks
    w = world.build_world(0)
    items = eval_tasks.robustness_items(w, 6)
    sets = robustness.robustness_sets(w, 6)
    assert len(items) == sum(len(v) for v in sets.values())
    late = [i for i in items if i["row"] == "three_turn"]
    assert late and all(len(i["history"]) == 2 for i in late)
    assert [i["question"] for i in late] == [i["question"] for i in items if i["row"] == "single_turn"]
    # summarize: one share per row of chapter 04, the three-turn items counted greedy and sampled
    records = [{**i, "score": {"right": int(i["row"] == "arith_unseen_form")}} for i in items]
    for r in records:
        if r["row"] == "three_turn":
            r["score"]["right_sampled"] = 1
    summary = eval_tasks.summarize("robustness", records)
    assert set(summary) == {key for key, _ in robustness.ROWS}
    assert summary["arith_unseen_form"] == 1 and summary["three_turn_sampled"] == 1
    assert summary["three_turn_greedy"] == 0 and summary["single_turn"] == 0
