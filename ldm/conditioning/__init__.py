"""Conditioning mechanisms tau_theta of LDMs (Sec. 3.3, D.2.1): class, text, concat, CFG dropout."""

from __future__ import annotations

from torch import nn

from ldm.conditioning.config import ConditioningConfig, ConditioningKind
from ldm.conditioning.encoders import ClassEmbedder, ConcatConditioner, TextBlock, TextTransformer
from ldm.conditioning.guidance import drop_class_labels, drop_prompts, guided_denoiser, uncond_mask
from ldm.conditioning.tokenizer import (
    SPECIAL_TOKENS,
    learn_wordpiece_vocab,
    load_tokenizer,
    save_tokenizer,
    tokenize,
    train_wordpiece,
)


def build_conditioner(config: ConditioningConfig) -> nn.Module | None:
    """The encoder for config.kind: None, ClassEmbedder, TextTransformer or ConcatConditioner."""
    if config.kind == "none":
        return None
    if config.kind == "class":
        return ClassEmbedder(config.n_classes, config.embed_dim)
    if config.kind == "text":
        return TextTransformer(config.vocab_size, config.max_seq_len, config.dim, config.depth,
                               config.heads, config.dim_head, config.mlp_mult)
    if config.kind == "concat":
        return ConcatConditioner(config.concat_keys, config.concat_channels)
    raise ValueError(f"conditioning.kind {config.kind!r} is not handled")


__all__ = [
    "SPECIAL_TOKENS",
    "ClassEmbedder",
    "ConcatConditioner",
    "ConditioningConfig",
    "ConditioningKind",
    "TextBlock",
    "TextTransformer",
    "build_conditioner",
    "drop_class_labels",
    "drop_prompts",
    "guided_denoiser",
    "learn_wordpiece_vocab",
    "load_tokenizer",
    "save_tokenizer",
    "tokenize",
    "train_wordpiece",
    "uncond_mask",
]
