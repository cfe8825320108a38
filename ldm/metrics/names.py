"""The names a user picks among, with no torch import: feature extractors and fidelity metrics (D.3)."""

from __future__ import annotations

from typing import Literal

# inception-v3-compat: the paper's; random-conv: a seeded stand-in for smoke runs only, never compare its numbers.
FeatureExtractorName = Literal["inception-v3-compat", "random-conv"]
MetricName = Literal["fid", "kid", "isc", "prc"]  # FID, KID, Inception Score, precision/recall
# LPIPS backbones: vgg16, the paper's (torchvision's ImageNet weights); random-vgg16: a seeded stand-in for smoke runs.
PerceptualNetName = Literal["vgg16", "random-vgg16"]
# What a report says beside a number that a stand-in made.
STAND_INS = {"random-conv": "random-conv is a seeded stand-in feature extractor: its FID/KID/IS mean nothing perceptual",
             "random-vgg16": "random-vgg16 is a seeded stand-in LPIPS backbone: its LPIPS means nothing perceptual"}
