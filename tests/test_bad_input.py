"""Bad input and faults, as a careless student or a hostile user would try them: every script ends with
one clear line and a non-zero exit code (never a traceback), and no run destroys an earlier run.

The first section tests the shared plumbing (01_tokenizer/cli.py); later sections run each chapter's
script `main` through `cli.run` on its bad inputs.
"""
import argparse

import pytest

import cli


def run_script(main, argv, capsys):
    """Run `main` through cli.run as the script would; return (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, argv)
    return exit_info.value.code, capsys.readouterr().err


# ---- cli.run: one line, exit 2; --debug shows the traceback

def test_run_turns_an_exception_into_one_line(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def main(argv):
        raise FileNotFoundError("no checkpoint at x.pt:\n   train first")
    code, err = run_script(main, [], capsys)
    assert code == 2
    assert err.strip().splitlines() == ["error: no checkpoint at x.pt: train first"]
    assert "Traceback" not in err


def test_run_names_an_unexpected_exception_type(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def main(argv):
        raise ZeroDivisionError("division by zero")
    code, err = run_script(main, [], capsys)
    assert code == 2
    assert err.strip() == "error: ZeroDivisionError: division by zero  (a bug? BYTES2CHAT_DEBUG=1 shows the traceback)"


def test_run_passes_arguments_and_returns_the_result(monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.run(lambda argv: argv, ["--a", "1"]) == ["--a", "1"]


def test_debug_flag_is_removed_and_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    seen = []

    def main(argv):
        seen.append(argv)
        raise ValueError("bad")
    with pytest.raises(ValueError):
        cli.run(main, ["--x", "--debug"])
    assert seen == [["--x"]]
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ValueError):
        cli.run(main, [])


def test_argparse_exits_and_keyboard_interrupt(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def main(argv):
        parser = cli.ArgumentParser(prog="script.py")
        parser.add_argument("--steps", type=cli.positive_int)
        return parser.parse_args(argv)
    code, err = run_script(main, ["--steps", "0"], capsys)
    assert code == 2
    assert err.splitlines() == ["error: argument --steps: '0' must be at least 1  (see: script.py --help)"]

    def interrupted(argv):
        raise KeyboardInterrupt
    code, err = run_script(interrupted, [], capsys)
    assert code == 130 and err.strip() == "interrupted"


@pytest.mark.parametrize("kind, good, bad", [
    (cli.positive_int, {"1": 1, "12": 12}, ["0", "-5", "1.5", "x", ""]),
    (cli.non_negative_int, {"0": 0, "3": 3}, ["-1", "nan"]),
    (cli.finite_float, {"-1.5": -1.5, "0": 0.0}, ["nan", "inf", "-inf", "x"]),
    (cli.positive_float, {"0.1": 0.1}, ["0", "-1", "nan"]),
    (cli.non_negative_float, {"0": 0.0, "2": 2.0}, ["-1", "-0.001", "nan", "inf"]),
    (cli.fraction, {"0": 0.0, "0.5": 0.5}, ["1", "-0.1", "nan"]),
])
def test_argparse_types(kind, good, bad):
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


# ---- outputs: check_out_dir and atomic writes

def test_check_out_dir_refuses_to_start_over_an_earlier_run(tmp_path):
    assert cli.check_out_dir(tmp_path / "new") == tmp_path / "new"        # a new folder: fine
    assert cli.check_out_dir(tmp_path) == tmp_path                        # a folder without a run: fine
    (tmp_path / "ckpt.pt").write_bytes(b"run")
    with pytest.raises(FileExistsError, match="--resume to continue it, --overwrite to start over, or give another --out-dir"):
        cli.check_out_dir(tmp_path)
    assert cli.check_out_dir(tmp_path, resume=True) == tmp_path
    assert cli.check_out_dir(tmp_path, overwrite=True) == tmp_path
    with pytest.raises(FileNotFoundError, match="no ckpt.pt"):
        cli.check_out_dir(tmp_path / "new", resume=True)
    with pytest.raises(NotADirectoryError, match="is a file"):
        cli.check_out_dir(tmp_path / "ckpt.pt")


def test_atomic_output_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "out.txt"
    cli.write_text_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with cli.atomic_output(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]        # no temporary file left
    cli.write_text_atomic(path, "new")
    assert path.read_text() == "new"


# ---- chapter 01: train_tokenizer.py

import train_tokenizer  # noqa: E402


def files_of(folder):
    """{name: bytes} of every file in `folder`: to show that a refused run changed nothing."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory):
    """A tiny tokenizer run: (its folder, the text file it trained on)."""
    folder = tmp_path_factory.mktemp("tok")
    text = folder.parent / "text.txt"
    words = "the cat sat on a mat and then dog ran to big log with its red hat".split()
    text.write_text("".join(" ".join(words[i % 7:] + words[:i % 5]) + "\n" for i in range(300)), encoding="utf-8")
    train_tokenizer.main(["--input", str(text), "--vocab-size", "270", "--out-dir", str(folder / "run"), "--no-colour"])
    return folder / "run", text


