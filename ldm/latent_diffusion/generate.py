"""From noise to images: conditions, guidance, a sampler and the first-stage decoder (Sec. 3.3, C.1, D.3).

Legend: z_T the starting noise [N x C x h x w], one generator per sample (its seed),
so sample i does not depend on the batch it is drawn in; s the guidance scale
(e_u + s (e_c - e_u)); scale_factor the latent scale (z_model = z_ae * scale_factor);
(H, W) = f (h, w) the image size through the first stage's downsampling f.

The UNet is convolutional, so any (h, w) its levels can halve samples (Sec. C.1,
Fig. 13, 23, 24); the latents keep the training scale_factor, which sets the
signal-to-noise ratio C.1 finds decisive for such samples. Image guiding
(Appendix B, Fig. 12) pulls T(D(z0)) towards a low-resolution image y.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ldm.conditioning.guidance import guided_denoiser
from ldm.conditioning.layout import LayoutTokenizer
from ldm.conditioning.tokenizer import tokenize
from ldm.diffusion.config import ImageGuideSettings, SamplerSettings
from ldm.diffusion.denoisers import eps_denoiser, image_guided_denoiser
from ldm.diffusion.losses import Denoiser
from ldm.diffusion.noise import randn, seeded_generators
from ldm.diffusion.samplers import sample
from ldm.errors import InvalidInput
from ldm.data.layouts import Layout
from ldm.latent_diffusion.checkpoint import LoadedLDM
from ldm.latent_diffusion.model import Condition, LatentDiffusionModel

Decoder = Callable[[Tensor], Tensor]  # the first stage's decode: z [N x C x h x w] -> x [N x 3 x H x W] in [-1, 1]


@dataclass(frozen=True)
class ImageGuide:
    """The target y [3 x h x w] in [-1, 1] of L2 image guiding and its settings (Appendix B, Fig. 12)."""

    image: Tensor
    settings: ImageGuideSettings = field(default_factory=ImageGuideSettings)

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[0] != 3:
            raise ValueError(f"an image guide is [3 x h x w], got {list(self.image.shape)}")

    def wrap(self, denoise: Denoiser, loaded: LoadedLDM, decode: Decoder) -> Denoiser:
        """eps_hat = eps - sqrt(1 - a) grad log p(y | z_t) (Eq. 16-17) around the eps denoiser.

        T is a bicubic resize of D(z0) [N x 3 x H x W] to y's (h, w), antialiased as Fig. 12's 2x downsampling.
        """
        if self.settings.scale == 0.0:
            return denoise
        size = tuple(self.image.shape[-2:])
        y = self.image[None].to(next(loaded.model.parameters()).device)  # (1, 3, h, w), broadcast over the batch

        def down(x: Tensor) -> Tensor:
            return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)  # (N, 3, h, w)

        def to_image(z: Tensor) -> Tensor:
            return decode(z / loaded.scale_factor)  # D takes the autoencoder's latents

        return image_guided_denoiser(denoise, to_image, y, loaded.model.schedule, self.settings.scale, transform=down)


def latent_size(model: LatentDiffusionModel, f: int, size: tuple[int, int] | None,
                name: str = "size") -> tuple[int, int]:
    """Latent (h, w) for images of `size` (H, W) pixels, None: the training size; `name` labels errors."""
    if size is None:
        return tuple(model.config.latent_size)
    unit = f * model.config.unet.downsample_factor  # the first stage's f times the UNet's halvings
    if any(side < unit or side % unit for side in size):
        trained = "x".join(str(side * f) for side in model.config.latent_size)
        raise InvalidInput(f"{name} {size[0]}x{size[1]}: height and width must be multiples of {unit} px (the"
                           f" autoencoder's f={f} times the UNet's downsampling {unit // f}); trained at {trained}")
    return (size[0] // f, size[1] // f)


def rescaling_warning(kind: str, scale_factor: float) -> str | None:
    """Sec. C.1's caution for convolutional sampling on latents the model saw unscaled, or None."""
    if kind == "kl" and scale_factor == 1.0:
        return ("the model was trained on unscaled KL latents (scale_factor 1): their high signal-to-noise ratio"
                " fixes global structure early, and Sec. C.1 finds samples at other sizes lose coherence")
    return None


def conditions(model: LatentDiffusionModel, *, labels: Sequence[int] | None = None, prompts: Sequence[str] | None = None,
               concat: dict[str, Tensor] | None = None, layouts: Sequence[Layout] | None = None,
               tokenizer: Any = None) -> tuple[Condition, Condition]:
    """(cond, null_cond) for the model's conditioning kind; errors say which input the model takes.

    Layouts become [N x L] box tokens through the model's own tokenizer (D.2.1); a layout model has no null
    condition (the paper samples it unguided), so null_cond is cond."""
    cfg = model.config.conditioning
    given = {"labels": labels is not None, "prompts": prompts is not None, "concat": concat is not None,
             "layouts": layouts is not None}
    wanted = {"class": "labels", "text": "prompts", "concat": "concat", "layout": "layouts", "none": None}[cfg.kind]
    extra = [name for name, present in given.items() if present and name != wanted]
    if extra:
        raise InvalidInput(f"this model is {cfg.kind}-conditioned; it takes {wanted or 'no condition'}, not {', '.join(extra)}")
    if cfg.kind == "class":
        assert labels is not None, "class models need labels"
        bad = [c for c in labels if not 0 <= c < cfg.n_classes]
        if bad:
            raise InvalidInput(f"class ids must be in 0..{cfg.n_classes - 1}, got {bad[:5]}")
        cond = torch.tensor(list(labels), dtype=torch.long)
        return cond, model.null_condition(len(cond), "cpu")
    if cfg.kind == "text":
        assert prompts is not None and tokenizer is not None, "text models need prompts and their tokenizer"
        return tokenize(tokenizer, list(prompts), cfg.max_seq_len), tokenize(tokenizer, [""] * len(prompts), cfg.max_seq_len)
    if cfg.kind == "concat":
        assert concat is not None, "concat models need their spatial condition"
        return concat, concat
    if cfg.kind == "layout":
        assert layouts is not None, "layout models need layouts"
        tokens = LayoutTokenizer(cfg.layout_tokenizer()).encode_batch(list(layouts))  # (N, L); bad class ids fail here
        return tokens, tokens
    return None, None


