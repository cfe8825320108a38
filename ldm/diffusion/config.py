"""DiffusionConfig (Appendix A) and the strict loader shared by the LDM config types.

`load_config` builds a frozen dataclass from plain data (JSON next to the
weights, or a params.yaml section): an unknown key, a wrong type or a value
outside a `Literal` is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from ldm.diffusion.schedule import NoiseSchedule, Parameterization, ScheduleKind, make_schedule

LossType = Literal["l2", "l1"]
C = TypeVar("C")


@dataclass(frozen=True)
class DiffusionConfig:
    """Schedule and objective of a latent diffusion model (Appendix A, Tab. 12-15)."""

    schedule: ScheduleKind = "linear"
    timesteps: int = 1000  # T
    linear_start: float = 0.0015  # beta_1 (per task: REFERENCE.md "Diffusion")
    linear_end: float = 0.0195  # beta_T
    parameterization: Parameterization = "eps"
    loss_type: LossType = "l2"  # L_simple with L2 (Eq. 1) or L1 (churches, inpainting, semantic)
    min_snr_gamma: float | None = None  # Hang et al. min-SNR-gamma weighting; None: off (Eq. 1 as is)

    def __post_init__(self) -> None:
        check_literals(self, "diffusion")
        if not 0.0 < self.linear_start < self.linear_end < 1.0:
            raise ValueError(
                "diffusion: need 0 < linear_start < linear_end < 1,"
                f" got linear_start={self.linear_start}, linear_end={self.linear_end}"
            )
        if self.min_snr_gamma is not None and not self.min_snr_gamma > 0:
            raise ValueError(f"diffusion.min_snr_gamma must be > 0 or null, got {self.min_snr_gamma}")
        make_schedule(self.schedule, self.timesteps, self.linear_start, self.linear_end)

    def make_schedule(self) -> NoiseSchedule:
        """The NoiseSchedule this config describes."""
        return make_schedule(self.schedule, self.timesteps, self.linear_start, self.linear_end)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON next to the weights."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionConfig:
        """Strict load: unknown keys and wrong types are errors naming the key."""
        return load_config(cls, data, "diffusion")


# ---------------------------------------------------------------------------
# Strict loading of frozen config dataclasses
# ---------------------------------------------------------------------------

def check_literals(config: Any, section: str) -> None:
    """Raise if a `Literal` field holds a value outside its options."""
    hints = get_type_hints(type(config))
    for field in dataclasses.fields(config):
        options = _literal_options(hints[field.name])
        value = getattr(config, field.name)
        if options is not None and value not in options:
            raise ValueError(f"{section}.{field.name} must be one of {options}, got {value!r}")


def to_plain(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-able data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def load_config(cls: type[C], data: dict[str, Any], section: str) -> C:
    """Build `cls` from plain data, rejecting unknown keys, wrong types and bad Literal values."""
    if not isinstance(data, dict):
        raise ValueError(f"{section} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{section}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    values = {key: _convert(value, hints[key], f"{section}.{key}") for key, value in data.items()}
    return cls(**values)


def _literal_options(hint: Any) -> tuple[Any, ...] | None:
    return get_args(hint) if get_origin(hint) is Literal else None


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else load_config(hint, value, where)
    if origin is Literal:
        if value not in get_args(hint):
            raise ValueError(f"{where} must be one of {get_args(hint)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        (element, *_) = get_args(hint)
        return tuple(_convert(v, element, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{where} must be a number (in YAML write 1.0e-4, not 1e-4), got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value
