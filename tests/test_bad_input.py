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
    assert err.strip().splitlines() == [
        "error: no checkpoint at x.pt: train first  (BYTES2CHAT_DEBUG=1 shows the traceback)"]
    assert "Traceback" not in err


def test_run_names_an_unexpected_exception_type(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def main(argv):
        raise ZeroDivisionError("division by zero")
    code, err = run_script(main, [], capsys)
    assert code == 2 and err.startswith("error: ZeroDivisionError: division by zero")


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
        parser = argparse.ArgumentParser()
        parser.add_argument("--steps", type=cli.positive_int)
        return parser.parse_args(argv)
    code, err = run_script(main, ["--steps", "0"], capsys)
    assert code == 2 and "argument --steps: '0' must be at least 1" in err

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
    with pytest.raises(FileExistsError, match="--resume to continue it, --overwrite to start over"):
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
