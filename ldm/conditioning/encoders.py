"""Domain encoders tau_theta (Sec. 3.3, D.2.1): class embedding, text (and box-token) transformer, spatial concat,
label maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ldm.conditioning.config import ConditioningConfig
from ldm.conditioning.spatial import SpatialRescaler, one_hot


class ClassEmbedder(nn.Module):
    """One learnable embedding per class as a single token; row n_classes is the null class (CFG)."""

    def __init__(self, n_classes: int, embed_dim: int = 512):
        super().__init__()
        self.n_classes = n_classes
        self.embedding = nn.Embedding(n_classes + 1, embed_dim)

    @property
    def null_class(self) -> int:
        """Label of the unconditional token, dropped in with probability p_uncond in training."""
        return self.n_classes

    def forward(self, labels: Tensor) -> Tensor:
        """labels [N] long in 0..n_classes -> tokens [N x 1 x D]."""
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > self.n_classes):
            raise ValueError(f"class labels must lie in 0..{self.n_classes} ({self.n_classes} = null), "
                             f"got {int(labels.min())}..{int(labels.max())}")
        return rearrange(self.embedding(labels), "n d -> n 1 d")


class TextBlock(nn.Module):
    """Pre-norm transformer block (Eq. 19-22): LN, self-attention, residual; LN, MLP (GELU), residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_mult: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_mult * dim), nn.GELU(), nn.Linear(mlp_mult * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        """x [N x L x D] -> [N x L x D]."""
        qkv = rearrange(self.to_qkv(self.norm1(x)), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        attn = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # Eq. 19-20, unmasked; (N, H, L, d)
        x = x + self.to_out(rearrange(attn, "n h l d -> n l (h d)"))
        return x + self.mlp(self.norm2(x))  # Eq. 21-22


class TextTransformer(nn.Module):
    """tau_theta for text and layouts (Eq. 18-24): token + learned position embeddings, N blocks, final LayerNorm.

    A layout model runs it over the box tokens of `ldm.conditioning.layout` (D.2.1, Tab. 17)."""

    def __init__(self, vocab_size: int, max_seq_len: int = 77, dim: int = 1280, depth: int = 32,
                 heads: int = 8, dim_head: int = 64, mlp_mult: int = 4):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.token_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Embedding(max_seq_len, dim)
        nn.init.normal_(self.token_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.blocks = nn.ModuleList(TextBlock(dim, heads, dim_head, mlp_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [N x L] long, L <= max_seq_len -> zeta [N x L x D]."""
        n_tok = tokens.shape[1]
        if n_tok > self.max_seq_len:
            raise ValueError(f"text: {n_tok} tokens exceed max_seq_len {self.max_seq_len}")
        if tokens.numel() and int(tokens.max()) >= self.token_emb.num_embeddings:
            raise ValueError(f"text: token id {int(tokens.max())} is outside the vocabulary of "
                             f"{self.token_emb.num_embeddings}; use a tokenizer that fits vocab_size")
        positions = torch.arange(n_tok, device=tokens.device)
        x = self.token_emb(tokens) + self.pos_emb(positions)  # Eq. 18, (N, L, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)  # Eq. 23


class ConcatConditioner(nn.Module):
    """Spatial conditioning joined to z_t on the channel axis (SR: the LR image; inpainting: mask, masked image)."""

    def __init__(self, keys: tuple[str, ...], channels: tuple[int, ...]):
        super().__init__()
        self.keys = keys
        self.channels = channels

    @property
    def out_channels(self) -> int:
        """Total channels appended to the latent."""
        return sum(self.channels)

    def forward(self, spatial: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
        """{key: [N x C_k x H_k x W_k]} -> [N x sum C_k x h x w], each resized to size = (h, w) if needed."""
        missing = [k for k in self.keys if k not in spatial]
        if missing:
            raise ValueError(f"concat conditioning: missing input(s) {missing}; expected keys {list(self.keys)}")
        parts = []
        for key, channels in zip(self.keys, self.channels):
            x = spatial[key]
            if x.ndim != 4 or x.shape[1] != channels:
                raise ValueError(f"concat conditioning: {key!r} must be [N x {channels} x H x W], got {tuple(x.shape)}")
            if tuple(x.shape[-2:]) != tuple(size):
                x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
            parts.append(x)
        return torch.cat(parts, dim=1)  # (N, sum C_k, h, w)


class SemanticConditioner(SpatialRescaler):
    """Label maps for concat (Sec. 4.3.2): one-hot, halved to the latent size, 1x1 conv to a few channels; trained
    with the UNet. A SpatialRescaler, so the reference's `cond_stage_model.channel_mapper.weight` loads as it is."""

    def __init__(self, n_classes: int, n_stages: int, method: str, out_channels: int):
        super().__init__(n_stages=n_stages, method=method, multiplier=0.5, in_channels=n_classes,  # type: ignore[arg-type]
                         out_channels=out_channels, bias=False)
        self.n_classes = n_classes

    def forward(self, label_map: Tensor, size: tuple[int, int]) -> Tensor:  # type: ignore[override]
        """label_map [N x H x W] long (IGNORE_INDEX unlabelled) -> [N x out_channels x h x w], (h, w) = size."""
        if label_map.dim() != 3:
            raise ValueError(f"semantic conditioning takes label maps [N x H x W], got {tuple(label_map.shape)}")
        x = super().forward(one_hot(label_map.long(), self.n_classes))  # (N, out_channels, H / 2^n, W / 2^n)
        if tuple(x.shape[-2:]) != tuple(size):
            f = 2**self.n_stages
            raise ValueError(f"a label map of {label_map.shape[-2]}x{label_map.shape[-1]} rescales to "
                             f"{x.shape[-2]}x{x.shape[-1]}, but the latent is {size[0]}x{size[1]}; "
                             f"a map is {f} times the latent's size")
        return x


def build_conditioner(config: ConditioningConfig) -> nn.Module | None:
    """The encoder for config.kind: None, ClassEmbedder, TextTransformer (text, layout), ConcatConditioner or
    SemanticConditioner."""
    if config.kind == "none":
        return None
    if config.kind == "class":
        return ClassEmbedder(config.n_classes, config.embed_dim)
    if config.kind in ("text", "layout"):  # layout: vocab_size, max_seq_len are the box tokenizer's
        return TextTransformer(config.vocab_size, config.max_seq_len, config.dim, config.depth,
                               config.heads, config.dim_head, config.mlp_mult)
    if config.kind == "concat":
        return ConcatConditioner(config.concat_keys, config.concat_channels)
    if config.kind == "semantic":
        return SemanticConditioner(config.n_classes, config.rescaler_stages, config.rescaler_method,
                                   config.rescaler_channels)
    raise ValueError(f"conditioning.kind {config.kind!r} is not handled")
