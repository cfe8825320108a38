"""Inpainting with a concat-conditioned LDM (Sec. 4.5, D.2.2, Fig. 20-21): fill the holes of images.

Legend: x the image [N x 3 x H x W] in [-1, 1]; m the mask [N x 1 x H x W], 1 = hole;
E, D the first stage's encoder (posterior mode) and decoder; scale_factor the latent
scale (z_model = z_ae * scale_factor). The condition is c = (scale_factor E(x (1 - m)),
m resized to the latent by nearest neighbour), concatenated to z_t; the sampled latent
is decoded and the known pixels are put back: x (1 - m) + D(z_0) m.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from ldm.autoencoder.model import Autoencoder
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion.checkpoint import LoadedLDM
from ldm.latent_diffusion.generate import conditions, decode_latents, generate_latents
from ldm.masks.config import MASK, MASKED_IMAGE
from ldm.masks.latent import latent_mask


def check_inpaint_model(loaded: LoadedLDM, where: str) -> None:
    """Refuse a model that is not an inpainting model (concat of the masked image's latent and the mask)."""
    cond = loaded.model.config.conditioning
    if cond.kind != "concat" or tuple(cond.concat_keys) != (MASKED_IMAGE, MASK):
        on = f" on {', '.join(cond.concat_keys)}" if cond.kind == "concat" else ""
        raise InvalidInput(f"{where} is not an inpainting model (it must concatenate {MASKED_IMAGE!r} and {MASK!r}; "
                           f"it is {cond.kind}-conditioned{on})")


def inpaint_condition(autoencoder: Autoencoder, x: Tensor, m: Tensor, scale_factor: float) -> dict[str, Tensor]:
    """x [N x 3 x H x W] in [-1, 1], m [N x 1 x H x W] in {0, 1} -> {"masked_image": [N x C x h x w] scaled latent
    of x (1 - m) (a hole reads 0, mid grey), "mask": [N x 1 x h x w] in {0, 1}}."""
    z_masked = autoencoder.encode_mode(x * (1 - m)) * scale_factor  # (N, C, h, w)
    return {MASKED_IMAGE: z_masked, MASK: latent_mask(m, tuple(z_masked.shape[-2:]))}


def _check_inputs(images: Tensor, masks: Tensor, seeds: Sequence[int], f: int) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise InvalidInput(f"images must be uint8 [N x 3 x H x W], got {images.dtype} {list(images.shape)}")
    if masks.shape != (images.shape[0], 1, *images.shape[-2:]):
        raise InvalidInput(f"masks must be [N x 1 x H x W] = {[images.shape[0], 1, *images.shape[-2:]]} like the "
                           f"images, got {list(masks.shape)}")
    if len(seeds) != images.shape[0]:
        raise InvalidInput(f"{len(seeds)} seeds for {images.shape[0]} images")
    if any(side % f for side in images.shape[-2:]):
        raise InvalidInput(f"image size {images.shape[-2]}x{images.shape[-1]}: height and width must be multiples of "
                           f"the autoencoder's f={f}")


@torch.no_grad()
def inpaint_latents(loaded: LoadedLDM, autoencoder: Autoencoder, x: Tensor, m: Tensor, seeds: Sequence[int],
                    settings: SamplerSettings) -> Tensor:
    """Sampled model latents z_0 [N x C x h x w] (still multiplied by the scale factor) for images x [N x 3 x H x W]
    in [-1, 1] and masks m [N x 1 x H x W] in {0, 1} on the model's device; sample i from seed i."""
    concat = inpaint_condition(autoencoder, x, m, loaded.scale_factor)
    cond, null = conditions(loaded.model, concat=concat)
    return generate_latents(loaded.model, cond, null, seeds, settings, size=tuple(concat[MASKED_IMAGE].shape[-2:]))


@torch.no_grad()
def fill_holes(loaded: LoadedLDM, autoencoder: Autoencoder, images: Tensor, masks: Tensor, seeds: Sequence[int],
               settings: SamplerSettings, *, batch_size: int = 16, progress: bool = True) -> Tensor:
    """The model's own decoded output D(z_0) uint8 [N x 3 x H x W] for uint8 images [N x 3 x H x W] with masks
    [N x 1 x H x W] in {0, 1} (1 = hole), before the known pixels are put back; sample i from seed i."""
    check_inpaint_model(loaded, "the model")
    _check_inputs(images, masks, seeds, autoencoder.downsample_factor)
    device = next(loaded.model.parameters()).device
    outs = []
    for start in tqdm(range(0, len(seeds), batch_size), desc="inpainting", unit="batch", disable=not progress):
        end = min(start + batch_size, len(seeds))
        x = images[start:end].to(device).float() / 127.5 - 1.0  # (B, 3, H, W)
        m = (masks[start:end] > 0).to(device).float()  # (B, 1, H, W)
        z = inpaint_latents(loaded, autoencoder, x, m, seeds[start:end], settings)  # (B, C, h, w)
        outs.append(decode_latents(autoencoder.decode, z, loaded.scale_factor).cpu())  # (B, 3, H, W) uint8
    return torch.cat(outs)


def inpaint_images(loaded: LoadedLDM, autoencoder: Autoencoder, images: Tensor, masks: Tensor, seeds: Sequence[int],
                   settings: SamplerSettings, *, batch_size: int = 16, progress: bool = True) -> Tensor:
    """uint8 images [N x 3 x H x W] with masks [N x 1 x H x W] in {0, 1} (1 = hole) -> uint8 [N x 3 x H x W]:
    sample i from seed i (whatever the batch), the known pixels kept exactly (x (1 - m) + D(z_0) m)."""
    decoded = fill_holes(loaded, autoencoder, images, masks, seeds, settings, batch_size=batch_size, progress=progress)
    return torch.where(masks.cpu() > 0, decoded, images.cpu())  # m in {0, 1}: x (1 - m) + D(z_0) m, exactly
