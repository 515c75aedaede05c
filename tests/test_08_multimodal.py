"""Chapter 08: scenes and their split, the ViT, CLIP's loss and metrics, LLaVA's splice, tools and the runtime."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import clip_model
import llava
import scenes
import tool_use
import vision
from bpe import train_bpe
from chat_format import CHAT_TOKENS, add_chat_tokens, render_chat
from conftest import tiny_gpt

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def splits():
    return scenes.scene_splits(0, n_train=400, n_heldout=60, n_composition=40)


@pytest.fixture(scope="module")
def tok():
    """A byte-level tokenizer with the chat tokens and chapter 08's tokens (no merges: fast to build)."""
    base = train_bpe("a b", 257, special_tokens=["<|endoftext|>"])
    return add_chat_tokens(base).with_special_tokens([llava.IMAGE] + tool_use.TOOL_TOKENS)


# ----------------------------------------------------------------------------------------------------
# scenes


def test_no_heldout_composition_in_training(splits):
    held = set(scenes.HELDOUT_PAIRS)
    rng = np.random.default_rng(0)
    for scene in splits["train"]:
        assert not scenes.pairs_in(scene) & held
        texts = [scenes.caption(scene), scenes.caption(scene, places=False)]
        texts += [q["question"] for q in scenes.questions(scene, rng, scenes.seen_pairs())]
        for text in texts:
            for colour, shape in held:
                assert f"{colour} {shape}" not in text, text


def test_splits_by_content(splits):
    train_keys = {scenes.scene_key(s) for s in splits["train"]}
    assert not train_keys & {scenes.scene_key(s) for s in splits["heldout"]}
    assert all(not scenes.pairs_in(s) & set(scenes.HELDOUT_PAIRS) for s in splits["heldout"])
    assert all(scenes.pairs_in(s) & set(scenes.HELDOUT_PAIRS) for s in splits["composition"])
    again = scenes.scene_splits(0, n_train=400, n_heldout=60, n_composition=40)
    assert again == splits  # deterministic


def test_scene_rules_and_siblings(splits):
    for scene in splits["train"] + splits["composition"]:
        objects = scene["objects"]
        assert 1 <= len(objects) <= scenes.MAX_OBJECTS
        for field in ("colour", "shape"):
            assert len({o[field] for o in objects}) == len(objects)  # "the red object" names one object
        assert len({(o["row"], o["col"]) for o in objects}) == len(objects)
    first, second = splits["train"][0], splits["train"][1]  # siblings: one layout
    assert [(o["row"], o["col"], o["size"]) for o in first["objects"]] == \
           [(o["row"], o["col"], o["size"]) for o in second["objects"]]


def test_render_puts_each_object_in_its_cell():
    scene = {"objects": [dict(colour="red", shape="box", size="large", row=0, col=2, dx=0, dy=0),
                         dict(colour="blue", shape="sun", size="small", row=2, col=0, dx=1, dy=-1)]}
    image = scenes.render(scene)
    assert image.shape == (36, 36, 3) and image.dtype == np.uint8
    red = np.all(image == scenes.COLOURS["red"], axis=-1)
    blue = np.all(image == scenes.COLOURS["blue"], axis=-1)
    assert red.sum() == 10 * 10 and red[0:12, 24:36].sum() == red.sum()  # a large box: 10 x 10 in its cell
    assert 0 < blue.sum() < 7 * 7 and blue[24:36, 0:12].sum() == blue.sum()
    masks = [scenes.shape_mask(s, 5, 17.5, 17.5) for s in scenes.SHAPES]
    assert len({m.tobytes() for m in masks}) == len(scenes.SHAPES)  # four different shapes
    assert scenes.caption(scene) == "a large red box at the top right and a small blue sun at the bottom left"


