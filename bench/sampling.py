"""Samplers: ours against diffusers' schedulers on the same UNet, and sample quality against the number of steps.

Speed: DDIM (eta 0), PLMS and DPM-Solver++(2M) from `ldm.diffusion.samplers` against DDIMScheduler, PNDMScheduler
(`skip_prk_steps`, the PLMS of LDM) and DPMSolverMultistepScheduler (`dpmsolver++`, order 2), each scheduler set
up as the exporter writes DDIM's (the reference's +1-shifted uniform steps, `leading` spacing), all driving our
UNet from the same x_T. Quality: the pipeline's trained class-conditional model (`models/ldm`), each sampler at
5, 10, 20 and 50 steps against DDIM at 200 steps from the same seeds: FID with the seeded `random-conv` stand-in
feature extractor (comparable within one run only) and the RMS distance of the decoded images to DDIM-200's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.common import Goal, NotReady, Row, interleaved
from bench.models import Place, ldm_config, relative_difference, unet_inputs, unet_pair
from ldm.diffusion.config import SamplerSettings
from ldm.diffusion.samplers import sample, sampling_timesteps
from ldm.interchange.diffusers_configs import scheduler_config

SAMPLERS = {"ddim": "DDIM", "plms": "PLMS", "dpmpp_2m": "DPM-Solver++(2M)"}
PEERS = {"ddim": "DDIMScheduler", "plms": "PNDMScheduler", "dpmpp_2m": "DPMSolverMultistepScheduler"}
QUALITY_STEPS = (5, 10, 20, 50)
REFERENCE = SamplerSettings(sampler="ddim", steps=200)
STAND_IN = "random-conv"
SAMPLING_GOAL = 1.1


def scheduler(name: str, diffusion: Any, steps: int) -> Any:
    """diffusers' scheduler for our sampler `name`, on our schedule, ending at alpha_bar = 1 as ours does."""
    import diffusers

    base = {k: v for k, v in scheduler_config(diffusion).items() if not k.startswith("_")}
    base["set_alpha_to_one"] = True  # final_alpha "one"
    if name == "plms":
        base = {k: v for k, v in base.items() if k not in ("clip_sample",)} | {"skip_prk_steps": True}
    if name == "dpmpp_2m":
        base = {k: v for k, v in base.items() if k not in ("clip_sample", "set_alpha_to_one")}
        base |= {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero"}
    made = getattr(diffusers, PEERS[name]).from_config(base)
    if name == "dpmpp_2m":  # its `leading` spacing rounds another grid: hand it ours, newest first
        made.set_timesteps(timesteps=sampling_timesteps(diffusion.timesteps, steps)[::-1])
    else:
        made.set_timesteps(steps)
    return made


def with_scheduler(name: str, eps: Callable, x_T: torch.Tensor, diffusion: Any, steps: int) -> torch.Tensor:
    """diffusers' loop: eps at each of the scheduler's timesteps, then its step."""
    made, x = scheduler(name, diffusion, steps), x_T
    for t in made.timesteps:
        x = made.step(eps(x, t.expand(len(x))), t, x).prev_sample
    return x


def speed_rows(place: Place, repeats: int, steps: int = 10, batch: int = 8) -> list[Row]:
    """samples/s of each sampler, ours against diffusers', on the same (tiny-cond, random) UNet."""
    cfg = ldm_config("tiny-cond", None)
    unet = unet_pair(cfg)[0].to(place.device).eval()
    schedule = cfg.diffusion.make_schedule()
    inputs = unet_inputs(cfg, batch, place)
    x_T, context = inputs["x"], inputs["context"]

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with place.autocast():
            return unet(x, t.to(place.device), context).float()

    rows = []
    for name, label in SAMPLERS.items():
        def ours() -> torch.Tensor:
            with torch.inference_mode():
                return sample(name, eps, x_T, schedule, steps=steps)

        def theirs() -> torch.Tensor:
            with torch.inference_mode():
                return with_scheduler(name, eps, x_T, cfg.diffusion, steps)

        diff = relative_difference(ours(), theirs())  # also the warm-up
        timing = interleaved(ours, theirs, repeats=repeats, warmup=0, sync=place.sync)
        rows.append(Row("Sampling", f"{label}, {steps} steps", "samples/s", batch / timing.ours_s, batch / timing.peer_s,
                        f"diffusers {PEERS[name]}", timing.peer_s / timing.ours_s, "speed-up", Goal("ratio", ">=", SAMPLING_GOAL),
                        f"same tiny-cond UNet, batch {batch}; samples differ by {diff:.1e} (relative)",
                        extra={"sampler": name, "steps": steps}))
    return rows


def quality_rows(models: Path, samples: int, batch_size: int) -> list[Row]:
    """Stand-in FID and RMS distance to DDIM-200 of each sampler at QUALITY_STEPS; the peer is DDIM at as many."""
    from ldm.autoencoder import load_autoencoder
    from ldm.latent_diffusion.checkpoint import load_ldm
    from ldm.latent_diffusion.generate import sample_images
    from ldm.metrics.fidelity import fidelity_metrics

    for part in ("autoencoder", "ldm"):
        if not (models / part / "model.safetensors").is_file():
            raise NotReady(f"{models / part}: no trained model; run `dvc repro train_ldm` (make bench does) first")
    autoencoder, _ = load_autoencoder(models / "autoencoder")
    loaded = load_ldm(models / "ldm")
    n_classes = loaded.model.config.conditioning.n_classes
    seeds = list(range(samples))
    labels = [i % n_classes for i in seeds] if loaded.model.config.conditioning.kind == "class" else None

    def draw(settings: SamplerSettings) -> torch.Tensor:
        return sample_images(loaded, autoencoder.decode, seeds, settings, labels=labels, batch_size=batch_size,
                             progress=False)

    reference = draw(REFERENCE)
    scores: dict[tuple[str, int], dict[str, float]] = {}
    for name in SAMPLERS:
        for steps in QUALITY_STEPS:
            images = draw(SamplerSettings(sampler=name, steps=steps))
            fid = fidelity_metrics(images, reference, feature_extractor=STAND_IN, metrics=("fid",))["fid"]
            rms = float(((images.float() - reference.float()) / 255).pow(2).mean().sqrt())
            scores[name, steps] = {"fid": fid, "rms": rms}
    rows = []
    for (name, steps), score in scores.items():
        ddim = scores["ddim", steps]["fid"]
        rows.append(Row("Sample quality", f"{SAMPLERS[name]}, {steps} steps", f"FID ({STAND_IN} stand-in) to DDIM-200",
                        score["fid"], ddim, f"DDIM, {steps} steps", ddim / max(score["fid"], 1e-9), "quality", None,
                        f"RMS distance to DDIM-200 {score['rms']:.4f} (images in [0, 1]); {samples} samples of"
                        f" {loaded.card.preset}", extra={"sampler": name, "steps": steps, **score}))
    return rows


# Tab. 18: DDIM samples/s on one A100 of the paper's unconditional models (first stage included)
TABLE_18 = (("lsun-churches-ldm8", 100, 6.80), ("lsun-bedrooms-ldm4", 200, 1.07), ("celebahq-ldm4", 500, 0.43))


def paper_throughput_rows(place: Place, batch: int = 16) -> list[Row]:
    """samples/s of the paper's presets (seeded random weights; speed does not depend on them) beside Tab. 18."""
    from ldm.autoencoder import build_autoencoder
    from ldm.latent_diffusion import build_ldm
    from ldm.latent_diffusion.presets import preset_config

    from bench.common import median_seconds

    rows = []
    for preset, steps, paper in TABLE_18:
        cfg = preset_config(preset)
        torch.manual_seed(0)
        model, decoder = build_ldm(cfg).to(place.device).eval(), build_autoencoder(cfg.first_stage).to(place.device).eval()
        x_T = torch.randn(batch, *model.latent_shape, device=place.device)

        def run() -> None:
            with torch.inference_mode(), place.autocast():
                z = sample("ddim", lambda x, t: model(x, t), x_T, model.schedule, steps=steps)
                decoder.decode(z)
            place.sync()
        seconds = median_seconds(run, repeats=1, warmup=1)
        rows.append(Row("Paper Tab. 18", f"DDIM {steps} steps + decoder, {preset}", "samples/s", batch / seconds, paper,
                        "the paper's Tab. 18 (one A100)", batch / seconds / paper, "speed-up", None,
                        f"batch {batch}, random weights, {'bf16 autocast' if place.bf16 else 'fp32'}",
                        device=str(place.device)))
    return rows
