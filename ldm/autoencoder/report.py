"""The health report of a trained autoencoder: what a user checks before stage two.

Reconstruction quality on the val split (PSNR, SSIM; LPIPS and rFID where their
weights are on disk, otherwise reported as skipped with the reason), the
latent's per-channel mean and std (posterior mode for KL, z before quantization
for VQ) and, for VQ, codebook usage. Warnings flag a badly scaled latent or a
collapsed codebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from einops import rearrange

from ldm.autoencoder.health import codebook_health, codebook_warnings
from ldm.autoencoder.losses import build_lpips, default_vgg_path
from ldm.autoencoder.model import Autoencoder
from ldm.autoencoder.train_config import TrainConfig
from ldm.metrics.fidelity import fidelity_metrics, inception_weights_status
from ldm.metrics.quality import psnr, ssim

# A latent whose overall std is outside this band needs a scale factor far from 1
# (Appendix F); the LDM copes once cache_latents rescales it, but a user should know.
STD_BAND = (0.2, 5.0)
CHANNEL_STD_MIN = 1e-3  # a channel this flat carries no information


def _batches(loader: Iterable) -> Iterable[torch.Tensor]:
    for batch in loader:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def _lpips_model(vgg_weights: str) -> tuple[torch.nn.Module | None, str | None]:
    """LPIPS when its VGG file exists; else None and the reason it is skipped."""
    path = Path(vgg_weights) if vgg_weights else default_vgg_path()
    if not path.is_file():
        return None, (f"VGG16 weights not found at {path}: put vgg16-397923af.pth there or set"
                      " train_autoencoder.vgg_weights")
    return build_lpips(1.0, path), None


@torch.no_grad()
def evaluate_autoencoder(
    model: Autoencoder, loader: Iterable, loss: TrainConfig, *, vgg_weights: str = "", inception_weights: str = ""
) -> dict[str, Any]:
    """Metrics and health of `model` over the val batches of `loader` (images in [-1, 1])."""
    lpips_model, lpips_skip = _lpips_model(vgg_weights)
    sums: dict[str, float] = {"psnr": 0.0, "ssim": 0.0, "lpips": 0.0, "l1": 0.0}
    n = 0
    z_sum = z_sq = None
    z_count = 0
    originals: list[torch.Tensor] = []
    recons: list[torch.Tensor] = []
    usage = torch.zeros(model.config.n_embed, dtype=torch.long) if model.quantizer is not None else None
    for x in _batches(loader):
        z = model.encode_mode(x)  # [N x D x h x w]
        if usage is not None:
            usage += model.quantize(z).usage.cpu()
        x_rec = model.decode(z).clamp(-1, 1)
        originals.append(_uint8(x))
        recons.append(_uint8(x_rec))
        sums["psnr"] += float(psnr(x_rec, x).sum())
        sums["ssim"] += float(ssim(x_rec, x).sum())
        sums["l1"] += float((x_rec - x).abs().mean(dim=(1, 2, 3)).sum())
        if lpips_model is not None:
            sums["lpips"] += float(lpips_model(x_rec, x).sum())
        flat = rearrange(z.double(), "n d h w -> d (n h w)")
        z_sum = flat.sum(1) if z_sum is None else z_sum + flat.sum(1)
        z_sq = (flat**2).sum(1) if z_sq is None else z_sq + (flat**2).sum(1)
        z_count += flat.shape[1]
        n += x.shape[0]
    if n == 0:
        raise ValueError("the val split is empty: the autoencoder cannot be evaluated")
    mean = z_sum / z_count
    std = (z_sq / z_count - mean**2).clamp_min(0).sqrt()
    overall_std = float(((z_sq.sum() / (z_count * len(mean))) - (z_sum.sum() / (z_count * len(mean))) ** 2).sqrt())
    report: dict[str, Any] = {
        "val_images": n,
        "psnr": round(sums["psnr"] / n, 3),
        "ssim": round(sums["ssim"] / n, 4),
        "l1": round(sums["l1"] / n, 5),
        "latent": {
            "source": "posterior mode" if model.quantizer is None else "z before quantization",
            "shape": list(z.shape[1:]),
            "mean_per_channel": [round(float(v), 5) for v in mean],
            "std_per_channel": [round(float(v), 5) for v in std],
            "std": round(overall_std, 5),
            "scale_factor_estimate": round(1.0 / overall_std, 5) if overall_std > 0 else None,
        },
        "skipped": {},
        "warnings": [],
    }
    if lpips_model is not None:
        report["lpips"] = round(sums["lpips"] / n, 5)
    else:
        report["skipped"]["lpips"] = lpips_skip
    _rfid(report, torch.cat(originals), torch.cat(recons), inception_weights)
    if loss.perceptual_weight == 0:
        report["skipped"]["lpips_loss"] = "train_autoencoder.loss.perceptual_weight is 0: trained without LPIPS"
    if loss.disc_weight == 0:
        report["skipped"]["discriminator"] = "train_autoencoder.loss.disc_weight is 0: trained without the GAN term"
    if usage is not None:
        report["codebook"] = codebook_health(usage)
        report["warnings"] += codebook_warnings(usage)
    report["warnings"] += _scale_warnings(overall_std, std)
    return report


def _scale_warnings(overall: float, per_channel: torch.Tensor) -> list[str]:
    warnings = []
    if not STD_BAND[0] <= overall <= STD_BAND[1]:
        warnings.append(f"latent std {overall:.4g} is outside {STD_BAND}: the LDM needs a scale factor of"
                        f" {1 / max(overall, 1e-12):.4g} (cache_latents measures and applies it)")
    flat = [i for i, s in enumerate(per_channel.tolist()) if s < CHANNEL_STD_MIN]
    if flat:
        warnings.append(f"latent channels {flat} have std < {CHANNEL_STD_MIN}: they carry no information")
    return warnings


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _rfid(report: dict[str, Any], originals: torch.Tensor, recons: torch.Tensor, inception_weights: str) -> None:
    """rFID of the val reconstructions against the originals (torch-fidelity), or the reason it is skipped."""
    available, reason, _ = inception_weights_status(inception_weights or None)
    if not available:
        report["skipped"]["rfid"] = reason
        return
    report["rfid"] = round(fidelity_metrics(recons, originals, weights_path=inception_weights or None, metrics=("fid",))["fid"], 4)


@torch.no_grad()
def reconstruction_grid(model: Autoencoder, loader: Iterable, count: int) -> torch.Tensor:
    """uint8 [2N x 3 x H x W]: `count` val originals, then their reconstructions (a grid of two rows)."""
    images = []
    for x in _batches(loader):
        images.append(x)
        if sum(len(b) for b in images) >= count:
            break
    x = torch.cat(images)[:count]
    x_rec = model.decode(model.encode_mode(x)).clamp(-1, 1)
    return _uint8(torch.cat([x, x_rec]))
