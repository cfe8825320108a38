"""Benchmark sampling: our UNet + DDIM against diffusers' UNet2DModel + DDIMScheduler of the same configuration.

    .venv/bin/python bench/bench_sampling.py [--n 32] [--batch-size 16] [--steps 50] [--threads 2]

Both denoisers are the `tiny-uncond` configuration (16 x 16 x 3 latents, widths
64/128, one res block per level, self-attention at the second level and in the
middle block, 32 channels per head, GroupNorm 16), both schedules the paper's
"linear" (0.0015, 0.0195; diffusers: `scaled_linear`), both samplers DDIM with
eta 0 on the reference's uniform spacing (diffusers: `leading`, offset 1), from
the same x_T. In one run it prints samples per second of

- ours:      ldm.latent_diffusion.unet UNet + ldm.diffusion.sample_ddim
- diffusers: UNet2DModel + DDIMScheduler
- mixed:     our UNet stepped by DDIMScheduler (isolates the sampler's overhead)

with the ratio ours / diffusers, the parameter counts of both UNets, and the
largest difference between our sampler and DDIMScheduler on the same UNet (the
two implement the same update, so it should be float rounding).
"""

from __future__ import annotations

import argparse
import time

import torch

from ldm.diffusion import sample_ddim
from ldm.latent_diffusion import build_ldm


def _diffusers_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(64, 128),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       attention_head_dim=32, norm_num_groups=16).eval()


def _scheduler(steps: int):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=True, steps_offset=1, timestep_spacing="leading")
    scheduler.set_timesteps(steps)
    return scheduler


@torch.no_grad()
def _with_scheduler(eps_fn, x_T: torch.Tensor, steps: int) -> torch.Tensor:
    scheduler, x = _scheduler(steps), x_T
    for t in scheduler.timesteps:
        x = scheduler.step(eps_fn(x, t.expand(len(x))), t, x, eta=0.0).prev_sample
    return x


def _rate(fn, n: int, batch: int) -> float:
    fn(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(0, n, batch):
        fn(batch)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="samples per contender")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ldm = build_ldm("tiny-uncond").eval()
    theirs = _diffusers_unet()
    ours_eps = lambda x, t: ldm(x, t)  # noqa: E731
    their_eps = lambda x, t: theirs(x, t).sample  # noqa: E731
    x_T = torch.randn(args.batch_size, *ldm.latent_shape, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        rates = {
            "ours": _rate(lambda b: sample_ddim(ours_eps, x_T[:b], ldm.schedule, steps=args.steps), args.n, args.batch_size),
            "diffusers": _rate(lambda b: _with_scheduler(their_eps, x_T[:b], args.steps), args.n, args.batch_size),
            "mixed": _rate(lambda b: _with_scheduler(ours_eps, x_T[:b], args.steps), args.n, args.batch_size),
        }
        ours = sample_ddim(ours_eps, x_T, ldm.schedule, steps=args.steps)
        mixed = _with_scheduler(ours_eps, x_T, args.steps)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(f"DDIM, {args.steps} steps, eta 0, {args.n} samples of 3x16x16 in batches of {args.batch_size}, {args.threads} threads")
    print(f"  UNet parameters: ours {count(ldm.unet):,}, diffusers {count(theirs):,}")
    for name, rate in rates.items():
        print(f"  {name:<10} {rate:7.2f} samples/s")
    print(f"  ratio ours / diffusers: {rates['ours'] / rates['diffusers']:.2f}x")
    print(f"  our DDIM vs DDIMScheduler on our UNet: max |difference| {float((ours - mixed).abs().max()):.2e}")


if __name__ == "__main__":
    main()
