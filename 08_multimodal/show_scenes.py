"""A PNG grid of generated scenes with their captions: what chapter 08's models look at.

    python 08_multimodal/show_scenes.py                       # runs/08_multimodal/scenes.png, 4 x 4 scenes
    python 08_multimodal/show_scenes.py --split composition   # scenes with a held-out colour-shape pair
"""
import argparse
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer"]:  # the earlier chapter this file builds on (one clear line for bad input)
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402
import scenes  # noqa: E402  (this chapter)


def plot_scene_grid(scene_list, path, columns=4, titles=None):
    """Draw the scenes in a grid with their captions (or `titles`) under them; write a PNG to `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(scene_list) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(scene_list):
            ax.imshow(scenes.render(scene_list[k]), interpolation="nearest")
            text = titles[k] if titles else scenes.caption(scene_list[k])
            ax.set_title("\n".join(textwrap.wrap(text, 38)), fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="train", choices=["train", "heldout", "composition"])
    parser.add_argument("--count", type=cli.positive_int, default=16, help="how many scenes (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "runs" / "08_multimodal" / "scenes.png"))
    args = parser.parse_args(argv)
    data = scenes.scene_splits(args.seed, n_train=args.count, n_heldout=args.count, n_composition=args.count)
    path = plot_scene_grid(data[args.split][:args.count], args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
