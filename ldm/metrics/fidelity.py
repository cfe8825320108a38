"""Sample-quality metrics through torch-fidelity: FID, KID, IS, precision/recall (D.3), never downloading.

Inception weights are used only from a path: the caller's, or torch hub's cache
($TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth). This
module always hands torch-fidelity an explicit weights path, so it never reaches
its download branch; when the file is absent, `inception_weights_status` says
why and `fidelity_metrics` raises MissingWeightsError before touching anything.
Every number should be stored with `features_fingerprint` (which extractor,
which weights) and with the sampler settings that produced the images.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ldm.autoencoder.losses import MissingWeightsError
from ldm.metrics.names import FeatureExtractorName, MetricName

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"  # torch hub convention: the file name carries its sha256 prefix
MIN_FIDELITY_IMAGES = 4  # fewer images per set give no usable feature statistics
ISC_SPLITS, ISC_MIN_SPLIT = 10, 2  # Inception Score: splits of the generated set, and the fewest images in one
# torch-fidelity's result keys -> ours
RESULT_KEYS = {
    "frechet_inception_distance": "fid",
    "kernel_inception_distance_mean": "kid_mean",
    "kernel_inception_distance_std": "kid_std",
    "inception_score_mean": "isc_mean",
    "inception_score_std": "isc_std",
    "precision": "precision",
    "recall": "recall",
    "f_score": "f_score",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceCache:
    """Where torch-fidelity caches the reference set's features and statistics, keyed by its content hash."""

    root: Path
    content_hash: str  # e.g. the sha256 of the validation shards; the caller vouches that it names the content

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.content_hash):
            raise ValueError(f"reference content_hash must be letters, digits, '_', '.' or '-', got {self.content_hash!r}")


class UInt8Images(Dataset):
    """In-memory uint8 images [N x 3 x H x W] as the Dataset torch-fidelity reads."""

    def __init__(self, images: Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N x 3 x H x W], got {images.dtype} {tuple(images.shape)}")
        self.images = images.cpu()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


# ---------------------------------------------------------------------------
# Weights and fingerprints
# ---------------------------------------------------------------------------