def tokenizer_case(tokenizer_run, capsys, argv):
    run_dir, text = tokenizer_run
    before = files_of(run_dir)
    argv = [a.replace("RUN", str(run_dir)).replace("TEXT", str(text)) for a in argv]
    code, err = run_script(train_tokenizer.main, argv, capsys)
    assert files_of(run_dir) == before, "a refused run must leave the earlier run byte for byte unchanged"
    return code, err.strip().splitlines()


@pytest.mark.parametrize("argv, message", [
    (["--input", "TEXT", "--out-dir", "RUN"], "already holds a run (tokenizer.tiktoken): pass --overwrite to replace it or give another --out-dir"),
    (["--input", "TEXT", "--out-dir", "RUN/tokenizer.json"], "is a file, not a folder"),
    (["--input", "RUN", "--out-dir", "RUN/new"], "is a folder, not a text file"),
    (["--input", "RUN/missing.txt", "--out-dir", "RUN/new"], "does not exist"),
    (["--out-dir", "RUN", "--show", "caf\udce9"], "--show: the text is not valid Unicode"),
])
def test_tokenizer_script_bad_input_is_one_line(tokenizer_run, capsys, argv, message):
    code, lines = tokenizer_case(tokenizer_run, capsys, argv)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.mark.parametrize("argv", [["--vocab-size", "0"], ["--vocab-size", "-3"], ["--vocab-size", "x"]])
def test_tokenizer_script_refuses_nonsense_vocab_sizes(tokenizer_run, capsys, argv):
    code, lines = tokenizer_case(tokenizer_run, capsys, argv + ["--out-dir", "RUN/new"])
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: argument --vocab-size")


