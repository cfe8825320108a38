"""Seeds derived from sample keys, so a sample's randomness depends on nothing but the global seed and its key."""

from __future__ import annotations

import hashlib


def key_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the global seed and a sample key (plus any suffix, e.g. `KEY:repeat`)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") >> 1