def default_inception_path() -> Path:
    """Where torch hub caches the Inception weights: $TORCH_HOME/hub/checkpoints/<INCEPTION_FILE>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inception_weights_status(path: str | Path | None = None, *,
                             expected_sha256_prefix: str | None = INCEPTION_SHA256_PREFIX) -> tuple[bool, str, str | None]:
    """(available, reason, sha256 or None) for the Inception weights at `path` (default: torch hub cache)."""
    path = Path(path) if path is not None else default_inception_path()
    if not path.is_file():
        return False, (f"Inception weights not found at {path}; put {INCEPTION_FILE} there"
                       " (or pass its path); nothing is downloaded"), None
    sha = file_sha256(path)
    if expected_sha256_prefix is not None and not sha.startswith(expected_sha256_prefix):
        return False, (f"{path} has sha256 {sha[:16]}..., not torch-fidelity's Inception weights"
                       f" ({expected_sha256_prefix}...)"), sha
    return True, f"Inception weights at {path}", sha


def features_fingerprint(feature_extractor: FeatureExtractorName, weights_path: str | Path | None = None) -> dict[str, str]:
    """{"feature_extractor", "weights_sha256"}: which extractor and weights produced a set of numbers."""
    if feature_extractor == INCEPTION:
        available, reason, sha = inception_weights_status(weights_path)
        if not available:
            raise MissingWeightsError(reason)
    elif feature_extractor == "random-conv":
        from ldm.metrics.stand_in import random_conv_net  # deferred: imports torch-fidelity

        digest = hashlib.sha256()
        for key, value in random_conv_net().state_dict().items():
            digest.update(key.encode())
            digest.update(value.numpy().tobytes())
        sha = digest.hexdigest()
    else:
        raise ValueError(f"feature_extractor must be one of {get_args(FeatureExtractorName)}, got {feature_extractor!r}")
    return {"feature_extractor": feature_extractor, "weights_sha256": sha}


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def fidelity_metrics(generated: Tensor | Dataset, reference: Tensor | Dataset, *,
                     feature_extractor: FeatureExtractorName = INCEPTION,
                     weights_path: str | Path | None = None,
                     metrics: Sequence[MetricName] = ("fid", "kid", "isc", "prc"),
                     reference_cache: ReferenceCache | None = None,
                     batch_size: int = 64, device: torch.device | str = "cpu", seed: int = 2020) -> dict[str, float]:
    """FID, KID, IS (of `generated`) and precision/recall between two sets of uint8 images [N x 3 x H x W].

    Sets are uint8 tensors or Datasets yielding uint8 [3 x H x W]. Returns keys
    fid, kid_mean, kid_std, isc_mean, isc_std, precision, recall, f_score (those
    asked for). Raises MissingWeightsError when Inception is asked for and absent.
    With `reference_cache`, the reference features and FID statistics are read
    from (or written to) its root under its content hash and the weights' hash.
    """
    unknown = sorted(set(metrics) - set(get_args(MetricName)))
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {get_args(MetricName)}, got {list(metrics)}")
    fingerprint = features_fingerprint(feature_extractor, weights_path)  # raises before any torch-fidelity work
    import torch_fidelity  # deferred: importing it takes seconds

    kwargs: dict[str, object] = {}
    if feature_extractor == INCEPTION:
        kwargs["feature_extractor_weights_path"] = str(weights_path or default_inception_path())
    else:
        from ldm.metrics.stand_in import register_random_conv

        register_random_conv()
    input1, input2 = _as_dataset(generated, "generated"), _as_dataset(reference, "reference")
    n1, n2 = len(input1), len(input2)
    if min(n1, n2) < MIN_FIDELITY_IMAGES:
        raise ValueError(f"fidelity metrics need at least {MIN_FIDELITY_IMAGES} images per set, got {n1} generated"
                         f" and {n2} reference")
    if reference_cache is not None:
        kwargs.update(cache=True, cache_root=str(reference_cache.root),
                      input2_cache_name=f"ref-{reference_cache.content_hash}-{fingerprint['weights_sha256'][:16]}")
    else:
        kwargs["cache"] = False
    raw = torch_fidelity.calculate_metrics(
        input1=input1, input2=input2, feature_extractor=feature_extractor,
        **{name: name in metrics for name in get_args(MetricName)},
        kid_subset_size=min(1000, n1, n2), isc_splits=isc_splits(n1), rng_seed=seed,
        batch_size=batch_size, cuda=torch.device(device).type == "cuda",
        save_cpu_ram=True, verbose=False, datasets_download=False, **kwargs,
    )
    result = {RESULT_KEYS[key]: float(value) for key, value in raw.items() if key in RESULT_KEYS}
    log.info("fidelity metrics with %s (%d generated, %d reference): %s", feature_extractor, n1, n2, result)
    return result


def fidelity_or_skip(generated: Tensor | Dataset, reference: Tensor | Dataset, **kwargs: object
                     ) -> tuple[dict[str, float], str | None]:
    """`fidelity_metrics(generated, reference, **kwargs)` and None, or ({}, the reason) when its weights are absent."""
    try:
        return fidelity_metrics(generated, reference, **kwargs), None  # type: ignore[arg-type]
    except MissingWeightsError as exc:
        return {}, str(exc)


def isc_splits(n: int) -> int:
    """Splits of n images for the Inception Score: 10 as the paper's 50k (D.3), fewer for a small set so that each
    split holds at least ISC_MIN_SPLIT images (a split of one image has an IS of exactly 1)."""
    return max(1, min(ISC_SPLITS, n // ISC_MIN_SPLIT))


def _as_dataset(images: Tensor | Dataset, which: str) -> Dataset:
    """A uint8 tensor wrapped as a Dataset; a Dataset checked on its first item."""
    if isinstance(images, Tensor):
        return UInt8Images(images)
    first = images[0]
    if not isinstance(first, Tensor) or first.dtype != torch.uint8 or first.ndim != 3 or first.shape[0] != 3:
        raise ValueError(f"{which} images must yield uint8 [3 x H x W] tensors, got {type(first).__name__}"
                         f" {getattr(first, 'dtype', '')} {tuple(getattr(first, 'shape', ()))}")
    return images
