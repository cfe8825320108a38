"""RELIABILITY.md names a test for each fault: every name must be a test that exists, so a row never points at
nothing."""

from __future__ import annotations

import re
from pathlib import Path


def _named_tests(text: str) -> list[tuple[str, str]]:
    """(file, test) of every `tests/...py::name` in a table row, `::name` continuing the file before it."""
    found, current = [], ""
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+)(?:\[[^\]]*\])?)?`", text):
        current = path or current
        if name:
            found.append((current, name))
    return found


def test_every_test_reliability_md_names_exists(root):
    text = (root / "RELIABILITY.md").read_text()
    named = _named_tests(text)
    assert len(named) >= 40
    missing = [f"{path}::{name}" for path, name in named
               if not re.search(rf"^def {name}\(", (root / path).read_text() if (root / path).is_file() else "", re.M)]
    assert missing == [], f"RELIABILITY.md names tests that do not exist: {missing}"
    for row in (line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Fault")):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 5 and all(cells) and "**open**" not in row, f"an incomplete row: {row[:80]}"
