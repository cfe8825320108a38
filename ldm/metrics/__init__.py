"""Evaluation metrics (D.3): FID/KID/IS/precision-recall through torch-fidelity, PSNR/SSIM for super-resolution.

PSNR and SSIM are the autoencoder health metrics (ldm.autoencoder.health), re-exported.
The "random-conv" stand-in extractor lives in ldm.metrics.stand_in (it imports torch-fidelity).
"""

from ldm.autoencoder.health import psnr, ssim
from ldm.metrics.fidelity import (
    INCEPTION,
    INCEPTION_FILE,
    FeatureExtractorName,
    MetricName,
    ReferenceCache,
    UInt8Images,
    default_inception_path,
    features_fingerprint,
    fidelity_metrics,
    file_sha256,
    inception_weights_status,
)

__all__ = [
    "INCEPTION",
    "INCEPTION_FILE",
    "FeatureExtractorName",
    "MetricName",
    "ReferenceCache",
    "UInt8Images",
    "default_inception_path",
    "features_fingerprint",
    "fidelity_metrics",
    "file_sha256",
    "inception_weights_status",
    "psnr",
    "ssim",
]
