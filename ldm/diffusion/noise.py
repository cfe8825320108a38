"""Gaussian noise for samplers, drawn from explicit generators so results do not depend on batching.

The batch-independence contract: pass one `torch.Generator` per sample (e.g.
`seeded_generators(seed + i for i in range(n))`) for x_T and for the sampler's
`generator`; sample i then comes out the same whether it is drawn alone or
inside any batch (given a denoiser that treats samples independently, as a
UNet in eval mode does). A single generator draws the whole batch at once:
reproducible for a fixed batch layout, but sample i then depends on the batch.
Noise is always drawn in float32 on the generator's device, then moved to the
target device and dtype, so a seed gives the same noise on every device and
precision. Nothing here touches the global RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator]


def seeded_generators(seeds: Iterable[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per seed, on `device` (CPU by default: the same noise on every accelerator)."""
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def randn(shape: Sequence[int], generator: Generators, *, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal [N x ...]: one generator draws the batch, a list draws sample i from generator i."""
    shape = tuple(int(s) for s in shape)
    if isinstance(generator, torch.Generator):
        noise = torch.randn(shape, generator=generator, device=generator.device)  # (N, ...)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"need one generator per sample: {shape[0]} samples, {len(generator)} generators")
        noise = torch.stack([torch.randn(shape[1:], generator=g, device=g.device).to(device or g.device)
                             for g in generator])  # (N, ...)
    return noise.to(device=device or noise.device, dtype=dtype)


def _per_sample(n: int, generator: Generators, draw: Callable[[torch.Generator, int], Tensor]) -> Tensor:
    """[N]: one generator draws the batch (`draw(g, n)`), or generator i draws entry i (on the first one's device)."""
    if isinstance(generator, torch.Generator):
        return draw(generator, n)
    if len(generator) != n or not n:
        raise ValueError(f"need one generator per sample: {n} samples, {len(generator)} generators")
    return torch.cat([draw(g, 1).to(generator[0].device) for g in generator])


def uniform(n: int, generator: Generators) -> Tensor:
    """U[0, 1) [N] float32: one generator draws the batch, a list draws entry i from generator i."""
    return _per_sample(n, generator, lambda g, k: torch.rand(k, generator=g, device=g.device))


def randint(high: int, n: int, generator: Generators) -> Tensor:
    """Integers in [0, high) [N] long, drawn as `uniform` draws."""
    return _per_sample(n, generator, lambda g, k: torch.randint(0, high, (k,), generator=g, device=g.device))


def randn_like(x: Tensor, generator: Generators | None, who: str) -> Tensor:
    """Standard normal shaped like x [N x ...], on x's device and dtype; `who` names the caller in errors."""
    if generator is None:
        raise ValueError(f"{who} draws noise: pass a generator (a torch.Generator or one per sample); the global RNG is never used")
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)
