"""The order a split's samples are written in: seeded and global across classes.

Sources list their inputs photo by photo or folder by folder, so shards written
in that order hold two or three classes each, and a shuffle buffer of a
thousand samples cannot mix them again. Written in this order instead, every
shard holds the class mix of the whole split.
"""

from __future__ import annotations

from collections.abc import Sequence

from ldm.seeding import key_seed


def write_order(keys: Sequence[str], seed: int) -> list[int]:
    """Indices of `keys` in write order: ascending `key_seed(seed, "write-order:" + key)`, ties by key.

    sha256 is the random source, so for each seed this is a uniformly random
    permutation, and it depends on nothing but the seed and the keys: not on the
    order they are listed in (folder scan, manifest lines), nor on the number of
    decoding processes. Adding an input leaves the others in the same relative order.
    Costs one sha256 per key; the caller permutes its list of inputs, never decoded images.
    """
    ranks = [key_seed(seed, f"write-order:{key}") for key in keys]
    return sorted(range(len(keys)), key=lambda i: (ranks[i], keys[i]))
