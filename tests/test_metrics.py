"""Fidelity metrics through torch-fidelity with the stand-in extractor; the Inception-absent path stays offline."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.nn.functional as F

from ldm.autoencoder.losses import MissingWeightsError
from ldm.metrics import (
    INCEPTION_FILE,
    ReferenceCache,
    UInt8Images,
    default_inception_path,
    features_fingerprint,
    fidelity_metrics,
    inception_weights_status,
    psnr,
    ssim,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SMOKE = "random-conv"


def smooth_images(n: int = 48, seed: int = 0) -> torch.Tensor:
    """Deterministic smooth colour images [N x 3 x 24 x 32] uint8 (non-square)."""
    coarse = torch.rand(n, 3, 4, 6, generator=torch.Generator().manual_seed(seed))
    return (F.interpolate(coarse, size=(24, 32), mode="bilinear") * 255).round().to(torch.uint8)


def add_noise(images: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    """images + N(0, sigma^2) in 0..255, clamped and rounded back to uint8."""
    noise = sigma * torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images.float() + noise).clamp(0, 255).round().to(torch.uint8)


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network (socket or torch hub download) fails the test loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    # torch-fidelity imported the hub function by name: patch its copy too
    monkeypatch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", refuse)


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise(offline):
    images = smooth_images()
    fids = [fidelity_metrics(add_noise(images, sigma) if sigma else images, images,
                             feature_extractor=SMOKE, metrics=("fid",))["fid"]
            for sigma in (0, 8, 32, 96)]
    assert abs(fids[0]) < 1e-6
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_all_metrics_come_back_finite_and_self_precision_recall_is_one(offline):
    images = smooth_images(32)
    result = fidelity_metrics(UInt8Images(images), images, feature_extractor=SMOKE)
    assert set(result) == {"fid", "kid_mean", "kid_std", "isc_mean", "isc_std", "precision", "recall", "f_score"}
    assert all(torch.isfinite(torch.tensor(v)) for v in result.values())
    assert result["precision"] == result["recall"] == 1.0
    assert result["isc_mean"] > 1.0  # the stand-in's logits vary between images


def test_reference_statistics_are_cached_under_the_content_hash(tmp_path, offline):
    images = smooth_images()
    cache = ReferenceCache(tmp_path, "abc123")
    first = fidelity_metrics(add_noise(images, 32), images, feature_extractor=SMOKE, metrics=("fid", "kid"),
                             reference_cache=cache)
    assert any(p.name.startswith("ref-abc123-") for p in tmp_path.iterdir())
    # Same hash, other pixels: the cache answers, which proves it is keyed by the caller's hash, not recomputed.
    again = fidelity_metrics(add_noise(images, 32), smooth_images(seed=5), feature_extractor=SMOKE,
                             metrics=("fid", "kid"), reference_cache=cache)
    assert again["fid"] == pytest.approx(first["fid"])
    fresh = fidelity_metrics(add_noise(images, 32), smooth_images(seed=5), feature_extractor=SMOKE, metrics=("fid",))
    assert fresh["fid"] != pytest.approx(first["fid"])


def test_missing_inception_weights_are_reported_and_never_fetched(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert default_inception_path() == tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    available, reason, sha = inception_weights_status()
    assert not available and sha is None and "not found" in reason and "nothing is downloaded" in reason
    with pytest.raises(MissingWeightsError, match="not found"):
        fidelity_metrics(smooth_images(8), smooth_images(8), metrics=("fid",))
    with pytest.raises(MissingWeightsError):
        features_fingerprint("inception-v3-compat")


def test_inception_weights_with_the_wrong_hash_are_refused(tmp_path):
    fake = tmp_path / INCEPTION_FILE
    fake.write_bytes(b"not the weights")
    available, reason, sha = inception_weights_status(fake)
    assert not available and "sha256" in reason and len(sha) == 64
    available, _, same = inception_weights_status(fake, expected_sha256_prefix=sha[:8])
    assert available and same == sha


def test_fingerprint_names_the_extractor_and_is_stable():
    first, second = features_fingerprint(SMOKE), features_fingerprint(SMOKE)
    assert first == second and first["feature_extractor"] == SMOKE and len(first["weights_sha256"]) == 64


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="uint8"):
        fidelity_metrics(torch.zeros(8, 3, 16, 16), smooth_images(8), feature_extractor=SMOKE)
    with pytest.raises(ValueError, match="at least 4"):
        fidelity_metrics(smooth_images(2), smooth_images(8), feature_extractor=SMOKE)
    with pytest.raises(ValueError, match="metrics must be"):
        fidelity_metrics(smooth_images(8), smooth_images(8), feature_extractor=SMOKE, metrics=("ppl",))
    with pytest.raises(ValueError, match="content_hash"):
        ReferenceCache(".", "../escape")


def test_psnr_and_ssim_are_the_health_metrics_and_rank_noise():
    images = smooth_images(4)
    mild, strong = add_noise(images, 4), add_noise(images, 32)
    assert (psnr(mild, images, data_range=255.0) > psnr(strong, images, data_range=255.0)).all()
    assert (ssim(mild, images, data_range=255.0) > ssim(strong, images, data_range=255.0)).all()


def test_inception_score_of_a_small_set_is_not_one_by_construction(offline):
    from ldm.metrics.fidelity import isc_splits

    assert (isc_splits(50_000), isc_splits(20), isc_splits(4), isc_splits(1)) == (10, 10, 2, 1)
    result = fidelity_metrics(smooth_images(4), smooth_images(8, seed=3), feature_extractor=SMOKE, metrics=("isc",))
    assert result["isc_mean"] > 1.0  # 2 splits of 2 images; splits of 1 image would give exactly 1
