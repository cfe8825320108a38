"""Reports on disk: JSON written atomically with sorted keys, and the code version every report's lineage carries."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_json(path: str | Path, obj: object) -> None:
    """Write a report atomically (a temp file moved into place), keys sorted, two-space indent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    temp.replace(path)


def quantiles(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    """min, quartiles and max of `values` for a report ({} when there are none)."""
    if not len(values):
        return {}
    q = np.percentile(np.asarray(values, dtype=np.float64), [0, 25, 50, 75, 100])
    return {name: round(float(v), digits) for name, v in zip(("min", "p25", "median", "p75", "max"), q)}


def code_version() -> str:
    """Package version plus the git revision of the checkout (and '-dirty' when its code is modified)."""
    version = metadata.version("ldm-pipeline")
    try:
        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return version
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "ldm", "stages"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{version}+g{rev.stdout.strip()}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return version
