"""A stand-in feature extractor for torch-fidelity: a fixed random conv net, for smoke runs and tests.

Registered as "random-conv" through torch-fidelity's own extension point. Its
weights come from a fixed seed, so its numbers are reproducible and move with
image statistics (FID of a set against itself is 0 and grows with added noise),
but they mean nothing perceptual: never compare them with published FIDs.
Importing this module imports torch-fidelity (seconds); ldm.metrics defers it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import reduce
from torch import Tensor, nn
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

RANDOM_CONV = "random-conv"
SEED = 0  # the weights are part of the extractor's identity: changing it changes every number
INPUT_SIZE = 64  # images are resized to INPUT_SIZE x INPUT_SIZE, as Inception resizes to 299
WIDTHS = (3, 16, 32, 64)  # conv channels; the last is the feature dimension
NUM_LOGITS = 16  # pseudo-classes for the Inception Score
LOGIT_SCALE = 20.0  # pooled random features vary little between images; sharpen the softmax so IS moves off 1


def random_conv_net() -> nn.ModuleDict:
    """The fixed network: three stride-2 3x3 convs (He-normal from SEED) and a linear head."""
    generator = torch.Generator().manual_seed(SEED)
    convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1) for c_in, c_out in zip(WIDTHS, WIDTHS[1:]))
    head = nn.Linear(WIDTHS[-1], NUM_LOGITS)
    with torch.no_grad():
        for layer in [*convs, head]:
            fan_in = layer.weight[0].numel()
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
            layer.bias.zero_()
    return nn.ModuleDict({"convs": convs, "head": head})


class RandomConvFeatures(FeatureExtractorBase):
    """uint8 images [N x 3 x H x W] -> ("features" [N x 64], "logits" [N x 16]) from a fixed random net."""

    def __init__(self, name: str, features_list: list[str], **kwargs: object):
        super().__init__(name, features_list)
        self.net = random_conv_net()
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} takes uint8 images [N x 3 x H x W], got {x.dtype} {tuple(x.shape)}")
        h = x.float() / 127.5 - 1.0
        h = F.interpolate(h, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)  # (N, 3, 64, 64)
        for conv in self.net["convs"]:
            h = F.relu(conv(h))  # (N, C, 64 / 2^k, 64 / 2^k)
        features = reduce(h, "n c h w -> n c", "mean")  # (N, 64)
        logits = LOGIT_SCALE * self.net["head"](features)  # (N, 16)
        out = {"features": features, "logits": logits}
        return tuple(out[name] for name in self.features_list)


def register_random_conv() -> str:
    """Register "random-conv" with torch-fidelity once per process; returns the name."""
    if RANDOM_CONV not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(RANDOM_CONV, RandomConvFeatures)
    return RANDOM_CONV
