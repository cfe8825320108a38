"""Vector quantization of latents with a learned codebook of |Z| exemplars (Appendix F).

Legend: z the encoder output, e_k the codebook vectors, z_q the nearest e_k,
sg[.] stop-gradient, beta the commitment weight, d_c the codebook (lookup)
dimension, N_k and m_k the EMA count and sum of the vectors assigned to e_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

_ROWS_PER_CHUNK = 16384  # bounds the (rows x |Z|) distance matrix in memory
_LAPLACE_EPS = 1.0e-5  # additive smoothing of the EMA code counts (Razavi et al. 2019)


@dataclass
class QuantizerOutput:
    """What one quantization pass returns."""

    z_q: torch.Tensor  # [N x D x h x w], straight-through: gradients flow to z
    loss: torch.Tensor  # scalar codebook + commitment loss
    indices: torch.Tensor  # [N x h x w] code index per position
    usage: torch.Tensor  # [|Z|] how often each code was picked in this batch
    perplexity: torch.Tensor  # scalar exp(entropy of code usage), in [1, |Z|]


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup with a straight-through estimator (van den Oord et al.).

    Against codebook collapse, two options of the literature: a factorised lookup,
    z projected to a small codebook dim and both sides l2-normalised so the
    nearest code is the most cosine-similar one (Yu et al. 2022, ViT-VQGAN
    Sec. 3.2), and a codebook that follows exponential moving averages of the
    encoder outputs assigned to it instead of gradients (van den Oord et al.
    2017, App. A.1; Razavi et al. 2019, VQ-VAE-2). With neither, this is the
    reference quantizer.
    """

    def __init__(
        self,
        n_embed: int,
        embed_dim: int,
        beta: float = 0.25,
        *,
        codebook_dim: int = 0,
        l2: bool = False,
        ema_decay: float = 0.0,
    ) -> None:
        """codebook_dim: the lookup's dimension (0: embed_dim, no projection); ema_decay 0: gradient codebook."""
        super().__init__()
        self.n_embed = n_embed
        self.embed_dim = embed_dim
        self.codebook_dim = codebook_dim or embed_dim
        self.beta = beta
        self.l2 = l2
        self.ema_decay = ema_decay
        projected = self.codebook_dim != embed_dim
        self.proj_in = nn.Linear(embed_dim, self.codebook_dim) if projected else nn.Identity()
        self.proj_out = nn.Linear(self.codebook_dim, embed_dim) if projected else nn.Identity()
        self.embedding = nn.Embedding(n_embed, self.codebook_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)
        if ema_decay > 0:
            self.embedding.weight.requires_grad_(False)  # moved by `update_codebook`, not by the optimizer
            # Each code starts as the average of one vector, itself: an unused code then stays
            # where it is instead of being divided by a near-zero count.
            self.register_buffer("ema_count", torch.ones(n_embed))  # N_k
            self.register_buffer("ema_sum", self.embedding.weight.detach().clone())  # m_k

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder outputs [N x D x h x w] as lookup vectors [(N*h*w) x d_c]."""
        flat = self.proj_in(rearrange(z, "n d h w -> (n h w) d"))  # (M, d_c)
        return F.normalize(flat, dim=1) if self.l2 else flat

    def codes(self) -> torch.Tensor:
        """The codebook as the lookup sees it: [|Z| x d_c], unit rows when l2."""
        weight = self.embedding.weight
        return F.normalize(weight, dim=1) if self.l2 else weight

    @torch.no_grad()
    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Index of the closest code for each lookup vector of [M x d_c]: [M]."""
        codebook = self.codes()  # (K, d_c)
        code_sq = codebook.pow(2).sum(dim=1)  # (K,), all ones when l2
        out = []
        for rows in z_flat.split(_ROWS_PER_CHUNK):
            # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin.
            # On unit vectors this is 2 - 2 cos(z, e): the cosine-distance lookup of ViT-VQGAN.
            dist = code_sq - 2.0 * rows @ codebook.t()  # (m, K)
            out.append(dist.argmin(dim=1))
        return torch.cat(out)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for indices [N x h x w], back in latent space: [N x D x h x w]."""
        return rearrange(self.proj_out(self.codes()[indices]), "n h w d -> n d h w")

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z [N x D x h x w] to its nearest codes."""
        n, _, h, w = z.shape
        z_flat = self.project(z)  # (N*h*w, d_c)
        indices = self.nearest(z_flat)  # (N*h*w,)
        e = self.codes()[indices]  # (N*h*w, d_c)
        # beta ||z - sg[e]||^2 commits the encoder; ||sg[z] - e||^2 moves a gradient-trained
        # codebook (an EMA codebook needs no loss). The reference (taming, legacy=True) puts
        # beta on the codebook term instead; we follow the VQ-VAE paper.
        loss = self.beta * F.mse_loss(z_flat, e.detach())
        if self.ema_decay == 0:
            loss = loss + F.mse_loss(e, z_flat.detach())
        e = z_flat + (e - z_flat).detach()  # straight-through: forward is e, gradient is identity
        z_q = rearrange(self.proj_out(e), "(n h w) d -> n d h w", n=n, h=h, w=w)
        usage = torch.bincount(indices, minlength=self.n_embed)
        return QuantizerOutput(
            z_q=z_q,
            loss=loss,
            indices=indices.view(n, h, w),
            usage=usage,
            perplexity=perplexity(usage),
        )

    @torch.no_grad()
    def update_codebook(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        """One EMA step of the codebook toward the mean of the z [N x D x h x w] assigned by indices [N x h x w].

        N_k <- g N_k + (1 - g) n_k and m_k <- g m_k + (1 - g) sum of z_j with k_j = k,
        then e_k = m_k / N_k with N_k Laplace-smoothed so it is never zero
        (van den Oord et al. 2017, App. A.1; Razavi et al. 2019, Eq. 3-4).
        """
        if self.ema_decay == 0:
            raise RuntimeError("update_codebook() is for an EMA codebook; this quantizer has ema_decay 0")
        z_flat = self.project(z.detach())  # (M, d_c)
        flat_indices = indices.flatten()  # (M,)
        count = torch.bincount(flat_indices, minlength=self.n_embed).to(self.ema_count.dtype)  # (K,) n_k
        total = torch.zeros_like(self.ema_sum).index_add_(0, flat_indices, z_flat.to(self.ema_sum.dtype))  # (K, d_c)
        self.ema_count.lerp_(count, 1.0 - self.ema_decay)
        self.ema_sum.lerp_(total, 1.0 - self.ema_decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + _LAPLACE_EPS) / (n + self.n_embed * _LAPLACE_EPS) * n  # (K,)
        self.embedding.weight.copy_(self.ema_sum / rearrange(smoothed, "k -> k 1"))

    @torch.no_grad()
    def restart_dead_codes(
        self, z: torch.Tensor, usage: torch.Tensor, *, generator: torch.Generator
    ) -> int:
        """Move codes never used (usage == 0) onto random encoder outputs from z; return how many.

        Revives codes the encoder never reaches (e.g. Dhariwal et al. 2020, Jukebox;
        Zeghidour et al. 2021, SoundStream); an EMA code restarts as the average of one vector.
        """
        dead = (usage == 0).nonzero().flatten().to(self.embedding.weight.device)
        if dead.numel() == 0:
            return 0
        z_flat = self.project(z.detach())  # (M, d_c)
        picks = torch.randint(
            0, z_flat.shape[0], (dead.numel(),), generator=generator, device=generator.device
        )
        fresh = z_flat[picks.to(z_flat.device)].to(self.embedding.weight.dtype)  # (dead, d_c)
        self.embedding.weight[dead] = fresh
        if self.ema_decay > 0:
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
        return int(dead.numel())


def perplexity(usage: torch.Tensor) -> torch.Tensor:
    """exp of the entropy of the code-usage distribution: 1 if one code, |Z| if uniform."""
    p = usage.float() / usage.sum().clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-10))).sum()
    return torch.exp(entropy)
