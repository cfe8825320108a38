"""ConditioningConfig: which tau_theta a model uses and its size (D.2.1, Tab. 13, 15, 17)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ldm.config import Config, check_literals

ConditioningKind = Literal["none", "class", "text", "concat", "semantic"]
RescaleMethod = Literal["nearest", "bilinear", "bicubic", "area"]  # the 2-D modes of F.interpolate
LABEL_MAP_KEY = "label_map"  # the batch key of a semantic model's label maps [N x H x W] long
# text: bert-base-uncased's WordPiece vocabulary (the paper), or one learned from the captions
TokenizerKind = Literal["bert", "learned"]
BERT_VOCAB_SIZE = 30522  # bert-base-uncased


@dataclass(frozen=True)
class ConditioningConfig(Config):
    """Conditioning of an LDM: none, a class token, a text transformer, spatial concat, or a semantic label map."""

    section = "conditioning"

    kind: ConditioningKind = "none"
    # class: one embed_dim token per class (Sec. 4.1: 512), plus a null class
    n_classes: int = 0
    embed_dim: int = 512
    # text: the transformer of Eq. 18-24 (Tab. 17); heads x dim_head as the reference (8 x 64)
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "concat_keys", tuple(self.concat_keys))
        object.__setattr__(self, "concat_channels", tuple(self.concat_channels))
        check_literals(self, "conditioning")
        if self.kind in ("class", "semantic") and self.n_classes < 1:
            raise ValueError(f"conditioning.n_classes must be >= 1 for kind {self.kind!r}, got {self.n_classes}")
        if self.rescaler_stages < 0 or self.rescaler_channels < 1:
            raise ValueError(f"conditioning: rescaler_stages must be >= 0 and rescaler_channels >= 1, "
                             f"got {self.rescaler_stages} and {self.rescaler_channels}")
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

    @property
    def context_dim(self) -> int:
        """Width of the cross-attention tokens this conditioning produces; 0 if none."""
        return {"class": self.embed_dim, "text": self.dim}.get(self.kind, 0)

    @property
    def extra_in_channels(self) -> int:
        """Channels joined to the latent at the UNet input (concat and semantic)."""
        return {"concat": sum(self.concat_channels), "semantic": self.rescaler_channels}.get(self.kind, 0)
