"""Image degradations for super-resolution training pairs: BSR (original and moderated) and bicubic."""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "pipeline": ("MIN_LR_SIDE", "SCALES", "DegradationError", "degrade"),
    "variants": ("VARIANT_CONFIGS", "VARIANTS", "Scale", "VariantConfig", "VariantName"),
})
