"""Show samples of the mini-world (the `world` package beside this script), or write its corpus to a file.

    python 03_pretrain/show_world.py                          # one sample of every kind of document
    python 03_pretrain/show_world.py --out corpus.txt         # the default 3 MB corpus, to a file
"""
import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this chapter's folder, where the world package lives

from world import (DEFAULT_CORPUS_BYTES, DOC_MIX, EOT, KINDS, build_world, document, make_corpus,  # noqa: E402
                   solution, unknown_entity_questions, word_problem)


def main():
    parser = argparse.ArgumentParser(description="Show samples of the mini-world, or write its corpus to a file.")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--world-seed", type=int, default=0, help="world seed (default 0: the project's world)")
    parser.add_argument("--bytes", type=int, default=DEFAULT_CORPUS_BYTES, help="corpus size for --out")
    parser.add_argument("--out", default=None, help="write the corpus to this file instead of showing samples")
    args = parser.parse_args()
    world = build_world(args.world_seed)
    if args.out:
        start = time.time()
        text = make_corpus(args.bytes, args.seed, world)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
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
    main()
