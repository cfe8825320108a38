"""PatchGAN discriminator D_psi of the adversarial autoencoder objective (Eq. 25)."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Isola et al.'s PatchGAN: one real/fake logit per overlapping patch."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"discriminator n_layers must be >= 1, got {n_layers}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = channels
        for n in range(1, n_layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last widening conv keeps the size
            layers += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),  # BatchNorm has the bias
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DCGAN init: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), shift 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N x C x H x W] -> patch logits [N x 1 x H' x W'] (H' ~ H/2**(n_layers) - 2)."""
        return self.net(x)