@pytest.mark.parametrize("damage", ["truncated json", "random tiktoken", "empty tiktoken"])
def test_damaged_tokenizer_files_are_one_line(tokenizer_run, tmp_path, capsys, damage):
    import shutil
    run_dir = tmp_path / "damaged"
    shutil.copytree(tokenizer_run[0], run_dir)
    if damage == "truncated json":
        data = (run_dir / "tokenizer.json").read_bytes()
        (run_dir / "tokenizer.json").write_bytes(data[: len(data) // 2])
    elif damage == "random tiktoken":
        (run_dir / "tokenizer.tiktoken").write_bytes(bytes(range(256)) * 4)
    else:
        (run_dir / "tokenizer.tiktoken").write_bytes(b"")
    code, err = run_script(train_tokenizer.main, ["--out-dir", str(run_dir), "--show", "hello"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "is not a tokenizer that save() wrote" in lines[0], lines


def test_overwrite_replaces_the_earlier_tokenizer_when_asked(tokenizer_run, tmp_path, capsys):
    import shutil
    run_dir = tmp_path / "again"
    shutil.copytree(tokenizer_run[0], run_dir)
    (run_dir / "tokenizer.json").write_text("stale")
    train_tokenizer.main(["--input", str(tokenizer_run[1]), "--vocab-size", "270", "--out-dir", str(run_dir),
                          "--overwrite", "--no-colour"])
    assert (run_dir / "tokenizer.json").read_bytes() == (tokenizer_run[0] / "tokenizer.json").read_bytes()


# ---- chapter 02: tour_gpt.py

import tour_gpt  # noqa: E402


@pytest.mark.parametrize("argv, message", [
    (["--prompt", ""], "error: --prompt is empty"),
    (["--max-new-tokens", "-3"], "error: argument --max-new-tokens: '-3' must be at least 1"),
    (["--max-new-tokens", "-5"], "error: argument --max-new-tokens: '-5' must be at least 1"),
    (["--layer", "9"], "error: --layer must be between 0 and 3"),
    (["--device", "tpu"], "error: --device tpu: unknown device"),
    (["--out-dir", "FILE"], "error: --out-dir "),
])
def test_tour_bad_input_is_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "FILE").write_text("not a folder")
    argv = [str(tmp_path / a) if a == "FILE" else a for a in argv]
    code, err = run_script(tour_gpt.main, argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), lines


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_tour_asks_for_a_device_this_machine_lacks(capsys, monkeypatch, device):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    code, err = run_script(tour_gpt.main, ["--device", device], capsys)
    assert code == 2 and err.strip().startswith(f"error: --device {device}: ") and "use --device cpu" in err


# ---- chapter 05: rlhf.py

import rlhf  # noqa: E402


@pytest.fixture(scope="module")
def rlhf_inputs(tmp_path_factory):
    """A tiny SFT checkpoint (random weights, a chat tokenizer), a base model without chat tokens, and an
    earlier run's folder holding a ppo checkpoint."""
    import json

    import torch

    import bpe
    import checkpoint
    import world
    from chat_format import add_chat_tokens
    from gpt import GPT, GPTConfig
    root = tmp_path_factory.mktemp("rlhf_bad")
    base = bpe.train_bpe(world.make_corpus(20_000), 300, special_tokens=[world.EOT])
    for name, tok in (("sft", add_chat_tokens(base)), ("base", base)):
        tok.save(root / name / "tokenizer")
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16))
        checkpoint.save_checkpoint(root / name / "ckpt.pt", {"model": model.state_dict(), "tokenizer": str(root / name / "tokenizer"),
                                                            "model_config": checkpoint.model_config_dict(model)})
    (root / "run" / "ppo").mkdir(parents=True)
    (root / "run" / "ppo" / "ckpt.pt").write_bytes(b"an earlier run")
    pair = {"messages": [{"role": "user", "content": "Where does Sam live?"}], "chosen": "In Trusholm.", "rejected": "No."}
    (root / "bad_line.jsonl").write_text(json.dumps(pair) + "\n" + '{"messages": [], "chosen": "a"' + "\n")
    (root / "empty.jsonl").write_text("\n")
    long_pair = {**pair, "messages": [{"role": "user", "content": "Tell me a long story about Sam. " * 20}]}
    (root / "long_prompt.jsonl").write_text(json.dumps(long_pair) + "\n")
    return root


@pytest.mark.parametrize("argv, message", [
    (["--sft", "ROOT/missing.pt"], "error: no SFT model at ROOT/missing.pt. Fine-tune one first: python 04_sft/sft.py --preset tiny"),
    (["--sft", "ROOT/base/ckpt.pt"], "is not a chat model (its tokenizer has no <|end|>)"),
    (["--preferences", "ROOT/bad_line.jsonl", "--out-dir", "ROOT/new"], "bad_line.jsonl, line 2: "),
    (["--preferences", "ROOT/empty.jsonl", "--out-dir", "ROOT/new"], "empty.jsonl holds no preference pairs"),
    (["--preferences", "ROOT/missing.jsonl", "--out-dir", "ROOT/new"], "--preferences ROOT/missing.jsonl: no such file"),
    (["--preferences", "ROOT/long_prompt.jsonl", "--out-dir", "ROOT/new"], "pair 0: its prompt is"),
    (["--stages", "ppo", "--out-dir", "ROOT/run"], "already holds a run (ckpt.pt): pass --resume to continue it, --overwrite"),
    (["--stages", "ppo", "--out-dir", "ROOT/new"], "no reward model in ROOT/new/reward_model: run the reward_model stage first (--stages reward_model,ppo)"),
    (["--stages", "ppo,rlhf"], "--stages 'ppo,rlhf': name stages from preferences, reward_model"),
    (["--resume", "--overwrite"], "--resume continues a run and --overwrite replaces it"),
    (["--kl-coef", "-1"], "error: argument --kl-coef: '-1' must be 0 or more"),
    (["--ppo-steps", "0"], "error: argument --ppo-steps: '0' must be at least 1"),
    (["--out-dir", "ROOT/empty.jsonl"], "is a file, not a folder"),
])
def test_rlhf_bad_input_is_one_line(rlhf_inputs, capsys, argv, message):
    root = rlhf_inputs
    argv = [a.replace("ROOT", str(root)) for a in argv]
    if "--sft" not in argv:
        argv = ["--sft", str(root / "sft" / "ckpt.pt"), "--device", "cpu"] + argv
    before = files_of(root / "run" / "ppo")
    code, err = run_script(rlhf.main, argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message.replace("ROOT", str(root)) in lines[0], lines
    assert files_of(root / "run" / "ppo") == before and not (root / "new").exists()
