"""What the LDM presets share: the noise schedule of each task and the CPU-sized UNet."""

from __future__ import annotations

from ldm.diffusion.config import DiffusionConfig
from ldm.latent_diffusion.config import UNetConfig

_SCHEDULES = {  # (linear_start, linear_end) per task, REFERENCE.md "Diffusion"
    "faces_bedrooms_cin": (0.0015, 0.0195),
    "churches_sr": (0.0015, 0.0155),
    "txt2img": (0.00085, 0.012),
    "inpainting": (0.0015, 0.0205),
    "semantic": (0.0015, 0.0205),
    "layout": (0.0015, 0.0205),
}


def task_diffusion(task: str, **kw: object) -> DiffusionConfig:
    """The diffusion settings of `task`'s schedule (REFERENCE.md), `kw` (loss, parameterization) set over them."""
    start, end = _SCHEDULES[task]
    return DiffusionConfig(linear_start=start, linear_end=end, **kw)  # type: ignore[arg-type]


# CPU-sized models for 16x16x3 latents (64x64 images, f4 autoencoder). Width 64 with
# GroupNorm(16): the reference's 32 groups would leave 2 channels per group.
def tiny_unet(in_channels: int, attention: str = "self", context_dim: int = 0) -> UNetConfig:
    """The CPU-sized UNet: 64 channels, multipliers 1,2, attention at factor 2."""
    return UNetConfig(in_channels=in_channels, out_channels=3, model_channels=64, channel_mult=(1, 2),
                      num_res_blocks=1, attention_resolutions=(2,), attention=attention,  # type: ignore[arg-type]
                      num_head_channels=32, context_dim=context_dim, norm_groups=16)