def test_questions_have_right_answers():
    scene = {"objects": [dict(colour="red", shape="box", size="large", row=0, col=0, dx=0, dy=0),
                         dict(colour="blue", shape="sun", size="small", row=2, col=2, dx=0, dy=0)]}
    for seed in range(20):
        for q in scenes.questions(scene, np.random.default_rng(seed)):
            if q["type"] == "count":
                assert q["answer"] == "2"
            if q["type"] == "spatial":  # the box is left of and above the sun
                box_first = q["question"].startswith("Is the red box")
                assert q["answer"] == ("yes" if box_first == ("left" in q["question"] or "above" in q["question"])
                                       else "no")
            if q["type"] == "colour":
                assert q["answer"] == ("red" if "box" in q["question"] else "blue")


def test_replies_name_the_object_right_before_the_answer_and_grade_right():
    scene = {"objects": [dict(colour="red", shape="box", size="large", row=0, col=0, dx=0, dy=0),
                         dict(colour="blue", shape="sun", size="small", row=2, col=2, dx=0, dy=0)]}
    for seed in range(20):
        for q in scenes.questions(scene, np.random.default_rng(seed)):
            assert scenes.grade_reply(q["reply"], q["answer"], q["type"]), q
            words = q["reply"].rstrip(".").split()
            if q["type"] == "colour":  # "The sun blue.": the shape the question names, then its colour
                assert words[-2:] == [q["question"].rstrip("?").split()[-1], q["answer"]]
            if q["type"] == "shape":  # "It is a blue sun."
                assert words[-2:] == [q["question"].split()[-2], q["answer"]]


def test_grade_reply():
    assert scenes.grade_reply("red", "red", "colour")
    assert scenes.grade_reply("It is red.", "red", "colour")
    assert not scenes.grade_reply("blue, not red", "red", "colour")
    assert scenes.grade_reply("three", "3", "count") and not scenes.grade_reply("", "yes", "exists")


# ----------------------------------------------------------------------------------------------------
# the vision transformer and CLIP


def test_patchify_matches_unfold():
    images = torch.arange(16.0).view(1, 1, 4, 4)
    patches = vision.patchify(images, 2)
    assert patches[0, 0].tolist() == [0, 1, 4, 5] and patches[0, 1].tolist() == [2, 3, 6, 7]
    x = torch.randn(2, 3, 12, 12)
    reference = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # (B, N, C*p*p), channel-first
    assert torch.equal(vision.patchify(x, 4), reference)


def test_vit_attention_is_not_causal_and_layer_0_is_each_patch_alone():
    torch.manual_seed(0)
    encoder = vision.VisionTransformer(vision.ViTConfig(n_layer=2, n_embd=16, n_head=2)).eval()
    images = torch.randn(1, 3, 36, 36)
    changed = images.clone()
    changed[:, :, 24:, 24:] += 1.0  # only the last patch
    out, out_changed = encoder(images), encoder(changed)
    assert out.shape == (1, 9, 16)
    assert not torch.allclose(out[:, 0], out_changed[:, 0])  # the first patch sees the last one
    # layer 0 (what LLaVA reads): patch embedding + position, before any attention
    assert torch.allclose(encoder(images, layer=0), encoder.patch_embed(vision.patchify(images, 12)) + encoder.pos)
    assert torch.equal(encoder(images, layer=0)[:, :8], encoder(changed, layer=0)[:, :8])  # no patch sees another
    assert not torch.allclose(encoder(images, layer=1), out)  # layer 1: one block, no final norm
    assert torch.allclose(encoder(images, layer=None), out)


