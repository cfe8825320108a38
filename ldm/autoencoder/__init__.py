"""First-stage autoencoders of latent diffusion (KL- and VQ-regularized, Appendix F)."""

from ldm.autoencoder.checkpoint import load_autoencoder
from ldm.autoencoder.config import AutoencoderConfig
from ldm.autoencoder.discriminator import PatchDiscriminator
from ldm.autoencoder.distributions import DiagonalGaussian
from ldm.autoencoder.health import (
    dead_code_fraction,
    latent_channel_stats,
    latent_scale_factor,
    psnr,
    ssim,
)
from ldm.autoencoder.losses import (
    MissingWeightsError,
    adaptive_weight,
    adaptive_weight_from_norms,
    build_lpips,
    default_vgg_path,
    hinge_d_loss,
    hinge_g_loss,
    reconstruction_loss,
)
from ldm.autoencoder.model import Autoencoder, AutoencoderOutput, Decoder, Encoder, build_autoencoder
from ldm.autoencoder.presets import preset_config, presets
from ldm.autoencoder.quantize import QuantizerOutput, VectorQuantizer, perplexity

__all__ = [
    "Autoencoder",
    "AutoencoderConfig",
    "AutoencoderOutput",
    "Decoder",
    "DiagonalGaussian",
    "Encoder",
    "MissingWeightsError",
    "PatchDiscriminator",
    "QuantizerOutput",
    "VectorQuantizer",
    "adaptive_weight",
    "adaptive_weight_from_norms",
    "build_autoencoder",
    "build_lpips",
    "dead_code_fraction",
    "default_vgg_path",
    "hinge_d_loss",
    "hinge_g_loss",
    "latent_channel_stats",
    "latent_scale_factor",
    "load_autoencoder",
    "perplexity",
    "preset_config",
    "presets",
    "psnr",
    "reconstruction_loss",
    "ssim",
]
