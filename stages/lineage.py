"""What every report carries so a number can be traced back: params, inputs, code version."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib import metadata
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from stages.params import params_hash


def code_version() -> str:
    """Package version plus the git revision of the checkout (and '-dirty' when modified)."""
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


def lineage(sections: dict[str, BaseModel], inputs: dict[str, str]) -> dict:
    """The lineage block of a report: each params section with its hash, input hashes, code version."""
    return {
        "params": {name: section.model_dump(mode="json") for name, section in sections.items()},
        "params_sha256": {name: params_hash(section) for name, section in sections.items()},
        "inputs_sha256": dict(sorted(inputs.items())),
        "code_version": code_version(),
    }


def write_json(path: str | Path, obj: object) -> None:
    """Write a report atomically (a temp file moved into place), keys sorted, two-space indent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    temp.replace(path)


def setup_logging() -> None:
    """Plain `level: message` lines on stderr for stage CLIs."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)


def run_cli(work: Callable[[], object], user_errors: tuple[type[BaseException], ...], logger: logging.Logger) -> int:
    """A stage CLI's body: set up logging, run `work`; a user error is one logged line and exit code 2, no traceback."""
    setup_logging()
    try:
        work()
    except user_errors as exc:
        logger.error("%s", exc)
        return 2
    return 0
