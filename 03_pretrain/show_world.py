"""Show samples of the mini-world (the `world` package beside this script), or write its corpus to a file.

    python 03_pretrain/show_world.py                          # one sample of every kind of document
    python 03_pretrain/show_world.py --out corpus.txt         # the default 3 MB corpus, to a file
"""
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "03_pretrain"]:  # chapter 01's cli plumbing; this chapter's world package
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one clear line for bad input)
from world import (DEFAULT_CORPUS_BYTES, DOC_MIX, EOT, KINDS, build_world, document, make_corpus,  # noqa: E402
                   solution, unknown_entity_questions, word_problem)


def main(argv=None):
    parser = cli.ArgumentParser(description="Show samples of the mini-world, or write its corpus to a file.")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--world-seed", type=int, default=0, help="world seed (default 0: the project's world)")
    parser.add_argument("--bytes", type=cli.positive_int, default=DEFAULT_CORPUS_BYTES, help="corpus size for --out")
    parser.add_argument("--out", type=Path, default=None, help="write the corpus to this file instead of showing samples")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if args.out and args.out.exists() and (args.out.is_dir() or not args.overwrite):
        raise FileExistsError(f"--out {args.out} already exists: pass --overwrite to replace it, or another --out"
                              if not args.out.is_dir() else f"--out {args.out} is a folder: give a file name")
    world = build_world(args.world_seed)
    if args.out:
        start = time.time()
        text = make_corpus(args.bytes, args.seed, world)
        cli.write_text_atomic(args.out, text)
        print(f"wrote {len(text.encode()):,} bytes, {text.count(EOT):,} documents to {args.out} "
              f"in {time.time() - start:.1f} s")
        return
    print(f"world {args.world_seed}: {len(world.facts)} facts about "
          + ", ".join(f"{len(world.names[k])} {k} names" for k in KINDS))
    for kind in DOC_MIX:
        print(f"\n=== {kind}\n{document(world, kind, random.Random(f'{args.seed}:{kind}'))}")
    p = word_problem(world, random.Random(args.seed), n_steps=2, digits=3, family="count")
    print(f"\n=== word problem, column style\n{p.question}\n{solution(p, 'column')}")
    print("\n=== held-out probes:", ", ".join(q.question for q in unknown_entity_questions(world, 3)))


if __name__ == "__main__":
    cli.run(main)
