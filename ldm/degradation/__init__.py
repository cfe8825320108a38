"""Image degradations for super-resolution training pairs: BSR (original and moderated) and bicubic."""

from ldm.degradation.pipeline import MIN_LR_SIDE, SCALES, DegradationError, degrade
from ldm.degradation.variants import VARIANT_CONFIGS, VARIANTS, VariantConfig, VariantName

__all__ = [
    "MIN_LR_SIDE",
    "SCALES",
    "VARIANTS",
    "VARIANT_CONFIGS",
    "DegradationError",
    "VariantConfig",
    "VariantName",
    "degrade",
]
