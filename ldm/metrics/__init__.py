"""Evaluation metrics (D.3): FID/KID/IS/precision-recall through torch-fidelity, PSNR/SSIM, LPIPS, and the
inpainting scores beside a blurred-fill baseline (Tab. 7).

The "random-conv" stand-in extractor lives in ldm.metrics.stand_in (it imports torch-fidelity).
"""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "fidelity": ("INCEPTION", "INCEPTION_FILE", "ReferenceCache", "UInt8Images", "default_inception_path",
                 "features_fingerprint", "fidelity_metrics", "fidelity_or_skip", "file_sha256",
                 "inception_weights_status"),
    "inpainting": ("blur_fill", "coverage_stats", "fill_scores", "hole_psnr", "hole_ssim", "score_fill"),
    "names": ("FeatureExtractorName", "MetricName", "PerceptualNetName", "STAND_INS"),
    "perceptual": ("lpips_distances", "lpips_model", "vgg_weights_status"),
    "quality": ("MAX_PSNR_DB", "psnr", "ssim"),
})
