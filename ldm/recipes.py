"""Training recipes: what a preset is trained with, beside what it is (its architecture), with no torch import.

A recipe states only what differs from the training defaults: the batch size,
the number of optimizer steps, the validation and checkpoint cadence, and the
`TrainConfig` fields of its family (autoencoder or LDM) that the paper
(Tab. 12-15) or the reference configuration sets. params.yaml overrides any of
it; `ldm params show --origin` tells which value came from where.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """The training recipe of one preset; `train` holds TrainConfig fields (checked by the family's registry)."""

    batch_size: int  # samples per batch on one device
    steps: int  # optimizer steps ("iterations" in Tab. 12-15)
    source: str  # where the numbers come from (paper table, reference configuration, measured here)
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields the recipe sets
    val_every: int = 5000  # batches between validation passes
    checkpoint_every: int = 5000  # batches between checkpoints

    def section(self) -> dict[str, Any]:
        """The recipe as the keys of its params section (`recipe` holds the TrainConfig fields)."""
        return {"batch_size": self.batch_size, "steps": self.steps, "val_every": self.val_every,
                "checkpoint_every": self.checkpoint_every, "recipe": dict(self.train)}


def check_recipes(recipes: Mapping[str, Recipe], config: type, presets: list[str]) -> None:
    """Every preset has a recipe whose `train` fields build a valid `config`: a broken table fails at import."""
    missing = sorted(set(presets) - set(recipes))
    if missing:
        raise AssertionError(f"presets without a recipe: {', '.join(missing)}")
    for name, recipe in recipes.items():
        try:
            config(**recipe.train)
        except (TypeError, ValueError) as exc:
            raise AssertionError(f"recipe {name!r}: {exc}") from None


def lookup(recipes: Mapping[str, Recipe], name: str, family: str) -> Recipe:
    """The recipe of preset `name`; ValueError listing the known names of the family if unknown."""
    try:
        return recipes[name]
    except KeyError:
        raise ValueError(f"unknown {family} preset {name!r}; known presets: {', '.join(recipes)}") from None
