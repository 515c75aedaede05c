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
       sft.py --math-style direct   (only with --direct-sft) -> runs/04_sft_direct/: chapter 07's control model
    05 rlhf.py             reads runs/04_sft/ckpt.pt -> runs/05_rlhf/ (preferences, reward_model, ppo, dpo, overopt;
                           grpo too at the gpt2 preset, or with --grpo: rlhf.py --stages all)
    06 quantize.py         reads chapter 05's PPO policy if 05 has run, else GRPO, DPO (runs/05_rlhf/ppo|grpo|dpo/ckpt.pt),
                           else runs/04_sft/ckpt.pt, and chapter 03's train.bin/val.bin -> runs/06_quantize/
    07 evaluate.py         reads every runs/*/**/ckpt.pt, by the stage each records (model_loader.find_models)
                           -> runs/07_eval/ (report.md, report.png, ...), and runs/08_multimodal/summary.json
                           when chapter 08 has run (its rows in the report)
    08 multimodal.py       reads runs/04_sft/ckpt.pt -> runs/08_multimodal/ (CLIP, LLaVA, tools, report.md)
The pipeline stops with a message at the first chapter not built yet. Run again after a finished run, it
finds a chapter's declared output and says how to go on instead of starting the chapter over it:
--overwrite redoes the chapters (passed to every script that declares the flag), --start N goes on from
chapter N. --runs-dir DIR puts every chapter's outputs under DIR instead of runs/ (each script is given the
paths of what it reads and writes there).

    python pipeline.py --preset gpt2 --dry-run --device cpu

