"""Layout-to-image evaluation (Sec. 4.3.1, Fig. 15): val layouts beside their real images and samples of several seeds.

Legend: L val layouts, S seeds; every layout is sampled once per seed, and seed s
gives the same starting noise z_T under every layout, so a row shows what the
boxes change and a column what the noise changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from ldm.data.images import resize_bicubic
from ldm.data.layout_draw import draw_layout
from ldm.data.layouts import Layout
from ldm.data.schema import KEY, ImageSample, LatentSample
from ldm.data.shards import read_shards
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion.checkpoint import LoadedLDM
from ldm.latent_diffusion.generate import Decoder, sample_images


@dataclass(frozen=True)
class ValLayout:
    """A val sample's key, its layout (from the latent cache) and its real image [H x W x 3] uint8."""

    key: str
    layout: Layout
    image: np.ndarray


def read_val_layouts(latent_shards: list[str], image_shards: list[str], count: int) -> list[ValLayout]:
    """The first `count` cached latents with a layout, in shard order, each with its image (matched by key)."""
    layouts: dict[str, Layout] = {}
    for raw in read_shards(latent_shards):
        sample = LatentSample.decode(raw)
        if sample.layout is not None:
            layouts[sample.key] = sample.layout
        if len(layouts) == count:
            break
    if not layouts:
        raise InvalidInput(f"no cached latent in {', '.join(latent_shards)} has a layout; set "
                           "cache_latents.label_maps: true and re-run `dvc repro cache_latents`")
    images: dict[str, np.ndarray] = {}
    for raw in read_shards(image_shards):
        if raw[KEY] in layouts:
            images[raw[KEY]] = ImageSample.decode(raw).image
        if len(images) == len(layouts):
            break
    missing = sorted(set(layouts) - set(images))
    if missing:
        raise InvalidInput(f"the image shards hold no image for the cached keys {missing[:3]}; the latent cache is "
                           "not of these images: re-run `dvc repro cache_latents`")
    return [ValLayout(key, layout, images[key]) for key, layout in layouts.items()]


@torch.no_grad()
def sample_layouts(loaded: LoadedLDM, decode: Decoder, layouts: Sequence[Layout], seeds: Sequence[int],
                   settings: SamplerSettings, *, batch_size: int = 16, progress: bool = True) -> torch.Tensor:
    """Every layout under every seed: uint8 [L x S x 3 x H x W] (sample (l, s) starts from seed s's noise)."""
    flat_layouts = [layout for layout in layouts for _ in seeds]
    flat_seeds = [seed for _ in layouts for seed in seeds]
    images = sample_images(loaded, decode, flat_seeds, settings, layouts=flat_layouts, batch_size=batch_size,
                           progress=progress)  # (L S, 3, H, W)
    return rearrange(images, "(l s) c h w -> l s c h w", s=len(seeds))


def layout_columns(vals: Sequence[ValLayout], samples: torch.Tensor, seeds: Sequence[int], boxes_title: str = "boxes",
                   names: Sequence[str] = (), least_side: int = 128) -> dict[str, np.ndarray]:
    """Titled columns for `save_titled_columns`: the boxes drawn on a blank canvas | the real image | one column
    per seed. Samples [L x S x 3 x H x W] uint8 set the tile size, enlarged by a whole factor (nearest, every pixel
    kept) until its shorter side is at least `least_side`, so titles and class labels stay readable."""
    height, width = samples.shape[-2:]
    zoom = max(1, -(-least_side // min(height, width)))
    size = (height * zoom, width * zoom)
    samples = samples.repeat_interleave(zoom, dim=-2).repeat_interleave(zoom, dim=-1)  # (L, S, 3, zH, zW)
    columns = {boxes_title: np.stack([draw_layout(v.layout, *size, names) for v in vals]),
               "real image": np.stack([resize_bicubic(v.image, size) for v in vals])}
    for index, seed in enumerate(seeds):
        columns[f"seed {seed}"] = rearrange(samples[:, index], "l c h w -> l h w c").numpy()
    return columns
