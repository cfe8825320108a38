"""What a flow run shows in Prefect: a metrics table against the last release, a markdown summary."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldm.storage import Release

EMBED_LIMIT = 256 << 10  # grids up to this size go into the summary inline; larger ones by path


def metrics_rows(current: Mapping[str, float], previous: Mapping[str, float] | None, previous_label: str) -> list[dict[str, Any]]:
    """One row per metric: this run's value, the previous one and the change ('' where a side lacks it)."""
    previous = previous or {}
    rows = []
    for key in sorted(set(current) | set(previous)):
        now, before = current.get(key), previous.get(key)
        change = f"{now - before:+.6g}" if now is not None and before is not None else ""
        rows.append({"metric": key, "this run": _fmt(now), previous_label: _fmt(before), "change": change})
    return rows


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def grid_markdown(workdir: Path, grids: list[Path]) -> list[str]:
    """Markdown lines for the sample grids: small ones inline, each with its workspace path."""
    lines = []
    for grid in grids:
        relative = grid.relative_to(workdir).as_posix()
        if grid.stat().st_size <= EMBED_LIMIT:
            data = base64.b64encode(grid.read_bytes()).decode()
            lines += [f"**{relative}**", "", f"![{relative}](data:image/png;base64,{data})", ""]
        else:
            lines += [f"**{relative}** ({grid.stat().st_size >> 10} KiB, not inlined): `{grid}`", ""]
    return lines


def summary_markdown(*, workdir: Path, stages: Mapping[str, str], remote: str | None, push_note: str,
                     release: Release | None, new_release: bool, store: str | None, grids: list[Path]) -> str:
    """The run's summary: stages and what each did, where the data went, the release, the sample grids."""
    lines = ["# LDM pipeline run", "", f"Workspace: `{workdir}`", "", "| stage | result |", "|---|---|"]
    lines += [f"| {stage} | {result} |" for stage, result in stages.items()]
    lines += ["", f"**DVC push**: {'to remote `' + remote + '`' if remote else 'skipped'} {push_note}".rstrip(), ""]
    if release is not None:
        state = "new release" if new_release else "same files as an existing release, nothing uploaded"
        aliases = f" (aliases: {', '.join(release.aliases)})" if release.aliases else ""
        lines += [f"**Release**: `{release.name}` version {release.version}{aliases} in `{store}`: {state}; "
                  f"{release.files} files, {release.size} bytes, content `{release.content_sha256[:16]}`",
                  "", f"Pull it: `ldm pull {release.name} --version {release.version} -o DIR --store {store}`", ""]
    else:
        lines += ["**Release**: none made in this run", ""]
    return "\n".join(lines + grid_markdown(workdir, grids))
