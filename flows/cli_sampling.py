"""The sampler options every sampling command shares (`ldm sample`, `ldm upscale`, `ldm inpaint`): flags with
their choices and defaults from SamplerSettings, and the readers of what those commands take from the user."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import TYPE_CHECKING

from ldm.diffusion.config import FinalAlpha, SamplerName, SamplerSettings, Spacing
from ldm.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np

DEFAULTS = SamplerSettings()


def sampler_settings(args: argparse.Namespace) -> SamplerSettings:
    """The sampler flags as settings; an invalid combination is a one-line error."""
    try:
        return SamplerSettings(sampler=args.sampler, steps=args.steps, eta=args.eta, spacing=args.spacing,
                               final_alpha=args.final_alpha, guidance_scale=getattr(args, "guidance", 1.0))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def read_image(path: Path, flag: str) -> np.ndarray:
    """[H x W x 3] uint8 of an image file (the project's decoder); a missing or unreadable one is a one-line error."""
    from ldm.data.images import BadImage, decode_image
    from ldm.errors import InputNotFound

    try:
        return decode_image(path.read_bytes())[0]
    except (FileNotFoundError, IsADirectoryError):
        raise InputNotFound(f"{flag}{path}: no such image file") from None
    except BadImage as exc:
        raise InvalidInput(f"{flag}{path}: {exc}") from None


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_sampler_options(parser: argparse.ArgumentParser, guidance: bool) -> None:
    """The sampler flags shared by `sample`, `upscale` and `inpaint` (choices and defaults from SamplerSettings)."""
    parser.add_argument("--models", type=Path, default=Path("models"), metavar="MODEL_DIR",
                        help="folder with autoencoder/ and ldm/, ldm_layout/ or ldm_sr/")
    parser.add_argument("--sampler", choices=typing.get_args(SamplerName), default=DEFAULTS.sampler)
    parser.add_argument("--steps", type=positive, default=DEFAULTS.steps, help="denoising steps, at most the model's T (default: %(default)s)")
    parser.add_argument("--eta", type=float, default=DEFAULTS.eta, help="DDIM noise: 0 deterministic (default), 1 DDPM-like")
    parser.add_argument("--spacing", choices=typing.get_args(Spacing), default=DEFAULTS.spacing, help="timestep spacing (default: %(default)s)")
    parser.add_argument("--final-alpha", choices=typing.get_args(FinalAlpha), default=DEFAULTS.final_alpha,
                        help="where DDIM/PLMS/DPM++ end: one = alpha_bar 1, the x0 estimate (default);"
                             " t0 = alpha_bar[t_0], as the reference")
    parser.add_argument("--seed", type=int, default=0, help="sample i starts from noise seeded with seed + i")
    if guidance:
        parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale; 1 = none (default: %(default)s)")
