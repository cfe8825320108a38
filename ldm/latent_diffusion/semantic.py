"""Semantic synthesis (Sec. 4.3.2): images from label maps, at the training size or convolutionally larger.

A label map [H x W] of class ids (IGNORE_INDEX unlabelled) conditions the model
through its spatial rescaler; the latent is (H / f, W / f), so a map larger than
the training crops simply draws a larger latent (Fig. 13, 23, 24). The latents
keep the training scale_factor, whose signal-to-noise ratio Sec. C.1 finds
decisive for such samples (`generate.rescaling_warning`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from tqdm import tqdm

from ldm.data.label_maps import IGNORE_INDEX
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion.checkpoint import LoadedLDM
from ldm.label_maps.colours import colourise, enlarge
from ldm.latent_diffusion.generate import Decoder, check_steps, decode_latents, generate_latents, latent_size


def check_semantic_model(loaded: LoadedLDM, source: str) -> None:
    """Raise unless the model takes label maps (conditioning kind semantic)."""
    kind = loaded.model.config.conditioning.kind
    if kind != "semantic":
        raise InvalidInput(f"{source}: a {kind}-conditioned model, not a semantic synthesis one (train_semantic)")


def check_label_maps(loaded: LoadedLDM, label_maps: Tensor, f: int, source: str) -> tuple[int, int]:
    """The latent (h, w) of label maps [N x H x W]; ids outside the model's classes or a size the first stage and
    the UNet cannot divide are an InvalidInput naming `source`."""
    n_classes = loaded.model.config.conditioning.n_classes
    labelled = label_maps[label_maps != IGNORE_INDEX]
    if labelled.numel() and (int(labelled.min()) < 0 or int(labelled.max()) >= n_classes):
        raise InvalidInput(f"{source}: class ids {int(labelled.min())}..{int(labelled.max())}; this model knows "
                           f"0..{n_classes - 1} (and {IGNORE_INDEX} unlabelled)")
    return latent_size(loaded.model, f, tuple(label_maps.shape[-2:]), f"{source}: label map size")


@torch.no_grad()
def sample_from_label_maps(loaded: LoadedLDM, decode: Decoder, label_maps: Tensor, seeds: Sequence[int],
                           settings: SamplerSettings, *, f: int, batch_size: int = 16, progress: bool = True,
                           source: str = "label map") -> Tensor:
    """uint8 images [N x 3 x H x W] for label maps [N x H x W] long, sample i from seed i (whatever the batch)."""
    check_semantic_model(loaded, source)
    check_steps(loaded.model, settings)
    if label_maps.dim() != 3 or len(label_maps) != len(seeds):
        raise ValueError(f"label maps [N x H x W] and N seeds, got {tuple(label_maps.shape)} and {len(seeds)} seeds")
    size = check_label_maps(loaded, label_maps, f, source)
    images = []
    for start in tqdm(range(0, len(seeds), batch_size), desc="sampling", unit="batch", disable=not progress):
        cond = label_maps[start : start + batch_size].long()
        z = generate_latents(loaded.model, cond, cond, seeds[start : start + batch_size], settings, size=size)
        images.append(decode_latents(decode, z, loaded.scale_factor))  # (n, 3, H, W)
    return torch.cat(images)


def upscale_maps(label_maps: Tensor, factor: int) -> Tensor:
    """[N x H x W] ids -> [N x factor H x factor W], each id repeated (nearest): the map of a convolutional sample."""
    return label_maps.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def evaluation_columns(label_maps: Tensor, images: Tensor, samples: Tensor, larger: Tensor,
                       factor: int) -> dict[str, np.ndarray]:
    """Titled columns label map | real image | sample | sample at factor x, [N x H' x W' x 3] uint8 each.

    label_maps [N x H x W], images and samples [N x 3 x H x W] uint8, larger [N x 3 x fH x fW] uint8; the training
    size columns are repeated (nearest) to the larger samples' size so every tile is alike (and titles fit).
    """
    grow = lambda x: upscale_maps(x, factor)  # noqa: E731 - (..., H, W) -> (..., fH, fW)
    as_tiles = lambda x: rearrange(x, "n c h w -> n h w c").numpy()  # noqa: E731
    return enlarge({
        "label map": colourise(grow(label_maps).numpy()),
        "real image": as_tiles(grow(images)),
        "sample": as_tiles(grow(samples)),
        f"sample at {factor}x": as_tiles(larger),
    })
