"""Reports on disk: JSON written atomically with sorted keys, and the code version every report's lineage carries."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path


def write_json(path: str | Path, obj: object) -> None:
    """Write a report atomically (a temp file moved into place), keys sorted, two-space indent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    temp.replace(path)


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
