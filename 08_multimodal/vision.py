"""A vision transformer (ViT) built from chapter 02's blocks: an image is a sequence of patches.

    encoder = VisionTransformer(ViTConfig())
    patches = encoder(images)          # (B, 3, 36, 36) -> (B, 9, 64): one feature vector per 12 x 12 patch
    pooled = patches.mean(dim=1)       # (B, 64): the whole image (CLIP's image feature; mean pooling)

The only differences from chapter 02's GPT: the "tokens" are patches, embedded by one Linear layer from
their C·p·p pixel values (ViT's patch embedding, a convolution with stride p written as a matmul); and
attention is NOT causal: every patch sees every other (an image has no left-to-right order).
"""
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
for chapter in ["02_transformer"]:  # the earlier chapter this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from gpt import Block, GPTConfig, make_norm  # noqa: E402  (chapter 02)


@dataclass
class ViTConfig:
    """The vision encoder's shape. Defaults: the tiny preset (36 x 36 scenes, 12 x 12 patches = the cells)."""
    image_size: int = 36
    patch_size: int = 12
    channels: int = 3
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    attn_impl: str = "sdpa"

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")

    @property
    def n_patches(self):
        return (self.image_size // self.patch_size) ** 2

    def block_config(self):
        """The GPTConfig chapter 02's Block reads (its vocabulary is unused here)."""
        return GPTConfig(vocab_size=1, block_size=self.n_patches, n_layer=self.n_layer, n_head=self.n_head,
                         n_embd=self.n_embd, attn_impl=self.attn_impl)


def patchify(images, patch_size):
    """Cut images into non-overlapping patches, row by row: (B, C, H, W) -> (B, N, C·p·p), N = (H/p)·(W/p).

    Patch n = (row r, column c), n = r·(W/p) + c, holds images[:, :, r·p:(r+1)·p, c·p:(c+1)·p] flattened
    channel-first. Example: a (1, 1, 4, 4) image of 0..15 with p = 2 -> patch 0 = [0, 1, 4, 5].
    """
    # --- student part: cutting an image into patches (lesson: "2. A vision transformer") ---
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows, p, cols, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)
    # --- end of student part ---


class VisionTransformer(nn.Module):
    """Images (B, C, H, W) -> patch features (B, N, n_embd) after the final norm.

    x = patchify(images) W_patch + pos;  x = Block(x) ... (full attention);  out = norm(x)
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        block_config = config.block_config()
        self.patch_embed = nn.Linear(config.channels * config.patch_size ** 2, config.n_embd)
        self.pos = nn.Parameter(torch.randn(1, config.n_patches, config.n_embd) * 0.02)
        self.blocks = nn.ModuleList([Block(block_config, i) for i in range(config.n_layer)])
        self.ln_f = make_norm(block_config)
        # True = may attend: every patch sees every patch (no causal mask)
        self.register_buffer("full_attention", torch.ones(1, 1, config.n_patches, config.n_patches, dtype=torch.bool),
                             persistent=False)

    def forward(self, images, layer=None):
        """images (B, C, H, W) -> patch features (B, N, n_embd). layer=None: after every block and the final
        norm (what CLIP pools); layer=k: the residual stream after the first k blocks, without the final norm
        (0: the patch embeddings plus positions, before any attention: each patch sees only itself)."""
        if images.shape[1:] != (self.config.channels, self.config.image_size, self.config.image_size):
            raise ValueError(f"images of shape {tuple(images.shape)}: this encoder reads (B, {self.config.channels}, "
                             f"{self.config.image_size}, {self.config.image_size})")
        x = self.patch_embed(patchify(images, self.config.patch_size)) + self.pos  # (B, N, C)
        for block in self.blocks[:layer]:
            x = block(x, attn_mask=self.full_attention)
        return self.ln_f(x) if layer is None else x


def vit_config_from_dict(fields):
    """A ViTConfig from a checkpoint's dict (unknown fields refused with a ValueError)."""
    known = {f.name for f in dataclasses.fields(ViTConfig)}
    if set(fields) - known:
        raise ValueError(f"unknown vision-encoder fields {sorted(set(fields) - known)}")
    return ViTConfig(**fields)
