"""The engine that renames and reshapes state dicts between this project and another format.

A format is described by data (see reference_keys.py and diffusers_keys.py):

    places  logical block address -> the block's prefix in that format, e.g.
            "enc.down.res" -> "encoder.down_blocks.{level}.resnets.{j}"
    rules   block kind -> the parameter-holding modules inside such a block:
            Rule(ours, theirs, op), e.g. Rule("skip", "conv_shortcut") or
            Rule("qkv", ("to_q", "to_k", "to_v"), "split3")

layout.py walks a config and lists our blocks (`Block`: kind, our prefix, logical
address, index variables). `plan` crosses the two into one entry per tensor of
ours; `export_state` and `import_state` run it in either direction, so one
table serves both. A tensor of ours the table does not cover, or a key of
theirs that nothing maps to (and that the format does not list as known and
unused), stops the conversion and names the key.

Reshapes (`OPS`), ours -> theirs (the inverse runs on import):
    same        as is
    conv1x1     Linear [O x I] -> 1x1 Conv2d [O x I x 1 x 1]
    linear      1x1 Conv2d [O x I x 1 x 1] -> Linear [O x I]
    conv1d      Linear [O x I] -> 1x1 Conv1d [O x I x 1]
    qkv_heads   fused q|k|v Linear rows (three, head, c) -> Conv1d rows (head, three, c), the
                reference's legacy QKV attention order
    split3      fused q|k|v rows -> three tensors q, k, v
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import Tensor

from ldm.errors import InvalidInput

PARAMS = ("weight", "bias")


@dataclass(frozen=True)
class Rule:
    """One parameter-holding module of a block: our name -> their name(s) and the reshape between them."""

    ours: str
    theirs: str | tuple[str, ...]
    op: str = "same"

    @property
    def their_names(self) -> tuple[str, ...]:
        """Their module names (several when one of our tensors is split)."""
        return (self.theirs,) if isinstance(self.theirs, str) else self.theirs


@dataclass(frozen=True)
class Block:
    """One of our blocks: its kind (which rules apply), our prefix, its logical address and index variables."""

    kind: str
    ours: str
    place: str
    index: Mapping[str, int | str] = field(default_factory=dict)
    heads: int = 0  # attention heads, for reshapes that regroup by head


@dataclass(frozen=True)
class Format:
    """A foreign key layout: block places, rules per block kind, keys known and unused on import."""

    name: str
    places: Mapping[str, str]
    rules: Mapping[str, tuple[Rule, ...]]
    unused: tuple[str, ...] = ()  # prefixes (after the component prefix) of their keys that carry nothing we load


@dataclass(frozen=True)
class Entry:
    """One tensor of ours and where it lives in the other format."""

    ours: str
    theirs: tuple[str, ...]
    op: str
    heads: int


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _qkv_heads(t: Tensor, heads: int, inverse: bool) -> Tensor:
    pattern = "(h s c) ... -> (s h c) ..." if inverse else "(s h c) ... -> (h s c) ..."
    return rearrange(t, pattern, s=3, h=heads)


def _forward(op: str, t: Tensor, heads: int, is_weight: bool) -> list[Tensor]:
    if op == "split3":
        return list(t.chunk(3, dim=0))
    if op == "qkv_heads":
        t = _qkv_heads(t, heads, inverse=False)
        return [t[..., None] if is_weight else t]
    if not is_weight or op == "same":
        return [t]
    return [{"conv1x1": lambda: t[:, :, None, None], "conv1d": lambda: t[:, :, None],
             "linear": lambda: t[:, :, 0, 0]}[op]()]


def _inverse(op: str, ts: list[Tensor], heads: int, is_weight: bool) -> Tensor:
    if op == "split3":
        return torch.cat(ts, dim=0)
    (t,) = ts
    if op == "qkv_heads":
        return _qkv_heads(t[..., 0] if is_weight else t, heads, inverse=True)
    if not is_weight or op == "same":
        return t
    return {"conv1x1": lambda: t[:, :, 0, 0], "conv1d": lambda: t[:, :, 0],
            "linear": lambda: t[:, :, None, None]}[op]()


OPS = ("same", "conv1x1", "linear", "conv1d", "qkv_heads", "split3")  # the reshapes _forward/_inverse know


def plan(blocks: Iterable[Block], fmt: Format, our_keys: Iterable[str], prefix: str = "") -> dict[str, Entry]:
    """Our key -> Entry for every key in `our_keys`; a key no rule covers is an error naming it."""
    wanted = set(our_keys)
    entries: dict[str, Entry] = {}
    for block in blocks:
        if block.place not in fmt.places:
            raise InvalidInput(f"{fmt.name}: has no place for our block {block.ours or '(root)'} ({block.place});"
                               f" this model cannot be written in {fmt.name}'s layout")
        where = fmt.places[block.place].format(**block.index)
        for rule in fmt.rules[block.kind]:
            if rule.op not in OPS:
                raise ValueError(f"{fmt.name}: unknown reshape {rule.op!r} in rule {rule}")
            for param in PARAMS:
                ours = _join(block.ours, rule.ours, param)
                if ours in wanted:
                    theirs = tuple(_join(prefix.rstrip("."), where, name.format(**block.index), param)
                                   for name in rule.their_names)
                    entries[ours] = Entry(ours, theirs, rule.op, block.heads)
    unmapped = sorted(wanted - set(entries))
    if unmapped:
        raise InvalidInput(f"{fmt.name}: no mapping for our key {unmapped[0]!r}"
                           + (f" (and {len(unmapped) - 1} more)" if len(unmapped) > 1 else "")
                           + f"; the {fmt.name} table does not cover this model")
    return entries


def export_state(state: Mapping[str, Tensor], entries: Mapping[str, Entry]) -> dict[str, Tensor]:
    """Our state dict -> theirs, renamed and reshaped by `entries` (from `plan`)."""
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        entry = entries[key]
        parts = _forward(entry.op, tensor, entry.heads, key.endswith("weight"))
        out.update({name: part.contiguous() for name, part in zip(entry.theirs, parts)})
    return out


def import_state(theirs: Mapping[str, Tensor], entries: Mapping[str, Entry], fmt: Format,
                 source: str, prefix: str = "") -> dict[str, Tensor]:
    """Their tensors under `prefix` -> our state dict; a key of theirs nothing maps to is an error naming it."""
    used = {name for entry in entries.values() for name in entry.theirs}
    unknown = sorted(k for k in theirs if k.startswith(prefix) and k not in used
                     and not k[len(prefix):].startswith(fmt.unused or ("\0",)))
    if unknown:
        raise InvalidInput(f"{source}: unknown key {unknown[0]!r}"
                           + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                           + f" for this preset in {fmt.name}'s layout; is --preset right?")
    out: dict[str, Tensor] = {}
    for key, entry in entries.items():
        missing = [name for name in entry.theirs if name not in theirs]
        if missing:
            raise InvalidInput(f"{source}: missing key {missing[0]!r} (our {key}); is --preset right?")
        out[key] = _inverse(entry.op, [theirs[name] for name in entry.theirs], entry.heads, key.endswith("weight"))
    return out
