"""Benchmark LDM training from the latent cache against encoding the images on the fly, in one run.

    .venv/bin/python bench/bench_latent_cache.py [--steps 30] [--batch-size 32] [--threads 2]

Both paths run the same training step of the same LDM (`tiny-cond` by default)
with the same autoencoder (`models/autoencoder` when it exists, else an untrained
`kl-f4-tiny`, which costs the same) on the same samples:

- cached:  latent shards (`data/latents`, written by `dvc repro cache_latents`)
           -> z * scale_factor -> LDM step;
- on the fly: image shards (`data/images`) -> encoder (no grad) -> posterior mode
           * scale_factor -> LDM step, as the reference trains.

Prints steps per second of each and the ratio cached / on the fly. Without the
cache folders, run `dvc repro cache_latents` (or `make run`) first.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
import webdataset as wds

from ldm.autoencoder import build_autoencoder, load_autoencoder
from ldm.data.latents import collate, latent_dataset
from ldm.data.loader import image_dataset, shard_urls
from ldm.diffusion import diffusion_loss
from ldm.latent_diffusion import build_ldm
from ldm.latents import encode_latents, read_stats

ROOT = Path(__file__).resolve().parent.parent


def _step(model, optimizer, z: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> float:
    """One L_simple step (Eq. 1) of the class-conditional LDM."""
    t = torch.randint(0, model.schedule.num_steps, (z.shape[0],), generator=generator)
    eps = torch.randn(z.shape, generator=generator)
    loss = diffusion_loss(lambda xt, tt: model(xt, tt, labels), z, t, eps, model.schedule, model.diffusion)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss)


def _time(batches, steps: int, preset: str, seed: int) -> float:
    """Steps per second over `steps` batches after one warm-up step (the model is rebuilt per path)."""
    torch.manual_seed(seed)
    model = build_ldm(preset).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(seed)
    iterator = iter(batches)
    z, labels = next(iterator)
    _step(model, optimizer, z, labels, generator)  # warm-up: allocator, kernels
    start = time.perf_counter()
    for z, labels in itertools.islice(iterator, steps):
        _step(model, optimizer, z, labels, generator)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="tiny-cond")
    parser.add_argument("--images", type=Path, default=ROOT / "data" / "images")
    parser.add_argument("--latents", type=Path, default=ROOT / "data" / "latents")
    parser.add_argument("--autoencoder", type=Path, default=ROOT / "models" / "autoencoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the training stage does on the CPU
    scale = read_stats(args.latents).scale_factor
    if (args.autoencoder / "model.safetensors").is_file():
        autoencoder, _ = load_autoencoder(args.autoencoder)
        which = str(args.autoencoder)
    else:
        autoencoder, which = build_autoencoder("kl-f4-tiny").eval(), "untrained kl-f4-tiny"

    def cached():
        pipeline = latent_dataset(shard_urls(args.latents, "train"), scale_factor=scale).repeat()
        for batch in pipeline.compose(wds.batched(args.batch_size, collation_fn=collate, partial=False)):
            yield batch["z"], batch["label"]

    def on_the_fly():
        pipeline = image_dataset(shard_urls(args.images, "train")).repeat()
        for x, labels in pipeline.compose(wds.batched(args.batch_size, partial=False)):
            keys = [str(i) for i in range(len(x))]
            yield encode_latents(autoencoder, x, keys, posterior="mode") * scale, torch.as_tensor(labels)

    rates = {"cached": _time(cached(), args.steps, args.preset, 0), "on_the_fly": _time(on_the_fly(), args.steps, args.preset, 0)}
    print(f"LDM {args.preset}, batch {args.batch_size}, {args.threads} threads, autoencoder {which}, {args.steps} steps each")
    for name, rate in rates.items():
        print(f"  {name:<11} {rate:6.2f} steps/s")
    print(f"  ratio cached / on the fly: {rates['cached'] / rates['on_the_fly']:.2f}x")


if __name__ == "__main__":
    main()
