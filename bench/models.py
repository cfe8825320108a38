"""The models against diffusers': UNet training step and inference, FLOP utilisation, autoencoder encode/decode.

Each diffusers model is built from the config `ldm export` writes for ours (ldm.interchange.diffusers_configs) and
holds our weights through the exporter's key map, so both sides compute the same function: every row's note gives
the largest difference of the two outputs on the row's input, relative to our output's largest magnitude.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import Goal, Row, interleaved, median_seconds, rate_row
from ldm.autoencoder import build_autoencoder
from ldm.autoencoder.presets import preset_config as autoencoder_preset
from ldm.interchange import diffusers_keys as D
from ldm.interchange.bundle import CODEBOOK_STATS
from ldm.interchange.diffusers_configs import unet_config, vae_config
from ldm.interchange.layout import autoencoder_blocks, unet_blocks
from ldm.interchange.mapping import export_state, plan
from ldm.latent_diffusion import build_ldm
from ldm.latent_diffusion.config import LDMConfig
from ldm.latent_diffusion.presets import preset_config

# (label, preset, model_channels or None for the preset's own, batch): the CPU sizes of the UNet rows. The paper
# preset keeps its depth, levels, attention and 32 channels per head at a quarter of its width.
UNETS = (("tiny-uncond", "tiny-uncond", None, 32), ("tiny-cond", "tiny-cond", None, 32),
         ("cin-ldm8 at width 64", "cin-ldm8", 64, 4))
# (label, preset, ch or None, image side, batch): the autoencoder rows.
AUTOENCODERS = (("kl-f4-tiny", "kl-f4-tiny", None, 64, 16), ("vq-f4-tiny", "vq-f4-tiny", None, 64, 16),
                ("kl-f4 at width 32", "kl-f4", 32, 128, 4), ("vq-f4 at width 32", "vq-f4", 32, 128, 4))
UNET_GOAL, AUTOENCODER_GOAL, FLOP_GOAL = 1.1, 1.0, 0.3
COMPILED = UNETS[1:2]  # compiling a UNet pair takes minutes on 2 cores: the pipeline's default model only


@dataclasses.dataclass(frozen=True)
class Place:
    """Where the models run: the device, and bf16 autocast (the CUDA suite) or fp32."""

    device: torch.device
    bf16: bool

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, torch.bfloat16) if self.bf16 else nullcontext()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def ldm_config(preset: str, width: int | None) -> LDMConfig:
    cfg = preset_config(preset)
    return cfg if width is None else dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, model_channels=width))


def _from_config(config: dict[str, Any]) -> nn.Module:
    import diffusers

    return getattr(diffusers, config["_class_name"]).from_config({k: v for k, v in config.items() if not k.startswith("_")})


def unet_pair(cfg: LDMConfig) -> tuple[nn.Module, nn.Module]:
    """Our UNet (seeded random weights) and diffusers' UNet of the same config holding the same weights."""
    torch.manual_seed(0)
    ours = build_ldm(cfg)
    _randomize_zeros(ours)
    state = {k: v for k, v in ours.state_dict().items() if k.startswith("unet.")}
    theirs = _from_config(unet_config(cfg.unet, cfg.latent_size))
    theirs.load_state_dict(export_state(state, plan(unet_blocks(cfg.unet), D.UNET, state)))
    return ours.unet, theirs


def unet_inputs(cfg: LDMConfig, batch: int, place: Place) -> dict[str, torch.Tensor]:
    """x_t [B x C x h x w], t [B], the context [B x 1 x D_ctx] of a class token (cross-attention) or None, eps."""
    g = torch.Generator().manual_seed(1)
    u = cfg.unet
    x = torch.randn(batch, u.in_channels, *cfg.latent_size, generator=g)
    context = torch.randn(batch, 1, u.context_dim, generator=g) if u.attention == "cross" else None
    out = {"x": x, "t": torch.randint(0, 1000, (batch,), generator=g), "context": context,
           "eps": torch.randn(batch, u.out_channels, *cfg.latent_size, generator=g)}
    return {k: None if v is None else v.to(place.device) for k, v in out.items()}


def _callers(ours: nn.Module, theirs: nn.Module, inputs: dict[str, Any]) -> tuple[Callable, Callable]:
    x, t, context = inputs["x"], inputs["t"], inputs["context"]
    if context is None:
        return (lambda: ours(x, t)), (lambda: theirs(x, t).sample)
    return (lambda: ours(x, t, context)), (lambda: theirs(x, t, encoder_hidden_states=context).sample)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |a|."""
    return float((a.float() - b.float()).abs().max() / a.float().abs().max().clamp_min(1e-12))


def _inference(call: Callable[[], Any], place: Place) -> Callable[[], None]:
    """`call` without autograd (and under autocast on the GPU)."""
    def run() -> None:
        with torch.inference_mode(), place.autocast():
            call()
    return run


def _train_step(forward: Callable[[], torch.Tensor], eps: torch.Tensor, optimizer: torch.optim.Optimizer,
                place: Place) -> Callable[[], None]:
    """Forward, L_simple = ||eps - eps_theta||^2 (Eq. 1), backward, AdamW."""
    def step() -> None:
        with place.autocast():
            loss = F.mse_loss(forward().float(), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def flop_count(step: Callable[[], None]) -> int:
    """FLOPs of one call of `step`, counted by torch's FlopCounterMode (matmuls and convolutions, forward and back)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_peak(place: Place, n: int = 2048, repeats: int = 5) -> float:
    """The machine's measured fp32 (bf16 under autocast) matmul rate, FLOP/s: 2 n^3 per n x n product."""
    dtype = torch.bfloat16 if place.bf16 else torch.float32
    a, b = (torch.randn(n, n, device=place.device, dtype=dtype) for _ in range(2))

    def run() -> None:
        torch.mm(a, b)
        place.sync()
    return 2 * n**3 / median_seconds(run, repeats=repeats, warmup=2)


