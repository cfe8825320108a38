"""Vector quantization of latents with a learned codebook of |Z| exemplars (Appendix F).

Legend: z the encoder output, e_k the codebook vectors, z_q the nearest e_k,
sg[.] stop-gradient, beta the commitment weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

_ROWS_PER_CHUNK = 16384  # bounds the (rows x |Z|) distance matrix in memory


@dataclass
class QuantizerOutput:
    """What one quantization pass returns."""

    z_q: torch.Tensor  # [N x D x h x w], straight-through: gradients flow to z
    loss: torch.Tensor  # scalar codebook + commitment loss
    indices: torch.Tensor  # [N x h x w] code index per position
    usage: torch.Tensor  # [|Z|] how often each code was picked in this batch
    perplexity: torch.Tensor  # scalar exp(entropy of code usage), in [1, |Z|]


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup with a straight-through estimator (van den Oord et al.)."""

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25) -> None:
        super().__init__()
        self.n_embed = n_embed
        self.embed_dim = embed_dim
        self.beta = beta
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    @torch.no_grad()
    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Index of the closest code for each row of [M x D]: [M]."""
        codebook = self.embedding.weight  # (K, D)
        code_sq = codebook.pow(2).sum(dim=1)  # (K,)
        out = []
        for rows in z_flat.split(_ROWS_PER_CHUNK):
            # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin.
            dist = code_sq - 2.0 * rows @ codebook.t()  # (m, K)
            out.append(dist.argmin(dim=1))
        return torch.cat(out)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for indices [N x h x w]: [N x D x h x w]."""
        return rearrange(self.embedding(indices), "n h w d -> n d h w")

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z [N x D x h x w] to its nearest codes."""
        n, _, h, w = z.shape
        z_flat = rearrange(z, "n d h w -> (n h w) d")  # (N*h*w, D)
        indices = self.nearest(z_flat)  # (N*h*w,)
        z_q = rearrange(self.embedding(indices), "(n h w) d -> n d h w", n=n, h=h, w=w)
        # ||sg[z] - e||^2 moves the codebook, beta ||z - sg[e]||^2 commits the encoder.
        # The reference (taming, legacy=True) puts beta on the codebook term instead;
        # we follow the VQ-VAE paper.
        loss = F.mse_loss(z_q, z.detach()) + self.beta * F.mse_loss(z, z_q.detach())
        z_q = z + (z_q - z).detach()  # straight-through: forward is z_q, gradient is identity
        usage = torch.bincount(indices, minlength=self.n_embed)
        return QuantizerOutput(
            z_q=z_q,
            loss=loss,
            indices=indices.view(n, h, w),
            usage=usage,
            perplexity=perplexity(usage),
        )

    @torch.no_grad()
    def restart_dead_codes(
        self, z: torch.Tensor, usage: torch.Tensor, *, generator: torch.Generator
    ) -> int:
        """Move codes never used (usage == 0) onto random encoder outputs from z; return how many."""
        dead = (usage == 0).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        z_flat = rearrange(z.detach(), "n d h w -> (n h w) d")  # (M, D)
        picks = torch.randint(
            0, z_flat.shape[0], (dead.numel(),), generator=generator, device=generator.device
        )
        self.embedding.weight[dead.to(self.embedding.weight.device)] = z_flat[picks.to(z_flat.device)]
        return int(dead.numel())


def perplexity(usage: torch.Tensor) -> torch.Tensor:
    """exp of the entropy of the code-usage distribution: 1 if one code, |Z| if uniform."""
    p = usage.float() / usage.sum().clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-10))).sum()
    return torch.exp(entropy)
