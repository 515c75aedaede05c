"""LLaVA: chapter 04's chat model sees, through a projection of the frozen vision encoder's patch features.

    model = LLaVA(chat_model, clip.vision, image_token_id, vision_layer=0)   # vision frozen, projector new
    ids, loss_mask = render_with_image(messages, tokenizer, n_patches)   # <|image|> x N after the first <|user|>
    logits = model(idx, images)                                      # the N placeholders become the N patches
    replies = answer(model, tokenizer, conversations, images)       # greedy, batched, KV cache (chapter 02)

The picture enters the language model as N "visual tokens": patch n of the image, z_n (C_v wide, from the
vision transformer's layer config.vision_layer: the presets take layer 0, where a patch has not yet
attended to the others), becomes h_n = W_2 GELU(W_1 z_n + b_1) + b_2 (C wide, the language model's width), and
h_1..h_N take the places of the N <|image|> placeholders in the token embeddings. Everything after that is
chapter 02's GPT, unchanged. Two stages, as in LLaVA (Liu et al., 2023):
    1. feature alignment: only the projector trains (vision and language model frozen), on captions;
    2. visual instruction tuning: the projector and the language model train on question-answer
       conversations; the loss is chapter 04's, on the assistant's tokens only.
"""
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain", "04_sft"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import generation  # noqa: E402  (chapter 02: batched generation with the KV cache)
from chat_format import END, USER, render_chat, reply_text  # noqa: E402  (chapter 04)
from gpt import GPT, GPTConfig  # noqa: E402  (chapter 02)
from vision import VisionTransformer, ViTConfig  # noqa: E402  (this chapter)

IMAGE = "<|image|>"


class Projector(nn.Module):
    """LLaVA-1.5's modality projector, a 2-layer MLP: h = W_2 GELU(W_1 z + b_1) + b_2, (…, C_v) -> (…, C)."""

    def __init__(self, vision_dim, lm_dim):
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, lm_dim)
        self.fc2 = nn.Linear(lm_dim, lm_dim)

    def forward(self, z):
        # --- student part: the projection into the language model's space (lesson: "5. LLaVA") ---
        return self.fc2(F.gelu(self.fc1(z)))
        # --- end of student part ---


def splice_images(token_embeddings, idx, image_token_id, image_tokens):
    """Put the visual tokens where the <|image|> placeholders are.

    token_embeddings (B, T, C): wte(idx);  idx (B, T);  image_tokens (M, N, C): one picture per row of idx
    that holds placeholders, in row order, each row holding exactly N placeholders (rows with none are left
    as they are: a text-only conversation). Returns (B, T, C) where the k-th placeholder of the row with the
    m-th picture holds image_tokens[m, k]. ValueError if the counts do not match.
    """
    # --- student part: visual tokens in place of the placeholders (lesson: "5. LLaVA") ---
    slots = idx == image_token_id  # (B, T)
    per_row = slots.sum(dim=1)
    n = image_tokens.size(1) if image_tokens.numel() else 0
    if int((per_row > 0).sum()) != image_tokens.size(0) or bool(((per_row != 0) & (per_row != n)).any()):
        raise ValueError(f"{int((per_row > 0).sum())} rows hold {IMAGE} placeholders ({per_row.tolist()} per row) "
                         f"but {image_tokens.size(0)} pictures of {n} visual tokens were given")
    return token_embeddings.masked_scatter(slots[..., None], image_tokens.to(token_embeddings.dtype))
    # --- end of student part ---


@dataclass
class LLaVAConfig:
    """What rebuilds a LLaVA: the language model's and the vision encoder's configs, the placeholder's id,
    and which of the encoder's layers gives the visual tokens (None: its output; k: after its first k blocks)."""
    lm: dict
    vision: dict
    image_token_id: int
    vision_layer: int = None

    # chapter 02's generation loop reads these two off model.config
    @property
    def block_size(self):
        return self.lm["block_size"]

    @property
    def n_layer(self):
        return self.lm["n_layer"]


