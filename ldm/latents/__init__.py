"""The latent cache's maths: encoding with seeded posterior noise, streaming moments, the scale factor, its statistics."""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ("LatentDtype", "Posterior", "ScaleRule"),
    "encode": ("encode_latents",),
    "moments": ("RunningMoments", "choose_scale_factor", "first_batch_std"),
    "stats": ("LatentStats", "measure_latent_stats", "read_stats", "write_stats"),
})
