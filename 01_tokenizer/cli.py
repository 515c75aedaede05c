"""What every chapter's script shares: one clear line for bad input, and runs that never destroy
earlier work. This is plumbing, not a lesson: the chapters' ideas live in their other modules.

Library code raises ordinary exceptions (ValueError, FileNotFoundError, ...) whose message names the
problem and the fix. A script ends with

    if __name__ == "__main__":
        cli.run(main)

and `run` turns such an exception into one line on stderr and exit code 2, never a traceback. Set
BYTES2CHAT_DEBUG=1, or pass --debug to any script, to see the full traceback instead.

The rules a script follows before it writes anything:
- every number it is given is checked by its argparse `type` (positive_int, finite_float, ...);
- `check_out_dir` refuses to start a new run in a folder that already holds one, unless it was asked
  to continue it (--resume) or to replace it (--overwrite);
- files are written through `atomic_output`, so a crash leaves the old file or the new one, never half.
"""
import argparse
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

DEBUG_ENV = "BYTES2CHAT_DEBUG"


EXPECTED = (ValueError, OSError, RuntimeError, KeyError, TypeError)  # bad input, missing files, no such device


def one_line(error):
    """The message of `error` on one line (a traceback-free summary a person can act on).

    Example: one_line(ValueError("no base model at x.pt.\\n  Pretrain one first"))
        -> 'no base model at x.pt. Pretrain one first'
    """
    text = " ".join(str(error).split())
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = f"missing key {error.args[0]!r}"
    if not text or not isinstance(error, EXPECTED):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


def run(main, argv=None):
    """Call `main(argv)`; turn any exception into "error: <one line>" on stderr and exit code 2 (an
    unexpected kind of exception, likely a bug rather than bad input, also says how to see its traceback).

    Ctrl-C exits with code 130 and one line. `--debug` anywhere in the arguments (it is removed before
    `main` sees them) or BYTES2CHAT_DEBUG=1 lets the exception through with its traceback.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [arg for arg in args if arg != "--debug"]
    try:
        return main(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise  # argparse's own usage errors and --help, and a script's deliberate exit code
    except BrokenPipeError:  # whoever read our output stopped (`| head`): not an error, leave quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail
        sys.exit(0)
    except Exception as error:  # noqa: BLE001  (the one place that turns every error into a line)
        if debug:
            raise
        hint = "" if isinstance(error, EXPECTED) else f"  (a bug? {DEBUG_ENV}=1 shows the traceback)"
        print(f"error: {one_line(error)}{hint}", file=sys.stderr)
        sys.exit(2)


# ---- arguments: a bad flag is one line too, and nonsense numbers are refused where they are typed

class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line ("error: argument --steps: ... (see --help)")
    instead of the whole usage block. --help still prints everything."""

    def error(self, message):
        print(f"error: {message}  (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _number(kind, text, ok, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be {what}")
    return value


def positive_int(text):
    """argparse type: an integer >= 1 (sizes, steps, counts)."""
    return _number(int, text, lambda v: v >= 1, "at least 1")


def non_negative_int(text):
    """argparse type: an integer >= 0 (0 usually means "none" or "off")."""
    return _number(int, text, lambda v: v >= 0, "0 or more")


def finite_float(text):
    """argparse type: any finite number (refuses nan and inf)."""
    return _number(float, text, lambda v: True, "finite")


def positive_float(text):
    """argparse type: a finite number > 0 (learning rates, temperatures that cannot be 0)."""
    return _number(float, text, lambda v: v > 0, "greater than 0")


def non_negative_float(text):
    """argparse type: a finite number >= 0 (weight decay, temperature where 0 means greedy)."""
    return _number(float, text, lambda v: v >= 0, "0 or more")


def fraction(text):
    """argparse type: a number in [0, 1) (dropout, a validation share)."""
    return _number(float, text, lambda v: 0 <= v < 1, "in [0, 1)")


# ---- outputs: never destroy an earlier run

def check_out_dir(out_dir, resume=False, overwrite=False, marker="ckpt.pt", resumable=True):
    """Check, before anything is written, that a run may write into `out_dir`.

    A folder holding `marker` (the run's checkpoint) is an earlier run: starting a new one there would
    destroy it, so that needs --overwrite; --resume needs the marker to be there. `resumable=False`
    for a script that has no --resume (the message then offers only --overwrite). Raises
    FileExistsError / FileNotFoundError / NotADirectoryError with the fix in the message.
    Returns out_dir as a Path (not created: create it once every input has been validated).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {out_dir} is a file, not a folder: give a folder")
    has_run = (out_dir / marker).exists()
    if resume and not has_run:
        raise FileNotFoundError(f"--resume: there is no {marker} in {out_dir} to continue; "
                                f"drop --resume to start a new run, or point --out-dir at the run")
    if has_run and not resume and not overwrite:
        fixes = "pass --resume to continue it, --overwrite to start over," if resumable else "pass --overwrite to replace it"
        raise FileExistsError(f"{out_dir} already holds a run ({marker}): {fixes} or give another --out-dir")
    return out_dir


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside `path`; when the block ends without an error, the temporary file
    replaces `path` in one step (os.replace), otherwise it is removed. A reader, or a run that crashes
    half way, never sees a half-written file.

    Example: with atomic_output(out_dir / "ckpt.pt") as tmp:
                 torch.save(checkpoint, tmp)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path, text):
    """Write `text` (UTF-8) to `path` through atomic_output."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
