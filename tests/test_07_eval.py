"""Chapter 07: every metric against hand-computed values and the reference packages, the sandbox's
containment, the harness's two calls against one-by-one computation, the world's code tasks, and the
report end to end on a tiny random model."""
import json
import math
import os
import random
import shutil
from pathlib import Path

import pytest
import torch

import bpe
import checkpoint
import robustness
import world
from chat_format import add_chat_tokens
from contamination import NgramIndex, contamination_report
from eval_tasks import check_task_names, code_program, refuses, runs_task
from gpt import GPT, GPTConfig
from harness import LanguageModel, Prompt
from sandbox import isolation as sandbox_isolation, run_programs
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


def test_sandbox_program_gets_a_scratch_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    program = "open('notes.txt', 'w').write('ok')\nassert open('notes.txt').read() == 'ok'\n"
    assert run_programs([program])[0]["status"] == "passed"
    assert not (tmp_path / "notes.txt").exists()  # it wrote in a folder of its own, not in ours


# ---- the sandbox against code written to escape (issue 22). Each escape below got out of the first
# sandbox (a fork of a runner process, an exit code as the pass signal); each test failed on it.


@pytest.fixture
def sandbox_root(monkeypatch):
    """A folder of this test's own for the sandbox's scratch folders, so that the process table can be
    searched for anything the programs left behind (their working folder is inside it)."""
    import tempfile
    root = tempfile.mkdtemp(prefix="b2c-sandbox-test-")
    os.chmod(root, 0o711)  # the programs may run as another uid
    monkeypatch.setattr(tempfile, "tempdir", root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def processes_left_in(root, settle_s=1.0):
    """Processes (other than us) whose working folder or command line is inside `root`, after giving
    the ones just killed `settle_s` to leave the process table."""
    import time
    deadline = time.monotonic() + settle_s
    while (left := _processes_in(root)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _processes_in(root):
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            where = os.readlink(f"/proc/{entry}/cwd")
            command = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:  # gone, or not ours to read
            continue
        if root in where or root in command:
            left.append((entry, where, command))
    return left


def test_sandbox_an_early_exit_or_the_runners_exit_is_never_a_pass(sandbox_root):
    programs = {
        "posix._exit": "import posix\nposix._exit(10)\nassert False\n",
        "the runner's exit via its frame": "import sys\nsys._getframe(1).f_locals['exit_now'](10)\nassert False\n",
        "posix built by hand": "import sys\nsys.meta_path[0].load_module('posix')._exit(10)\nassert False\n",
        "os._exit": "import os\nos._exit(10)\nassert False\n",
        "prints a pass": "print('passed')\nraise SystemExit(0)\nassert False\n",
    }
    results = dict(zip(programs, run_programs(list(programs.values()), time_limit_s=1.0)))
    assert all(r["status"] != "passed" for r in results.values()), results
    assert results["posix._exit"]["status"] == results["the runner's exit via its frame"]["status"] == "blocked"
    assert not processes_left_in(sandbox_root)


def test_sandbox_dir_fd_cannot_delete_or_create_outside(tmp_path, sandbox_root):
    (tmp_path / "victim.txt").write_text("keep me")
    opened = f"import os\nfolder = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
    programs = [opened + "os.remove('victim.txt', dir_fd=folder)\n",
                opened + "os.close(os.open('created.txt', os.O_CREAT | os.O_WRONLY, dir_fd=folder))\n"]
    assert all(r["status"] != "passed" for r in run_programs(programs, time_limit_s=1.0))
    assert (tmp_path / "victim.txt").read_text() == "keep me"
    assert not (tmp_path / "created.txt").exists()


def test_sandbox_inherits_no_module_of_its_runner(tmp_path, sandbox_root):
    marker = tmp_path / "shell-ran"
    program = ("import __main__\n"  # the first runner's own `import subprocess` was reachable from here
               "os, subprocess = __main__.os, __main__.subprocess\n"
               "r, w = os.pipe()\n"
               f"pid = subprocess._fork_exec([b'/bin/sh', b'-c', b'touch {marker}'], [b'/bin/sh'], True, (w,), None,"
               " None, -1, -1, -1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)\n"
               "os.waitpid(pid, 0)\n")
    assert run_programs([program], time_limit_s=1.0)[0]["status"] != "passed"
    assert not marker.exists()
    assert not processes_left_in(sandbox_root)


def test_sandbox_a_program_that_kills_its_parent_does_not_stop_the_evaluation(sandbox_root):
    killers = ["import os, _signal\n_signal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)\n",
               "import sys\nposix, sig = sys.meta_path[0].load_module('posix'), sys.meta_path[0].load_module('_signal')\n"
               "sig.pidfd_send_signal(posix.pidfd_open(posix.getppid()), 9)\n"]
    if "own uid" not in sandbox_isolation():  # past the hook only a uid of its own stops a signal to us: a
        killers = killers[:1]  # machine without one (not root, or a closed folder) would lose this test process
    honest = "def f(x):\n    return x + 1\nassert f(1) == 2\n"
    results = run_programs(killers + [honest], time_limit_s=1.0)  # the first sandbox raised RuntimeError here
    assert [r["status"] != "passed" for r in results] == [True] * len(killers) + [False]
    assert not processes_left_in(sandbox_root)


def test_sandbox_a_program_past_the_audit_hook_cannot_signal_the_evaluator(sandbox_root):
    """`sys.meta_path[0].load_module` builds posix and _signal without an import event (a hole in CPython's
    audit hooks that the lesson names): what stops the signal then is the operating system, a uid of the
    program's own. SIGUSR1, not SIGKILL, so that a failure is a red test, not a dead test run."""
    import signal
    from sandbox import isolation
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *args: received.append(args))
    program = ("import sys\nposix, sig = sys.meta_path[0].load_module('posix'), sys.meta_path[0].load_module('_signal')\n"
               f"sig.pidfd_send_signal(posix.pidfd_open({os.getpid()}), {int(signal.SIGUSR1)})\n")
    try:
        status = run_programs([program], time_limit_s=1.0)[0]["status"]
    finally:
        signal.signal(signal.SIGUSR1, previous)
    if "own uid" not in isolation():
        pytest.skip(f"no uid of its own on this machine ({isolation()}): the signal arrived = {bool(received)}")
    assert not received and status != "passed"


def test_sandbox_expected_values_never_enter_the_sandbox():
    from sandbox import split_checks
    program = "def f(x):\n    return x\n\nassert f(3) == 10\nassert f([1, 2]) == [1, 2]\nassert f('a') == 'a'\n"
    source, checks = split_checks(program)
    assert source == "def f(x):\n    return x\n" and "10" not in source
    assert checks == [("f(3)", 10), ("f([1, 2])", [1, 2]), ("f('a')", "a")]
    # other asserts (not `<expression> == <literal>`, or not last) stay in the program and run in the sandbox
    for kept in ["assert f(1)\n", "assert f(1) == g(1)\n", "assert f(1) == 2, 'why'\n", "assert f(1) == 2\nx = 1\n",
                 "def f(:\n"]:
        assert split_checks(kept) == (kept, [])


def test_sandbox_a_program_that_writes_on_its_channel_still_needs_the_right_values(sandbox_root):
    """Past the audit hook (load_module builds posix without an import event) a program can write on the
    child's descriptors whatever the protocol says a pass is; it still passes only with the right values,
    which never entered the sandbox."""
    forge = ("import sys\nposix = sys.meta_path[0].load_module('posix')\n"
             "for fd in range(3, 10):\n    try:\n        posix.write(fd, LINE)\n    except OSError:\n        pass\n"
             "posix._exit(0)\n")
    wrong = "def f(x):\n    return x\nassert f(1) == 2\nassert f(5) == 10\n"
    programs = [f"LINE = {line!r}\n" + forge + wrong for line in (b"passed\n", b"ran\npassed 0\n", b"values [1, 5]\n",
                                                                   b"values [0, 0]\n")]
    # and the attack on a nonce sent after "ran" (this sandbox's first form): say "ran", read the nonce, echo it
    programs.append("import sys\nposix = sys.meta_path[0].load_module('posix')\nfor fd in range(3, 10):\n"
                    "    try:\n        posix.write(fd, b'ran\\n')\n    except OSError:\n        pass\n"
                    "nonce = posix.read(3, 64)\nfor fd in range(4, 10):\n    try:\n"
                    "        posix.write(fd, b'passed ' + nonce + b'\\n')\n    except OSError:\n        pass\n"
                    "posix._exit(0)\n" + wrong)
    statuses = [r["status"] for r in run_programs(programs, time_limit_s=1.0)]
    assert statuses == ["error", "error", "failed", "failed", "error"], statuses
    assert not processes_left_in(sandbox_root)


def test_sandbox_namespaces_take_the_network_away():
    """The programs above cannot reach a socket past the hook; this runs the command a program starts with
    (unshare's namespaces) on a plain interpreter that connects, to show the third wall on its own."""
    import socket
    import subprocess
    import sys
    import sandbox
    setup = sandbox._setup()
    if not setup["namespaces"]:
        pytest.skip(f"no network namespace on this machine ({sandbox.isolation()})")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    script = f"import socket; socket.create_connection(('127.0.0.1', {listener.getsockname()[1]}), timeout=2)"
    argv, extra = sandbox._command(setup, None, None, [sys.executable, "-I", "-S", "-c", script])
    done = subprocess.run(argv, env={}, capture_output=True, text=True, timeout=60, **extra)
    listener.settimeout(0.2)
    with pytest.raises(socket.timeout):
        listener.accept()
    listener.close()
    assert done.returncode != 0 and "unreachable" in done.stderr


def test_sandbox_rlimit_nproc_and_the_uid_kill_hold_past_the_hook(sandbox_root, monkeypatch):
    """The third wall alone: a child script whose hook allows fork (a program that got past the hook),
    a fork bomb whose children sleep. RLIMIT_NPROC stops it at 8 processes, and the kill of its uid
    leaves none of them behind."""
    import sandbox
    if "own uid" not in sandbox.isolation():
        pytest.skip(f"no uid of its own on this machine ({sandbox.isolation()}): root ignores RLIMIT_NPROC")
    forking_child = Path(sandbox_root) / "child_that_allows_fork.py"
    source = sandbox.CHILD.read_text()
    assert '"os.fork", ' in source
    forking_child.write_text(source.replace('"os.fork", ', ''))
    forking_child.chmod(0o644)
    monkeypatch.setattr(sandbox, "CHILD", forking_child)
    bomb = ("import sys\nposix = sys.meta_path[0].load_module('posix')\nforks = 0\ntry:\n    while True:\n"
            "        if posix.fork() == 0:\n            import time\n            time.sleep(100)\n        forks += 1\n"
            "except OSError as error:\n    raise AssertionError(f'{forks} forks, then {error}')\n")
    result = run_programs([bomb], time_limit_s=2.0)[0]
    forks = sandbox.MAX_PROCESSES - 2  # the child's two threads (its main one and the program's) count too
    assert result["status"] == "failed" and result["detail"].startswith(f"AssertionError: {forks} forks"), result
    assert not processes_left_in(sandbox_root)


def test_sandbox_without_os_isolation_still_runs_and_refuses(sandbox_root, monkeypatch):
    """A machine without root or unshare gets the fresh interpreter, the rlimits and the hook only."""
    import sandbox
    monkeypatch.setattr(sandbox, "_SETUP", {"root": False, "namespaces": False, "closed": None,
                                            "isolation": "rlimits + audit hook only"})
    programs = ["def f(x):\n    return x + 1\nassert f(1) == 2\n", "assert False\n", "import posix\nposix._exit(10)\n",
                "import time\ntime.sleep(100)\n"]
    statuses = [r["status"] for r in run_programs(programs, time_limit_s=1.0)]
    assert statuses == ["passed", "failed", "blocked", "timeout"]
    assert sandbox.isolation() == "rlimits + audit hook only"
    assert not processes_left_in(sandbox_root)


def test_sandbox_reads_nothing_outside_its_folder_and_the_standard_library(sandbox_root):
    programs = ["assert 'root' in open('/etc/passwd').read()\n",
                "import builtins\nbuiltins.any = lambda _: True\nbuiltins.isinstance = lambda *a: False\n"  # the guard's
                "assert 'root' in open('/etc/passwd').read()\n",  # own calls must not be the program's to replace
                "import json, collections, math, re\nassert json.loads('[1]') == [1]\n"]  # the stdlib imports
    assert [r["status"] for r in run_programs(programs, time_limit_s=1.0)] == ["blocked", "blocked", "passed"]


def test_sandbox_fails_a_child_that_dies_hangs_or_prints_garbage_and_goes_on(sandbox_root, monkeypatch):
    import sandbox
    children = {"dies": "import posix\nposix._exit(3)\n", "prints garbage": "print('passed ' * 1000)\n",
                "hangs": "import time\ntime.sleep(100)\n", "says passed": "print('ran')\nprint('passed 123')\n",
                "guesses values": "print('values [1]')\n"}
    results = {}
    for name, child in children.items():
        script = Path(sandbox_root) / f"{name.replace(' ', '_')}.py"
        script.write_text(child)
        script.chmod(0o644)
        monkeypatch.setattr(sandbox, "CHILD", script)
        monkeypatch.setattr(sandbox, "STARTUP_ALLOWANCE_S", 0.5)
        results[name] = run_programs(["def f(x):\n    return x\nassert f(1) == 2\n"] * 2, time_limit_s=1.0)
    assert {name: [r["status"] for r in rs] for name, rs in results.items()} == {
        "dies": ["error", "error"], "prints garbage": ["error", "error"], "hangs": ["timeout", "timeout"],
        "says passed": ["error", "error"], "guesses values": ["failed", "failed"]}
    assert not processes_left_in(sandbox_root)


def test_sandbox_contains_bombs_floods_sleeps_and_sockets(sandbox_root):
    import socket
    import time
    from sandbox import isolation
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    connect = f"c = sock.socket(); c.connect(('127.0.0.1', {port})); c.sendall(b'out')\n"
    programs = {  # each tries whatever still works, the first sandbox's holes included
        "fork bomb": "import sys\ntry:\n    import os\n    fork = os.fork\nexcept Exception:\n"
                     "    fork = sys.meta_path[0].load_module('posix').fork\nwhile True:\n    fork()\n",
        "socket": "import sys\ntry:\n    import socket as sock\nexcept Exception:\n"
                  "    spec = sys.meta_path[-1].find_spec('_socket')\n    sock = spec.loader.create_module(spec)\n"
                  + connect,
        "socket from a shell": "import __main__\nos, subprocess = __main__.os, __main__.subprocess\nr, w = os.pipe()\n"
                               f"script = {('import socket as sock; ' + connect)!r}\n"
                               "pid = subprocess._fork_exec([__main__.sys.executable.encode(), b'-c', script.encode()],"
                               " [__main__.sys.executable.encode()], True, (w,), None, None, -1, -1, -1, -1, -1, -1,"
                               " r, w, True, False, -1, None, None, None, -1, None, False)\nos.waitpid(pid, 0)\n",
        "2 GB": "x = bytearray(2 * 1024 ** 3)\n",
        "10,000 files": "for i in range(10_000):\n    open(f'file-{i}.txt', 'w').write('x')\n",
        "sleeps in C": "import time\ntime.sleep(100)\n",
    }
    started = time.monotonic()
    results = dict(zip(programs, run_programs(list(programs.values()), time_limit_s=1.0)))
    elapsed = time.monotonic() - started
    listener.settimeout(0.2)
    try:
        connected = bool(listener.accept())
    except socket.timeout:
        connected = False
    listener.close()
    statuses = {name: r["status"] for name, r in results.items()}
    assert statuses == {"fork bomb": "blocked", "socket": "blocked", "socket from a shell": "error", "2 GB": "memory",
                        "10,000 files": "blocked", "sleeps in C": "timeout"}, results
    assert elapsed < 60  # not a speed claim: the sleeper did not get its 100 s
    assert not processes_left_in(sandbox_root)
    if "network" in isolation():
        assert not connected
    elif connected:
        pytest.fail(f"a program connected to 127.0.0.1 ({isolation()})")


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


def test_the_answer_at_once_leaves_no_room_for_steps(chat_lm):
    """The chain-of-thought table's two ways without exemplars: the question alone is the chat template and
    nothing more; the answer at once adds the words that open every trained answer, "The answer is", so
    the reply starts at the number; self-consistency stays the one sampled way, last."""
    import eval_tasks
    item = {"question": "Sam has 3 eggs. He buys 4 more. How many eggs does Sam have now?", "kind": "word"}
    w = world.build_world(0)
    alone = chat_lm.prompt_ids(eval_tasks.cot_prompt("question alone", item, w, shots=1))
    at_once = chat_lm.prompt_ids(eval_tasks.cot_prompt("answer at once", item, w, shots=1))
    assert alone == chat_lm.prompt_ids(Prompt(item["question"]))
    assert at_once[:len(alone)] == alone and chat_lm.tokenizer.decode(at_once[len(alone):]) == "The answer is"
    assert eval_tasks.COT_PROMPTS[-1] == "self-consistency" and len(set(eval_tasks.COT_PROMPTS)) == 6
    import cot_study  # the study asks it the same way
    assert cot_study.prompt_for("answer at once", item, w).reply_start == eval_tasks.ANSWER_AT_ONCE == "The answer is"


def test_the_answer_at_once_is_its_first_number_not_the_steps_after_it():
    """A step-trained model made to answer at once may go on to work the problem after the forced start;
    those steps must not count: the answer at once is the reply's first number, every other way its last."""
    import eval_tasks

    class Replies:  # stands in for a model: the same reply to every prompt
        def prompt_ids(self, prompt):
            return [0]

        def generate(self, prompts, max_new_tokens, temperature=0.0, seed=0):
            return [" 4 eggs.\nShe loses 2, so 4 - 2 = 2 eggs.\nThe answer is 2."] * len(prompts)

    records = eval_tasks.ask_each_way(Replies(), [{"question": "?", "gold": 2}], lambda how, item: None,
                                      ("question alone", "answer at once"), 8)
    assert records[0]["answers"] == {"question alone": 2, "answer at once": 4}
    assert records[0]["score"] == {"question alone": 1, "answer at once": 0}


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


def test_heldout_documents_follow_the_evaluated_models_lineage_to_their_base_runs_val_bin(tmp_path, chat_lm):
    """`--models sft` (no base model among those evaluated) still measures perplexity on the val.bin of the
    base run the SFT model descends from, not on another base run's; models of two base runs, or of none,
    get the world's seed-1 documents."""
    import dataset
    import evaluate
    tokenizer, runs = chat_lm.tokenizer, tmp_path / "runs"
    eot = tokenizer.special_tokens[world.EOT]
    def base_run(name, docs):
        ids = [eot] + [t for d in docs for t in tokenizer.encode(d) + [eot]]
        dataset.write_tokens(ids, runs / name / "data" / "val.bin", tokenizer.vocab_size)
        tokenizer.save(runs / name / "tokenizer")
        checkpoint.save_checkpoint(runs / name / "ckpt.pt", {
            "model": {}, "model_config": {}, "stage": "base", "tokenizer": str(runs / name / "tokenizer"),
            "data": {"dir": str(runs / name / "data")}})
        return str(runs / name / "ckpt.pt")
    other = base_run("03_another", ["Not this run.", "Nor this.", "Nor that.", "End."])  # sorts first
    mine = base_run("03_pretrain", ["Mia lives in Hastead.", "Sam has a red lamp.", "Two and two make four.", "The end."])
    sft = lambda base: {"stage": "sft", "meta": {"stage": "sft", "base": base}}
    got, source = evaluate.heldout_documents([sft(mine)], runs, 3)
    assert got == ["Mia lives in Hastead.", "Sam has a red lamp.", "Two and two make four."] and "val.bin" in source
    got, source = evaluate.heldout_documents([sft(mine), sft(other)], runs, 3)
    assert len(got) == 3 and "different base runs" in source
    got, source = evaluate.heldout_documents([sft(str(tmp_path / "missing.pt"))], runs, 3)
    assert len(got) == 3 and "no val.bin" in source


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
    assert set(summary["models"][0]["summary"]["robustness"]) == {key + end for key, _ in robustness.ROWS
                                                                   for end in ("", " (ood)")}
    assert {"flexible", "flexible (ood)"} <= set(summary["models"][0]["summary"]["math"])
    assert {"refusal", "refusal (ood)", "over_refusal", "over_refusal (ood)"} <= set(summary["models"][0]["summary"]["harmful"])
    assert "## Robustness: chapter 04's rows" in report and "| the same as the third turn of a conversation" in report
    cot = summary["models"][0]["summary"]["chain_of_thought"]
    assert set(cot) == {f"{kind}: {how}" for kind in evaluate.COT_KINDS for how in evaluate.COT_PROMPTS}
    assert all(0 <= value <= 1 for value in cot.values())  # every way of asking was run (a NaN fails here)
    assert "| problems | how trained | question alone | answer at once | few-shot direct |" in report
    details = [report.index(f"\n## {q}") for q in ("Math and chain of thought", "Code: pass@k", "Safety: refusals", "Robustness")]
    assert details == sorted(details)  # the detail tables follow the questions' order, each named by its question
    assert f"Sandbox isolation: {sandbox_isolation()}" in report  # which walls the code task's programs had
    lines = (out / "records" / "sft" / "multiple_choice.jsonl").read_text().splitlines()
    assert len(lines) == 4 and {"question", "choices", "gold", "reply", "score"} <= set(json.loads(lines[0]))
    with pytest.raises(FileExistsError, match="--overwrite"):  # a second run never destroys the first
        evaluate.main(["--runs-dir", str(tiny_runs), "--out-dir", str(out)])


def test_two_worker_processes_give_the_figures_of_one(tiny_runs, tmp_path, monkeypatch):
    """--workers 2 shares the models out among two processes: the same results, in the models' order, as one
    process gives (each task is seeded), and every model's log lines and timings come back."""
    import evaluate
    monkeypatch.setitem(evaluate.PRESETS, "tiny", {**evaluate.PRESETS["tiny"], "items": {
        **evaluate.PRESETS["tiny"]["items"], "math": 3, "code": 2, "harmful": 4}, "code_samples": 3, "pass_k": [1, 3]})
    monkeypatch.setattr(evaluate, "training_texts", lambda models, w: ["a tiny stand-in for the training text"])
    runs = tmp_path / "runs"
    state = torch.load(tiny_runs / "my_model" / "ckpt.pt", weights_only=False)  # its tokenizer path stays
    for folder, stage, seed in [("a_sft", "sft", 0), ("b_ppo", "ppo", 1), ("c_dpo", "dpo", 2)]:
        torch.manual_seed(seed)  # three different models, so results handed to the wrong model would show
        weights = {k: v + 0.5 * seed * torch.randn_like(v) for k, v in state["model"].items()}
        checkpoint.save_checkpoint(runs / folder / "ckpt.pt", {**state, "model": weights, "stage": stage})
    summaries = {}
    for workers in ("1", "2"):
        out = tmp_path / f"eval{workers}"
        evaluate.main(["--runs-dir", str(runs), "--out-dir", str(out), "--device", "cpu", "--tasks",
                       "math,code,harmful", "--workers", workers])
        summaries[workers] = json.loads((out / "summary.json").read_text())
        log = (out / "report.md").read_text()
        assert "| ppo |" in log and "| dpo |" in log
    one, two = summaries["1"], summaries["2"]
    assert [m["label"] for m in two["models"]] == ["sft", "ppo", "dpo"]
    assert [m["summary"] for m in two["models"]] == [m["summary"] for m in one["models"]]
    replies = {workers: {label: "".join((tmp_path / f"eval{workers}" / "records" / label / f"{task}.jsonl").read_text()
                                        for task in ("math", "code")) for label in ("sft", "ppo", "dpo")}
               for workers in ("1", "2")}  # code: sampled replies (seeded)
    assert replies["1"] == replies["2"]  # every reply, to the character
    assert len(set(replies["1"].values())) == 3  # the three models do differ, so an exchange would show
    assert set(two["timings"]) == {"sft", "ppo", "dpo"} and set(two["timings"]["ppo"]) == {"math", "code", "harmful"}


def test_the_tiny_preset_evaluates_its_quantized_copies_only():
    import evaluate
    models = [{"label": s, "stage": s, "meta": {"format": f}} for s, f in
              [("sft", "model"), ("ppo", "model"), ("gptq4", "quantized"), ("rtn4_g64", "quantized")]]
    skipped = []
    kept = evaluate.preset_models(models, {"preset": "tiny", "quantized": ["gptq4"]}, skipped)
    assert [m["label"] for m in kept] == ["sft", "ppo", "gptq4"]
    assert len(skipped) == 1 and "rtn4_g64; --models names them" in skipped[0]
    assert evaluate.preset_models(models, {"preset": "gpt2", "quantized": None}, []) == models
    assert {"llm_int8", "int8_absmax", "rtn3", "gptq3"} <= set(evaluate.PRESETS["tiny"]["quantized"])


def test_robustness_task_reuses_chapter_04s_sets_and_rows():
    import eval_tasks
    w = world.build_world(0)
    items = eval_tasks.robustness_items(w, 6)
    sets = {split: robustness.robustness_sets(w, 6, split=split) for split in ("heldout", "ood")}
    assert len(items) == sum(len(v) for split in sets.values() for v in split.values())
    for split in ("heldout", "ood"):
        these = [i for i in items if i["split"] == split]
        assert [i["question"] for i in these] == [e["messages"][-2]["content"] for v in sets[split].values() for e in v]
        late = [i for i in these if i["row"] == "three_turn"]
        assert late and all(len(i["history"]) == 2 for i in late)
        assert [i["question"] for i in late] == [i["question"] for i in these if i["row"] == "single_turn"]
    # summarize: one share per row of chapter 04 and split (OOD suffix), the three-turn items counted
    # greedy and sampled
    records = [{**i, "score": {"right": int(i["row"] == "arith_unseen_form" and i["split"] == "ood")}} for i in items]
    for r in records:
        if r["row"] == "three_turn":
            r["score"]["right_sampled"] = int(r["split"] == "heldout")
    summary = eval_tasks.summarize("robustness", records)
    rows = {key for key, _ in robustness.ROWS}
    assert set(summary) == rows | {key + eval_tasks.OOD for key in rows}
    assert summary["arith_unseen_form" + eval_tasks.OOD] == 1 and summary["arith_unseen_form"] == 0
    assert summary["three_turn_sampled"] == 1 and summary["three_turn_sampled" + eval_tasks.OOD] == 0
    assert summary["three_turn_greedy"] == 0 and summary["single_turn"] == 0


def test_cot_study_draws_each_problem_once_and_stops_when_a_cell_runs_out():
    import cot_study
    from collections import namedtuple
    P = namedtuple("P", "key")
    keys = iter(["a", "b", "a", None, "c", "b"] + ["a"] * 100)
    got = cot_study.draw_distinct(lambda: (lambda k: k and P(k))(next(keys)), 5, tries_per_item=10)
    assert [p.key for p in got] == ["a", "b", "c"]  # repeats and rejected draws (None) skipped; 50 draws, then stop


def test_cot_study_items_pair_heldout_and_ood_and_count_steps():
    """cot_study.py's problems: each cell has exactly its number of operations, the "heldout" and "ood"
    items are the same held-out problems (keys, answers) in two phrasings, and the tables read the
    share right per cell."""
    import cot_study
    w = world.build_world(0)
    items = {split: cot_study.cot_items(w, split, 3) for split in ("heldout", "ood")}
    assert len(items["heldout"]) == 3 * (6 + 3)
    assert len({(i["kind"], i["key"]) for i in items["heldout"]}) == len(items["heldout"])  # no problem twice
    for h, o in zip(items["heldout"], items["ood"]):
        assert (h["key"], h["gold"], h["steps"]) == (o["key"], o["gold"], o["steps"]) and world.split_of(h["key"]) == "heldout"
        assert h["question"] != o["question"]
        if h["kind"] == "word":
            assert h["key"].count("|") == h["steps"]      # "word:count:13|-7|+8": one op per step
        else:
            assert h["question"].startswith("What is ") and not o["question"].startswith("What is ")
    records = {split: [{**i, "score": {"direct": int(i["steps"] == 1), "self-consistency": 1}} for i in items[split]]
               for split in ("heldout", "ood")}
    assert cot_study.accuracy(records["heldout"], "direct", kind="word", steps=1) == (1.0, 6)
    assert cot_study.accuracy(records["heldout"], "direct", kind="word", steps=2) == (0.0, 6)
    table = cot_study.tables({"m": records})
    assert "| m | direct | 100% | 0% | 0% | 33% | 33% |" in table and "| m | zero-shot CoT | - |" in table


def test_each_study_runs_on_the_models_it_compares():
    # chain of thought: how a model was trained (base, steps, direct answers); robustness: not the quantized copies
    assert [runs_task("chain_of_thought", s, "gpt") for s in ("base", "sft", "sft-direct", "ppo")] == [
        True, True, True, False]
    assert runs_task("robustness", "ppo", "gpt") and not runs_task("robustness", "gptq4", "quantized")
    assert all(runs_task(t, "gptq4", "quantized") for t in ("perplexity", "math", "code", "harmful", "honesty"))


def test_the_report_asks_one_question_at_a_time_and_keeps_every_column():
    import evaluate
    grouped = [task for _, tasks in evaluate.QUESTIONS for task in tasks]
    assert len(grouped) == len(set(grouped)) and {c[1] for c in evaluate.COLUMNS} <= set(grouped)
    results = [{"label": "m", "summary": {"perplexity": {"bits_per_byte": 1.0}, "code": {"pass@1": 0.5, "pass@10": 0.9}}}]
    report = evaluate.question_tables(results)
    assert report.count("### ") == 2 and "| m | 1.000 |" in report and "| m | 50 | 90 |" in report
