"""Evaluation metrics (D.3): FID/KID/IS/precision-recall through torch-fidelity, PSNR/SSIM.

The "random-conv" stand-in extractor lives in ldm.metrics.stand_in (it imports torch-fidelity).
"""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "fidelity": ("INCEPTION", "INCEPTION_FILE", "ReferenceCache", "UInt8Images", "default_inception_path",
                 "features_fingerprint", "fidelity_metrics", "file_sha256", "inception_weights_status"),
    "names": ("FeatureExtractorName", "MetricName"),
    "quality": ("MAX_PSNR_DB", "psnr", "ssim"),
})
