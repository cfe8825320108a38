"""LPIPS (Zhang et al.) between two image sets with the `lpips` package, never downloading (Tab. 7, D.3).

"vgg16" is the metric proper: lpips' linear heads (shipped in its wheel) on torchvision's ImageNet VGG16, read
from a file (`ldm.autoencoder.losses.build_lpips`, the path the autoencoder's LPIPS loss takes); without that
file the caller reports LPIPS as skipped with MissingWeightsError's reason. "random-vgg16" is a stand-in for
smoke runs and tests only: the same heads on a VGG16 whose weights come from a fixed seed, so its numbers are
reproducible, 0 for equal images and grow with the difference, but mean nothing perceptual: never compare them
with published LPIPS.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import get_args

import torch
from torch import Tensor, nn

from ldm.autoencoder.losses import VGG16_FILE, MissingWeightsError, build_lpips, default_vgg_path
from ldm.metrics.fidelity import file_sha256
from ldm.metrics.names import PerceptualNetName

RANDOM_VGG = "random-vgg16"
STAND_IN_SEED = 0  # the stand-in's weights are part of its identity: changing the seed changes every number


def vgg_weights_status(path: str | Path | None = None) -> tuple[bool, str]:
    """(available, reason) for torchvision's VGG16 file at `path` (default: the torch hub cache)."""
    path = Path(path) if path else default_vgg_path()
    if not path.is_file():
        return False, (f"LPIPS needs torchvision's VGG16 weights and {path} does not exist; put {VGG16_FILE} there"
                       " (or pass its path); nothing is downloaded")
    return True, f"VGG16 weights at {path}"


def lpips_model(net: PerceptualNetName, vgg_weights: str | Path | None = None) -> tuple[nn.Module, dict[str, object]]:
    """A frozen LPIPS module and its fingerprint {"net", "weights_sha256", "lpips_version", "stand_in"}.

    Raises MissingWeightsError (the reason) when "vgg16" is asked for and its file is absent.
    """
    if net == "vgg16":
        available, reason = vgg_weights_status(vgg_weights)
        if not available:
            raise MissingWeightsError(reason)
        path = Path(vgg_weights) if vgg_weights else default_vgg_path()
        model, sha = build_lpips(1.0, path), file_sha256(path)
    elif net == RANDOM_VGG:
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's generator
            torch.random.default_generator.manual_seed(STAND_IN_SEED)
            model = build_lpips(1.0, pnet_rand=True)
        digest = hashlib.sha256()
        for key, value in model.state_dict().items():
            digest.update(key.encode())
            digest.update(value.numpy().tobytes())
        sha = digest.hexdigest()
    else:
        raise ValueError(f"LPIPS net must be one of {get_args(PerceptualNetName)}, got {net!r}")
    assert model is not None  # build_lpips returns None only for a perceptual weight of 0
    fingerprint = {"net": net, "weights_sha256": sha, "lpips_version": metadata.version("lpips"),
                   "stand_in": net == RANDOM_VGG}
    return model, fingerprint


@torch.no_grad()
def lpips_distances(model: nn.Module, a: Tensor, b: Tensor, batch_size: int = 32) -> Tensor:
    """Per-image LPIPS between uint8 image sets a and b [N x 3 x H x W] (taken to [-1, 1] as lpips expects): [N]."""
    if a.shape != b.shape or a.dtype != torch.uint8 or b.dtype != torch.uint8 or a.ndim != 4 or a.shape[1] != 3:
        raise ValueError(f"LPIPS takes two uint8 [N x 3 x H x W] sets of one shape, got {a.dtype} {tuple(a.shape)}"
                         f" and {b.dtype} {tuple(b.shape)}")
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(a), batch_size):
        x, y = (t[start : start + batch_size].to(device).float() / 127.5 - 1.0 for t in (a, b))
        out.append(model(x, y).flatten().cpu())  # (n,)
    return torch.cat(out) if out else torch.zeros(0)
