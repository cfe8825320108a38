"""Image folders: class = first-level subfolder, optional captions.jsonl at the root.

Layout a user provides:

    root/
      captions.jsonl          optional: {"file": "cats/a.jpg", "caption": "..."} per line
      cats/a.jpg
      dogs/b.png

Files are taken in sorted order; the split of a file is a hash of its relative
path, so adding files never moves an existing one between train and val.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ldm.data.images import IMAGE_EXTENSIONS
from ldm.errors import UserError

UNLABELLED = "unlabelled"


class DataError(UserError, ValueError):
    """A dataset source that cannot be read at all; the message says what to fix."""


@dataclass(frozen=True)
class Item:
    """One input file with its label and caption."""

    relpath: str
    path: Path
    class_name: str
    caption: str


def default_caption(class_name: str) -> str:
    """The caption of a file that captions.jsonl does not describe."""
    return "a photo" if class_name == UNLABELLED else f"a photo of {class_name.replace('_', ' ')}"


def read_captions(path: Path) -> dict[str, str]:
    """captions.jsonl -> {relative path: caption}; a malformed line is a DataError naming it."""
    captions: dict[str, str] = {}
    if not path.is_file():
        return captions
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            file_name, caption = row["file"], row["caption"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}:{number}: expected a JSON object with 'file' and 'caption', got {line[:80]!r} ({exc})") from None
        if not isinstance(file_name, str) or not isinstance(caption, str):
            raise DataError(f"{path}:{number}: 'file' and 'caption' must be strings")
        captions[file_name] = caption
    return captions


def scan_folder(root: str | Path, captions_name: str) -> tuple[list[Item], list[dict]]:
    """All image files under `root` in sorted order, and the other files (ignored) with the reason."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; set download.folder.path to a folder of images")
    captions = read_captions(root / captions_name)
    items, ignored = [], []
    try:
        paths = sorted(p for p in root.rglob("*") if p.is_file())
    except OSError as exc:
        raise DataError(f"{root}: cannot be listed: {exc}") from None
    for path in paths:
        relpath = path.relative_to(root).as_posix()
        if relpath == captions_name or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored.append({"input": relpath, "reason": f"extension {path.suffix or '(none)'!r} is not an image extension"})
            continue
        parts = relpath.split("/")
        class_name = parts[0] if len(parts) > 1 else UNLABELLED
        items.append(Item(relpath, path, class_name, captions.get(relpath, default_caption(class_name))))
    if not items:
        raise DataError(f"{root}: holds no image files ({', '.join(IMAGE_EXTENSIONS)}); put one subfolder of images per class there")
    return items, ignored


def split_of(relpath: str, val_fraction: float, seed: int) -> str:
    """'val' for a stable `val_fraction` of paths, else 'train' (a hash, not a draw)."""
    digest = hashlib.sha256(f"{seed}:{relpath}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def sample_key(relpath: str) -> str:
    """A stable webdataset key for an input path (no dots, no slashes)."""
    return hashlib.sha256(relpath.encode()).hexdigest()[:16]
