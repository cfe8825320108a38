"""Conditioning mechanisms tau_theta of LDMs (Sec. 3.3, D.2.1): class, text, layout, concat, CFG dropout."""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ("BERT_VOCAB_SIZE", "ConditioningConfig", "ConditioningKind", "LABEL_MAP_KEY", "LayoutTokenizerConfig",
               "PAPER_LAYOUT_VOCAB_SIZE", "TokenizerKind", "largest_grid"),
    "encoders": ("ClassEmbedder", "ConcatConditioner", "SemanticConditioner", "TextBlock", "TextTransformer",
                 "build_conditioner"),
    "layout": ("LayoutTokenizer",),
    "guidance": ("drop_class_labels", "drop_prompts", "guided_denoiser", "uncond_mask"),
    "spatial": ("RescaleMethod", "SpatialRescaler", "one_hot"),
    "tokenizer": ("SPECIAL_TOKENS", "build_tokenizer", "cached_wordpiece", "captions_key", "learn_wordpiece_vocab",
                  "load_bert_tokenizer", "load_tokenizer", "save_tokenizer", "tokenize", "train_wordpiece"),
})
