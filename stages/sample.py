"""`ldm sample` and `ldm upscale`: images from a trained (or pulled) model folder, with every setting on the command line.

    ldm sample --models models -n 16 --class 3 --sampler ddim --steps 50 --guidance 2.0 --seed 0 -o samples/
    ldm upscale --models models photo.jpg -o photo_x4.png --tile 64

`--models` holds `autoencoder/` beside `ldm/` (sample) or `ldm_sr/` (upscale), as
`dvc repro` writes them under models/ and `ldm pull` brings them back. `upscale`
super-resolves any image with the LDM-BSR model; inputs larger than `--tile`
(LR pixels) are cut into overlapping tiles, each sampled at its own size
(convolutional sampling, Sec. C.1), and blended with linear ramps.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ldm.autoencoder import load_autoencoder
from ldm.data.images import BadImage, decode_image
from ldm.data.loader import to_tensor, to_uint8
from ldm.unet.checkpoint import load_ldm
from ldm.unet.generate import SamplerSettings, conditions, decode_latents, generate_latents
from stages.eval_sr import upscale_latents
from stages.evaluate import save_png_grid
from stages.lineage import setup_logging, write_json

log = logging.getLogger("stages.sample")


def _settings(args: argparse.Namespace) -> SamplerSettings:
    return SamplerSettings(sampler=args.sampler, steps=args.steps, eta=args.eta, guidance_scale=getattr(args, "guidance", 1.0))


def sample(args: argparse.Namespace) -> Path:
    """N images of one class / prompt (or unconditional) as PNGs, a grid and settings.json in args.output."""
    autoencoder, _ = load_autoencoder(args.models / "autoencoder")
    loaded = load_ldm(args.models / "ldm")
    kind = loaded.model.config.conditioning.kind
    if args.prompt is not None and kind != "text":
        raise ValueError(f"--prompt is for text models; this model is {kind}-conditioned"
                         + (" (use --class)" if kind == "class" else ""))
    if args.class_id is not None and kind != "class":
        raise ValueError(f"--class is for class-conditional models; this model is {kind}-conditioned")
    if kind == "class" and args.class_id is None:
        raise ValueError(f"this model is class-conditional: pass --class 0..{loaded.model.config.conditioning.n_classes - 1}")
    if kind == "text" and args.prompt is None:
        raise ValueError("this model is text-conditional: pass --prompt \"...\"")
    settings = _settings(args)
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for start in tqdm(range(0, args.n, args.batch_size), desc="sampling", unit="batch"):
        end = min(start + args.batch_size, args.n)
        cond, null = conditions(loaded.model, labels=[args.class_id] * (end - start) if kind == "class" else None,
                                prompts=[args.prompt] * (end - start) if kind == "text" else None, tokenizer=loaded.tokenizer)
        z = generate_latents(loaded.model, cond, null, [args.seed + i for i in range(start, end)], settings)
        images.append(decode_latents(autoencoder.decode, z, loaded.scale_factor))
    batch = torch.cat(images)  # (N, 3, H, W) uint8
    for i, image in enumerate(batch):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(out / f"{args.seed + i:06d}.png")
    save_png_grid(batch, out / "grid.png", nrow=min(8, len(batch)))
    write_json(out / "settings.json", {"model": str(args.models / "ldm"), "preset": loaded.config.get("preset"), "n": args.n,
                                       "class": args.class_id, "prompt": args.prompt, "seeds": [args.seed, args.seed + args.n - 1],
                                       "scale_factor": loaded.scale_factor, **settings.__dict__})
    log.info("wrote %d samples and grid.png to %s", args.n, out)
    return out


def _ramp(n: int, overlap: int) -> np.ndarray:
    """Blend weights along one axis: linear ramps of `overlap` pixels at both ends, 1 between."""
    w = np.ones(n)
    if overlap:
        ramp = (np.arange(overlap) + 1) / (overlap + 1)
        w[:overlap], w[-overlap:] = ramp, ramp[::-1]
    return w


def _tiles(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap)) + [size - tile]
    return sorted(set(starts))


def upscale(args: argparse.Namespace) -> Path:
    """Super-resolve one image file with the LDM-BSR model, tiled when larger than --tile."""
    autoencoder, _ = load_autoencoder(args.models / "autoencoder")
    loaded = load_ldm(args.models / "ldm_sr")
    if loaded.model.config.conditioning.kind != "concat":
        raise ValueError(f"{args.models / 'ldm_sr'} is not a super-resolution (concat) model")
    scale, f = int(loaded.config.get("sr_scale", 4)), autoencoder.downsample_factor
    try:
        lr_image, _ = decode_image(args.input.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{args.input}: no such image file") from None
    except BadImage as exc:
        raise ValueError(f"{args.input}: {exc}") from None
    unit = max(1, f // scale)  # LR pixels per latent pixel must be whole
    h, w = (lr_image.shape[0] // unit) * unit, (lr_image.shape[1] // unit) * unit
    lr = to_tensor(lr_image[:h, :w])[None]  # (1, 3, h, w)
    tile, overlap = min(args.tile, h, w) // unit * unit, args.overlap // unit * unit
    settings = _settings(args)
    out = np.zeros((h * scale, w * scale, 3))
    weight = np.zeros((h * scale, w * scale, 1))
    tops, lefts = _tiles(h, tile, overlap), _tiles(w, tile, overlap)
    for n, (top, left) in enumerate(tqdm([(t, l) for t in tops for l in lefts], desc="upscale", unit="tile")):
        th, tw = min(tile, h), min(tile, w)
        patch = lr[..., top : top + th, left : left + tw]
        z = upscale_latents(loaded, patch, [args.seed + n], settings, (th * scale // f, tw * scale // f))
        hr = to_uint8(decode_latents(autoencoder.decode, z, loaded.scale_factor).float() / 127.5 - 1)[0].astype(np.float64)
        ramp = np.outer(_ramp(th * scale, overlap * scale if len(tops) > 1 else 0),
                        _ramp(tw * scale, overlap * scale if len(lefts) > 1 else 0))[..., None]
        out[top * scale : (top + th) * scale, left * scale : (left + tw) * scale] += hr * ramp
        weight[top * scale : (top + th) * scale, left * scale : (left + tw) * scale] += ramp
    result = np.clip(np.rint(out / np.maximum(weight, 1e-8)), 0, 255).astype(np.uint8)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result).save(args.output)
    log.info("upscaled %s (%dx%d) x%d to %s in %d tiles", args.input, w, h, scale, args.output, len(tops) * len(lefts))
    return args.output


def add_sampler_options(parser: argparse.ArgumentParser, guidance: bool) -> None:
    """The sampler flags shared by `sample` and `upscale`."""
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder with autoencoder/ and ldm/ or ldm_sr/")
    parser.add_argument("--sampler", choices=("ddpm", "ddim", "plms", "dpmpp_2m"), default="ddim")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps, at most the model's T (default: %(default)s)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM noise: 0 deterministic (default), 1 DDPM-like")
    parser.add_argument("--seed", type=int, default=0, help="sample i starts from noise seeded with seed + i")
    if guidance:
        parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale; 1 = none")


def build_parser(prog: str = "python -m stages.sample") -> argparse.ArgumentParser:
    """`sample` and `upscale` subcommands."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add_commands(commands)
    return parser


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `sample` and `upscale` on a subcommand parser (the `ldm` command uses this)."""
    s = commands.add_parser("sample", help="draw images from a trained LDM", description=sample.__doc__)
    add_sampler_options(s, guidance=True)
    s.add_argument("-n", type=int, default=16, help="number of images (default: %(default)s)")
    s.add_argument("--class", dest="class_id", type=int, default=None, help="class id (class-conditional models)")
    s.add_argument("--prompt", default=None, help="text prompt (text models)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("-o", "--output", type=Path, required=True, help="output folder for PNGs, grid.png, settings.json")
    s.set_defaults(handler=sample)
    u = commands.add_parser("upscale", help="super-resolve an image with the LDM-BSR model", description=upscale.__doc__)
    add_sampler_options(u, guidance=False)
    u.add_argument("input", type=Path, help="image file (any size; RGB, grey, alpha are converted)")
    u.add_argument("-o", "--output", type=Path, required=True, help="output PNG")
    u.add_argument("--tile", type=int, default=64, help="LR tile side in pixels (default: %(default)s)")
    u.add_argument("--overlap", type=int, default=16, help="LR pixels shared by neighbouring tiles (default: %(default)s)")
    u.set_defaults(handler=upscale)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed `sample`/`upscale` command; user errors print one line and return 2."""
    if getattr(args, "n", 1) < 1 or args.steps < 1:
        log.error("-n and --steps must be >= 1")
        return 2
    try:
        args.handler(args)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    setup_logging()
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