def check_steps(model: LatentDiffusionModel, settings: SamplerSettings) -> None:
    """A sampler takes at most T steps."""
    if settings.steps > model.schedule.num_steps:
        raise InvalidInput(f"steps {settings.steps} exceeds the model's T = {model.schedule.num_steps}")


@torch.no_grad()
def generate_latents(model: LatentDiffusionModel, cond: Condition, null_cond: Condition, seeds: Sequence[int],
                     settings: SamplerSettings, *, size: tuple[int, int] | None = None,
                     guide: Callable[[Denoiser], Denoiser] | None = None,
                     callback: Callable[[int, int, Tensor], None] | None = None) -> Tensor:
    """Sampled model latents [N x C x h x w] (still multiplied by the scale factor); size (h, w) defaults to training.

    `guide` wraps the eps denoiser last (image guiding, `ImageGuide.wrap`).
    """
    check_steps(model, settings)
    device = next(model.parameters()).device
    channels, *trained = model.latent_shape
    h, w = size or tuple(trained)
    z_T = randn((len(seeds), channels, h, w), seeded_generators(seeds), device=device)
    noise = seeded_generators([s + 1_000_003 for s in seeds])  # the sampler's own per-sample stream
    cond, null_cond = _to(cond, device), _to(null_cond, device)
    kind = model.config.conditioning.kind
    guided = kind in ("class", "text") and settings.guidance_scale != 1.0
    eps_model = lambda xt, t, c: model(xt, t, c)  # noqa: E731 - the (x_t, t, cond) model the wrapper takes
    denoise = (guided_denoiser(eps_model, cond, null_cond, settings.guidance_scale) if guided
               else (lambda xt, t: model(xt, t, cond)))
    denoise = eps_denoiser(denoise, model.schedule, model.diffusion.parameterization)
    denoise = guide(denoise) if guide is not None else denoise
    steps = None if settings.sampler == "ddpm" and settings.steps == model.schedule.num_steps else settings.steps
    return sample(settings.sampler, denoise, z_T, model.schedule, steps=steps, eta=settings.eta,
                  spacing=settings.spacing, final_alpha=settings.final_alpha, generator=noise, callback=callback)


def _to(cond: Condition, device: torch.device) -> Condition:
    if isinstance(cond, dict):
        return {k: v.to(device) for k, v in cond.items()}
    return cond.to(device) if isinstance(cond, Tensor) else cond


@torch.no_grad()
def decode_latents(decode: Callable[[Tensor], Tensor], z: Tensor, scale_factor: float) -> Tensor:
    """Model latents [N x C x h x w] -> uint8 images [N x 3 x H x W] through the first stage's decoder."""
    x = decode(z / scale_factor).clamp(-1, 1)  # (N, 3, H, W) in [-1, 1]
    return ((x + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def sample_images(loaded: LoadedLDM, decode: Decoder, seeds: Sequence[int], settings: SamplerSettings, *,
                  labels: Sequence[int] | None = None, prompts: Sequence[str] | None = None,
                  layouts: Sequence[Layout] | None = None, batch_size: int = 16, size: tuple[int, int] | None = None,
                  guide: ImageGuide | None = None, progress: bool = True) -> Tensor:
    """uint8 images [N x 3 x H x W] for `seeds` (sample i from seed i, whatever the batch), with labels, prompts or
    layouts (one per seed).

    size: the latent (h, w) (see `latent_size`; None: training); guide: L2 image guiding towards its image.
    """
    check_steps(loaded.model, settings)
    conditions(loaded.model, labels=labels, prompts=prompts, layouts=layouts,
               tokenizer=loaded.tokenizer)  # bad input fails before work
    wrap = (lambda denoise: guide.wrap(denoise, loaded, decode)) if guide is not None else None
    images = []
    starts = range(0, len(seeds), batch_size)
    for start in tqdm(starts, desc="sampling", unit="batch", disable=not progress):
        end = min(start + batch_size, len(seeds))
        cond, null = conditions(loaded.model, labels=labels[start:end] if labels is not None else None,
                                prompts=prompts[start:end] if prompts is not None else None,
                                layouts=layouts[start:end] if layouts is not None else None, tokenizer=loaded.tokenizer)
        z = generate_latents(loaded.model, cond, null, seeds[start:end], settings, size=size, guide=wrap)
        images.append(decode_latents(decode, z, loaded.scale_factor))
    return torch.cat(images)
