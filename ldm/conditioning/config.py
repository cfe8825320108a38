"""ConditioningConfig: which tau_theta a model uses and its size (D.2.1, Tab. 13, 15, 17); the box tokenizer's
sizes (LayoutTokenizerConfig). No torch import: params and presets read these."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from ldm.config import Config, check_literals

ConditioningKind = Literal["none", "class", "text", "concat", "semantic", "layout"]
RescaleMethod = Literal["nearest", "bilinear", "bicubic", "area"]  # the 2-D modes of F.interpolate
LABEL_MAP_KEY = "label_map"  # the batch key of a semantic model's label maps [N x H x W] long
# text: bert-base-uncased's WordPiece vocabulary (the paper), or one learned from the captions
TokenizerKind = Literal["bert", "learned"]
BERT_VOCAB_SIZE = 30522  # bert-base-uncased
PAPER_LAYOUT_VOCAB_SIZE = 8192  # Tab. 17's layout transformer (the reference's BERTEmbedder vocab_size)


@dataclass(frozen=True)
class LayoutTokenizerConfig:
    """Grid side G (points per axis), number of classes K and the most boxes B kept per layout (D.2.1)."""

    num_classes: int
    grid: int = 64
    max_boxes: int = 30

    def __post_init__(self) -> None:
        for name, least in (("num_classes", 1), ("grid", 2), ("max_boxes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"layout tokenizer: {name} must be an integer >= {least}, got {value!r}")

    @property
    def vocab_size(self) -> int:
        """G^2 positions + K classes + 1 padding token (ldm.conditioning.layout)."""
        return self.grid**2 + self.num_classes + 1

    @property
    def seq_len(self) -> int:
        """L = 3 B + 2: B (l, b, c) triples and the window's two corners (92 for B = 30, Tab. 17)."""
        return 3 * self.max_boxes + 2

    def to_dict(self) -> dict[str, int]:
        """{"num_classes", "grid", "max_boxes"}."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> LayoutTokenizerConfig:
        """Inverse of `to_dict`; an unknown key is a ValueError naming it."""
        unknown = sorted(set(data) - {"num_classes", "grid", "max_boxes"})
        if unknown:
            raise ValueError(f"layout tokenizer: unknown keys {unknown}; allowed: num_classes, grid, max_boxes")
        return cls(**data)


def largest_grid(num_classes: int, vocab_size: int = PAPER_LAYOUT_VOCAB_SIZE) -> int:
    """The largest G with G^2 + K + 1 <= vocab_size: the finest grid a vocabulary of that size holds."""
    return math.isqrt(vocab_size - num_classes - 1)


@dataclass(frozen=True)
class ConditioningConfig(Config):
    """Conditioning of an LDM: none, a class token, a text transformer, spatial concat, a semantic label map, or box
    tokens (layout)."""

    section = "conditioning"

    kind: ConditioningKind = "none"
    # class: one embed_dim token per class (Sec. 4.1: 512), plus a null class; layout: the box classes
    n_classes: int = 0
    embed_dim: int = 512
    # text and layout: the transformer of Eq. 18-24 (Tab. 17); heads x dim_head as the reference (8 x 64).
    # layout: vocab_size and max_seq_len are the box tokenizer's (set from n_classes, grid, max_boxes).
    vocab_size: int = BERT_VOCAB_SIZE
    max_seq_len: int = 77
    dim: int = 1280
    depth: int = 32
    heads: int = 8
    dim_head: int = 64
    mlp_mult: int = 4
    # "learned" is the default: config.json files written before this key existed hold learned vocabularies
    tokenizer: TokenizerKind = "learned"
    # concat: batch keys joined to z_t on the channel axis, and their channel counts
    concat_keys: tuple[str, ...] = ("lr",)
    concat_channels: tuple[int, ...] = (3,)
    # semantic: the one-hot label map (n_classes) through the spatial rescaler, concatenated to z_t (Sec. 4.3.2):
    # rescaler_stages resizes by 1/2 (log2 f: the image size to the latent's), then a bias-free 1x1 conv
    rescaler_stages: int = 2
    rescaler_method: RescaleMethod = "bilinear"
    rescaler_channels: int = 3
    # layout: positions snap to a grid x grid lattice; the max_boxes largest boxes are kept (D.2.1)
    grid: int = 64
    max_boxes: int = 30

    def __post_init__(self) -> None:
        object.__setattr__(self, "concat_keys", tuple(self.concat_keys))
        object.__setattr__(self, "concat_channels", tuple(self.concat_channels))
        check_literals(self, "conditioning")
        if self.kind in ("class", "semantic", "layout") and self.n_classes < 1:
            raise ValueError(f"conditioning.n_classes must be >= 1 for kind {self.kind!r}, got {self.n_classes}")
        if self.rescaler_stages < 0 or self.rescaler_channels < 1:
            raise ValueError(f"conditioning: rescaler_stages must be >= 0 and rescaler_channels >= 1, "
                             f"got {self.rescaler_stages} and {self.rescaler_channels}")
        if self.kind == "layout":  # the transformer's vocabulary and length are the tokenizer's, never set apart
            try:
                tokens = self.layout_tokenizer()
            except ValueError as exc:
                raise ValueError(f"conditioning: {exc}") from None
            object.__setattr__(self, "vocab_size", tokens.vocab_size)
            object.__setattr__(self, "max_seq_len", tokens.seq_len)
        for name in ("embed_dim", "vocab_size", "max_seq_len", "dim", "depth", "heads", "dim_head", "mlp_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"conditioning.{name} must be a positive integer, got {getattr(self, name)}")
        if self.tokenizer == "bert" and self.vocab_size != BERT_VOCAB_SIZE:
            raise ValueError(
                f"conditioning.vocab_size must be {BERT_VOCAB_SIZE} (bert-base-uncased) with conditioning.tokenizer"
                f" 'bert', got {self.vocab_size}; set conditioning.tokenizer to 'learned' for a vocabulary of that size"
            )
        if self.kind == "concat" and (
            not self.concat_keys or len(self.concat_keys) != len(self.concat_channels)
            or any(c < 1 for c in self.concat_channels)
        ):
            raise ValueError(
                "conditioning: concat_keys and concat_channels must be non-empty and of equal length,"
                f" got {self.concat_keys} and {self.concat_channels}"
            )

    def layout_tokenizer(self) -> LayoutTokenizerConfig:
        """The box tokenizer of a layout model: n_classes classes, grid, max_boxes."""
        return LayoutTokenizerConfig(num_classes=self.n_classes, grid=self.grid, max_boxes=self.max_boxes)

    @property
    def context_dim(self) -> int:
        """Width of the cross-attention tokens this conditioning produces; 0 if none."""
        return {"class": self.embed_dim, "text": self.dim, "layout": self.dim}.get(self.kind, 0)

    @property
    def extra_in_channels(self) -> int:
        """Channels joined to the latent at the UNet input (concat and semantic)."""
        return {"concat": sum(self.concat_channels), "semantic": self.rescaler_channels}.get(self.kind, 0)