class LLaVA(nn.Module):
    """A chat model that reads pictures. Presents chapter 02's GPT interface (hidden, lm_head, config,
    check_length), so chapter 02's generation (KV cache, batching) runs it unchanged; the pictures of a
    generation call are set with `with model.seeing(images):`."""

    def __init__(self, lm, vision, image_token_id, vision_layer=None):
        super().__init__()
        import dataclasses
        self.lm, self.vision = lm, vision
        self.projector = Projector(vision.config.n_embd, lm.config.n_embd)
        self.config = LLaVAConfig(dataclasses.asdict(lm.config), dataclasses.asdict(vision.config), image_token_id,
                                  vision_layer)
        self.vision.requires_grad_(False)  # frozen in both stages, as in LLaVA
        self.lm_head = lm.lm_head
        self._images = None

    def check_length(self, T):
        self.lm.check_length(T)

    def image_tokens(self, images):
        """(M, 3, H, W) -> visual tokens (M, N, C): the frozen encoder's patches (from config.vision_layer: LLaVA
        reads a layer below the output, lesson section 5) through the projector."""
        with torch.no_grad():
            patches = self.vision.eval()(images, layer=self.config.vision_layer)
        return self.projector(patches)

    def hidden(self, idx, attention_mask=None, kv_cache=None, images=None, doc_ids=None, positions=None):
        """idx (B, T) with <|image|> placeholders -> hidden states (B, T, C); images (M, 3, H, W) for the
        M rows that hold placeholders (default: the pictures set by `seeing`)."""
        embeddings = self.lm.transformer.wte(idx)
        if bool((idx == self.config.image_token_id).any()):
            images = self._images if images is None else images
            if images is None:
                raise ValueError(f"the input holds {IMAGE} placeholders but no picture was given")
            embeddings = splice_images(embeddings, idx, self.config.image_token_id, self.image_tokens(images))
        return self.lm.hidden(idx, doc_ids=doc_ids, attention_mask=attention_mask, positions=positions,
                              kv_cache=kv_cache, embeddings=embeddings)

    def forward(self, idx, images=None):
        """idx (B, T), images (M, 3, H, W) -> logits (B, T, vocab)."""
        return self.lm_head(self.hidden(idx, images=images))

    @contextmanager
    def seeing(self, images):
        """Within the block, placeholders read these pictures (M, 3, H, W): for chapter 02's generate_batch."""
        self._images = images
        try:
            yield self
        finally:
            self._images = None


def llava_loss(model, batch):
    """The loss hook of both stages (chapter 03's train loop): chapter 04's masked SFT loss with pictures.

        loss = −1/|A| · Σ_{t ∈ A} log softmax(logits_t)[y_t],   A = {t : y_t ≠ −1} (the assistant's tokens)

    batch: (x, y, images, has_image): x, y (B, T); images (B, 3, H, W) (a blank one for a text-only row);
    has_image (B,) bool: which rows hold <|image|> placeholders.
    """
    x, y, images, has_image = batch
    logits = model(x, images[has_image])
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-1)


# ----------------------------------------------------------------------------------------------------
# Conversations with a picture


def render_with_image(messages, tokenizer, n_patches, add_generation_prompt=False):
    """chapter 04's render_chat, with N = n_patches <|image|> placeholders right after the first <|user|>:

        <|endoftext|><|user|><|image|>…<|image|>What colour is the sun?<|end|><|assistant|>red<|end|>

    Returns (ids, loss_mask); the placeholders are context (mask 0). n_patches = 0: no picture.
    """
    ids, loss_mask = render_chat(messages, tokenizer, add_generation_prompt)
    if n_patches:
        at = ids.index(tokenizer.special_tokens[USER]) + 1
        ids[at:at] = [tokenizer.special_tokens[IMAGE]] * n_patches
        loss_mask[at:at] = [0] * n_patches
    return ids, loss_mask


@torch.no_grad()
def answer(model, tokenizer, conversations, images, max_new_tokens=8, batch_size=128):
    """Greedy replies to conversations (lists of messages ending with the user's turn) about pictures.

    images: (B, 3, H, W) tensor, one per conversation, or None for no picture (the blind baseline).
    Returns the replies as text (without <|end|>). Runs chapter 02's generate_batch on the LLaVA model.
    """
    n_patches = 0 if images is None else model.vision.config.n_patches
    end = tokenizer.special_tokens[END]
    replies = []
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start:start + batch_size]
        prompts = [render_with_image(c, tokenizer, n_patches, add_generation_prompt=True)[0] for c in chunk]
        with model.seeing(None if images is None else images[start:start + batch_size]):
            outputs = generation.generate_batch(model, prompts, max_new_tokens, temperature=0.0, stop_tokens=[end])
        replies += [reply_text(tokenizer, [t for t in out if t != end]).strip() for out in outputs]
    return replies


def build_llava(config_dict, state_dict=None):
    """A LLaVA from a checkpoint's model_config (and its weights): how chapter 08 registers its model kind."""
    config = LLaVAConfig(**config_dict)
    model = LLaVA(GPT(GPTConfig(**config.lm)), VisionTransformer(ViTConfig(**config.vision)), config.image_token_id,
                  config.vision_layer)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval()
