"""Decoding converts every image mode to upright RGB and names what it did."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ldm.data.images import BadImage, center_square, crop_resize, decode_image, encode_png, resize_bicubic


def _bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _gradient(height: int, width: int) -> np.ndarray:
    rows = np.linspace(0, 255, height)[:, None]
    cols = np.linspace(0, 255, width)[None, :]
    return np.stack([rows + 0 * cols, 0 * rows + cols, (rows + cols) / 2], axis=-1).astype(np.uint8)


def test_rgb_passes_through_unchanged():
    pixels = _gradient(24, 40)
    image, notes = decode_image(_bytes(Image.fromarray(pixels), "PNG"))
    assert notes == [] and image.shape == (24, 40, 3)
    np.testing.assert_array_equal(image, pixels)


def test_grey_becomes_three_equal_channels():
    image, notes = decode_image(_bytes(Image.fromarray(_gradient(24, 40)[..., 0]), "PNG"))
    assert image.shape == (24, 40, 3) and notes == ["mode:L->RGB"]
    assert np.array_equal(image[..., 0], image[..., 2])


def test_sixteen_bit_is_scaled_not_clipped():
    deep = (np.linspace(0, 65535, 24 * 40).reshape(24, 40)).astype(np.uint16)
    image, notes = decode_image(_bytes(Image.fromarray(deep), "PNG"))
    assert "scaled 65535->255" in notes[0]
    assert image.max() == 255 and image.min() == 0  # full range kept, not saturated at 255
    assert 100 < image.mean() < 155


def test_alpha_is_composited_on_white():
    rgba = np.zeros((24, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :20, 3] = 255  # left half opaque red, right half transparent
    image, notes = decode_image(_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert "alpha composited on white" in notes[0]
    assert tuple(image[0, 0]) == (200, 0, 0) and tuple(image[0, -1]) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.fromarray(_gradient(24, 40)).convert("CMYK")
    image, notes = decode_image(_bytes(cmyk, "JPEG", quality=95))
    assert notes == ["mode:CMYK->RGB"] and image.shape == (24, 40, 3)


def test_exif_rotation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    stored = Image.fromarray(_gradient(24, 40))
    image, notes = decode_image(_bytes(stored, "JPEG", exif=exif, quality=95))
    assert notes == ["exif_transpose:6"]
    assert image.shape == (40, 24, 3)  # height and width swap


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is a text file", "not an image"),
        (b"", "not an image"),
        (_bytes(Image.fromarray(_gradient(64, 64)), "JPEG")[:400], "corrupt or truncated"),
        (_bytes(Image.fromarray(_gradient(64, 64)), "PNG")[:-30], "corrupt or truncated"),
    ],
)
def test_unreadable_inputs_raise_with_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_image(data)


def test_crop_resize_on_non_square_input():
    image = _gradient(48, 80)
    top, left, size = center_square(48, 80)
    assert (top, left, size) == (0, 16, 48)
    crop = crop_resize(image, (top, left, size), 16)
    assert crop.shape == (16, 16, 3)
    # Area resize of a linear gradient keeps its ordering along both axes.
    assert crop[0, 0, 0] < crop[-1, 0, 0] and crop[0, 0, 1] < crop[0, -1, 1]


def test_png_round_trip_is_lossless_and_deterministic():
    pixels = _gradient(16, 24)
    assert encode_png(pixels) == encode_png(pixels.copy())
    back, _ = decode_image(encode_png(pixels))
    np.testing.assert_array_equal(back, pixels)


def test_resize_bicubic_takes_height_then_width_and_keeps_flat_colour():
    image = np.zeros((20, 36, 3), np.uint8)
    image[:, :18] = (200, 40, 90)  # left half coloured: the halves survive at the new size
    small = resize_bicubic(image, (10, 6))
    assert small.shape == (10, 6, 3) and small.flags.writeable
    assert (small[:, 0] == (200, 40, 90)).all() and (small[:, -1] == 0).all()
    assert np.array_equal(resize_bicubic(image, (20, 36)), image)
