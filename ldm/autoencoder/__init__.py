"""First-stage autoencoders of latent diffusion (KL- and VQ-regularized, Appendix F)."""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "checkpoint": ("AutoencoderCard", "autoencoder_sha256", "init_autoencoder", "load_autoencoder", "read_card",
                   "save_autoencoder"),
    "config": ("AutoencoderConfig",),
    "discriminator": ("PatchDiscriminator",),
    "distributions": ("DiagonalGaussian",),
    "health": ("dead_code_fraction",),
    "losses": ("MissingWeightsError", "adaptive_weight", "adaptive_weight_from_norms", "build_lpips", "default_vgg_path",
               "hinge_d_loss", "hinge_g_loss", "reconstruction_loss"),
    "model": ("Autoencoder", "AutoencoderOutput", "Decoder", "Encoder", "build_autoencoder"),
    "presets": ("preset_config", "preset_names"),
    "quantize": ("QuantizerOutput", "VectorQuantizer", "perplexity"),
})
