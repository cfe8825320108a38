"""The params.yaml boundary: strict pydantic sections, sections derived from the library's config dataclasses,
and one readable line per error (key, value, what is allowed)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Strict, create_model, model_validator

from ldm.errors import UserError


class ParamsError(UserError, ValueError):
    """params.yaml is missing, unreadable or invalid; the message says what to fix."""


class Section(BaseModel):
    """A frozen section of params.yaml that rejects unknown keys and silent coercions."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    # Keys that say how a stage runs (how many workers), never what it writes: left out of lineage and hashes.
    runtime: ClassVar[frozenset[str]] = frozenset()

    def recorded(self) -> dict[str, Any]:
        """The section as lineage records it: JSON values, runtime keys left out."""
        return self.model_dump(mode="json", exclude=set(self.runtime))


def dataclass_section(config: type, name: str, defaults: Any = None) -> type[Section]:
    """A strict params section mirroring a frozen config dataclass of `ldm/`.

    The dataclass stays the one definition of the fields; the defaults are its own,
    or those of the `defaults` instance (e.g. a CPU recipe). Its `__post_init__`
    checks run at load time and their message is reported like any other.
    `to_config(section, config)` builds the dataclass.
    """
    hints = typing.get_type_hints(config)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        kind = hints[field.name]
        if typing.get_origin(kind) is tuple:
            kind = Annotated[kind, Strict(False)]  # YAML has lists, the dataclass tuples
        if defaults is not None:
            default = getattr(defaults, field.name)
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = ...
        fields[field.name] = (kind, default)

    def check(section: Section) -> Section:  # on the dataclass's fields only: a subclass may add others
        try:
            to_config(section, config)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return section

    validators = {"_check": model_validator(mode="after")(check)}
    section = create_model(name, __base__=Section, __validators__=validators, **fields)
    section.__doc__ = f"Mirrors `{config.__module__}.{config.__qualname__}`: {(config.__doc__ or '').strip()}"
    return section


def to_config(section: Section, config: type) -> Any:
    """The `ldm` config dataclass that a `dataclass_section` section (or a subclass of one) describes."""
    return config(**{field.name: getattr(section, field.name) for field in dataclasses.fields(config)})


def one_of(value: str, known: list[str], empty_ok: bool = False) -> str:
    """`value` when it names a known preset (or is empty, if allowed); else the error listing them."""
    if value in known or (empty_ok and not value):
        return value
    raise ValueError(f"must be {'empty or ' if empty_ok else ''}one of {', '.join(known)}")


def describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    """One readable line for one pydantic error: key, value, what is allowed."""
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"][:-1])
        return f"{key}: unknown key; allowed here: {', '.join(allowed)}"
    value = error.get("input")
    message = error["msg"]
    if kind == "literal_error":
        message = "must be one of " + message.removeprefix("Input should be ")
    elif kind == "value_error" and "got " in message:
        return f"{key}: {message.replace('Value error, ', '')}"
    else:
        message = message.replace("Input should be", "must be").replace("Value error, ", "")
    return f"{key}: {message}, got {value!r}"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the section at `loc` (for the unknown-key message)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return sorted(model.model_fields)
        model = field.annotation
    return sorted(model.model_fields)