def test_clip_loss_hand_computed():
    eye = torch.eye(2)
    # logits = I: each row and column: -log(e / (e + 1)) = log(1 + 1/e)
    assert clip_model.clip_loss(eye, eye, torch.tensor(0.0)).item() == pytest.approx(math.log(1 + math.exp(-1)))
    image = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    text = F.normalize(torch.tensor([[1.0, 0.2], [0.0, 1.0], [1.0, -1.0]]), dim=1)
    s = 2.0
    logits = s * (image @ text.t()).numpy()
    rows = -np.mean([logits[i, i] - np.log(np.exp(logits[i]).sum()) for i in range(3)])
    cols = -np.mean([logits[j, j] - np.log(np.exp(logits[:, j]).sum()) for j in range(3)])
    got = clip_model.clip_loss(image, text, torch.tensor(math.log(s))).item()
    assert got == pytest.approx((rows + cols) / 2, rel=1e-5)
    assert rows != pytest.approx(cols)  # the case tells a one-sided loss from the symmetric one
    capped = clip_model.clip_loss(image, text, torch.tensor(math.log(1000.0))).item()
    assert capped == pytest.approx(clip_model.clip_loss(image, text, torch.tensor(math.log(100.0))).item())


def test_recall_at_k():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.5, 0.9, 0.1]])
    assert clip_model.recall_at_k(similarity, 1) == pytest.approx(1 / 3)
    assert clip_model.recall_at_k(similarity, 2) == pytest.approx(2 / 3)
    assert clip_model.recall_at_k(similarity, 3) == pytest.approx(1.0)


def test_clip_text_feature_ignores_padding_and_zero_shot_runs(tok):
    torch.manual_seed(0)
    model = clip_model.CLIP(clip_model.CLIPConfig(vocab_size=tok.vocab_size, text_block_size=32, text_layers=1,
                                                  text_embd=16, text_heads=2, embed_dim=8,
                                                  vision=vision.ViTConfig(n_layer=1, n_embd=16, n_head=2))).eval()
    ids, lengths = clip_model.encode_texts(["a b", "a b a b a b"], tok)
    alone = model.encode_text(*clip_model.encode_texts(["a b"], tok))
    assert torch.allclose(model.encode_text(ids, lengths)[0], alone[0], atol=1e-6)
    images = torch.randn(3, 3, 36, 36)
    predicted = clip_model.zero_shot_classify(model, images, {"x": ["a"], "y": ["b b"]}, tok)
    assert len(predicted) == 3 and set(predicted) <= {"x", "y"}


def test_linear_probe_separates_separable_data():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    labels = (x[:, 0] + x[:, 1] > 0).long()
    assert (clip_model.linear_probe(x, labels, x) == labels).float().mean() > 0.95


# ----------------------------------------------------------------------------------------------------
# LLaVA


def test_gpt_hidden_with_embeddings_equals_token_ids():
    model = tiny_gpt(50)
    idx = torch.randint(0, 50, (2, 7))
    assert torch.allclose(model.hidden(idx, embeddings=model.transformer.wte(idx)), model.hidden(idx))


def test_projector_is_two_layer_mlp():
    torch.manual_seed(0)
    projector = llava.Projector(4, 6)
    z = torch.randn(2, 3, 4)
    expected = projector.fc2(F.gelu(projector.fc1(z)))
    assert torch.allclose(projector(z), expected) and projector(z).shape == (2, 3, 6)


def test_splice_images_in_order():
    image_id = 9
    idx = torch.tensor([[1, 9, 9, 2], [3, 4, 5, 6], [9, 9, 7, 8]])
    embeddings = torch.zeros(3, 4, 2)
    pictures = torch.tensor([[[1.0, 1.0], [2.0, 2.0]], [[3.0, 3.0], [4.0, 4.0]]])
    out = llava.splice_images(embeddings, idx, image_id, pictures)
    assert out[0, 1].tolist() == [1, 1] and out[0, 2].tolist() == [2, 2]
    assert out[2, 0].tolist() == [3, 3] and out[2, 1].tolist() == [4, 4]
    assert out[1].abs().sum() == 0 and out[0, 0].abs().sum() == 0
    with pytest.raises(ValueError):
        llava.splice_images(embeddings, idx, image_id, pictures[:1])


def test_render_with_image(tok):
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    plain_ids, plain_mask = render_chat(messages, tok)
    ids, mask = llava.render_with_image(messages, tok, 4)
    image_id = tok.special_tokens[llava.IMAGE]
    at = plain_ids.index(tok.special_tokens["<|user|>"]) + 1
    assert ids[at:at + 4] == [image_id] * 4 and mask[at:at + 4] == [0] * 4
    assert [t for t in ids if t != image_id] == plain_ids and sum(mask) == sum(plain_mask)


