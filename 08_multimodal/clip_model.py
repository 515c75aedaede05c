"""CLIP: a vision encoder and a text encoder trained to agree, with the symmetric InfoNCE loss.

    model = CLIP(CLIPConfig(vocab_size=tokenizer.vocab_size))
    loss = clip_loss(image_emb, text_emb, model.logit_scale)      # the formula, on its own
    ids, lengths = encode_texts(["a large red circle in the centre"], tokenizer)
    image_emb, text_emb = model.encode_image(images), model.encode_text(ids, lengths)   # unit vectors (B, D)

Image side: chapter 08's VisionTransformer, mean-pooled over patches, then a linear map to D.
Text side: chapter 02's GPT trunk (causal, as in CLIP) on chapter 04's tokenizer; the text's feature is the
hidden state at its last position, an <|endoftext|> appended to every text (CLIP's [EOS] token): the only
position that has read the whole text. Both are L2-normalised, so a dot product is a cosine similarity.
"""
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
for chapter in ["02_transformer"]:  # the earlier chapter this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

from gpt import GPT, GPTConfig  # noqa: E402  (chapter 02)
from vision import VisionTransformer, ViTConfig  # noqa: E402  (this chapter)

EOT = "<|endoftext|>"


@dataclass
class CLIPConfig:
    """Both encoders' shapes and the shared space. Defaults: the tiny preset."""
    vocab_size: int = 2052
    text_block_size: int = 80
    text_layers: int = 2
    text_heads: int = 4
    text_embd: int = 64
    vision: ViTConfig = None
    embed_dim: int = 64
    init_temperature: float = 0.07  # CLIP's: logit scale starts at 1/0.07 ≈ 14.3
    attn_impl: str = "sdpa"

    def __post_init__(self):
        if self.vision is None:
            self.vision = ViTConfig()
        elif isinstance(self.vision, dict):
            self.vision = ViTConfig(**self.vision)


class CLIP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.vision = VisionTransformer(config.vision)
        self.text = GPT(GPTConfig(vocab_size=config.vocab_size, block_size=config.text_block_size,
                                  n_layer=config.text_layers, n_head=config.text_heads, n_embd=config.text_embd,
                                  attn_impl=config.attn_impl))
        self.image_proj = nn.Linear(config.vision.n_embd, config.embed_dim, bias=False)
        self.text_proj = nn.Linear(config.text_embd, config.embed_dim, bias=False)
        # log of the logit scale s = 1/τ: learned in log space so s stays positive
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)))

    def image_features(self, images):
        """(B, 3, H, W) -> (patch features (B, N, C_v), pooled feature (B, C_v)) before the projection."""
        patches = self.vision(images)
        return patches, patches.mean(dim=1)

    def encode_image(self, images):
        """(B, 3, H, W) -> unit vectors (B, D)."""
        return F.normalize(self.image_proj(self.image_features(images)[1]), dim=-1)

    def encode_text(self, ids, lengths):
        """ids (B, T) right-padded, lengths (B,) -> unit vectors (B, D): the state at each text's last token.

        Causal attention: padding after a text never changes the states of its own tokens."""
        hidden = self.text.hidden(ids)  # (B, T, C_t)
        last = hidden[torch.arange(ids.size(0), device=ids.device), lengths - 1]  # (B, C_t)
        return F.normalize(self.text_proj(last), dim=-1)

    def forward(self, images, ids, lengths):
        """The training step's loss hook body: (loss, {"temperature": τ})."""
        loss = clip_loss(self.encode_image(images), self.encode_text(ids, lengths), self.logit_scale)
        return loss, {"temperature": torch.exp(-self.logit_scale.detach())}


