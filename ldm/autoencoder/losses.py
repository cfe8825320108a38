"""Terms of the autoencoder objective (Eq. 25): L_rec (L1 + LPIPS), hinge GAN, adaptive weight.

Legend: x the image, x_rec = D(E(x)), D_psi the patch discriminator, d_w the
adaptive generator weight (Esser et al., taming-transformers).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ldm.errors import UserError

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16, what lpips downloads


class MissingWeightsError(UserError, FileNotFoundError):
    """Pretrained weights needed offline are not on disk."""


def default_vgg_path() -> Path:
    """Where torch hub caches VGG16: $TORCH_HOME/hub/checkpoints/vgg16-397923af.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def build_lpips(
    perceptual_weight: float, vgg_weights: str | Path | None = None, *, pnet_rand: bool = False
) -> nn.Module | None:
    """Frozen LPIPS(VGG) for L_rec, or None when perceptual_weight is 0; never downloads.

    vgg_weights: torchvision's VGG16 state dict; default: the torch hub cache.
    pnet_rand=True skips the backbone weights (random VGG: for tests only).
    """
    if perceptual_weight == 0:
        return None
    import lpips  # deferred: importing it is slow and only this factory needs it

    # pnet_rand=True stops lpips from fetching the backbone; its linear heads ship in the wheel.
    model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    if not pnet_rand:
        path = Path(vgg_weights) if vgg_weights is not None else default_vgg_path()
        if not path.is_file():
            raise MissingWeightsError(
                f"LPIPS needs torchvision's VGG16 weights, and {path} does not exist. Put "
                f"{VGG16_FILE} there, or pass its path (the autoencoder's lpips VGG weights path"
                f" in params), or copy it to $TORCH_HOME/hub/checkpoints/{VGG16_FILE}"
                f" (now {default_vgg_path()}); or set the perceptual weight to 0 to train without LPIPS."
            )
        _load_vgg_features(model.net, torch.load(path, map_location="cpu", weights_only=True), path)
    model.eval()
    model.requires_grad_(False)
    return model


def _load_vgg_features(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy torchvision `features.<i>.*` tensors into lpips' slices, which keep the index names."""
    loaded = 0
    for slice_name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for index, layer in getattr(net, slice_name).named_children():
            if not isinstance(layer, nn.Conv2d):
                continue
            keys = (f"features.{index}.weight", f"features.{index}.bias")
            if any(k not in state for k in keys):
                raise MissingWeightsError(f"{path} is not torchvision's VGG16 state dict: no {keys[0]}")
            layer.load_state_dict({"weight": state[keys[0]], "bias": state[keys[1]]})
            loaded += 1
    if loaded != 13:  # VGG16 has 13 conv layers, all inside lpips' five slices
        raise MissingWeightsError(f"{path}: loaded {loaded} VGG16 conv layers, expected 13")


def reconstruction_loss(
    x: torch.Tensor, x_rec: torch.Tensor, perceptual: nn.Module | None = None, perceptual_weight: float = 0.0
) -> torch.Tensor:
    """L_rec of Eq. 25: mean |x - x_rec| + perceptual_weight * LPIPS(x, x_rec); inputs [N x 3 x H x W]."""
    loss = F.l1_loss(x_rec, x)
    if perceptual is not None and perceptual_weight > 0:
        loss = loss + perceptual_weight * perceptual(x.contiguous(), x_rec.contiguous()).mean()
    return loss


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator side of Eq. 25 (hinge form): (E relu(1 - D(x)) + E relu(1 + D(x_rec))) / 2."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator side of Eq. 25: L_adv = -E D(x_rec)."""
    return -logits_fake.mean()


def adaptive_weight_from_norms(
    nll_grad_norm: torch.Tensor, g_grad_norm: torch.Tensor, disc_weight: float, *, max_weight: float = 1e4
) -> torch.Tensor:
    """d_w = ||grad L_rec|| / (||grad L_adv|| + 1e-4), clamped to [0, 1e4], times disc_weight."""
    ratio = nll_grad_norm / (g_grad_norm + 1e-4)
    return ratio.clamp(0.0, max_weight).detach() * disc_weight


def adaptive_weight(
    nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, disc_weight: float
) -> torch.Tensor:
    """Adaptive generator weight, with gradients taken at the decoder's last layer."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return adaptive_weight_from_norms(nll_grad.norm(), g_grad.norm(), disc_weight)