def make_llava(tok):
    torch.manual_seed(0)
    lm = tiny_gpt(tok.vocab_size, n_embd=16)
    encoder = vision.VisionTransformer(vision.ViTConfig(n_layer=1, n_embd=8, n_head=2))
    return llava.LLaVA(lm, encoder, tok.special_tokens[llava.IMAGE])


def test_llava_sees_the_picture_and_generation_matches_manual_greedy(tok):
    model = make_llava(tok).eval()
    messages = [{"role": "user", "content": "a b"}]
    ids, _ = llava.render_with_image(messages, tok, 9, add_generation_prompt=True)
    idx = torch.tensor([ids])
    pictures = torch.randn(2, 3, 36, 36)
    assert not torch.allclose(model(idx, pictures[:1]), model(idx, pictures[1:]))  # the picture matters
    manual = list(ids)
    for _ in range(3):
        manual.append(int(model(torch.tensor([manual]), pictures[:1])[0, -1].argmax()))
    replies = llava.answer(model, tok, [messages], pictures[:1], max_new_tokens=3)
    expected = [t for t in manual[len(ids):]]
    end = tok.special_tokens["<|end|>"]
    expected = expected[:expected.index(end)] if end in expected else expected
    assert replies[0] == tok.decode(expected).strip()


def test_llava_reads_the_vision_layer_its_config_names(tok):
    model = make_llava(tok).eval()
    pictures = torch.randn(2, 3, 36, 36)
    assert model.config.vision_layer is None  # default: the encoder's output, as checkpoints before the option
    assert torch.equal(model.image_tokens(pictures), model.projector(model.vision(pictures)))
    model.config.vision_layer = 0
    assert torch.equal(model.image_tokens(pictures), model.projector(model.vision(pictures, layer=0)))
    import dataclasses
    rebuilt = llava.build_llava(dataclasses.asdict(model.config), model.state_dict())
    assert rebuilt.config.vision_layer == 0 and torch.equal(rebuilt.image_tokens(pictures), model.image_tokens(pictures))


