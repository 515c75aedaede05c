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


# ---- chapters 03 and 04: pretrain.py, dataset.py, scaling.py, sft.py, chat.py, and pipeline.py

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import bpe  # noqa: E402
import chat as chat_script  # noqa: E402
import checkpoint as checkpoint_io  # noqa: E402
import dataset  # noqa: E402
import pipeline  # noqa: E402
import pretrain  # noqa: E402
import scaling  # noqa: E402
import sft  # noqa: E402
from model_loader import load_model  # noqa: E402
from gpt import GPT, GPTConfig  # noqa: E402

PRETRAIN_SMALL = ["--bytes", "60000", "--vocab-size", "400", "--context", "192", "--batch-size", "2", "--n-layer", "1",
                  "--n-head", "2", "--n-embd", "32", "--steps", "2", "--eval-interval", "2", "--eval-batches", "1",
                  "--log-interval", "1", "--sample-interval", "0", "--sample-tokens", "4", "--device", "cpu",
                  "--precision", "fp32"]
SFT_SMALL = ["--mix", "fact=12,math=12,story=2,describe=2,unknown=4,harmful=4,benign=4", "--steps", "2",
             "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "1", "--log-interval", "1",
             "--eval-per-task", "1", "--max-new-tokens", "4", "--device", "cpu"]
OTHER_TEXT = "A different corpus: the quick brown fox jumps over the lazy dog. " * 400


def tree_of(folder):
    """{relative path: bytes} of every file under `folder`: to show that a refused run changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small pretraining run (root/base) and one small SFT run on it (root/sft), plus inputs to misuse."""
    root = tmp_path_factory.mktemp("runs")
    pretrain.main(PRETRAIN_SMALL + ["--out-dir", str(root / "base")])
    sft.main(SFT_SMALL + ["--base", str(root / "base" / "ckpt.pt"), "--out-dir", str(root / "sft")])
    (root / "other.txt").write_text(OTHER_TEXT, encoding="utf-8")
    (root / "a_file").write_text("not a folder")
    (root / "empty_dir").mkdir()
    good = json.dumps({"instruction": "Say hi.", "output": "Hi."})
    (root / "bad.jsonl").write_text(good + "\n{not json\n", encoding="utf-8")
    (root / "latin1.jsonl").write_bytes((good + "\n" + json.dumps({"instruction": "Où?", "output": "Là."},
                                                                   ensure_ascii=False) + "\n").encode("latin-1"))
    return root


def expand(argv, root):
    """Replace the placeholders ROOT (the fixture's folder) in `argv`."""
    return [a.replace("ROOT", str(root)) for a in argv]


def refused(main, argv, capsys, watched):
    """Run `main` through cli.run; assert exit code 2 and that `watched` (a folder) is byte for byte
    unchanged. Returns the stderr lines."""
    before = tree_of(watched)
    code, err = run_script(main, argv, capsys)
    assert tree_of(watched) == before, "a refused run must leave the earlier run byte for byte unchanged"
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines


PRETRAIN_CASES = [
    # 1. forgetting --resume must not destroy the checkpoint
    ([], "ROOT/base already holds a run (ckpt.pt): pass --resume to continue it, --overwrite to start over, or give "
         "another --out-dir"),
    # 2. an invalid setting is found before the data of the run is touched (new data, new tokenizer)
    (["--resume", "--data", "ROOT/other.txt", "--n-head", "5"], "n_embd=32 must be a multiple of n_head=5"),
    (["--overwrite", "--data", "ROOT/other.txt", "--n-head", "5"], "n_embd=32 must be a multiple of n_head=5"),
    # 3. --resume on other data or with another tokenizer
    (["--resume", "--data", "ROOT/other.txt"], "--resume: --data ROOT/other.txt is not the corpus this run was "
                                               "trained on"),
    (["--resume", "--bytes", "50000"], "--resume: --data world is not the corpus this run was trained on"),
    (["--resume", "--vocab-size", "300"], "--resume: this tokenizer is not the one this run was trained on"),
    (["--overwrite", "--context", "100000"], "each split needs at least 100001"),
    # 4. nonsense numbers
    (["--weight-decay", "-1"], "error: argument --weight-decay: '-1' must be 0 or more"),
    (["--bytes", "-100"], "error: argument --bytes: '-100' must be at least 1"),
    (["--eval-batches", "0"], "error: argument --eval-batches: '0' must be at least 1"),
    (["--lr", "nan"], "error: argument --lr: 'nan' is not a finite number"),
    # 5. paths
    (["--out-dir", "ROOT/a_file"], "--out-dir ROOT/a_file is a file, not a folder"),
    (["--out-dir", "ROOT/new", "--data", "ROOT/empty_dir"], "the folder ROOT/empty_dir has no .txt files"),
    (["--out-dir", "ROOT/new", "--resume"], "--resume: there is no ckpt.pt in ROOT/new to continue"),
]


@pytest.mark.parametrize("argv, message", PRETRAIN_CASES)
def test_pretrain_bad_input_is_one_line_and_keeps_the_run(runs, capsys, argv, message):
    argv = expand(PRETRAIN_SMALL + ["--out-dir", "ROOT/base"] + argv, runs)
    lines = refused(pretrain.main, argv, capsys, runs)
    assert expand([message], runs)[0] in lines[0], lines
    assert not (runs / "new").exists()


def test_overwrite_starts_a_new_run_in_place_of_the_old_one(runs, tmp_path):
    shutil.copytree(runs / "base", tmp_path / "base")
    (tmp_path / "base" / "sample.txt").write_text("a sample of the old run\n")
    summary = pretrain.main(PRETRAIN_SMALL + ["--out-dir", str(tmp_path / "base"), "--overwrite", "--data",
                                              str(runs / "other.txt"), "--vocab-size", "300", "--steps", "1"])
    saved = torch.load(tmp_path / "base" / "ckpt.pt", weights_only=True)
    new_corpus = dataset.read_meta(tmp_path / "base" / "train.bin")["corpus_sha256"]
    assert summary["step"] == 1 and saved["data"]["corpus_sha256"] == new_corpus
    assert new_corpus != dataset.read_meta(runs / "base" / "train.bin")["corpus_sha256"]
    assert saved["tokenizer_sha256"] == dataset.tokenizer_fingerprint(tmp_path / "base" / "tokenizer")
    assert "old run" not in (tmp_path / "base" / "sample.txt").read_text()  # a new run, new samples and log


