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
    07 evaluate.py         reads every runs/*/**/ckpt.pt -> runs/07_eval/ (report.md, report.png, ...)
The pipeline stops with a message at the first chapter not built yet.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent

# (chapter folder, its main script): the order is the order of the pipeline.
CHAPTERS = [
    ("01_tokenizer", "train_tokenizer.py"),
    ("02_transformer", "tour_gpt.py"),
    ("03_pretrain", "pretrain.py"),
    ("04_sft", "sft.py"),
    ("05_rlhf", "rlhf.py"),
    ("06_quantize", "quantize.py"),
    ("07_eval", "evaluate.py"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="preset passed to every chapter script (default: tiny)")
    parser.add_argument("--start", type=int, default=1, help="first chapter to run, e.g. 3 to skip 01-02 (default: 1)")
    parser.add_argument("--stop", type=int, default=len(CHAPTERS), help="last chapter to run (default: all)")
    parser.add_argument("--device", default=None, help="passed to the scripts that train (cuda, mps, cpu)")
    args = parser.parse_args()

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
        print(f"\n== {chapter}: {' '.join(command[1:])}", flush=True)
        start = time.time()
        result = subprocess.run(command, cwd=REPO)
        timings.append((chapter, time.time() - start))
        if result.returncode != 0:
            print(f"\n== {chapter} failed (exit code {result.returncode}); fix it and rerun with --start {number}.")
            sys.exit(result.returncode)

    print("\n== pipeline summary")
    for chapter, seconds in timings:
        print(f"  {chapter:<16} {seconds:7.1f} s")
    print(f"  outputs are under {REPO / 'runs'}")
    report = REPO / "runs" / "07_eval" / "report.md"
    if timings and timings[-1][0] == "07_eval" and report.exists():  # the pipeline ends with the evaluation's table
        table = report.read_text(encoding="utf-8").split("## Every model on every task\n\n")[-1].split("\n\n")[0]
        print(f"\n== the report: {report}\n{table}")


if __name__ == "__main__":
    main()
