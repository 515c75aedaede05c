"""Chat about a picture with chapter 08's LLaVA model.

    python 08_multimodal/chat_vision.py --scene 3                      # a generated scene (saved as a PNG to look at)
    python 08_multimodal/chat_vision.py --image my.png                 # your own picture (scaled to 36 x 36)
    python 08_multimodal/chat_vision.py --scene 3 --prompt "What colour is the sun?"   # one reply, then exit
    python 08_multimodal/chat_vision.py --web                          # a chat page with a picture picker

The picture enters the first user turn as <|image|> placeholders (llava.render_with_image); every reply is
greedy. Commands in the REPL: /scene N (another generated scene), /reset, /quit.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer"]:  # the earlier chapter this file builds on (one clear line for bad input)
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402
import scenes  # noqa: E402  (this chapter)
from mm_checkpoint import DEFAULT_RUN  # noqa: E402

DEFAULT_CKPT = DEFAULT_RUN / "llava" / "ckpt.pt"


def load_png(path):
    """A PNG file -> (IMAGE_SIZE, IMAGE_SIZE, 3) uint8, scaled by nearest neighbour. ValueError if unreadable."""
    import matplotlib.image
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--image {path}: no such file; give a PNG file, or --scene N for a generated scene")
    try:
        pixels = matplotlib.image.imread(str(path), format="png")
    except Exception as error:  # noqa: BLE001  (any decoder failure means the same thing to the user)
        raise ValueError(f"--image {path} is not a PNG picture this can read ({type(error).__name__}): save it as "
                         f"PNG, or use --scene N") from None
    return png_pixels_to_scene_image(pixels)


def png_pixels_to_scene_image(pixels):
    """Any (H, W[, 3|4]) float-in-[0,1] or uint8 array -> (IMAGE_SIZE, IMAGE_SIZE, 3) uint8."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        pixels = np.clip(pixels * 255 + 0.5, 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    pixels = pixels[..., :3]
    rows = np.arange(scenes.IMAGE_SIZE) * pixels.shape[0] // scenes.IMAGE_SIZE
    cols = np.arange(scenes.IMAGE_SIZE) * pixels.shape[1] // scenes.IMAGE_SIZE
    return np.ascontiguousarray(pixels[rows][:, cols])


def scene_picture(number, out_png=None):
    """Generated scene N as an image (and its caption); written to out_png when given."""
    scene = scenes.scene_by_number(number)
    image = scenes.render(scene)
    if out_png:
        import matplotlib.image
        Path(out_png).parent.mkdir(parents=True, exist_ok=True)
        matplotlib.image.imsave(str(out_png), np.kron(image, np.ones((8, 8, 1), np.uint8)))
    return image, scenes.caption(scene)


class VisionChat:
    """A conversation about one picture: the history and the greedy replies."""

    def __init__(self, model, tokenizer, image):
        self.model, self.tokenizer = model, tokenizer
        self.set_image(image)

    def set_image(self, image):
        self.picture = torch.from_numpy(scenes.to_tensor_images(image[None]))
        self.history = []

    def respond(self, text):
        from llava import answer
        self.history.append({"role": "user", "content": text})
        reply = answer(self.model, self.tokenizer, [self.history], self.picture, max_new_tokens=72)[0]
        self.history.append({"role": "assistant", "content": reply})
        return reply


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    picture = parser.add_mutually_exclusive_group()
    picture.add_argument("--scene", type=cli.non_negative_int, help="generated scene number N (default 0)")
    picture.add_argument("--image", help="a PNG file to talk about")
    parser.add_argument("--ckpt", default=str(DEFAULT_CKPT), help=f"the LLaVA checkpoint (default {DEFAULT_CKPT})")
    parser.add_argument("--prompt", help="ask one question, print the reply, exit")
    parser.add_argument("--web", action="store_true", help="serve a chat page with a picture picker")
    parser.add_argument("--port", type=cli.positive_int, default=8008)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mm_checkpoint import load_llava
    image = load_png(args.image) if args.image else None  # every input checked before anything is written
    model, tokenizer = load_llava(args.ckpt)
    if image is None:
        out_png = REPO / "runs" / "08_multimodal" / f"scene_{args.scene or 0}.png"
        image, caption = scene_picture(args.scene or 0, out_png)
        print(f"scene {args.scene or 0} ({out_png}): {caption}")
    if args.web:
        from vision_web import serve
        return serve(model, tokenizer, port=args.port)
    chat = VisionChat(model, tokenizer, image)
    if args.prompt:
        print(chat.respond(args.prompt))
        return
    print("ask about the picture; /scene N for another one, /reset, /quit")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            return
        if text in ("/quit", "/exit"):
            return
        if text == "/reset":
            chat.history = []
            continue
        if text.startswith("/scene"):
            try:
                image, caption = scene_picture(int(text.split()[1]))
            except (IndexError, ValueError):
                print("write /scene N with a number N >= 0")
                continue
            chat.set_image(image)
            print(f"scene: {caption}")
            continue
        if text:
            print("assistant>", chat.respond(text))


if __name__ == "__main__":
    cli.run(main)