def test_resume_on_other_data_is_refused_before_a_tokenizer_is_trained_on_it(runs, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a tokenizer was trained on the wrong corpus before the refusal")
    monkeypatch.setattr(dataset, "train_tokenizer", no_training)
    argv = expand(PRETRAIN_SMALL + ["--out-dir", "ROOT/base", "--resume", "--data", "ROOT/other.txt"], runs)
    assert "is not the corpus this run was trained on" in refused(pretrain.main, argv, capsys, runs)[0]


def damage(path, how):
    """Spoil a checkpoint file the ways a careless copy or a stranger's file would."""
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(bytes(range(256)) * 8)
    elif how == "a tensor":
        torch.save(torch.zeros(3), path)
    else:  # a foreign dict: weights under other names
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)


DAMAGES = ["truncated", "empty", "random", "a tensor", "a foreign dict"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_checkpoints_are_one_line_in_every_script(runs, tmp_path, capsys, how):
    for name in ("base", "sft"):
        shutil.copytree(runs / name, tmp_path / name)
        damage(tmp_path / name / "ckpt.pt", how)
    ckpt = str(tmp_path / "base" / "ckpt.pt")
    cases = [
        (pretrain.main, ["--resume", "--out-dir", str(tmp_path / "base")]),
        (sft.main, ["--resume", "--out-dir", str(tmp_path / "sft")]),
        (sft.main, SFT_SMALL + ["--base", ckpt, "--out-dir", str(tmp_path / "new")]),
        (chat_script.main, ["--ckpt", str(tmp_path / "sft" / "ckpt.pt"), "--prompt", "hi"]),
    ]
    for main, argv in cases:
        line = refused(main, argv, capsys, tmp_path)[0]
        assert "is not a checkpoint" in line or "is not a bytes2chat checkpoint" in line, line
        assert "weights_only=False" not in line and "a bug?" not in line


def test_the_token_cache_follows_the_content_of_the_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(OTHER_TEXT, encoding="utf-8")
    dataset.prepare(str(corpus), tmp_path / "data", vocab_size=270, verbose=False)
    edited = OTHER_TEXT.replace("fox", "cat")
    corpus.write_text(edited, encoding="utf-8")  # edited in place: the same path, other text
    meta = dataset.prepare(str(corpus), tmp_path / "data", vocab_size=270, verbose=False)
    ids = np.concatenate([dataset.read_tokens(tmp_path / "data" / f"{split}.bin") for split in ("train", "val")])
    assert dataset.load_tokenizer(meta["tokenizer"]).decode(ids.tolist()) == edited, "stale tokens were reused"


def test_the_run_folder_holds_its_tokenizer_and_refuses_another(runs, tmp_path, monkeypatch, capsys):
    (tmp_path / "tok").mkdir()
    for suffix in (".tiktoken", ".json"):
        shutil.copy(runs / "base" / f"tokenizer{suffix}", tmp_path / "tok" / f"tokenizer{suffix}")
    monkeypatch.chdir(tmp_path)
    pretrain.main(PRETRAIN_SMALL + ["--tokenizer", "tok/tokenizer", "--out-dir", "run", "--steps", "1",
                                    "--eval-interval", "1"])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # "tok/tokenizer" means nothing here
    model, tokenizer, saved = load_model(tmp_path / "run" / "ckpt.pt")
    assert saved["tokenizer_sha256"] == dataset.tokenizer_fingerprint(runs / "base" / "tokenizer")
    summary = pretrain.main(["--resume", "--out-dir", str(tmp_path / "run"), "--steps", "2"])
    assert summary["step"] == 2
    # the run's tokenizer replaced by another: the checkpoint is never loaded with it
    bpe.train_bpe(OTHER_TEXT, 300, special_tokens=[dataset.EOT]).save(str(tmp_path / "run" / "tokenizer"))
    with pytest.raises(ValueError, match="was trained with another tokenizer"):
        load_model(tmp_path / "run" / "ckpt.pt")
    argv = SFT_SMALL + ["--base", str(tmp_path / "run" / "ckpt.pt"), "--out-dir", str(tmp_path / "sft")]
    line = refused(sft.main, argv, capsys, tmp_path)[0]
    assert "cannot use" in line and "was trained with another tokenizer" in line, line


DATASET_CASES = [
    (["--out-dir", "ROOT/base"], "ROOT/base already holds a run (train.bin): pass --overwrite to replace it or give "
                                 "another --out-dir"),
    (["--out-dir", "ROOT/new", "--bytes", "-100"], "error: argument --bytes: '-100' must be at least 1"),
    (["--out-dir", "ROOT/new", "--data", "ROOT/empty_dir"], "the folder ROOT/empty_dir has no .txt files"),
    (["--out-dir", "ROOT/a_file"], "--out-dir ROOT/a_file is a file, not a folder"),
]


@pytest.mark.parametrize("argv, message", DATASET_CASES)
def test_dataset_script_bad_input_is_one_line(runs, capsys, argv, message):
    lines = refused(dataset.main, expand(argv, runs), capsys, runs)
    assert expand([message], runs)[0] in lines[0], lines


@pytest.mark.parametrize("argv, message", [
    (["--quick"], "already holds a run (scaling.json): pass --overwrite to replace it or give another --out-dir"),
    (["--quick", "--steps", "0"], "error: argument --steps: '0' must be at least 1"),
    (["--quick", "--lr", "-1"], "error: argument --lr: '-1' must be greater than 0"),
])
def test_scaling_script_keeps_an_earlier_study(tmp_path, capsys, argv, message):
    (tmp_path / "scaling.json").write_text("{}\n")
    lines = refused(scaling.main, argv + ["--out-dir", str(tmp_path)], capsys, tmp_path)
    assert message in lines[0], lines
    lines = refused(scaling.main, ["--quick", "--out-dir", str(tmp_path / "scaling.json")], capsys, tmp_path)
    assert "is a file, not a folder" in lines[0]


SFT_CASES = [
    # 1. forgetting --resume must not destroy the checkpoint
    ([], "ROOT/sft already holds a run (ckpt.pt): pass --resume to continue it, --overwrite to start over, or give "
         "another --out-dir"),
    # 2. a bad JSONL into an existing run, even with --overwrite, is found before the tokenizer is written
    (["--overwrite", "--data", "ROOT/bad.jsonl"], "ROOT/bad.jsonl, line 2:"),
    (["--overwrite", "--data", "ROOT/latin1.jsonl"], "ROOT/latin1.jsonl, line 2: byte 0xf9 is not UTF-8"),
    (["--overwrite", "--data", "ROOT/empty_dir"], "--data ROOT/empty_dir is a folder, not a JSONL file"),
    (["--overwrite", "--data", "ROOT/missing.jsonl"], "no JSONL file at ROOT/missing.jsonl"),
    # 4. nonsense numbers
    (["--mix-scale", "-1"], "error: argument --mix-scale: '-1' must be greater than 0"),
    (["--overwrite", "--mix",
      "fact=0,math=0,arith=0,story=0,describe=0,unknown=0,harmful=0,benign=0,code=0,followup=0"],
     "the data has no training conversation"),
    (["--max-new-tokens", "-5"], "error: argument --max-new-tokens: '-5' must be at least 1"),
    (["--eval-batches", "0"], "error: argument --eval-batches: '0' must be at least 1"),
    (["--weight-decay", "-1"], "error: argument --weight-decay: '-1' must be 0 or more"),
    # 5. paths
    (["--out-dir", "ROOT/a_file"], "--out-dir ROOT/a_file is a file, not a folder"),
    (["--out-dir", "ROOT/new", "--base", "ROOT/missing.pt"], "no base model at ROOT/missing.pt"),
    (["--out-dir", "ROOT/new", "--base", "ROOT/base"], "ROOT/base is a folder, not a checkpoint"),
    # 6. the pretraining mix: its tokens are found next to the base model, and some rows stay chat rows
    (["--overwrite", "--ptx", "0.25", "--base", "ROOT/sft/ckpt.pt"],
     "--ptx 0.25 needs the base model's pretraining tokens, and there is no ROOT/sft/train.bin"),
    (["--ptx", "1"], "error: argument --ptx: '1' must be in [0, 1)"),
]


@pytest.mark.parametrize("argv, message", SFT_CASES)
def test_sft_bad_input_is_one_line_and_keeps_the_run(runs, capsys, argv, message):
    argv = expand(SFT_SMALL + ["--base", "ROOT/base/ckpt.pt", "--out-dir", "ROOT/sft"] + argv, runs)
    lines = refused(sft.main, argv, capsys, runs)
    assert expand([message], runs)[0] in lines[0], lines
    assert not (runs / "new").exists()


def test_sft_resume_refuses_a_base_with_another_tokenizer(runs, tmp_path, capsys):
    other = bpe.train_bpe(OTHER_TEXT, 300, special_tokens=[dataset.EOT])
    other.save(str(tmp_path / "other" / "tokenizer"))
    model = GPT(GPTConfig(vocab_size=300, block_size=192, n_layer=1, n_head=2, n_embd=32))
    checkpoint_io.save_checkpoint(tmp_path / "other" / "ckpt.pt", {
        "model": model.state_dict(), "model_config": checkpoint_io.model_config_dict(model),
        "tokenizer": str(tmp_path / "other" / "tokenizer")})
    argv = ["--resume", "--out-dir", str(runs / "sft"), "--base", str(tmp_path / "other" / "ckpt.pt")]
    line = refused(sft.main, argv, capsys, runs)[0]
    assert "--resume: the base model" in line and "has another tokenizer than the one this run was trained" in line


def test_sft_resume_refuses_other_training_data(runs, capsys):
    """--resume continues on exactly the run's conversations: another mix (or data, or seed) is refused
    before anything is written (the SFT checkpoint holds the sha256 of its training rows)."""
    argv = ["--resume", "--out-dir", str(runs / "sft"), "--mix-scale", "0.5"]
    line = refused(sft.main, argv, capsys, runs)[0]
    assert "--resume: the training conversations differ from the ones this run was trained on" in line


@pytest.mark.parametrize("argv, message", [
    (["--temp", "nan"], "error: argument --temp: 'nan' is not a finite number"),
    (["--temp", "-1"], "error: argument --temp: '-1' must be 0 or more"),
    (["--max-new-tokens", "-3"], "error: argument --max-new-tokens: '-3' must be at least 1"),
    (["--ckpt", "ROOT/missing.pt"], "error: no chat model at ROOT/missing.pt. Fine-tune one first"),
    (["--ckpt", "ROOT/base/ckpt.pt"], "is not a chat model: it is a base model"),
])
def test_chat_bad_input_is_one_line(runs, capsys, argv, message):
    argv = expand(["--ckpt", "ROOT/sft/ckpt.pt", "--prompt", "hi"] + argv, runs)
    lines = refused(chat_script.main, argv, capsys, runs)
    assert expand([message], runs)[0] in lines[0], lines


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_chat_asks_for_a_device_this_machine_lacks(runs, capsys, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    argv = ["--ckpt", str(runs / "sft" / "ckpt.pt"), "--prompt", "hi", "--device", device]
    line = refused(chat_script.main, argv, capsys, runs)[0]
    assert line.startswith(f"error: --device {device}: ") and "use --device cpu" in line


@pytest.mark.parametrize("argv, message", [
    (["--web", "--ckpt", "ROOT/missing.pt"], "error: no chat model at ROOT/missing.pt. Fine-tune one first"),
    (["--web", "--ckpt", "ROOT/base/ckpt.pt"], "is not a chat model: it is a base model"),
    (["--web", "--prompt", "hi"], "error: --web and --prompt do not go together"),
    (["--web", "--port", "70000"], "error: port 70000 is not a TCP port: choose one from 1 to 65535"),
    (["--web", "--port", "-1"], "error: argument --port: '-1' must be 0 or more"),
])
def test_chat_web_bad_input_is_one_line(runs, capsys, argv, message):
    argv = expand(["--ckpt", "ROOT/sft/ckpt.pt", "--port", "0"] + argv, runs)  # a later flag wins
    lines = refused(chat_script.main, argv, capsys, runs)
    assert expand([message], runs)[0] in lines[0], lines


def test_chat_web_without_any_chat_model_says_what_to_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(chat_script, "RUNS", tmp_path)  # no runs/04_sft, no runs/05_rlhf
    code, err = run_script(chat_script.main, ["--web", "--port", "0"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: no chat model under {tmp_path}: fine-tune one first: python 04_sft/sft.py")


def test_chat_web_on_a_taken_port_is_one_line(runs, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--web", "--ckpt", str(runs / "sft" / "ckpt.pt"), "--port", str(port)]
        line = refused(chat_script.main, argv, capsys, runs)[0]
    assert line == (f"error: port {port} on 127.0.0.1 is taken (is a chat page already running there?): pass --port "
                    f"with another number, e.g. --port {port + 1}")


def test_chat_repl_refuses_temp_nan_and_goes_on(runs, capsys, monkeypatch):
    model, tokenizer = chat_script.load_chat_model(runs / "sft" / "ckpt.pt")
    session = chat_script.ChatSession(model, tokenizer, temperature=0.5, max_new_tokens=4, seed=0)
    lines = iter(["/temp nan", "/temp inf", "Hi", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    chat_script.repl(session)
    out = capsys.readouterr().out
    assert "[/temp needs a number >= 0, e.g. /temp 0.7 (0 = greedy): 'nan' is not a finite number]" in out
    assert out.count("[/temp needs a number >= 0") == 2 and session.temperature == 0.5
    assert "assistant> " in out and len(session.history) == 2  # the session lived on and replied


def fake_chapters(root, refuse):
    """Two fake chapter scripts under root, declared as the pipeline declares its steps: each records its
    arguments; the first declares an --overwrite flag and an output, which exists when `refuse` (a chapter
    that has run)."""
    chapters = []
    for number in (1, 2):
        folder = root / f"0{number}_fake"
        folder.mkdir()
        code = f"import sys\nopen({str(root / f'args{number}.txt')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        (folder / "run.py").write_text(code)
        chapters.append(dict(folder=folder.name, script="run.py", options=set()))
    chapters[0].update(options={"overwrite"}, output="runs/x/ckpt.pt")
    if refuse:
        (root / "runs" / "x").mkdir(parents=True)
        (root / "runs" / "x" / "ckpt.pt").write_text("an earlier run")
    return chapters


def test_pipeline_says_how_to_go_on_when_a_chapter_has_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "REPO", tmp_path)
    monkeypatch.setattr(pipeline, "CHAPTERS", fake_chapters(tmp_path, refuse=True))
    with pytest.raises(SystemExit) as exit_info:
        cli.run(pipeline.main, [])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "01_fake has run before (runs/x/ckpt.pt exists) and its outputs are kept. Rerun with --overwrite" in captured.out
    assert "or with --start 2 to go on from the next chapter" in captured.out
    assert not (tmp_path / "args1.txt").exists(), "a chapter that has run is not started over its outputs"
    assert not (tmp_path / "args2.txt").exists(), "the pipeline stops at the chapter that has run"


def test_pipeline_overwrite_reaches_the_scripts_that_declare_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "REPO", tmp_path)
    monkeypatch.setattr(pipeline, "CHAPTERS", fake_chapters(tmp_path, refuse=True))
    pipeline.main(["--overwrite"])
    assert (tmp_path / "args1.txt").read_text() == "--preset tiny --overwrite"
    assert (tmp_path / "args2.txt").read_text() == "--preset tiny"  # a script without the flag is not given it


def test_pipeline_trains_the_direct_answer_control_only_when_asked(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(pipeline.subprocess, "run", lambda command, cwd: commands.append(command[1:]) or
                        argparse.Namespace(returncode=0))
    pipeline.main(["--start", "4", "--stop", "4", "--overwrite"])
    assert [c[0].split("/")[-1] for c in commands] == ["sft.py"]
    commands.clear()
    pipeline.main(["--start", "4", "--stop", "4", "--direct-sft", "--overwrite", "--device", "cpu"])
    assert commands[1][1:] == ["--preset", "tiny", "--math-style", "direct", "--out-dir", "runs/04_sft_direct",
                               "--device", "cpu", "--overwrite"]


def test_pipeline_trains_grpo_at_the_tiny_preset_only_when_asked(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(pipeline.subprocess, "run", lambda command, cwd: commands.append(command[1:]) or
                        argparse.Namespace(returncode=0))
    pipeline.main(["--start", "5", "--stop", "5", "--overwrite"])
    assert commands == [[str(pipeline.REPO / "05_rlhf" / "rlhf.py"), "--preset", "tiny", "--overwrite"]]
    commands.clear()
    pipeline.main(["--start", "5", "--stop", "5", "--grpo", "--overwrite"])
    assert commands[0][1:] == ["--preset", "tiny", "--stages", "all", "--overwrite"]


def test_pipeline_dry_run_passes_the_flag_and_the_runs_folder_and_leaves_out_the_rest(tmp_path, monkeypatch, capsys):
    commands = []
    monkeypatch.setattr(pipeline.subprocess, "run", lambda command, cwd: commands.append(command[1:]) or
                        argparse.Namespace(returncode=0))
    pipeline.main(["--preset", "gpt2", "--dry-run", "--device", "cpu", "--data", "my.txt"])
    scripts = [c[0].split("/")[-1] for c in commands]
    assert scripts == ["pretrain.py", "sft.py", "rlhf.py", "quantize.py", "evaluate.py"]
    assert all("--dry-run" in c and c[1:3] == ["--preset", "gpt2"] for c in commands)
    assert commands[0][3:] == ["--out-dir", "runs/dry-run/03_pretrain", "--device", "cpu", "--data", "my.txt",
                               "--dry-run"]
    assert commands[1][3:7] == ["--base", "runs/dry-run/03_pretrain/ckpt.pt", "--out-dir", "runs/dry-run/04_sft"]
    assert "--data" not in commands[1] and ["--runs-dir", "runs/dry-run"] == commands[4][3:5]
    out = capsys.readouterr().out
    assert "== 01_tokenizer: no --dry-run" in out and "== 08_multimodal: no --dry-run" in out
    commands.clear()  # a dry run that has run is kept, as any run is, under its own runs folder
    (tmp_path / "03_pretrain").mkdir()
    (tmp_path / "03_pretrain" / "ckpt.pt").write_text("an earlier dry run")
    with pytest.raises(SystemExit):
        cli.run(pipeline.main, ["--dry-run", "--runs-dir", str(tmp_path), "--start", "3"])
    assert commands == [] and f"({tmp_path / '03_pretrain' / 'ckpt.pt'} exists)" in capsys.readouterr().out


# ---- chapter 03: show_world.py

import show_world  # noqa: E402


@pytest.mark.parametrize("argv, message", [
    (["--bytes", "-5"], "error: argument --bytes: '-5' must be at least 1"),
    (["--out", "FILE"], "error: --out FILE already exists: pass --overwrite to replace it"),
    (["--out", "DIR"], "error: --out DIR is a folder"),
])
def test_show_world_bad_input_is_one_line_and_keeps_the_file(tmp_path, capsys, argv, message):
    (tmp_path / "FILE").write_text("my notes")
    (tmp_path / "DIR").mkdir()
    argv = [str(tmp_path / a) if a in ("FILE", "DIR") else a for a in argv]
    code, err = run_script(show_world.main, argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message.replace("FILE", str(tmp_path / "FILE"))
                                                                  .replace("DIR", str(tmp_path / "DIR"))), lines
    assert (tmp_path / "FILE").read_text() == "my notes"
    show_world.main(["--out", str(tmp_path / "FILE"), "--bytes", "2000", "--overwrite"])
    assert (tmp_path / "FILE").read_text().count("<|endoftext|>") >= 1


# ---- the benchmark scripts of chapters 01 and 02

import bench_gpt  # noqa: E402
import bench_tokenizer  # noqa: E402


@pytest.mark.parametrize("main, argv, message", [
    (bench_tokenizer.main, ["ROOT/missing.txt"], "error: corpus ROOT/missing.txt not found"),
    (bench_tokenizer.main, ["--repeats", "0"], "error: argument --repeats: '0' must be at least 1"),
    (bench_gpt.main, ["--rounds", "0"], "error: argument --rounds: '0' must be at least 1"),
    (bench_gpt.main, ["--device", "tpu"], "error: --device tpu: use cpu, cuda or mps"),
])
def test_benchmarks_bad_input_is_one_line(tmp_path, capsys, main, argv, message):
    argv = [a.replace("ROOT", str(tmp_path)) for a in argv]
    code, err = run_script(main, argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message.replace("ROOT", str(tmp_path))), lines


# ---- chapter 06: quantize.py and chat_quantized.py

import chat_quantized  # noqa: E402
import quantize  # noqa: E402


@pytest.fixture(scope="module")
def quantize_inputs(tmp_path_factory):
    """A tiny chat checkpoint (random weights, Linear widths 32 and 128) with its tokenizer and token files."""
    import numpy as np
    import torch

    import bpe
    import checkpoint
    from chat_format import add_chat_tokens
    from dataset import write_tokens
    from gpt import GPT, GPTConfig

    root = tmp_path_factory.mktemp("quantize_bad")
    text = "Mia lives in Sherby. Sam has a red lamp. " * 200
    tokenizer = add_chat_tokens(bpe.train_bpe(text, 270, special_tokens=["<|endoftext|>"]))
    tokenizer.save(root / "tokenizer")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    checkpoint.save_checkpoint(root / "ckpt.pt", {"model": model.state_dict(), "tokenizer": str(root / "tokenizer"), "stage": "sft",
                                                  "model_config": checkpoint.model_config_dict(model)})
    ids = np.array(tokenizer.encode_ordinary(text))
    write_tokens(ids, root / "data" / "train.bin", tokenizer.vocab_size)
    write_tokens(ids, root / "data" / "val.bin", tokenizer.vocab_size)
    torch.save({"weights": torch.zeros(3), "step": 1}, root / "not_a_model.pt")
    (root / "earlier_run").mkdir()
    (root / "earlier_run" / "results.md").write_text("# an earlier run")
    return root


@pytest.mark.parametrize("argv, message", [
    (["--bits", "9"], "error: --bits 9: bits=9: choose an integer from 2 to 8"),
    (["--bits", "1,4"], "error: --bits 1,4: bits=1: choose an integer from 2 to 8"),
    (["--bits", "four"], "error: --bits 'four': give integers from 2 to 8"),
    (["--group-size", "48"], "error: group size 48 does not divide the width 32: choose a divisor of 32 such as [32]"),
    (["--group-size", "0"], "error: argument --group-size: '0' must be at least 1"),
    (["--ckpt", "ROOT/not_a_model.pt"], "error: ROOT/not_a_model.pt is not a bytes2chat checkpoint"),
    (["--ckpt", "ROOT/missing.pt"], "error: --ckpt ROOT/missing.pt: no such file"),
    (["--out-dir", "ROOT/earlier_run"], "error: ROOT/earlier_run already holds a run (results.md): pass --overwrite"),
    (["--methods", "gptq5"], "error: --methods 'gptq5': unknown ['gptq5']"),
])
def test_quantize_bad_input_is_one_line(quantize_inputs, capsys, argv, message):
    root = quantize_inputs
    defaults = {"--ckpt": str(root / "ckpt.pt"), "--data-dir": str(root / "data"), "--out-dir": str(root / "new_run")}
    argv = [a.replace("ROOT", str(root)) for a in argv]
    for flag, value in defaults.items():
        if flag not in argv:
            argv += [flag, value]
    code, err = run_script(quantize.main, argv + ["--device", "cpu"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message.replace("ROOT", str(root))), lines
    assert not (root / "new_run").exists()  # nothing written before the input was checked


def test_chat_quantized_without_a_model_says_what_to_run(tmp_path, capsys):
    code, err = run_script(chat_quantized.main, ["--ckpt", str(tmp_path / "missing.pt"), "--prompt", "hi"], capsys)
    assert code == 2 and "python 06_quantize/quantize.py --preset tiny" in err and len(err.strip().splitlines()) == 1


def test_chat_quantized_web_without_a_model_says_what_to_run(tmp_path, capsys, monkeypatch):
    argv = ["--web", "--port", "0", "--ckpt", str(tmp_path / "missing.pt")]
    code, err = run_script(chat_quantized.main, argv, capsys)
    assert code == 2 and "python 06_quantize/quantize.py --preset tiny" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(chat_quantized, "RUNS", tmp_path)  # nothing under runs/ at all
    code, err = run_script(chat_quantized.main, ["--web", "--port", "0"], capsys)
    assert code == 2 and err.startswith(f"error: no chat model under {tmp_path}: fine-tune one") and len(
        err.strip().splitlines()) == 1


# ---- chapter 07: evaluate.py


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "math,maths"], "unknown task 'maths'; the tasks are perplexity, multiple_choice"),
    (["--ckpt", "{tmp}/nothing/ckpt.pt"], "no checkpoint at {tmp}/nothing/ckpt.pt"),
    (["--samples", "5", "--pass-k", "1,10"], "pass@10 needs k between 1 and the number of samples n = 5"),
    (["--pass-k", "one"], "--pass-k 'one': give comma-separated integers"),
    (["--samples", "0"], "argument --samples: '0' must be at least 1"),
    (["--runs-dir", "{tmp}/no_runs"], "--runs-dir {tmp}/no_runs is not a folder"),
])
def test_evaluate_bad_input_is_one_line(tmp_path, capsys, argv, message):
    import evaluate
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    (tmp_path / "runs").mkdir()
    defaults = ["--out-dir", str(tmp_path / "out")] + ([] if "--runs-dir" in argv else ["--runs-dir", str(tmp_path / "runs")])
    code, err = run_script(evaluate.main, argv + defaults, capsys)
    assert code == 2
    assert message.replace("{tmp}", str(tmp_path)) in err and len(err.strip().splitlines()) == 1, err


def test_evaluate_with_no_models_says_to_run_the_pipeline(tmp_path, capsys):
    import evaluate
    (tmp_path / "runs").mkdir()
    code, err = run_script(evaluate.main, ["--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")],
                           capsys)
    assert code == 2 and "no models to evaluate" in err and "python pipeline.py" in err


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
        checkpoint.save_checkpoint(root / name / "ckpt.pt", {"model": model.state_dict(), "tokenizer": str(root / name / "tokenizer"), "stage": name,
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
    (["--sft", "ROOT/base/ckpt.pt"], "is not a chat model: it is a base model"),
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


# ---- chapters 05, 06 and 07: every script reads models through chapter 03's loader, so a damaged, cut-short,
# wrong-stage or re-tokenized checkpoint is one line everywhere, and a failing or interrupted run leaves the
# earlier runs as they were (issue 22).

import model_loader  # noqa: E402
import quant_checkpoint  # noqa: E402, F401  (registers the quantized format)
import reward_model as reward_model_module  # noqa: E402  (registers the reward model's format)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A chain of tiny checkpoints as the pipeline leaves them (random weights, widths 32 and 128): base (with
    its pretraining tokens), sft (from base), grpo (from sft), a reward model, and the ways a checkpoint goes
    wrong: empty, cut short, its tokenizer replaced by another, a half-trained reward model."""
    import numpy as np
    import torch

    import bpe
    import checkpoint
    import dataset
    import world
    from chat_format import add_chat_tokens
    from dataset import write_tokens
    from gpt import GPT, GPTConfig

    root = tmp_path_factory.mktemp("zoo")
    text = world.make_corpus(20_000)
    base_tok = bpe.train_bpe(text, 300, special_tokens=[world.EOT])
    chat_tok = add_chat_tokens(base_tok)
    ids = np.array(base_tok.encode_ordinary(text))
    write_tokens(ids[:-2000], root / "data" / "train.bin", base_tok.vocab_size)
    write_tokens(ids[-2000:], root / "data" / "val.bin", base_tok.vocab_size)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=chat_tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    common = {"model": model.state_dict(), "model_config": checkpoint.model_config_dict(model), "step": 2}

    def save(name, tok, **meta):
        tok.save(root / name / "tokenizer")
        checkpoint.save_checkpoint(root / name / "ckpt.pt", {**common, "tokenizer": str(root / name / "tokenizer"),
                                                            "tokenizer_sha256": dataset.tokenizer_fingerprint(tok), **meta})

    save("base", base_tok, stage="base", role="base", data={"dir": str(root / "data")})
    save("sft", chat_tok, stage="sft", role="chat", base=str(root / "base" / "ckpt.pt"))
    save("grpo", chat_tok, stage="grpo", role="chat", started_from=str(root / "sft" / "ckpt.pt"),
         rl_config={"steps": 2})
    save("orphan", chat_tok, stage="sft", role="chat")  # says nothing of the data its base was trained on
    rm = reward_model_module.RewardModel(model)
    save("reward_model", chat_tok, stage="reward_model", role="scorer", format="reward_model",
         train_config={"steps": 2})
    checkpoint.save_checkpoint(root / "reward_model" / "ckpt.pt", {
        **checkpoint.read_checkpoint(root / "reward_model" / "ckpt.pt"), "model": rm.state_dict()})
    save("changed_tokenizer", chat_tok, stage="sft", role="chat")
    add_chat_tokens(bpe.train_bpe(text[:5000], 290, special_tokens=[world.EOT])).save(root / "changed_tokenizer" / "tokenizer")
    for name, cut in (("empty", 0), ("cut_short", 0.6)):
        shutil.copytree(root / "sft", root / name)
        data = (root / "sft" / "ckpt.pt").read_bytes()
        (root / name / "ckpt.pt").write_bytes(data[:int(len(data) * cut)])
    big = bpe.train_bpe(text, 400, special_tokens=[world.EOT])  # tokens a 300-id model cannot read
    big_ids = np.array(big.encode_ordinary(text))
    write_tokens(big_ids, root / "other_data" / "train.bin", big.vocab_size)
    write_tokens(big_ids, root / "other_data" / "val.bin", big.vocab_size)
    return root


def test_the_zoo_loads_where_it_should(zoo):
    """The fixture's good checkpoints load through the one loader (so the refusals below are the cases')."""
    assert load_model(zoo / "sft" / "ckpt.pt", stage="chat")[2]["stage"] == "sft"
    assert load_model(zoo / "grpo" / "ckpt.pt", stage="chat")[2]["stage"] == "grpo"
    scorer, _, meta = load_model(zoo / "reward_model" / "ckpt.pt", stage="reward_model")
    assert isinstance(scorer, reward_model_module.RewardModel) and meta["role"] == "scorer"


def zoo_case(main, argv, zoo, tmp_path, capsys):
    """Run a script on the zoo with ZOO/TMP placeholders; one line, exit 2, the zoo unchanged, nothing written."""
    argv = [a.replace("ZOO", str(zoo)).replace("TMP", str(tmp_path)) for a in argv]
    line = refused(main, argv, capsys, zoo)[0]
    assert not (tmp_path / "out").exists(), "a refused run must not write its outputs"
    return line


BAD_CHECKPOINTS = [  # (checkpoint, what the line must say)
    ("empty", "ZOO/empty/ckpt.pt is not a checkpoint written by save_checkpoint"),
    ("cut_short", "ZOO/cut_short/ckpt.pt is not a checkpoint written by save_checkpoint"),
    ("changed_tokenizer", "ZOO/changed_tokenizer/ckpt.pt was trained with another tokenizer"),
    ("reward_model", "ZOO/reward_model/ckpt.pt is not a chat model: it is a reward model"),
    ("base", "ZOO/base/ckpt.pt is not a chat model: it is a base model"),
]


@pytest.mark.parametrize("name, message", BAD_CHECKPOINTS)
def test_rlhf_refuses_a_bad_sft_checkpoint(zoo, tmp_path, capsys, name, message):
    line = zoo_case(rlhf.main, ["--sft", f"ZOO/{name}/ckpt.pt", "--out-dir", "TMP/out", "--device", "cpu"], zoo,
                    tmp_path, capsys)
    assert message.replace("ZOO", str(zoo)) in line, line


@pytest.mark.parametrize("name, message", BAD_CHECKPOINTS)
def test_quantize_refuses_a_bad_checkpoint(zoo, tmp_path, capsys, name, message):
    argv = ["--ckpt", f"ZOO/{name}/ckpt.pt", "--out-dir", "TMP/out", "--device", "cpu", "--group-size", "32"]
    line = zoo_case(quantize.main, argv, zoo, tmp_path, capsys)
    assert message.replace("ZOO", str(zoo)) in line, line


@pytest.mark.parametrize("name, message", BAD_CHECKPOINTS)
def test_chat_quantized_refuses_a_bad_checkpoint(zoo, tmp_path, capsys, name, message):
    line = zoo_case(chat_quantized.main, ["--ckpt", f"ZOO/{name}/ckpt.pt", "--prompt", "hi"], zoo, tmp_path, capsys)
    assert message.replace("ZOO", str(zoo)) in line, line


@pytest.mark.parametrize("name, message", BAD_CHECKPOINTS[:3])
def test_evaluate_refuses_a_bad_checkpoint_given_with_ckpt(zoo, tmp_path, capsys, name, message):
    import evaluate
    (tmp_path / "runs").mkdir()
    argv = ["--runs-dir", "TMP/runs", "--ckpt", f"ZOO/{name}/ckpt.pt", "--out-dir", "TMP/out", "--device", "cpu"]
    line = zoo_case(evaluate.main, argv, zoo, tmp_path, capsys)
    assert message.replace("ZOO", str(zoo)) in line, line


@pytest.mark.parametrize("argv, message", [
    (["--bits", "0"], "--bits 0: bits=0: choose an integer from 2 to 8"),
    (["--bits", "1"], "--bits 1: bits=1: choose an integer from 2 to 8"),
    (["--bits", "9"], "--bits 9: bits=9: choose an integer from 2 to 8"),
    (["--bits", "16"], "--bits 16: bits=16: choose an integer from 2 to 8"),
    (["--bits", "4.5"], "--bits '4.5': give integers from 2 to 8"),
    (["--bits", ","], "--bits ',': give at least one bit width"),
    (["--group-size", "48"], "group size 48 does not divide the width 32"),
    (["--group-size", "-1"], "argument --group-size: '-1' must be at least 1"),
    (["--calib-samples", "0"], "argument --calib-samples: '0' must be at least 1"),
    (["--eval-per-task", "0"], "argument --eval-per-task: '0' must be at least 1"),
    (["--max-new-tokens", "x"], "argument --max-new-tokens: 'x'"),
    (["--ppl-batches", "0"], "argument --ppl-batches: '0' must be at least 1"),
    (["--threads", "0"], "argument --threads: '0' must be at least 1"),
    (["--seed", "-3"], "argument --seed: '-3' must be 0 or more"),
    (["--methods", ","], "--methods ',': unknown []"),
    (["--device", "tpu"], "--device tpu: unknown device"),
    (["--data-dir", "TMP/nowhere"], "no train.bin/val.bin in TMP/nowhere: pass --data-dir"),
    (["--data-dir", "ZOO/other_data"], "the tokens in ZOO/other_data were made with a 400-id tokenizer"),
    (["--ckpt", "ZOO/orphan/ckpt.pt"], "does not say which pretraining tokens its base model was trained on"),
])
def test_quantize_flags_out_of_range_are_one_line(zoo, tmp_path, capsys, argv, message):
    defaults = {"--ckpt": "ZOO/sft/ckpt.pt", "--out-dir": "TMP/out", "--group-size": "32", "--device": "cpu"}
    for flag, value in defaults.items():
        if flag not in argv:
            argv = argv + [flag, value]
    line = zoo_case(quantize.main, argv, zoo, tmp_path, capsys)
    assert message.replace("ZOO", str(zoo)).replace("TMP", str(tmp_path)) in line, line


@pytest.mark.parametrize("argv, message", [
    (["--ppo-steps", "-5"], "argument --ppo-steps: '-5' must be at least 1"),
    (["--grpo-steps", "0"], "argument --grpo-steps: '0' must be at least 1"),
    (["--rm-steps", "1.5"], "argument --rm-steps: '1.5'"),
    (["--dpo-steps", "x"], "argument --dpo-steps: 'x'"),
    (["--kl-coef", "-0.1"], "argument --kl-coef: '-0.1' must be 0 or more"),
    (["--kl-coef", "nan"], "argument --kl-coef: 'nan'"),
    (["--kl-target", "0"], "argument --kl-target: '0' must be greater than 0"),
    (["--ppo-lr=-1e-5"], "argument --ppo-lr: '-1e-5' must be greater than 0"),
    (["--grpo-lr", "inf"], "argument --grpo-lr: 'inf'"),
    (["--labeller-tau", "-1"], "argument --labeller-tau: '-1' must be 0 or more"),
    (["--length-bias", "nan"], "argument --length-bias: 'nan'"),
    (["--eval-per-task", "0"], "argument --eval-per-task: '0' must be at least 1"),
    (["--stop-at", "0"], "argument --stop-at: '0' must be at least 1"),
    (["--seed", "-1"], "argument --seed: '-1' must be 0 or more"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["--stages", ""], "--stages '': name stages from preferences"),
    (["--device", "tpu"], "--device tpu: unknown device"),
])
def test_rlhf_flags_out_of_range_are_one_line(zoo, tmp_path, capsys, argv, message):
    argv = ["--sft", "ZOO/sft/ckpt.pt", "--out-dir", "TMP/out"] + argv + ([] if "--device" in argv else ["--device", "cpu"])
    line = zoo_case(rlhf.main, argv, zoo, tmp_path, capsys)
    assert message in line, line


@pytest.mark.parametrize("argv, message", [
    (["--temp", "-1"], "argument --temp: '-1' must be 0 or more"),
    (["--top-k", "0"], "argument --top-k: '0' must be at least 1"),
    (["--max-new-tokens", "0"], "argument --max-new-tokens: '0' must be at least 1"),
    (["--seed", "-1"], "argument --seed: '-1' must be 0 or more"),
    (["--port", "-1"], "argument --port: '-1' must be 0 or more"),
    (["--device", "tpu"], "--device tpu: unknown device"),
    (["--web", "--system", "be brief"], "--web has no --system"),
])
def test_chat_quantized_flags_out_of_range_are_one_line(zoo, tmp_path, capsys, argv, message):
    argv = ["--ckpt", "ZOO/sft/ckpt.pt"] + argv + ([] if "--web" in argv else ["--prompt", "hi"])
    line = zoo_case(chat_quantized.main, argv, zoo, tmp_path, capsys)
    assert message in line, line


@pytest.mark.parametrize("argv, message", [
    (["--models", "gpt5"], "--models 'gpt5': no model is called gpt5; the models under TMP/runs are sft"),
    (["--models", ","], "--models ',': name a model"),
    (["--tasks", "math,cod"], "unknown task 'cod'"),
    (["--samples", "0"], "argument --samples: '0' must be at least 1"),
    (["--samples", "ten"], "argument --samples: 'ten'"),
    (["--pass-k", "0"], "pass@0 needs k between 1 and the number of samples"),
    (["--threads", "0"], "argument --threads: '0' must be at least 1"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["--device", "tpu"], "--device tpu: unknown device"),
    (["--ckpt", "ZOO/reward_model/ckpt.pt", "--models", "reward_model"],
     "--models 'reward_model': no model is called reward_model"),
])
def test_evaluate_flags_out_of_range_are_one_line(zoo, tmp_path, capsys, argv, message):
    import evaluate
    shutil.copytree(zoo / "sft", tmp_path / "runs" / "sft")
    argv = ["--runs-dir", "TMP/runs", "--out-dir", "TMP/out"] + argv
    line = zoo_case(evaluate.main, argv, zoo, tmp_path, capsys)
    assert message.replace("TMP", str(tmp_path)) in line, line


def test_evaluate_where_no_model_loads_writes_no_report(zoo, tmp_path, capsys):
    """A runs folder holding only a half-written run (a cut-short checkpoint) and a model whose tokenizer
    changed: no report, one line naming the file, exit 2."""
    import evaluate
    for name in ("cut_short", "changed_tokenizer"):
        shutil.copytree(zoo / name, tmp_path / "runs" / name)
    line = zoo_case(evaluate.main, ["--runs-dir", "TMP/runs", "--out-dir", "TMP/out", "--device", "cpu"], zoo,
                    tmp_path, capsys)
    assert "none of the 1 model(s) could be loaded" in line and "was trained with another tokenizer" in line, line


QUANTIZE_FAST = ["--bits", "4", "--group-size", "32", "--calib-samples", "2", "--eval-per-task", "1",
                 "--max-new-tokens", "2", "--ppl-batches", "1", "--device", "cpu",
                 "--workers", "1"]  # in this process, where monkeypatch reaches build (workers: test_06)


def test_quantize_a_policy_finds_its_data_and_an_interrupted_overwrite_loses_nothing(zoo, tmp_path, capsys,
                                                                                     monkeypatch):
    """A chapter-05 policy (no --data-dir): its data is found through started_from -> base -> data. Then
    --overwrite stopped by Ctrl-C half-way leaves the earlier run byte for byte as it was (it used to delete
    the earlier model folders first); a rerun without --overwrite refuses, one with it replaces the run and
    removes the model folders the new run does not make."""
    out = tmp_path / "out"
    argv = ["--ckpt", str(zoo / "grpo" / "ckpt.pt"), "--out-dir", str(out)] + QUANTIZE_FAST
    quantize.main(argv + ["--methods", "rtn4,gptq4"])
    results = json.loads((out / "results.json").read_text())
    assert results["data_dir"] == str(zoo / "data") and [r["method"] for r in results["rows"]] == ["fp32", "rtn4", "gptq4"]
    assert load_model(out / "gptq4" / "ckpt.pt", stage="chat")[2]["source_stage"] == "grpo"
    before = tree_of(out)

    built = []
    real_build = quantize.build

    def interrupted_build(stage, *args):
        built.append(stage)
        if len(built) == 3:  # fp32, rtn4, then Ctrl-C in gptq4
            raise KeyboardInterrupt
        return real_build(stage, *args)

    monkeypatch.setattr(quantize, "build", interrupted_build)
    code, err = run_script(quantize.main, argv + ["--methods", "rtn4,gptq4", "--overwrite"], capsys)
    assert code == 130 and built == ["fp32", "rtn4", "gptq4"]
    assert tree_of(out) == before and not (out / quantize.STAGING).exists()
    monkeypatch.setattr(quantize, "build", real_build)

    line = refused(quantize.main, argv + ["--methods", "rtn4"], capsys, out)[0]
    assert "already holds a run (results.md): pass --overwrite" in line
    quantize.main(argv + ["--methods", "rtn4", "--overwrite"])
    assert (out / "rtn4" / "ckpt.pt").is_file() and not (out / "gptq4").exists() and not (out / quantize.STAGING).exists()
    assert [r["method"] for r in json.loads((out / "results.json").read_text())["rows"]] == ["fp32", "rtn4"]


def test_rlhf_refuses_to_train_ppo_against_a_reward_model_stopped_half_way(zoo, tmp_path, capsys):
    """A reward model whose run was stopped (Ctrl-C, --stop-at) is not used by PPO: one line saying how to
    finish it; the stopped run is left as it was."""
    import checkpoint
    out = tmp_path / "run"
    shutil.copytree(zoo / "reward_model", out / "reward_model")
    saved = checkpoint.read_checkpoint(out / "reward_model" / "ckpt.pt")
    checkpoint.save_checkpoint(out / "reward_model" / "ckpt.pt", {**saved, "step": 1})
    argv = ["--sft", str(zoo / "sft" / "ckpt.pt"), "--out-dir", str(out), "--stages", "ppo", "--device", "cpu"]
    line = refused(rlhf.main, argv, capsys, out)[0]
    assert "reward_model/ckpt.pt is a run stopped at step 1 of 2: finish it first with" in line
    assert "--resume --stages reward_model" in line and not (out / "ppo").exists()


@pytest.mark.parametrize("argv, message", [
    (["--k", "0"], "argument --k: '0' must be at least 1"),
    (["--per-cell", "x"], "argument --per-cell: 'x' is not an integer"),
    (["--seed", "-1"], "argument --seed: '-1' must be 0 or more"),
    (["--models", "steps,other"], "--models takes steps, direct or steps,direct"),
    (["--steps-model", "TMP/none.pt", "--models", "steps"], "no checkpoint at TMP/none.pt"),
])
def test_cot_study_bad_input_is_one_line(tmp_path, capsys, argv, message):
    import cot_study
    code, err = run_script(cot_study.main, [a.replace("TMP", str(tmp_path)) for a in argv] +
                           ["--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message.replace("TMP", str(tmp_path)) in err, err
    assert not (tmp_path / "out").exists()
