"""Run the whole bytes2chat pipeline, chapter by chapter, at one preset (tiny by default).

Each chapter is a folder with one main script; this file only runs those scripts in order, each as
its own process, exactly as you would by hand:

    python 01_tokenizer/train_tokenizer.py --preset tiny
    python 02_transformer/tour_gpt.py --preset tiny
    ...

Every script writes its outputs under runs/<chapter>/. What reads what, by path:
    01 train_tokenizer.py  reads no other chapter (its own sample corpus, or --input FILE)
                           -> runs/01_tokenizer/tokenizer.tiktoken + .json
    02 tour_gpt.py         reads nothing -> runs/02_transformer/attention.png
    03 pretrain.py         reads nothing: it generates the mini-world and trains its own tokenizer on it
                           with chapter 01's train_bpe (not runs/01_tokenizer; --tokenizer PATH for that)
                           -> runs/03_pretrain/ (tokenizer, train.bin/val.bin, ckpt.pt)
    04 sft.py              reads runs/03_pretrain/ckpt.pt and the tokenizer it names -> runs/04_sft/
    06 quantize.py         reads chapter 05's best policy if 05 has run (runs/05_rlhf/best|ppo|grpo|dpo/ckpt.pt),
                           else runs/04_sft/ckpt.pt, and chapter 03's train.bin/val.bin -> runs/06_quantize/
    07 evaluate.py         reads every runs/*/**/ckpt.pt -> runs/07_eval/ (report.md, report.png, ...), and
                           runs/08_multimodal/summary.json when chapter 08 has run (its rows in the report)
    08 multimodal.py       reads runs/04_sft/ckpt.pt -> runs/08_multimodal/ (CLIP, LLaVA, tools, report.md)
The pipeline stops with a message at the first chapter not built yet. Run again after a finished run, a
chapter refuses to replace its outputs and the pipeline says how to go on: --overwrite redoes the
chapters (passed to every script that has the flag), --start N goes on from chapter N.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.append(str(REPO / "01_tokenizer"))
import cli  # noqa: E402  (one clear line for bad input)

# (chapter folder, its main script): the order is the order of the pipeline.
CHAPTERS = [
    ("01_tokenizer", "train_tokenizer.py"),
    ("02_transformer", "tour_gpt.py"),
    ("03_pretrain", "pretrain.py"),
    ("04_sft", "sft.py"),
    ("05_rlhf", "rlhf.py"),
    ("06_quantize", "quantize.py"),
    ("07_eval", "evaluate.py"),
    ("08_multimodal", "multimodal.py"),
]


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="preset passed to every chapter script (default: tiny)")
    parser.add_argument("--start", type=cli.positive_int, default=1,
                        help="first chapter to run, e.g. 3 to skip 01-02 (default: 1)")
    parser.add_argument("--stop", type=cli.positive_int, default=len(CHAPTERS),
                        help="last chapter to run (default: all)")
    parser.add_argument("--device", default=None, help="passed to the scripts that train (cuda, mps, cpu)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo chapters whose outputs exist, replacing them (passed to every script that has it)")
    args = parser.parse_args(argv)

    timings = []
    for number, (chapter, script) in enumerate(CHAPTERS, start=1):
        if not args.start <= number <= args.stop:
            continue
        path = REPO / chapter / script
        if not path.exists():
            print(f"\n== {chapter}: not built yet ({chapter}/{script} does not exist). The pipeline stops here.")
            break
        command = [sys.executable, str(path), "--preset", args.preset]
        if args.device and number >= 2:
            command += ["--device", args.device]
        if args.overwrite and "--overwrite" in path.read_text(encoding="utf-8"):  # the scripts that have the flag
            command += ["--overwrite"]
        print(f"\n== {chapter}: {' '.join(command[1:])}", flush=True)
        start = time.time()
        returncode, last_error = run_script(command)
        timings.append((chapter, time.time() - start))
        if returncode != 0:
            if "already holds a run" in last_error:  # a chapter refused to replace its earlier outputs
                print(f"\n== {chapter} has run before and its outputs are kept. Rerun with --overwrite to redo "
                      f"the chapters (replacing their outputs), or with --start {number + 1} to go on from the "
                      f"next chapter with these outputs.")
            else:
                print(f"\n== {chapter} failed (exit code {returncode}); fix it and rerun with --start {number}.")
            sys.exit(returncode)

    print("\n== pipeline summary")
    for chapter, seconds in timings:
        print(f"  {chapter:<16} {seconds:7.1f} s")
    print(f"  outputs are under {REPO / 'runs'}")
    report = REPO / "runs" / "07_eval" / "report.md"
    if timings and "07_eval" in [c for c, _ in timings] and report.exists():  # the pipeline ends with the evaluation's table
        table = report.read_text(encoding="utf-8").split("## Every model on every task\n\n")[-1].split("\n\n")[0]
        print(f"\n== the report: {report}\n{table}")


def run_script(command):
    """Run one chapter's script; its output goes straight through. Returns (exit code, its last stderr line)."""
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    last = ""
    for line in process.stderr:
        sys.stderr.write(line)
        last = line.strip() or last
    return process.wait(), last


if __name__ == "__main__":
    cli.run(main)