checks the GPU presets on a CPU before a GPU is rented: chapters 03-07 at their real model size and code paths
with tiny work (each script's --dry-run: 2 steps, a handful of prompts and items), into runs/dry-run/.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.append(str(REPO / "01_tokenizer"))
import cli  # noqa: E402  (one clear line for bad input)

# The steps, in order. Each declares its chapter folder and script, the arguments it gets besides --preset,
# the options it takes (the pipeline passes --overwrite, --device, --data and --dry-run only to a script that declares
# them), the file that says it has run (the pipeline then says how to go on instead of starting it over an earlier
# run), `paths`: the arguments that name every folder it reads and writes under the runs folder (passed with
# --runs-dir or --dry-run, "{runs}" replaced by it), and `when`: a step that runs only when its pipeline flag is
# given; `args_when`: arguments added only when a pipeline flag is given. A new chapter adds one entry.
CHAPTERS = [
    dict(folder="01_tokenizer", script="train_tokenizer.py", options={"overwrite"},
         output="runs/01_tokenizer/tokenizer.tiktoken", paths=["--out-dir", "{runs}/01_tokenizer"]),
    dict(folder="02_transformer", script="tour_gpt.py", options={"device"}, paths=["--out-dir", "{runs}/02_transformer"]),
    dict(folder="03_pretrain", script="pretrain.py", options={"overwrite", "device", "data", "dry_run"},
         output="runs/03_pretrain/ckpt.pt", paths=["--out-dir", "{runs}/03_pretrain"]),
    dict(folder="04_sft", script="sft.py", options={"overwrite", "device", "dry_run"}, output="runs/04_sft/ckpt.pt",
         paths=["--base", "{runs}/03_pretrain/ckpt.pt", "--out-dir", "{runs}/04_sft"]),
    dict(folder="04_sft", script="sft.py", options={"overwrite", "device", "dry_run"}, output="runs/04_sft_direct/ckpt.pt",
         args=["--math-style", "direct", "--out-dir", "runs/04_sft_direct"], when="direct_sft",
         paths=["--base", "{runs}/03_pretrain/ckpt.pt", "--out-dir", "{runs}/04_sft_direct"]),
    dict(folder="05_rlhf", script="rlhf.py", options={"overwrite", "device", "dry_run"},
         args_when={"grpo": ["--stages", "all"]}, output="runs/05_rlhf/preferences/train.jsonl",
         paths=["--sft", "{runs}/04_sft/ckpt.pt", "--out-dir", "{runs}/05_rlhf"]),
    dict(folder="06_quantize", script="quantize.py", options={"overwrite", "device", "dry_run"},
         output="runs/06_quantize/results.md",
         paths=["--ckpt", "{runs}/05_rlhf/ppo/ckpt.pt", "--out-dir", "{runs}/06_quantize"]),
    dict(folder="07_eval", script="evaluate.py", options={"overwrite", "device", "dry_run"}, output="runs/07_eval/report.md",
         paths=["--runs-dir", "{runs}", "--out-dir", "{runs}/07_eval"]),
    dict(folder="08_multimodal", script="multimodal.py", options={"overwrite", "device"},
         output="runs/08_multimodal/summary.json", paths=["--chat", "{runs}/04_sft/ckpt.pt", "--out-dir", "{runs}/08_multimodal"]),
]
DRY_RUN_DIR = "runs/dry-run"  # --dry-run's runs folder when --runs-dir is not given: never over a real run


def chapter_number(step):
    return int(step["folder"][:2])


def command_of(step, args):
    """The command line of one step: its script, --preset, its own arguments, the folders under --runs-dir, and the
    pipeline's --device, --data, --dry-run and --overwrite where the script declares them."""
    command = [sys.executable, str(REPO / step["folder"] / step["script"]), "--preset", args.preset]
    command += step.get("args", [])
    for flag, extra in step.get("args_when", {}).items():  # arguments only a pipeline flag adds (--grpo)
        if getattr(args, flag):
            command += extra
    if args.runs_dir:
        command += [arg.replace("{runs}", args.runs_dir) for arg in step.get("paths", [])]
    options = step.get("options", ())
    for flag, value in (("device", args.device), ("data", args.data)):
        if value and flag in options:
            command += [f"--{flag}", value]
    if args.dry_run and "dry_run" in options:
        command += ["--dry-run"]
    if args.overwrite and "overwrite" in options:
        command += ["--overwrite"]
    return command


def output_of(step, args):
    """The file that says a step has run (relative to the repository, or absolute), under --runs-dir if given."""
    output = step.get("output")
    return output and Path(args.runs_dir or "runs") / Path(output).relative_to("runs")


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="preset passed to every chapter script (default: tiny)")
    parser.add_argument("--start", type=cli.positive_int, default=1,
                        help="first chapter to run, e.g. 3 to skip 01-02 (default: 1)")
    parser.add_argument("--stop", type=cli.positive_int, default=max(map(chapter_number, CHAPTERS)),
                        help="last chapter to run (default: all)")
    parser.add_argument("--device", default=None, help="passed to the scripts that train (cuda, mps, cpu)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo chapters whose outputs exist, replacing them (passed to every script that has it)")
    parser.add_argument("--direct-sft", action="store_true",
                        help="also train chapter 04's direct-answer control for chapter 07's chain-of-thought "
                             "study (sft.py --math-style direct --out-dir runs/04_sft_direct; one more SFT run)")
    parser.add_argument("--grpo", action="store_true",
                        help="also train chapter 05's GRPO policy at the tiny and small presets, where it is opt-in "
                             "(rlhf.py --stages all; about 2-3 minutes more on 2 cores)")
    parser.add_argument("--runs-dir", help="the folder every chapter reads and writes (default: runs; with --dry-run: "
                                            f"{DRY_RUN_DIR})")
    parser.add_argument("--data", help="chapter 03's corpus (a source or a local text file; see pretrain.py --help)")
    parser.add_argument("--dry-run", action="store_true",
                        help="each chapter's preset with its real model size and code paths but tiny work (2 steps, "
                             "a handful of prompts and items), the chapters without a --dry-run left out: check a GPU "
                             "preset on a CPU, e.g. --preset gpt2 --dry-run --device cpu (lesson 03's appendix)")
    args = parser.parse_args(argv)
    if args.dry_run and not args.runs_dir:
        args.runs_dir = DRY_RUN_DIR

    timings = []
    for step in CHAPTERS:
        number, chapter = chapter_number(step), step["folder"]
        if not args.start <= number <= args.stop or (step.get("when") and not getattr(args, step["when"])):
            continue
        if args.dry_run and "dry_run" not in step.get("options", ()):
            print(f"\n== {chapter}: no --dry-run (nothing at a GPU preset's size to check), left out")
            continue
        if not (REPO / chapter / step["script"]).exists():
            print(f"\n== {chapter}: not built yet ({chapter}/{step['script']} does not exist). The pipeline stops here.")
            break
        output = output_of(step, args)
        if output and (REPO / output).exists() and not args.overwrite:
            print(f"\n== {chapter} has run before ({output} exists) and its outputs are kept. Rerun with "
                  f"--overwrite to redo the chapters (replacing their outputs), or with --start {number + 1} to go "
                  f"on from the next chapter with these outputs.")
            sys.exit(2)
        command = command_of(step, args)
        print(f"\n== {chapter}: {' '.join(command[1:])}", flush=True)
        start = time.time()
        returncode = subprocess.run(command, cwd=REPO).returncode  # its output goes straight through
        timings.append((chapter, time.time() - start))
        if returncode != 0:
            print(f"\n== {chapter} failed (exit code {returncode}); fix it and rerun with --start {number}.")
            sys.exit(returncode)

    print("\n== pipeline summary")
    for chapter, seconds in timings:
        print(f"  {chapter:<16} {seconds:7.1f} s")
    print(f"  outputs are under {REPO / (args.runs_dir or 'runs')}")
    report = REPO / (args.runs_dir or "runs") / "07_eval" / "report.md"
    if timings and "07_eval" in [c for c, _ in timings] and report.exists():  # the pipeline ends with the evaluation's table
        table = report.read_text(encoding="utf-8").split("## Every model on every task\n\n")[-1].split("\n\nMC: ")[0]
        print(f"\n== the report: {report}\n{table}")


if __name__ == "__main__":
    cli.run(main)
