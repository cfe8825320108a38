"""The latent cache's maths: encoding with seeded posterior noise, streaming moments, the scale factor."""

from ldm.latents.encode import Posterior, encode_latents, key_seed
from ldm.latents.moments import RunningMoments, ScaleRule, choose_scale_factor, first_batch_std

__all__ = ["Posterior", "RunningMoments", "ScaleRule", "choose_scale_factor", "encode_latents", "first_batch_std",
           "key_seed"]
