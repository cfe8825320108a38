"""Inpainting masks: LaMa's large-mask generator (strokes in three widths and boxes), seeded per sample."""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ("KINDS", "MASK", "MASKED_IMAGE", "MaskConfig", "MaskKind", "check_proportions"),
    "generator": ("MaskRecord", "draw_mask", "fit_coverage"),
    "latent": ("latent_mask",),
    "shards": ("MaskJob", "ShardMasks", "grid_columns", "masked_image", "summarize", "write_mask_shard", "zip_masks"),
})
