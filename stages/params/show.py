"""`ldm params show`: the fully resolved params as YAML, optionally with each value's origin.

`--set KEY=VALUE` edits the raw mapping before resolution, as `dvc exp run -S` edits
params.yaml: VALUE is read as YAML (`1.0e-4`, `true`, `[fid, kid]`, `vq-f4`).
"""

from __future__ import annotations

from typing import Any

import yaml

from stages.params.base import ParamsError
from stages.params.recipes import FROM_DEFAULT, resolve

FROM_SET = "--set"
TRAINING = ("train_autoencoder", "train_ldm", "train_sr", "train_inpaint", "train_semantic", "train_layout")


def apply_sets(raw: dict[str, Any], assignments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """`raw` with each `a.b.c=VALUE` applied (VALUE parsed as YAML), and the dotted keys set."""
    raw, keys = _copy(raw), []
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.removeprefix("+")  # `dvc exp run -S` spells a key params.yaml does not list `+key`
        if not sep or not key or any(not part for part in key.split(".")):
            raise ParamsError(f"--set {assignment!r}: write KEY=VALUE with a dotted key, e.g. train_ldm.preset=cin-ldm8")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ParamsError(f"--set {assignment!r}: VALUE is not valid YAML: {exc}") from None
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
        keys.append(key)
    return raw, keys


def origins_of(raw: dict[str, Any], set_keys: list[str]) -> dict[str, str]:
    """Where each resolved leaf key comes from: params.yaml, --set, a preset's recipe (missing: default)."""
    _, origins = resolve(raw)
    for key in set_keys:
        for leaf in [k for k in origins if k == key or k.startswith(key + ".")] or [key]:
            origins[leaf] = FROM_SET
    return origins


def render(resolved: dict[str, Any], origins: dict[str, str] | None, notes: dict[str, str]) -> str:
    """YAML of the resolved params; with `origins`, a `# origin` comment on every value; `notes` after sections."""
    lines: list[str] = []
    _emit(resolved, "", 0, origins, notes, lines)
    return "\n".join(lines) + "\n"


def lr_notes(params: Any) -> dict[str, str]:
    """Per training section: the effective learning rate on one device and how it is made."""
    notes = {}
    for section in TRAINING:
        p = getattr(params, section)
        config = p.train_config()
        lr = config.effective_lr(p.batch_size)
        how = (f"lr {config.lr:g} x batch_size {p.batch_size}" + (f" x accumulate {config.accumulate}"
               if hasattr(config, "accumulate") else "") + " (scale_lr)") if config.scale_lr else "lr, not scaled"
        notes[f"{section}.recipe"] = f"effective lr on one device: {lr:.3g} = {how}"
    return notes


def _emit(node: dict[str, Any], prefix: str, depth: int, origins: dict[str, str] | None, notes: dict[str, str],
          lines: list[str]) -> None:
    pad = "  " * depth
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            _emit(value, path, depth + 1, origins, notes, lines)
            if path in notes:
                lines.append(f"{pad}  # {notes[path]}")
            if depth == 0:
                lines.append("")
            continue
        text = f"{pad}{key}: {_scalar(value)}"
        if origins is not None:
            text = f"{text:<48}  # {origins.get(path, FROM_DEFAULT)}"
        lines.append(text)


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1_000).removesuffix("\n...\n").strip()


def _copy(raw: Any) -> Any:
    return {k: _copy(v) for k, v in raw.items()} if isinstance(raw, dict) else raw
