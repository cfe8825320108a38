"""Encode images to the latents an LDM trains on (Sec. 3.1, App. F); no I/O.

KL: the posterior mean (`mode`) or a sample z = mu + sigma * eps with eps drawn
from a generator seeded by (seed, sample key), so a sample's latent does not
depend on its batch, its shard or the rank that encoded it. VQ: z before
quantization (quantization is folded into the decoder).
"""

from __future__ import annotations

import torch

from ldm.autoencoder.distributions import DiagonalGaussian
from ldm.autoencoder.model import Autoencoder
from ldm.latents.config import Posterior
from ldm.seeding import key_seed


@torch.no_grad()
def encode_latents(model: Autoencoder, x: torch.Tensor, keys: list[str], *, posterior: Posterior = "mode",
                   seed: int = 0) -> torch.Tensor:
    """x [N x 3 x H x W] in [-1, 1] -> z [N x D x H/f x W/f] float32."""
    if len(keys) != x.shape[0]:
        raise ValueError(f"{len(keys)} keys for a batch of {x.shape[0]} images")
    if posterior == "mode" or model.quantizer is not None:
        return model.encode_mode(x).float()  # KL: the posterior mean; VQ: z before quantization
    encoded = model.encode(x)
    assert isinstance(encoded, DiagonalGaussian)
    eps = torch.stack([
        torch.randn(encoded.mean.shape[1:], generator=torch.Generator().manual_seed(key_seed(seed, key)))
        for key in keys
    ]).to(encoded.mean.device, encoded.mean.dtype)  # (N, D, h, w), one generator per key
    return (encoded.mean + encoded.std * eps).float()
