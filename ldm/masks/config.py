"""What the mask generator draws: the kinds, their proportions, the bounds on the hidden fraction (no numpy, no cv2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

MaskKind = Literal["thick", "medium", "thin", "box"]
KINDS: tuple[MaskKind, ...] = get_args(MaskKind)
# An inpainting model's concat condition and the training batch's keys for it (Sec. 4.5): the masked image's
# latent and the mask at latent resolution, in the UNet's input order.
MASKED_IMAGE, MASK = "masked_image", "mask"
SUM_TOLERANCE = 1e-6  # how far the proportions' sum may be from 1 (decimal fractions in YAML)


def check_proportions(proportions: Mapping[str, float]) -> None:
    """Raise ValueError unless `proportions` gives every kind a share in [0, 1] and the shares sum to 1."""
    if sorted(proportions) != sorted(KINDS):
        raise ValueError(f"must name exactly {', '.join(KINDS)}, got {', '.join(proportions)}")
    for kind, share in proportions.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{kind} must be in [0, 1], got {share!r}")
    total = sum(proportions.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        terms = " + ".join(f"{kind} {proportions[kind]:g}" for kind in KINDS)
        raise ValueError(f"must sum to 1, got {total:g} ({terms})")


@dataclass(frozen=True)
class MaskConfig:
    """Each kind's share (summing to 1), the bounds on the fraction of the image a mask hides, the draws per mask."""

    proportions: dict[str, float]  # kind -> share, every kind of KINDS
    min_coverage: float
    max_coverage: float
    attempts: int  # draws of the chosen kind before the last one is fitted to the nearest bound

    def __post_init__(self) -> None:
        try:
            check_proportions(self.proportions)
        except ValueError as exc:
            raise ValueError(f"proportions: {exc}") from None
        if not 0.0 <= self.min_coverage < self.max_coverage <= 1.0:
            raise ValueError("coverage bounds must satisfy 0 <= min_coverage < max_coverage <= 1, "
                             f"got min_coverage {self.min_coverage:g}, max_coverage {self.max_coverage:g}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
