"""A seeded stand-in label map for photographs that come without one (the embedded photos).

Not a segmentation: a k-means clustering of each pixel's CIE Lab colour (plus,
optionally, its position), so the semantic pipeline can be exercised end to end
on data that ships with the code. Ids are ordered by the cluster's mean
lightness L* (0 = darkest), so the same regions get the same ids whatever order
k-means found them in.
"""

from __future__ import annotations

import numpy as np
from einops import rearrange
from skimage.color import rgb2lab
from sklearn.cluster import KMeans

from ldm.errors import InvalidInput

_FIT_PIXELS = 20_000  # k-means is fitted on a seeded sample of pixels, then every pixel takes its nearest centre
_L_RANGE = 100.0  # L* spans 0..100: a position weight of 1 makes the image's long side as far apart as black and white


def _features(image: np.ndarray, position_weight: float) -> np.ndarray:
    """[H x W x 3] uint8 -> [(H W) x F] float64: L*, a*, b* and, if weighted, row and column."""
    height, width = image.shape[:2]
    lab = rearrange(rgb2lab(image), "h w c -> (h w) c")
    if position_weight == 0:
        return lab
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    scale = position_weight * _L_RANGE / max(height, width)
    position = rearrange(np.stack([rows, cols], axis=-1) * scale, "h w c -> (h w) c")
    return np.concatenate([lab, position], axis=1)


def stand_in_label_map(image: np.ndarray, n_regions: int, seed: int, position_weight: float = 0.0) -> np.ndarray:
    """A stand-in label map: [H x W x 3] uint8 -> [H x W] int64 ids 0..n_regions-1, each used, ordered by lightness.

    Same image, n_regions, seed and position_weight give identical bytes.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidInput(f"stand-in label map: expected an [H x W x 3] uint8 image, got {image.dtype} {image.shape}")
    if n_regions < 1 or position_weight < 0:
        raise InvalidInput(f"stand-in label map: n_regions must be >= 1 and position_weight >= 0, "
                           f"got {n_regions} and {position_weight}")
    height, width = image.shape[:2]
    features = _features(image, position_weight)
    rng = np.random.default_rng(seed)
    fit = features[np.sort(rng.choice(len(features), size=min(_FIT_PIXELS, len(features)), replace=False))]
    distinct = len(np.unique(fit, axis=0))
    if distinct < n_regions:
        raise InvalidInput(f"stand-in label map: the image has {distinct} distinct colours in its sample, "
                           f"fewer than n_regions {n_regions}; ask for fewer regions")
    kmeans = KMeans(n_clusters=n_regions, n_init=1, random_state=int(rng.integers(2**31)))
    kmeans.fit(fit)
    labels = kmeans.predict(features)
    # Order by mean L* (then a*, b*) of the centres, so ids do not depend on k-means' arbitrary cluster order.
    centres = kmeans.cluster_centers_
    order = np.lexsort((centres[:, 2], centres[:, 1], centres[:, 0]))
    rank = np.empty(n_regions, dtype=np.int64)
    rank[order] = np.arange(n_regions)
    label_map = rearrange(rank[labels], "(h w) -> h w", h=height, w=width)
    used = len(np.unique(label_map))
    if used != n_regions:
        raise InvalidInput(f"stand-in label map: only {used} of {n_regions} regions hold a pixel; ask for fewer regions")
    return np.ascontiguousarray(label_map)
