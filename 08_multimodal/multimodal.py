"""Chapter 08: train and evaluate a CLIP dual encoder, a LLaVA chat model that sees, and a chat model with tools.

    python 08_multimodal/multimodal.py --preset tiny        # the default: a few minutes on a CPU
    python 08_multimodal/multimodal.py --preset gpu         # bigger encoders, more data and steps, one GPU
    python 08_multimodal/multimodal.py --preset smoke       # every stage end to end in seconds (figures meaningless)
    python 08_multimodal/multimodal.py --overwrite          # start over in an --out-dir that holds a run
    python 08_multimodal/multimodal.py --resume             # continue an interrupted run (finished stages load)

Steps: (1) load chapter 04's chat model and its tokenizer (default runs/04_sft/ckpt.pt) and add the tokens
<|image|>, <|tool|>, <|/tool|>, <|result|>, <|/result|>; (2) draw the scenes (scenes.py: train, heldout,
composition); (3) CLIP: train the vision and text encoders with clip_loss, evaluate (recall@1/@5, zero-shot
vs linear probe); (4) LLaVA stage 1 (projector only, captions) and stage 2 (projector + language model,
question-answer conversations), evaluate against a blind model and a caption-then-answer route, and
chapter 04's text rows before/after; (5) tools: SFT a copy of the chat model on tool transcripts, evaluate
bare arithmetic, word problems and counting questions with and without tools; (6) write the report.

Outputs in --out-dir (default runs/08_multimodal/): clip/, llava_stage1/, llava/, tools/ (each: ckpt.pt,
metrics.jsonl, loss.png; llava/ and tools/ also the tokenizer), scenes.png, similarity.png, report.md,
report.png, summary.json (the figures, read by chapter 07's report). Then: python 08_multimodal/chat_vision.py
"""
import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01)
import train  # noqa: E402  (chapter 03: the training loop)
import world  # noqa: E402  (chapter 03: the mini-world's arithmetic and word problems)
from chat_format import add_chat_embeddings, to_inputs_and_targets  # noqa: E402  (chapter 04)
from grading import extract_answer  # noqa: E402  (chapter 04)
from sft_data import world_examples  # noqa: E402  (chapter 04: its conversations, mixed into LLaVA's stage 2)

import scenes  # noqa: E402  (this chapter)
from clip_model import CLIP, CLIPConfig, encode_texts, linear_probe, recall_at_k, zero_shot_classify  # noqa: E402
from llava import IMAGE, LLaVA, answer, llava_loss, render_with_image  # noqa: E402
from mm_checkpoint import DEFAULT_CHAT, load_chat_model, save_tokenizer  # noqa: E402
from show_scenes import plot_scene_grid  # noqa: E402
from tool_use import TOOL_TOKENS, calculate, render_tool_transcript, run_with_tools  # noqa: E402
from vision import ViTConfig  # noqa: E402

DEFAULT_OUT_DIR = REPO / "runs" / "08_multimodal"
ROLE = "multimodal"  # in every checkpoint of this chapter: chapter 03's loader and chapter 07 list models by role

