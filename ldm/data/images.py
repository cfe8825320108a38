"""Decoding any image a user may hand us into H x W x 3 uint8 RGB, and cutting crops.

Every conversion is named in the returned notes (EXIF rotation, mode changes,
bit-depth scaling, alpha compositing) so the download report can show what was
done to each input. What cannot be read raises `BadImage` with the reason.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ldm.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class BadImage(UserError, ValueError):
    """An input that cannot become a training image; the message is the reason."""


def _to_rgb(image: Image.Image, notes: list[str]) -> np.ndarray:
    """Any Pillow mode -> H x W x 3 uint8."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and 32-bit grey: scale the full range to 8 bits instead of clipping.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        notes.append(f"mode:{mode}->RGB (scaled {int(top)}->255)")
        grey = np.clip(np.rint(array / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"mode:{mode}->RGB (alpha composited on white)")
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        notes.append(f"mode:{mode}->RGB")
        image = image.convert("RGB")
    return np.asarray(image)


def decode_image(data: bytes) -> tuple[np.ndarray, list[str]]:
    """Encoded bytes -> ([H x W x 3] uint8 upright RGB, notes on what was converted)."""
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                probe.verify()  # catches many truncated or corrupt files cheaply
            image = Image.open(io.BytesIO(data))
            image.load()
    except UnidentifiedImageError:
        raise BadImage("not an image (no decoder recognises its content)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"too many pixels to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"corrupt or truncated image: {exc}") from None
    orientation = image.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        notes.append(f"exif_transpose:{orientation}")
    return np.ascontiguousarray(_to_rgb(image, notes)), notes


def center_square(height: int, width: int) -> tuple[int, int, int]:
    """The largest centred square as (top, left, size)."""
    size = min(height, width)
    return (height - size) // 2, (width - size) // 2, size


def crop_resize(image: np.ndarray, box: tuple[int, int, int], resolution: int) -> np.ndarray:
    """Cut the square `box` = (top, left, size) and area-resize it to resolution^2.

    [H x W x 3] uint8 -> [resolution x resolution x 3] uint8.
    """
    top, left, size = box
    crop = image[top : top + size, left : left + size]
    if size == resolution:
        return np.ascontiguousarray(crop)
    # BOX is the area filter: each output pixel averages the input pixels it covers.
    return np.asarray(Image.fromarray(crop).resize((resolution, resolution), Image.Resampling.BOX))


def resize_bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H x W x 3] uint8 -> a new [h x w x 3] uint8, bicubic (Pillow's filter widens when shrinking: antialiased)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image.copy()
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))  # writable, for torch


def encode_png(image: np.ndarray) -> bytes:
    """[H x W x 3] uint8 -> PNG bytes (lossless; same pixels give the same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
