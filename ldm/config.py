"""The one strict loader of the library's frozen config dataclasses; no torch, no I/O.

`load_config` builds a frozen dataclass from plain data (the JSON next to the
weights, or a section of a stage's params): an unknown key, a wrong type or a
value outside a `Literal` is an error that names the key. `Config` gives a
dataclass its `to_dict`/`from_dict` pair through this loader.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

C = TypeVar("C")

_KINDS = {bool: "true or false", int: "an integer", float: "a number (in YAML write 1.0e-4, not 1e-4)", str: "a string"}
_LISTS = {bool: "a list of true/false", int: "a list of integers", float: "a list of numbers", str: "a list of strings"}


class Config:
    """Mixin of a frozen config dataclass: `to_dict` for JSON, strict `from_dict`; errors say `{section}.{key}`."""

    section: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (tuples become lists)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Strict load: unknown keys, wrong types and values outside a Literal are errors naming the key."""
        return load_config(cls, data, cls.section)  # type: ignore[attr-defined]


def check_literals(config: Any, section: str) -> None:
    """Raise if a `Literal` field holds a value outside its options."""
    hints = get_type_hints(type(config))
    for field in dataclasses.fields(config):
        options = literal_options(hints[field.name])
        value = getattr(config, field.name)
        if options is not None and value not in options:
            raise ValueError(f"{section}.{field.name} must be one of {options}, got {value!r}")


def literal_options(hint: Any) -> tuple[Any, ...] | None:
    """The options of a `Literal[...]` type, else None."""
    return get_args(hint) if get_origin(hint) is Literal else None


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
    """Build `cls` from plain data, rejecting unknown keys, missing required keys, wrong types, bad Literals."""
    if not isinstance(data, dict):
        raise ValueError(f"{section} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{section}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    for name, field in fields.items():
        if name not in data and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            options = literal_options(hints[name])
            raise ValueError(f"{section}: missing required key {name!r}" + (f" ({' or '.join(map(repr, options))})" if options else ""))
    values = {key: _convert(value, hints[key], f"{section}.{key}") for key, value in data.items()}
    return cls(**values)


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else load_config(hint, value, where)  # type: ignore[arg-type]
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
        (element, *_) = get_args(hint)
        if not isinstance(value, (list, tuple)) or not all(_fits(v, element) for v in value):
            raise ValueError(f"{where} must be {_LISTS.get(element, 'a list')}, got {value!r}")
        return tuple(_convert(v, element, where) for v in value)
    if hint in _KINDS:
        if not _fits(value, hint):
            raise ValueError(f"{where} must be {_KINDS[hint]}, got {value!r}")
        return float(value) if hint is float else value
    return value


def _fits(value: Any, hint: Any) -> bool:
    """Whether plain data `value` is of the scalar type `hint` (no silent coercion but int -> float)."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True
