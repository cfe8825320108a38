"""The KL autoencoder's posterior q_E(z|x) = N(z; E_mu(x), E_sigma(x)^2) (Appendix F)."""

from __future__ import annotations

import torch


class DiagonalGaussian:
    """Diagonal Gaussian over latents, parameterised by mean and log-variance."""

    def __init__(self, parameters: torch.Tensor) -> None:
        """parameters: [N x 2C x h x w], mean then log-variance along channels."""
        self.mean, logvar = parameters.chunk(2, dim=1)  # (N, C, h, w) each
        # Clamp as the reference does so exp() neither overflows nor underflows.
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) from `generator`: [N x C x h x w]."""
        eps = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        """The posterior mean mu: [N x C x h x w]."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) summed over C, h, w: [N]."""
        return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=(1, 2, 3))
