"""Inpainting scores (Tab. 7): the blurred-fill baseline, PSNR/SSIM inside the hole, LPIPS through its seeded stand-in."""

from __future__ import annotations

import pytest
import torch

from ldm.autoencoder.losses import MissingWeightsError
from ldm.masks.shards import HOLE_FILL
from ldm.metrics.inpainting import blur_fill, coverage_stats, fill_scores, grid_columns, hole_psnr
from ldm.metrics.fidelity import file_sha256
from ldm.metrics.perceptual import lpips_distances, lpips_model
from ldm.metrics.quality import MAX_PSNR_DB

pytestmark = pytest.mark.usefixtures("one_thread")


def _image_and_mask(h: int = 24, w: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Two non-square images [2 x 3 x h x w] uint8 and masks [2 x 1 x h x w]: a box with a stroke, and a corner."""
    images = torch.randint(0, 256, (2, 3, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    m = torch.zeros(2, 1, h, w, dtype=torch.uint8)
    m[0, :, 4:20, 6:30] = 1  # a box deeper (8 px) than sigma 1 reaches
    m[0, :, 2, :] = 1  # a stroke across the whole width
    m[1, :, :12, :25] = 1  # the top-left corner: the border has no known pixels outside
    return images, m


def test_blur_fill_keeps_known_pixels_and_fills_every_hole():
    images, m = _image_and_mask()
    filled = blur_fill(images, m)
    known = ~m.bool().expand_as(images)
    assert filled.dtype == torch.uint8 and torch.equal(filled[known], images[known])
    # A constant surround is filled with that constant everywhere: every hole pixel is reached (none left grey),
    # and normalized convolution divides out the known mask's weight exactly.
    flat = torch.full_like(images, 200)
    assert torch.equal(blur_fill(flat, m), flat)
    hole = m.bool().expand_as(images)
    assert filled[hole].min() >= images[known].min() and filled[hole].max() <= images[known].max()  # convex weights
    assert torch.equal(blur_fill(images, m), filled)  # deterministic


def test_blur_fill_follows_the_surroundings_and_greys_an_image_without_known_pixels():
    left, right = torch.zeros(1, 3, 16, 24, dtype=torch.uint8), torch.full((1, 3, 16, 24), 240, dtype=torch.uint8)
    images = torch.cat([left[..., :12], right[..., 12:]], dim=-1)  # dark left half, bright right half
    m = torch.zeros(1, 1, 16, 24, dtype=torch.uint8)
    m[..., 4:12, 6:18] = 1
    filled = blur_fill(images, m).float()
    assert filled[0, :, 8, 7].mean() < 80 and filled[0, :, 8, 16].mean() > 160  # each side from its own surroundings
    everything = blur_fill(images, torch.ones_like(m))
    assert torch.equal(everything, torch.full_like(images, HOLE_FILL))


def test_hole_scores_see_only_the_hole():
    images, m = _image_and_mask()
    assert torch.all(hole_psnr(images, images, m) == MAX_PSNR_DB)
    noisy = images.clone()
    noisy[m.bool().expand_as(images)] ^= 0x40  # changes inside the hole only
    scores, hole = fill_scores(noisy, images, m), hole_psnr(noisy, images, m)
    assert scores["psnr_hole"] < scores["psnr"] and scores["ssim_hole"] < scores["ssim"] <= 1.0
    assert torch.allclose(hole, torch.full_like(hole, 20 * torch.log10(torch.tensor(255.0 / 64)).item()), atol=1e-3)
    coverage = coverage_stats(m)
    assert coverage["min"] == pytest.approx(12 * 25 / (24 * 40), abs=1e-4)  # the corner
    assert coverage["max"] == pytest.approx((16 * 24 + 40) / (24 * 40), abs=1e-4)  # the box and the stroke


def test_lpips_stand_in_is_seeded_and_grows_with_the_difference(tmp_path):
    images, _ = _image_and_mask(32, 32)
    model, fingerprint = lpips_model("random-vgg16")
    _, again = lpips_model("random-vgg16")
    assert fingerprint["stand_in"] and fingerprint["weights_sha256"] == again["weights_sha256"]
    noise = torch.randint(-20, 21, images.shape, generator=torch.Generator().manual_seed(1))
    near = (images.int() + noise).clamp(0, 255).to(torch.uint8)
    far = (images.int() + 6 * noise).clamp(0, 255).to(torch.uint8)
    same, small, large = (lpips_distances(model, x, images) for x in (images, near, far))
    assert torch.allclose(same, torch.zeros(2), atol=1e-6) and torch.all(small < large)
    with pytest.raises(MissingWeightsError, match="absent.pth"):
        lpips_model("vgg16", tmp_path / "absent.pth")
    # The real path reads torchvision's layout from a file: the stand-in's own weights saved so give its distances.
    state = {f"features.{index}.{name}": value for part in (model.net.slice1, model.net.slice2, model.net.slice3,
                                                            model.net.slice4, model.net.slice5)
             for index, layer in part.named_children() if isinstance(layer, torch.nn.Conv2d)
             for name, value in layer.state_dict().items()}
    torch.save(state, tmp_path / "vgg16.pth")
    real, real_fingerprint = lpips_model("vgg16", tmp_path / "vgg16.pth")
    assert real_fingerprint["weights_sha256"] == file_sha256(tmp_path / "vgg16.pth") and not real_fingerprint["stand_in"]
    assert torch.allclose(lpips_distances(real, near, images), small, atol=1e-6)


def test_grid_columns_are_titled_in_order_and_enlarged_until_the_titles_fit():
    images, m = _image_and_mask()
    columns = grid_columns(images, m, {"blur_fill": blur_fill(images, m), "ldm": images}, count=1)
    assert list(columns) == ["original", "mask", "masked", "blurred fill (baseline)", "LDM fill"]
    tile = columns["original"]
    factor = tile.shape[2] // 40
    assert tile.shape == (1, 24 * factor, 40 * factor, 3) and tile.shape[2] >= len("blurred fill (baseline)") * 7
    hole = m[0, 0].bool().numpy().repeat(factor, 0).repeat(factor, 1)
    assert (columns["masked"][0][hole] == HOLE_FILL).all() and (columns["mask"][0][hole] == 255).all()
    assert (columns["masked"][0][~hole] == tile[0][~hole]).all()
