"""Why a goal is missed and what would close it, by row group: written from the measured runs (BENCHMARKS.md
prints the one of each missed row's group)."""

from __future__ import annotations

FINDINGS: dict[str, str] = {}