def clip_loss(image_emb, text_emb, log_scale):
    """CLIP's symmetric InfoNCE loss over a batch of N matching (image, text) pairs.

        logits_ij = s · <I_i, T_j>,   s = exp(log_scale) = 1/τ (capped at 100, as in CLIP)
        L = ½ [ −1/N Σ_i log softmax_j(logits_i·)[i]  +  −1/N Σ_j log softmax_i(logits_·j)[j] ]

    The first term picks the right text for each image (rows), the second the right image for each text
    (columns); pair i is the positive, the other N−1 of the batch are the negatives.
    image_emb, text_emb: (N, D) unit vectors; log_scale: 0-dim tensor. Returns a 0-dim tensor.
    """
    # --- student part: the symmetric contrastive loss (lesson: "3. CLIP's loss") ---
    scale = log_scale.clamp(max=math.log(100.0)).exp()
    logits = scale * image_emb @ text_emb.t()  # (N, N): row i = image i against every text
    targets = torch.arange(logits.size(0), device=logits.device)
    return (F.cross_entropy(logits.float(), targets) + F.cross_entropy(logits.t().float(), targets)) / 2
    # --- end of student part ---


def recall_at_k(similarity, k):
    """Fraction of rows i whose own column i is among the k largest of row i.

    similarity: (N, N), row i = query i against every candidate, the right one on the diagonal. Image-to-
    text recall takes similarity = I Tᵀ, text-to-image its transpose. A random ranking scores k/N.
    """
    # --- student part: recall@k (lesson: "4. Reading the results") ---
    top = similarity.topk(k, dim=1).indices  # (N, k)
    hits = (top == torch.arange(similarity.size(0), device=similarity.device)[:, None]).any(dim=1)
    return hits.float().mean().item()
    # --- end of student part ---


def encode_texts(texts, tokenizer, block_size=None):
    """Texts -> (ids (B, T) right-padded with <|endoftext|>, lengths (B,)): each text + <|endoftext|>.

    ValueError if a text does not fit in block_size tokens."""
    eot = tokenizer.special_tokens[EOT]
    rows = [tokenizer.encode_ordinary(text) + [eot] for text in texts]
    longest = max(len(r) for r in rows)
    if block_size is not None and longest > block_size:
        raise ValueError(f"a text of {longest} tokens does not fit the text encoder's {block_size}")
    ids = torch.full((len(rows), longest), eot, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    return ids, torch.tensor([len(r) for r in rows])


@torch.no_grad()
def zero_shot_classify(model, images, class_prompts, tokenizer, batch_size=256):
    """CLIP's zero-shot classifier: the class whose (ensembled) prompt embedding is nearest the image.

    class_prompts: {class name: [prompt texts]}; a class's embedding is the normalised mean of its prompts'
    embeddings (prompt ensembling, as CLIP does with its 80 templates). images: (N, 3, H, W).
    Returns the predicted class name of every image (a list of N names).
    """
    names = list(class_prompts)
    class_emb = []
    for name in names:
        ids, lengths = encode_texts(class_prompts[name], tokenizer)
        class_emb.append(F.normalize(model.encode_text(ids, lengths).mean(dim=0), dim=0))
    class_emb = torch.stack(class_emb)  # (K, D)
    image_emb = torch.cat([model.encode_image(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    return [names[k] for k in (image_emb @ class_emb.t()).argmax(dim=1).tolist()]


def linear_probe(train_features, train_labels, test_features, steps=300, lr=0.05, weight_decay=1e-3, seed=0):
    """A supervised linear classifier on frozen features (multinomial logistic regression, full batch).

    train_features (N, C), train_labels (N,) ints in [0, K); test_features (M, C) -> predicted labels (M,).
    The features are standardised with the training set's mean and std first.
    """
    torch.manual_seed(seed)
    mean, std = train_features.mean(0), train_features.std(0) + 1e-6
    x, x_test = (train_features - mean) / std, (test_features - mean) / std
    n_classes = int(train_labels.max()) + 1
    probe = nn.Linear(x.size(1), n_classes)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():  # callers evaluate under no_grad; the probe itself must learn
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(probe(x), train_labels).backward()
            optimizer.step()
    with torch.no_grad():
        return probe(x_test).argmax(dim=1)