def _randomize_zeros(module: nn.Module) -> None:
    """Fill the zero-initialised layers (the UNet's output convs) with seeded noise: zero outputs compare nothing."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in module.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=g) * 0.02)


def unet_rows(place: Place, repeats: int, compile_: bool = False, configs: tuple = UNETS) -> list[Row]:
    """Per UNet size: the training step and inference, samples/s, ours against diffusers'; and the training
    step's achieved FLOP/s over the machine's matmul peak."""
    rows: list[Row] = []
    peak = matmul_peak(place)
    for label, preset, width, batch in configs:
        cfg = ldm_config(preset, width)
        ours, theirs = (m.to(place.device) for m in unet_pair(cfg))
        peer = f"diffusers {type(theirs).__name__}"
        params = sum(p.numel() for p in ours.parameters())
        inputs = unet_inputs(cfg, batch, place)
        call_ours, call_theirs = _callers(ours, theirs, inputs)
        with torch.no_grad(), place.autocast():
            diff = relative_difference(call_ours(), call_theirs())
        if compile_:
            ours, theirs = torch.compile(ours), torch.compile(theirs)
            call_ours, call_theirs = _callers(ours, theirs, inputs)
        suffix = ", torch.compile" if compile_ else ""
        note = f"{params / 1e6:.1f}M parameters each, batch {batch}, outputs differ by {diff:.1e} (relative)"
        ours.train(), theirs.train()
        steps = [_train_step(call, inputs["eps"], torch.optim.AdamW(m.parameters(), lr=1e-4), place)
                 for call, m in ((call_ours, ours), (call_theirs, theirs))]
        timing = interleaved(*steps, repeats=repeats, sync=place.sync)
        rows.append(rate_row("UNet", f"training step, {label}{suffix}", "samples/s", timing.ours_s, timing.peer_s, batch,
                             peer, UNET_GOAL, note, config=label, batch=batch, params=params, mode="train"))
        flops = 0 if compile_ else flop_count(steps[0])  # the counter sees eager ops only
        rows += [] if compile_ else [Row("Machine", f"FLOP/s of the UNet training step over the matmul peak, {label}{suffix}", "GFLOP/s",
                        flops / timing.ours_s / 1e9, peak / 1e9, "torch.mm 2048 x 2048 (this machine's peak)",
                        flops / timing.ours_s / peak, "fraction", Goal("ratio", ">=", FLOP_GOAL),
                        f"{flops / 1e9:.1f} GFLOP per step of batch {batch} (torch.utils.flop_counter)",
                        extra={"flops_per_step": flops, "config": label})]
        ours.eval(), theirs.eval()
        timing = interleaved(_inference(call_ours, place), _inference(call_theirs, place), repeats=repeats, sync=place.sync)
        rows.append(rate_row("UNet", f"inference, {label}{suffix}", "samples/s", timing.ours_s, timing.peer_s, batch,
                             peer, UNET_GOAL, note, config=label, batch=batch, params=params, mode="inference"))
    return rows


def autoencoder_pair(preset: str, ch: int | None, side: int) -> tuple[nn.Module, nn.Module]:
    """Our autoencoder (seeded random weights) and diffusers' AutoencoderKL / VQModel with the same weights."""
    cfg = autoencoder_preset(preset)
    cfg = cfg if ch is None else dataclasses.replace(cfg, ch=ch)
    torch.manual_seed(0)
    ours = build_autoencoder(cfg).eval()
    state = {k: v for k, v in ours.state_dict().items() if k not in CODEBOOK_STATS}
    theirs = _from_config(vae_config(cfg, 1.0, side)).eval()
    theirs.load_state_dict(export_state(state, plan(autoencoder_blocks(cfg), D.VAE, state)))
    return ours, theirs


def autoencoder_rows(place: Place, repeats: int) -> list[Row]:
    """Encode (to the posterior mode / the pre-quantization latent) and decode, images/s, ours against diffusers'."""
    rows = []
    for label, preset, ch, side, batch in AUTOENCODERS:
        ours, theirs = (m.to(place.device) for m in autoencoder_pair(preset, ch, side))
        peer = f"diffusers {type(theirs).__name__}"
        x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(2)).to(place.device) * 2 - 1
        kl = preset.startswith("kl")

        def their_encode() -> torch.Tensor:
            out = theirs.encode(x)
            return out.latent_dist.mode() if kl else out.latents

        with torch.inference_mode(), place.autocast():
            z = ours.encode_mode(x)
            encode_diff = relative_difference(z, their_encode())
            decode_diff = relative_difference(ours.decode(z), theirs.decode(z).sample)
        for what, call_ours, call_theirs, diff in (
                ("encode", lambda: ours.encode_mode(x), their_encode, encode_diff),
                ("decode", lambda: ours.decode(z), lambda: theirs.decode(z).sample, decode_diff)):
            timing = interleaved(_inference(call_ours, place), _inference(call_theirs, place), repeats=repeats,
                                 sync=place.sync)
            note = f"{side} px, batch {batch}, outputs differ by {diff:.1e} (relative)"
            rows.append(rate_row("Autoencoder", f"{what}, {label}", "images/s", timing.ours_s, timing.peer_s, batch, peer,
                                 AUTOENCODER_GOAL, note, config=label, batch=batch, side=side))
    return rows