def test_stage1_trains_only_the_projector(tok):
    import train
    model = make_llava(tok)
    model.lm.requires_grad_(False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ids, mask = llava.render_with_image([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                                        tok, 9)
    from chat_format import to_inputs_and_targets
    x, y = to_inputs_and_targets(ids, mask)
    batch = (torch.tensor([x]), torch.tensor([y]), torch.randn(1, 3, 36, 36), torch.tensor([True]))
    optimizer = train.make_optimizer(model, 1e-2)
    llava.llava_loss(model, batch).backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith("projector.") for name in changed)


# ----------------------------------------------------------------------------------------------------
# tools


@pytest.mark.parametrize("text, value", [("23 + 45", "68"), ("2 + 3 * 4", "14"), ("(2 + 3) * 4", "20"),
                                         ("10 - 4 - 3", "3"), ("2 * (3 - 5) / 4", "-1"), ("7 / 2", "3.5"),
                                         ("-3 * -3", "9"), ("100 / 8 * 2", "25")])
def test_calculator(text, value):
    assert tool_use.calculate(text) == value


@pytest.mark.parametrize("text", ["1 / 0", "__import__('os')", "2 +", "(1 + 2", "1 2", "", "2 ** 3", "x" * 300])
def test_calculator_refuses(text):
    with pytest.raises(tool_use.CalcError):
        tool_use.calculate(text)


def test_tool_transcript_mask(tok):
    ids, mask = tool_use.render_tool_transcript("a", [("calc(1+1)", "2")], "b", tok)
    special = tok.special_tokens
    learned = [t for t, m in zip(ids, mask) if m]
    written = [t for t, m in zip(ids, mask) if not m]
    assert special[tool_use.TOOL] in learned and special[tool_use.TOOL_END] in learned and special["<|end|>"] in learned
    assert special[tool_use.RESULT] in written and special[tool_use.RESULT_END] in written
    start, end = ids.index(special[tool_use.RESULT]), ids.index(special[tool_use.RESULT_END])
    assert tok.decode(ids[start + 1:end]) == "2" and not any(mask[start:end + 1])


def test_runtime_runs_calls_and_stops_runaway_loops(tok, monkeypatch):
    special = tok.special_tokens
    call = [special[tool_use.TOOL], *tok.encode_ordinary("calc(1+1)"), special[tool_use.TOOL_END]]
    final = [*tok.encode_ordinary("ab"), special["<|end|>"]]

    def fake_generate(model, prompts, *args, **kwargs):  # question "a" calls once then answers; "b" calls forever
        return [final if "<|user|>a<|end|>" in tok.decode(p) and "<|result|>2<|/result|>" in tok.decode(p) else call
                for p in prompts]

    monkeypatch.setattr(tool_use.generation, "generate_batch", fake_generate)
    model = type("M", (), {"config": type("C", (), {"block_size": 10_000})()})()
    replies, traces = tool_use.run_with_tools(model, tok, ["a", "b"], {"calc": tool_use.calculate}, max_calls=3)
    assert replies[0] == "ab" and traces[0] == [("calc(1+1)", "2")]
    assert "stopped" in replies[1] and len(traces[1]) == 3


def test_tool_examples_keep_the_world_split(w0):
    import multimodal
    train_questions = {e["question"] for e in multimodal.tool_examples(w0, "train", 300, 0)}
    heldout = multimodal.tool_examples(w0, "heldout", 40, 1)
    assert not train_questions & {e["question"] for e in heldout}
    for e in heldout:
        for call, result in e["calls"]:
            assert tool_use.calculate(call[len("calc("):-1]) == result
        assert int(e["calls"][-1][1]) == e["answer"]


# ----------------------------------------------------------------------------------------------------
# bad input


def test_missing_chat_model_is_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "08_multimodal" / "multimodal.py"), "--chat",
                             str(tmp_path / "nope.pt"), "--out-dir", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "sft.py" in result.stderr and not (tmp_path / "out").exists()


def test_chapter_07_reads_the_multimodal_rows_by_path(tmp_path):
    import evaluate  # chapter 07: it never imports chapter 08, it reads 08's summary.json
    assert evaluate.multimodal_table(tmp_path / "none.json") == ""
    route = {t: 0.5 for t in scenes.QUESTION_TYPES}
    summary = {"clip": {"heldout": {"zeroshot_colour": 0.97, "zeroshot_shape": 0.91, "probe_colour": 1.0,
                                    "probe_shape": 0.95, "i2t_r1": 0.4, "random_r1": 0.01}},
               "llava": {"heldout": {"image": dict(route, colour=0.93), "blind": route, "caption": route}},
               "tools": {"arith": {"with_tools": 0.98, "without_tools": 0.1}}}
    (tmp_path / "summary.json").write_text(__import__("json").dumps(summary))
    table = evaluate.multimodal_table(tmp_path / "summary.json")
    assert "| CLIP zero-shot colour / shape (one object) | 97% / 91% |" in table
    assert "| LLaVA colour questions | 93% | blind 50%" in table and "| tools: bare arithmetic | 98% |" in table


def test_uploaded_pictures_are_scaled_and_bad_ones_refused():
    import chat_vision
    import vision_web
    big = np.kron(scenes.render(scenes.scene_by_number(1)), np.ones((2, 2, 1), np.uint8))  # 72 x 72
    rgba = np.concatenate([big / 255.0, np.ones(big.shape[:2] + (1,))], axis=2)
    assert np.array_equal(chat_vision.png_pixels_to_scene_image(rgba), scenes.render(scenes.scene_by_number(1)))
    with pytest.raises(ValueError):
        vision_web.picture_of({"png": "not a png"})
    with pytest.raises(ValueError):
        vision_web.picture_of({"scene": -1})
    assert vision_web.picture_of({"scene": 1}).shape == (36, 36, 3)


