"""`ldm inpaint`: fill the holes of one image with the inpainting LDM (Sec. 4.5, Fig. 20-21).

    ldm inpaint photo.png --mask hole.png -o out/photo.png --samples 4 --steps 50

The mask is a PNG of the image's size; white (any nonzero grey value) marks the hole.
`--models` holds `autoencoder/` beside `ldm_inpaint/`, as `dvc repro train_inpaint`
writes them under models/ and `ldm pull` brings them back. Sample k starts from the
noise seeded with seed + k - 1; every sample keeps the known pixels exactly. The model
code is imported when the command runs, never to print `--help`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flows.cli_sampling import add_sampler_options, positive, read_image, sampler_settings
from ldm.errors import InvalidInput

log = logging.getLogger("ldm.inpaint")


def _read_mask(path: Path):  # noqa: ANN202 - numpy is imported when the command runs
    """[H x W] uint8 of a mask PNG, 1 = hole (nonzero); a missing or unreadable file is a one-line error."""
    from PIL import UnidentifiedImageError

    from ldm.data.schema import decode_mask
    from ldm.errors import InputNotFound

    try:
        return decode_mask(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError):
        raise InputNotFound(f"--mask {path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidInput(f"--mask {path}: not a readable image ({exc}); give a PNG, white = hole") from None


def sample_paths(output: Path, samples: int) -> list[Path]:
    """Where the filled images go: OUT's stem + `-1.png` ... `-K.png`, beside OUT."""
    return [output.with_name(f"{output.stem}-{k}.png") for k in range(1, samples + 1)]


def inpaint(args: argparse.Namespace) -> Path:
    """Fill the white holes of --mask in IMAGE, --samples times; the picture input | mask | masked | samples in -o."""
    import numpy as np
    import torch
    from einops import rearrange, repeat
    from PIL import Image

    from ldm.autoencoder.checkpoint import load_autoencoder
    from ldm.data.grids import save_titled_columns
    from ldm.latent_diffusion.checkpoint import load_ldm
    from ldm.latent_diffusion.generate import latent_size
    from ldm.latent_diffusion.inpaint import check_inpaint_model, inpaint_images
    from ldm.masks.shards import masked_image
    from ldm.model_dir import AUTOENCODER, LDM_INPAINT

    settings = sampler_settings(args)
    image, mask = read_image(args.input, ""), _read_mask(args.mask)
    if mask.shape != image.shape[:2]:
        raise InvalidInput(f"--mask {args.mask}: {mask.shape[0]}x{mask.shape[1]} px but {args.input} is "
                           f"{image.shape[0]}x{image.shape[1]}; the mask must have the image's height and width")
    if not mask.any():
        raise InvalidInput(f"--mask {args.mask}: has no hole (no nonzero pixel); paint the region to fill white")
    autoencoder, _ = load_autoencoder(args.models / AUTOENCODER)
    loaded = load_ldm(args.models / LDM_INPAINT)
    check_inpaint_model(loaded, str(args.models / LDM_INPAINT))
    latent_size(loaded.model, autoencoder.downsample_factor, image.shape[:2], str(args.input))  # sides must fit
    k = args.samples
    images = repeat(torch.from_numpy(image.copy()), "h w c -> k c h w", k=k)
    masks = repeat(torch.from_numpy(mask), "h w -> k 1 h w", k=k)
    filled = rearrange(inpaint_images(loaded, autoencoder, images, masks, [args.seed + i for i in range(k)], settings,
                                      batch_size=args.batch_size), "k c h w -> k h w c").numpy()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for path, picture in zip(sample_paths(args.output, k), filled):
        Image.fromarray(picture).save(path)
    columns = {"input": image[None], "mask": repeat(mask * np.uint8(255), "h w -> 1 h w c", c=3),
               "masked": masked_image(image, mask)[None]}
    columns.update({f"sample {i + 1}": picture[None] for i, picture in enumerate(filled)})
    save_titled_columns(columns, args.output)
    log.info("filled %.1f%% of %s (%dx%d) %d time(s): %s and %s", 100 * mask.mean(), args.input, image.shape[1],
             image.shape[0], k, args.output, ", ".join(p.name for p in sample_paths(args.output, k)))
    return args.output


def add_inpaint_command(commands: argparse._SubParsersAction) -> None:
    """Register `inpaint` on the `ldm` parser."""
    p = commands.add_parser("inpaint", help="fill the holes of an image with the inpainting LDM", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sampler_options(p, guidance=False)
    p.add_argument("input", type=Path, metavar="IMAGE", help="image file (RGB, grey, alpha are converted); height and"
                   " width multiples of the autoencoder's f times the UNet's downsampling")
    p.add_argument("--mask", type=Path, required=True, metavar="MASK",
                   help="PNG of the image's size: white (nonzero) = the hole to fill, black = kept")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                   help="output PNG: input | mask | masked | sample 1..K in titled columns; the filled images are"
                        " written beside it as OUT's stem + -1.png ... -K.png (photo.png: photo-1.png, photo-2.png)")
    p.add_argument("--samples", type=positive, default=4, metavar="K", help="filled versions (default: %(default)s)")
    p.add_argument("--batch-size", type=positive, default=16)
    p.set_defaults(handler=inpaint)