PRESETS = {
    # 2 cores, a few minutes: small encoders (~0.4M parameters), chapter 04's tiny chat model (2.2M).
    "tiny": dict(n_train=4000, n_eval=120, vit_layers=2, vit_embd=64, text_layers=2, text_embd=64,
                 clip_steps=800, clip_batch=48, clip_lr=1e-3, clip_singles=0.5, singles_per_pair=60,
                 stage1_steps=100, stage2_steps=600, llava_batch=16, stage1_lr=2e-3, stage2_lr=1e-3, vision_layer=0,
                 stage2_text=dict(fact=300, unknown=300, harmful=200, benign=200),
                 tools_steps=120, tools_batch=32, tools_lr=1e-3,
                 n_tools_train=3000, n_tools_eval=40, text_eval_per_task=20, precision="fp32"),
    # a check that every stage runs end to end (seconds; the figures mean nothing)
    "smoke": dict(n_train=64, n_eval=12, vit_layers=1, vit_embd=32, text_layers=1, text_embd=32,
                  clip_steps=3, clip_batch=16, clip_lr=1e-3, clip_singles=0.5, singles_per_pair=2,
                  stage1_steps=2, stage2_steps=2, llava_batch=8, stage1_lr=1e-3, stage2_lr=1e-3, vision_layer=0,
                  stage2_text=dict(fact=4, unknown=4, harmful=4, benign=4), tools_steps=2, tools_batch=8, tools_lr=1e-3,
                  n_tools_train=30, n_tools_eval=3, text_eval_per_task=1, precision="fp32"),
    # one GPU: wider and deeper encoders, 10x the scenes, more steps; the chat model is whatever --chat is
    "gpu": dict(n_train=40000, n_eval=500, vit_layers=6, vit_embd=256, text_layers=4, text_embd=256,
                clip_steps=5000, clip_batch=256, clip_lr=5e-4, clip_singles=0.5, singles_per_pair=600,
                stage1_steps=1000, stage2_steps=3000, llava_batch=64, stage1_lr=1e-3, stage2_lr=5e-4, vision_layer=0,
                stage2_text=dict(fact=3000, unknown=3000, harmful=2000, benign=2000),
                tools_steps=2000, tools_batch=64, tools_lr=5e-4,
                n_tools_train=30000, n_tools_eval=200, text_eval_per_task=40, precision="auto"),
}
DESCRIBE = ["Describe the picture.", "What is in the picture?", "Describe this image.", "What do you see?"]
MM_TOKENS = [IMAGE] + TOOL_TOKENS


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--chat", default=str(DEFAULT_CHAT), help=f"chapter 04's chat model (default {DEFAULT_CHAT})")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR))
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out-dir")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out-dir: finished stages are loaded, the one "
                             "that was cut off continues from its last checkpoint")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def stage_config(settings, name, steps, batch_size, lr, out_dir):
    """chapter 03's TrainConfig for one stage: warmup + cosine, clipping, one evaluation at the end."""
    return train.TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_steps=min(30, steps // 5),
                             weight_decay=0.0, precision=settings["precision"], device=settings["device"],
                             seed=settings["seed"], eval_interval=steps, eval_batches=2,
                             log_interval=max(1, steps // 5), out_dir=str(out_dir / name))


def images_of(scene_list):
    """Scenes -> the vision encoder's input (N, 3, H, W) float32."""
    return torch.from_numpy(scenes.to_tensor_images(np.stack([scenes.render(s) for s in scene_list])))


# ----------------------------------------------------------------------------------------------------
# CLIP


def clip_batches(train_images, train_texts, val_images, val_texts, size, singles=None, single_share=0.0):
    """get_batch for chapter 03's loop: (images, ids, lengths). A training batch is whole sibling groups
    (scenes.SIBLINGS scenes of one layout), each scene's text its caption with or without places, and,
    with `singles` = (images, (ids, lengths)), a share `single_share` of single-object scenes with their
    placeless captions ("a large red sun"): among those, a random pair often differs only in shape, the
    hard negatives that make the loss learn it (lesson, section 3)."""
    n_singles = int(size * single_share) if singles is not None else 0

    def get_batch(split, generator):
        images, (ids, lengths) = (train_images, train_texts) if split == "train" else (val_images, val_texts)
        n_scenes = len(images)
        if split != "train":
            index = torch.randperm(n_scenes, generator=generator)[:size]
            text_index = index + n_scenes * torch.randint(2, index.shape, generator=generator)
            return images[index], ids[text_index, :int(lengths[text_index].max())], lengths[text_index]
        groups = torch.randint(n_scenes // scenes.SIBLINGS, ((size - n_singles) // scenes.SIBLINGS,), generator=generator)
        index = (groups[:, None] * scenes.SIBLINGS + torch.arange(scenes.SIBLINGS)).flatten()
        text_index = index + n_scenes * torch.randint(2, index.shape, generator=generator)  # with / without places
        batch_images, batch_ids, batch_lengths = images[index], ids[text_index], lengths[text_index]
        if n_singles:
            single_images, (single_ids, single_lengths) = singles
            pick = torch.randint(len(single_images), (n_singles,), generator=generator)
            width = max(batch_ids.size(1), single_ids.size(1))  # right-pad both to one width (causal: harmless)
            pad = lambda t: torch.nn.functional.pad(t, (0, width - t.size(1)), value=int(ids[0, -1]))
            batch_images = torch.cat([batch_images, single_images[pick]])
            batch_ids = torch.cat([pad(batch_ids), pad(single_ids[pick])])
            batch_lengths = torch.cat([batch_lengths, single_lengths[pick]])
        return batch_images, batch_ids[:, :int(batch_lengths.max())], batch_lengths
    return get_batch


def class_prompts(kind):
    """Zero-shot prompts: every caption of one object with that colour (or shape), sizes and the other
    attribute filled in every way, without a place: {"red": ["a small red sun", "a large red sun", ...]}."""
    classes = scenes.COLOURS if kind == "colour" else scenes.SHAPES
    return {c: [f"a {size} {c} {s}" if kind == "colour" else f"a {size} {s} {c}" for size in scenes.SIZES
                for s in (scenes.SHAPES if kind == "colour" else scenes.COLOURS)] for c in classes}


@torch.no_grad()
def evaluate_clip(model, tokenizer, data, settings, out_dir):
    """Retrieval on held-out scenes and on composition scenes, zero-shot vs linear probe on single objects."""
    model.eval()
    results = {}
    for split in ("heldout", "composition"):
        chosen = data[split][:settings["n_eval"]]
        image_emb = model.encode_image(images_of(chosen))
        text_emb = model.encode_text(*encode_texts([scenes.caption(s) for s in chosen], tokenizer))
        similarity = image_emb @ text_emb.t()
        results[split] = {"n": len(chosen), "i2t_r1": recall_at_k(similarity, 1), "i2t_r5": recall_at_k(similarity, 5),
                          "t2i_r1": recall_at_k(similarity.t(), 1), "t2i_r5": recall_at_k(similarity.t(), 5),
                          "random_r1": 1 / len(chosen), "random_r5": 5 / len(chosen)}
    plot_similarity(model, tokenizer, data["heldout"][:8], out_dir / "similarity.png")
    seed = settings["seed"]
    probe_train = scenes.single_object_scenes(seed + 100, scenes.seen_pairs(), 20)
    sets = {"heldout": scenes.single_object_scenes(seed + 101, scenes.seen_pairs(), 10),
            "composition": scenes.single_object_scenes(seed + 102, scenes.HELDOUT_PAIRS, 20)}
    train_features = model.image_features(images_of(probe_train))[1]
    for kind, names in (("colour", list(scenes.COLOURS)), ("shape", list(scenes.SHAPES))):
        labels = torch.tensor([names.index(s["objects"][0][kind]) for s in probe_train])
        for split, singles in sets.items():
            images = images_of(singles)
            gold = [s["objects"][0][kind] for s in singles]
            zero_shot = zero_shot_classify(model, images, class_prompts(kind), tokenizer)
            probe = linear_probe(train_features, labels, model.image_features(images)[1])
            results[split][f"zeroshot_{kind}"] = float(np.mean([p == g for p, g in zip(zero_shot, gold)]))
            results[split][f"probe_{kind}"] = float(np.mean([names[p] == g for p, g in zip(probe.tolist(), gold)]))
    return results


def plot_similarity(model, tokenizer, scene_list, path):
    """The cosine similarities of 8 held-out images and their 8 captions, as a heat map with the images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with torch.no_grad():
        similarity = (model.encode_image(images_of(scene_list))
                      @ model.encode_text(*encode_texts([scenes.caption(s) for s in scene_list], tokenizer)).t())
    n = len(scene_list)
    fig = plt.figure(figsize=(11, 8))
    grid = fig.add_gridspec(n + 1, n + 1, width_ratios=[1.6] + [1] * n)
    heat = fig.add_subplot(grid[1:, 1:])
    heat.imshow(similarity.numpy(), cmap="viridis", vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            heat.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    heat.set_yticks([])
    heat.set_xticks(range(n), [f"caption {j}" for j in range(n)], fontsize=7)
    for i, scene in enumerate(scene_list):
        ax = fig.add_subplot(grid[i + 1, 0])
        ax.imshow(scenes.render(scene), interpolation="nearest")
        ax.axis("off")
    captions = "\n".join(f"caption {j}: {scenes.caption(s)}" for j, s in enumerate(scene_list))
    fig.text(0.02, 0.99, "CLIP: cosine similarity of held-out images (rows) and captions (columns)\n" + captions,
             va="top", fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# LLaVA


def llava_rows(conversations, tokenizer, n_patches, block_size):
    """[(messages, image index or -1)] -> tensors X, Y (n, T) right-padded (Y = -1 off the assistant's
    tokens), image index (n,)."""
    sequences = []
    for messages, image in conversations:
        ids, mask = render_with_image(messages, tokenizer, n_patches if image >= 0 else 0)
        sequences.append((*to_inputs_and_targets(ids[:block_size + 1], mask[:block_size + 1]), image))
    longest = max(len(x) for x, _, _ in sequences)
    pad = tokenizer.special_tokens["<|endoftext|>"]
    X = torch.full((len(sequences), longest), pad, dtype=torch.long)
    Y = torch.full((len(sequences), longest), -1, dtype=torch.long)
    for i, (x, y, _) in enumerate(sequences):
        X[i, :len(x)], Y[i, :len(y)] = torch.tensor(x), torch.tensor(y)
    return X, Y, torch.tensor([image for _, _, image in sequences])


def llava_batches(rows, images, batch_size):
    """get_batch for chapter 03's loop: (x, y, images, has_image), every row trimmed to the batch's longest."""
    def get_batch(split, generator):
        X, Y, image_index = rows[split]
        index = torch.randint(len(X), (batch_size,), generator=generator)
        length = int((Y[index] != -1).nonzero()[:, 1].max()) + 1
        chosen = image_index[index]
        return X[index, :length], Y[index, :length], images[split][chosen.clamp(min=0)], chosen >= 0
    return get_batch


def caption_conversations(scene_list, rng):
    """Stage 1: "Describe the picture." -> the caption, for every scene."""
    return [([{"role": "user", "content": rng.choice(DESCRIBE)},
              {"role": "assistant", "content": scenes.caption(s)}], i) for i, s in enumerate(scene_list)]


def qa_conversations(scene_list, rng, allowed_pairs, text_only_every=5):
    """Stage 2: per scene, a conversation of three questions (sometimes a description first) about its
    picture; every `text_only_every`-th scene also gives a text-only one ("Picture: <caption>" then a
    question), which teaches the caption-then-answer route to read a caption."""
    out = []
    np_rng = np.random.default_rng(rng.randrange(2**32))
    for i, scene in enumerate(scene_list):
        qs = scenes.questions(scene, np_rng, allowed_pairs)
        rng.shuffle(qs)
        messages = []
        if rng.random() < 0.25:
            messages += [{"role": "user", "content": rng.choice(DESCRIBE)},
                         {"role": "assistant", "content": scenes.caption(scene)}]
        for q in qs[:3]:
            messages += [{"role": "user", "content": q["question"]}, {"role": "assistant", "content": q["reply"]}]
        out.append((messages, i))
        if i % text_only_every == 0:
            q = qs[-1]
            out.append(([{"role": "user", "content": f"Picture: {scenes.caption(scene)}.\n{q['question']}"},
                         {"role": "assistant", "content": q["reply"]}], -1))
    return out


def chat_conversations(w, mix, seed):
    """Stage 2's text-only share: chapter 04's training conversations (sft_data.world_examples, `mix` of
    each task: facts, "I don't know"s, refusals, benign look-alikes) as [(messages, -1)], no picture.
    Without them stage 2 trains on pictures only and the model forgets chapter 04's manners (LLaVA-1.5
    mixes ShareGPT's text conversations into its stage 2 for the same reason)."""
    return [(e["messages"], -1) for e in world_examples(w, "train", mix, seed=seed)]


def eval_questions(scene_list, seed, allowed_pairs=None):
    """[(scene index, question dict)]: every question of every scene (one per type, as scenes.questions)."""
    rng = np.random.default_rng([seed, 11])
    return [(i, q) for i, s in enumerate(scene_list) for q in scenes.questions(s, rng, allowed_pairs)]


@torch.no_grad()
def evaluate_llava(model, tokenizer, scene_list, seed, allowed_pairs=None):
    """Accuracy per question type on these scenes, three ways: with the picture, blind (no picture: only
    the question), and caption-then-answer (the model describes the picture, then answers from that text
    alone). Returns {route: {type: accuracy}}, plus the captions' exact-match rate."""
    model.eval()
    asked = eval_questions(scene_list, seed, allowed_pairs)
    images = images_of(scene_list)
    convs = [[{"role": "user", "content": q["question"]}] for _, q in asked]
    picture = images[[i for i, _ in asked]]
    captions = answer(model, tokenizer, [[{"role": "user", "content": DESCRIBE[0]}]] * len(scene_list), images,
                      max_new_tokens=72)
    routes = {"image": answer(model, tokenizer, convs, picture),
              "blind": answer(model, tokenizer, convs, None),
              "caption": answer(model, tokenizer, [[{"role": "user", "content": f"Picture: {captions[i]}.\n"
                                                    f"{q['question']}"}] for i, q in asked], None)}
    results = {}
    for route, replies in routes.items():
        per_type = {}
        for (_, q), reply in zip(asked, replies):
            per_type.setdefault(q["type"], []).append(scenes.grade_reply(reply, q["answer"], q["type"]))
        results[route] = {t: float(np.mean(v)) for t, v in per_type.items()}
    results["n"] = {t: sum(1 for _, q in asked if q["type"] == t) for t in scenes.QUESTION_TYPES}
    results["caption_exact"] = float(np.mean([c.rstrip(".") == scenes.caption(s) for c, s in zip(captions, scene_list)]))
    results["examples"] = [{"caption": captions[i], "question": q["question"], "answer": q["answer"],
                            "image": routes["image"][k], "blind": routes["blind"][k]}
                           for k, (i, q) in enumerate(asked[:6])]
    return results


def text_rows(model, tokenizer, per_task, seed):
    """Chapter 04's table rows (held-out world prompts, grading.evaluate) for a text-only chat model."""
    from grading import evaluate
    from sft_data import EVAL_MIX
    mix = {task: min(n, per_task) for task, n in EVAL_MIX.items()}
    examples = world_examples(world.build_world(0), "heldout", mix, seed=seed + 2)
    return evaluate(model.eval(), tokenizer, examples, max_new_tokens=96)["metrics"]


# ----------------------------------------------------------------------------------------------------
# Tools


def tool_examples(w, split, n, seed, scene_list=None):
    """Tool-use transcripts as (question, [(call, result)], final reply, extra): bare arithmetic (one calc),
    word problems (one calc per step) and, with scene_list, counting questions about a picture
    (describe_image, then calc). Arithmetic and word problems come from chapter 03's world with its split."""
    rng = random.Random(f"tools:{split}:{seed}")
    out = []
    for k in range(n):
        kind = ("arith", "word", "visual")[k % 3] if scene_list is not None else ("arith", "word")[k % 2]
        if kind == "arith":
            problem = world.arithmetic_problem(rng, rng.choice("+-*"), 2, split=split)
            calls = [(f"calc({s.a} {s.op} {s.b})", calculate(f"{s.a} {s.op} {s.b}")) for s in problem.steps]
            out.append(dict(kind=kind, question=problem.question, calls=calls, answer=problem.answer))
        elif kind == "word":
            problem = world.word_problem(w, rng, n_steps=rng.choice([1, 2]), digits=rng.choice([1, 2]), split=split)
            calls = [(f"calc({s.a} {s.op} {s.b})", calculate(f"{s.a} {s.op} {s.b}")) for s in problem.steps]
            out.append(dict(kind=kind, question=problem.question, calls=calls, answer=problem.answer))
        else:
            index = rng.randrange(len(scene_list))
            count, extra = len(scene_list[index]["objects"]), rng.randrange(2, 20)
            question = rng.choice(["How many objects are in the picture, plus {k}?",
                                   "Count the objects in the picture and add {k}."]).format(k=extra)
            calls = [("describe_image()", scenes.caption(scene_list[index])),
                     (f"calc({count} + {extra})", str(count + extra))]
            out.append(dict(kind=kind, question=question, calls=calls, answer=count + extra, scene=index))
    return out


def tool_rows(examples, tokenizer, block_size):
    """Transcripts -> X, Y tensors (right-padded, Y = -1 off the learned tokens) and an all -1 image index."""
    conversations = []
    for e in examples:
        ids, mask = render_tool_transcript(e["question"], e["calls"], f"The answer is {e['answer']}.", tokenizer)
        conversations.append(to_inputs_and_targets(ids[:block_size + 1], mask[:block_size + 1]))
    longest = max(len(x) for x, _ in conversations)
    X = torch.zeros((len(conversations), longest), dtype=torch.long)
    Y = torch.full((len(conversations), longest), -1, dtype=torch.long)
    for i, (x, y) in enumerate(conversations):
        X[i, :len(x)], Y[i, :len(y)] = torch.tensor(x), torch.tensor(y)
    return X, Y


def sft_batches(rows, batch_size):
    def get_batch(split, generator):
        X, Y = rows[split]
        index = torch.randint(len(X), (batch_size,), generator=generator)
        length = int((Y[index] != -1).nonzero()[:, 1].max()) + 1
        return X[index, :length], Y[index, :length]
    return get_batch


@torch.no_grad()
def evaluate_tools(tool_model, chat_model, chat_tokenizer, llava, tokenizer, examples, scene_list):
    """Accuracy per kind with tools (tool model + runtime) and without (chapter 04's chat model, or for
    the counting questions LLaVA end to end). describe_image runs LLaVA's captioner on the row's picture."""
    images = images_of(scene_list)

    def describe_image(argument, row):
        picture = examples[row].get("scene")
        if picture is None:
            return "error: there is no picture in this conversation"
        return answer(llava, tokenizer, [[{"role": "user", "content": DESCRIBE[0]}]], images[picture:picture + 1],
                      max_new_tokens=72)[0]

    tools = {"calc": lambda argument, row: calculate(argument), "describe_image": describe_image}
    replies, traces = run_with_tools(tool_model.eval(), tokenizer, [e["question"] for e in examples], tools,
                                     context=True)
    plain = [e for e in examples if e["kind"] != "visual"]
    from grading import generate_replies
    plain_replies = dict(zip([id(e) for e in plain], [r for r, _ in generate_replies(
        chat_model.eval(), chat_tokenizer, [[{"role": "user", "content": e["question"]}] for e in plain], 96)]))
    visual = [e for e in examples if e["kind"] == "visual"]
    visual_replies = dict(zip([id(e) for e in visual], answer(
        llava, tokenizer, [[{"role": "user", "content": e["question"]}] for e in visual],
        images[[e["scene"] for e in visual]] if visual else None, max_new_tokens=16))) if visual else {}

    def correct(reply, gold):
        value = extract_answer(reply)
        if value is None:  # a bare number ("68") counts too
            numbers = [w for w in reply.replace(".", " ").split() if w.lstrip("-").isdigit()]
            value = int(numbers[-1]) if numbers else None
        return value == gold

    results = {}
    for e, reply, trace in zip(examples, replies, traces):
        other = plain_replies.get(id(e), visual_replies.get(id(e), ""))
        row = results.setdefault(e["kind"], {"with_tools": [], "without_tools": [], "calls": []})
        row["with_tools"].append(correct(reply, e["answer"]))
        row["without_tools"].append(correct(other, e["answer"]))
        row["calls"].append(len(trace))
    summary = {kind: {"n": len(v["with_tools"]), "with_tools": float(np.mean(v["with_tools"])),
                      "without_tools": float(np.mean(v["without_tools"])), "calls": float(np.mean(v["calls"]))}
               for kind, v in results.items()}
    summary["examples"] = [{"question": e["question"], "trace": t, "reply": r}
                           for e, t, r in list(zip(examples, traces, replies))[:6]]
    return summary


# ----------------------------------------------------------------------------------------------------
# The script


def main(argv=None):
    return run(parse_args(argv))


def timed(timings, stage, fn):
    """fn(), its wall seconds in timings[stage] and its CPU seconds in timings["cpu_" + stage] (what a busy
    machine leaves alone: the load-free figure)."""
    t, cpu_t = time.time(), time.process_time()
    result = fn()
    timings[stage], timings["cpu_" + stage] = time.time() - t, time.process_time() - cpu_t
    return result


def run(args):
    settings = dict(PRESETS[args.preset], device=args.device, seed=args.seed, preset=args.preset, chat=args.chat)
    # a run exists once CLIP's first checkpoint does; --resume continues it stage by stage (train.train's resume)
    out_dir = cli.check_out_dir(args.out_dir, resume=args.resume, overwrite=args.overwrite, marker="clip/ckpt.pt")
    start, cpu_start = time.time(), time.process_time()
    chat_model, chat_tokenizer = load_chat_model(args.chat)  # FileNotFoundError / ValueError: one clear line
    tokenizer = chat_tokenizer.with_special_tokens(MM_TOKENS)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    timings = {}
    data = scene_data(settings, args.seed, out_dir)
    clip, clip_results = timed(timings, "clip", lambda: clip_stage(settings, args, data, tokenizer, out_dir))
    print(json.dumps(clip_results, indent=1))
    llava, llava_results = timed(timings, "llava", lambda: llava_stage(
        settings, args, data, clip, chat_model, chat_tokenizer, tokenizer, out_dir))
    text_before, text_after = timed(timings, "text_rows", lambda: (
        text_rows(chat_model, chat_tokenizer, settings["text_eval_per_task"], args.seed),
        text_rows(llava.lm, tokenizer, settings["text_eval_per_task"], args.seed)))
    print(json.dumps({k: {r: v for r, v in d.items() if r != "examples"} for k, d in llava_results.items()}, indent=1))
    tool_results = timed(timings, "tools", lambda: tools_stage(
        settings, args, data, chat_model, chat_tokenizer, llava, tokenizer, out_dir))
    print(json.dumps({k: v for k, v in tool_results.items() if k != "examples"}, indent=1))

    timings["total"] = time.time() - start
    timings["cpu_total"] = time.process_time() - cpu_start  # CPU seconds of all threads: the load-free figure
    from mm_report import write_report
    summary = {"settings": settings, "clip": clip_results, "llava": llava_results, "text_before": text_before,
               "text_after": text_after, "tools": tool_results, "seconds": timings}
    report = write_report(summary, out_dir)
    print("\n" + report)
    print(f"\ndone in {timings['total']:.0f} s. Outputs in {out_dir}/: report.md, report.png, scenes.png, "
          f"similarity.png, summary.json, clip/ llava_stage1/ llava/ tools/ (checkpoints)")
    print("next: python 08_multimodal/chat_vision.py --scene 3")
    return summary


def scene_data(settings, seed, out_dir):
    """Step 2: the train, held-out and held-out-composition scenes (and scenes.png, a grid of 16)."""
    data = scenes.scene_splits(seed, n_train=settings["n_train"], n_heldout=settings["n_eval"],
                               n_composition=settings["n_eval"])
    plot_scene_grid(data["train"][:16], out_dir / "scenes.png")
    print(f"scenes: {len(data['train'])} train, {len(data['heldout'])} held-out, {len(data['composition'])} with a "
          f"held-out colour-shape pair {scenes.HELDOUT_PAIRS}")
    return data


def clip_stage(settings, args, data, tokenizer, out_dir):
    """Step 3: CLIP on captions with and without places, half the batches single objects -> (clip, results)."""
    vision_config = ViTConfig(n_layer=settings["vit_layers"], n_embd=settings["vit_embd"])
    captions = [scenes.caption(s) for s in data["train"]] + [scenes.caption(s, places=False) for s in data["train"]]
    val_captions = [scenes.caption(s) for s in data["heldout"]] * 2
    train_texts, val_texts = encode_texts(captions, tokenizer), encode_texts(val_captions, tokenizer)
    clip_config = CLIPConfig(vocab_size=tokenizer.vocab_size, text_block_size=max(train_texts[0].size(1), val_texts[0].size(1)),
                             text_layers=settings["text_layers"], text_embd=settings["text_embd"], vision=vision_config)
    clip = CLIP(clip_config)
    singles = scenes.single_object_scenes(args.seed + 103, scenes.seen_pairs(), settings["singles_per_pair"])
    single_texts = encode_texts([scenes.caption(s, places=False) for s in singles], tokenizer)
    get_batch = clip_batches(images_of(data["train"]), train_texts, images_of(data["heldout"]), val_texts,
                             settings["clip_batch"], (images_of(singles), single_texts), settings["clip_singles"])
    config = stage_config(settings, "clip", settings["clip_steps"], settings["clip_batch"], settings["clip_lr"], out_dir)
    print(f"\n== CLIP: vision {sum(p.numel() for p in clip.vision.parameters()):,} + text "
          f"{sum(p.numel() for p in clip.text.parameters()):,} parameters")
    train.train(clip, get_batch, config, checkpoint_extra={"stage": "clip", "role": ROLE, "settings": settings},
                loss_fn=lambda model, batch: model(*batch), resume=args.resume)
    return clip, evaluate_clip(clip.cpu(), tokenizer, data, settings, out_dir)


def llava_stage(settings, args, data, clip, chat_model, chat_tokenizer, tokenizer, out_dir):
    """Step 4: LLaVA's two stages (the projector alone on captions; then projector + language model on
    questions, with chapter 04's text conversations mixed in) -> (llava on the CPU, results)."""
    lm = copy.deepcopy(chat_model)
    add_chat_embeddings(lm, chat_tokenizer, tokenizer)  # rows for <|image|> and the tool tokens
    llava = LLaVA(lm, clip.vision, tokenizer.special_tokens[IMAGE], settings["vision_layer"])  # lesson, section 5
    n_patches, block_size = clip.vision.config.n_patches, lm.config.block_size
    rng = random.Random(args.seed)
    allowed = scenes.seen_pairs()
    images = {"train": images_of(data["train"]), "val": images_of(data["heldout"])}
    stage1 = {"train": llava_rows(caption_conversations(data["train"], rng), tokenizer, n_patches, block_size),
              "val": llava_rows(caption_conversations(data["heldout"], rng), tokenizer, n_patches, block_size)}
    chat_share = chat_conversations(world.build_world(0), settings["stage2_text"], args.seed)
    stage2 = {"train": llava_rows(qa_conversations(data["train"], rng, allowed) + chat_share, tokenizer, n_patches,
                                  block_size),
              "val": llava_rows(qa_conversations(data["heldout"], rng, allowed), tokenizer, n_patches, block_size)}
    save_tokenizer(tokenizer, out_dir / "llava")
    extra = {"stage": "llava", "role": ROLE, "tokenizer": str((out_dir / "llava" / "tokenizer").absolute()), "settings": settings}
    lm.requires_grad_(False)  # stage 1: only the projector learns
    print(f"\n== LLaVA stage 1 (feature alignment): projector {sum(p.numel() for p in llava.projector.parameters()):,} "
          f"parameters on {len(stage1['train'][0]):,} captions")
    train.train(llava, llava_batches(stage1, images, settings["llava_batch"]),
                stage_config(settings, "llava_stage1", settings["stage1_steps"], settings["llava_batch"],
                             settings["stage1_lr"], out_dir),
                checkpoint_extra=dict(extra, stage="llava_stage1"), loss_fn=llava_loss, resume=args.resume)
    lm.requires_grad_(True)
    print(f"\n== LLaVA stage 2 (visual instruction tuning): projector + language model on "
          f"{len(stage2['train'][0]):,} conversations ({len(chat_share):,} of them chapter 04's, text only)")
    train.train(llava, llava_batches(stage2, images, settings["llava_batch"]),
                stage_config(settings, "llava", settings["stage2_steps"], settings["llava_batch"],
                             settings["stage2_lr"], out_dir),
                checkpoint_extra=extra, loss_fn=llava_loss, resume=args.resume)
    llava = llava.cpu().eval()
    return llava, {"heldout": evaluate_llava(llava, tokenizer, data["heldout"], args.seed + 1, allowed),
                   "composition": evaluate_llava(llava, tokenizer, data["composition"], args.seed + 2)}


def tools_stage(settings, args, data, chat_model, chat_tokenizer, llava, tokenizer, out_dir):
    """Step 5: SFT of a copy of chapter 04's model on tool-call transcripts -> the tools' results."""
    tool_lm = copy.deepcopy(chat_model)
    add_chat_embeddings(tool_lm, chat_tokenizer, tokenizer)
    w = world.build_world(0)
    train_examples = tool_examples(w, "train", settings["n_tools_train"], args.seed, data["train"])
    eval_examples = tool_examples(w, "heldout", settings["n_tools_eval"] * 3, args.seed + 1, data["heldout"])
    rows = {"train": tool_rows(train_examples, tokenizer, tool_lm.config.block_size),
            "val": tool_rows(eval_examples, tokenizer, tool_lm.config.block_size)}
    save_tokenizer(tokenizer, out_dir / "tools")
    print(f"\n== tools: SFT on {len(train_examples):,} transcripts")
    train.train(tool_lm, sft_batches(rows, settings["tools_batch"]),
                stage_config(settings, "tools", settings["tools_steps"], settings["tools_batch"], settings["tools_lr"],
                             out_dir),
                checkpoint_extra={"stage": "tools", "role": ROLE, "tokenizer": str((out_dir / "tools" / "tokenizer").absolute()),
                                  "settings": settings}, resume=args.resume)
    return evaluate_tools(tool_lm.cpu(), chat_model, chat_tokenizer, llava, tokenizer, eval_examples, data["heldout"])


if __name__ == "__main__":
    cli.run(main)