def test_chapter_07_leaves_chapter_08_checkpoints_to_its_summary(tmp_path):
    """07 lists models by the role their checkpoint records (never by folder): chapter 08's are 'multimodal'."""
    import evaluate
    import multimodal
    folder = tmp_path / "somewhere" / "llava"
    folder.mkdir(parents=True)
    torch.save({"stage": "llava", "role": multimodal.ROLE, "model": {}, "model_config": {}}, folder / "ckpt.pt")
    models, skipped = evaluate.find_models(tmp_path)
    assert models == [] and any("a multimodal model (stage llava)" in line for line in skipped), skipped


# ----------------------------------------------------------------------------------------------------
# the script's data: CLIP's batches, stage 2's mix, resume


def test_clip_batches_mix_sibling_groups_and_single_objects(splits, tok):
    import multimodal
    train = splits["train"][:40]
    captions = [scenes.caption(s) for s in train] + [scenes.caption(s, places=False) for s in train]
    texts = clip_model.encode_texts(captions, tok)
    singles = scenes.single_object_scenes(3, scenes.seen_pairs(), 2)
    single_texts = clip_model.encode_texts([scenes.caption(s, places=False) for s in singles], tok)
    single_images = multimodal.images_of(singles)
    get_batch = multimodal.clip_batches(multimodal.images_of(train), texts, None, None, 16,
                                        (single_images, single_texts), 0.5)
    images, ids, lengths = get_batch("train", torch.Generator().manual_seed(0))
    assert images.shape[0] == ids.shape[0] == lengths.shape[0] == 16
    assert ids.shape[1] == int(lengths.max())
    for k in (0, 4):  # the first half: two whole sibling groups (one layout each)
        group = [i for i in range(len(train)) if torch.equal(multimodal.images_of(train[i:i + 1])[0], images[k])][0]
        assert group % scenes.SIBLINGS == 0
    for row in range(8, 16):  # the second half: single objects with their own placeless captions
        match = [j for j in range(len(singles)) if torch.equal(single_images[j], images[row])]
        assert match, "row is not a single-object scene"
        text = tok.decode(ids[row, :lengths[row] - 1].tolist())
        assert text == scenes.caption(singles[match[0]], places=False)


def test_stage2_mixes_chapter_04_conversations_without_pictures(w0, tok):
    import multimodal
    mix = {"unknown": 3, "harmful": 3, "benign": 2}
    chat = multimodal.chat_conversations(w0, mix, seed=0)
    assert len(chat) == 8 and all(image == -1 for _, image in chat)
    replies = " ".join(m["content"] for messages, _ in chat for m in messages if m["role"] == "assistant")
    assert "know" in replies.lower() and any(w in replies.lower() for w in ("can't", "cannot", "won't", "not"))
    X, Y, image_index = multimodal.llava_rows(chat, tok, 9, 512)
    assert (image_index == -1).all() and not (X == tok.special_tokens[llava.IMAGE]).any()
    assert (Y != -1).any(dim=1).all()  # every row trains on its assistant's reply


def test_script_resumes_and_never_starts_over_a_run(tmp_path):
    script = [sys.executable, str(REPO / "08_multimodal" / "multimodal.py"), "--chat", str(tmp_path / "nope.pt")]
    out = tmp_path / "out"
    result = subprocess.run(script + ["--out-dir", str(out), "--resume"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no clip/ckpt.pt" in result.stderr and not out.exists()
    (out / "clip").mkdir(parents=True)
    (out / "clip" / "ckpt.pt").write_bytes(b"an interrupted run's checkpoint")
    result = subprocess.run(script + ["--out-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--resume" in result.stderr and "Traceback" not in result.stderr
    assert (out / "clip" / "ckpt.pt").read_bytes() == b"an interrupted run's checkpoint"
