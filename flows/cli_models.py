"""`ldm sample` and `ldm upscale`: images from a trained (or pulled) model folder, every setting on the command line.

    ldm sample --models models -n 16 --class 3 --sampler ddim --steps 50 --guidance 2.0 --seed 0 -o samples/
    ldm sample --models models -n 4 --class 3 --size 128x128 --guide samples/000003.png -o samples/guided
    ldm sample --models models -n 4 --map street.png --size 128x192 -o samples/street
    ldm sample --models models -n 4 --layout boxes.json --index 2 -o samples/layout
    ldm upscale --models models photo.jpg -o photo_x4.png --tile 64

`--models` holds `autoencoder/` beside `ldm/` (sample), `ldm_layout/` (sample --layout)
or `ldm_sr/` (upscale), as `dvc repro` writes them under models/ and `ldm pull` brings
them back. `sample --layout` reads a layout file (ldm.data.layouts: one layout or a list,
`--index` picks one) and draws it with the layout-to-image model. `sample
--size` draws at other sizes than training (convolutional sampling, Sec. C.1,
Fig. 13, 23, 24); `--guide` pulls samples towards a low-resolution image by L2
guiding (Appendix B, Fig. 12); `--map` draws from a label map with the semantic
model `ldm_semantic/` (Sec. 4.3.2), the map read in the model's label-map format
and resized (nearest) to `--size`, which defaults to the map's. `upscale` super-resolves any image with the
LDM-BSR model; inputs larger than `--tile` (LR pixels) are cut into overlapping
tiles, each sampled at its own size, and blended with linear ramps.
The model code is imported when a command runs, never to print `--help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from flows.cli_sampling import add_sampler_options, positive, read_image, sampler_settings
from ldm.diffusion.config import ImageGuideSettings
from ldm.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np

    from ldm.data.layouts import Layout
    from ldm.latent_diffusion.checkpoint import LoadedLDM
    from ldm.latent_diffusion.generate import ImageGuide

log = logging.getLogger("ldm.sample")
GUIDE_DEFAULTS = ImageGuideSettings()


def _check_condition(kind: str, n_classes: int, args: argparse.Namespace) -> None:
    if args.layout is not None and kind != "layout":
        raise InvalidInput(f"--layout is for layout-to-image models; this model is {kind}-conditioned")
    if args.prompt is not None and kind != "text":
        raise InvalidInput(f"--prompt is for text models; this model is {kind}-conditioned"
                           + (" (use --class)" if kind == "class" else ""))
    if args.class_id is not None and kind != "class":
        raise InvalidInput(f"--class is for class-conditional models; this model is {kind}-conditioned")
    if kind == "class" and args.class_id is None:
        raise InvalidInput(f"this model is class-conditional: pass --class 0..{n_classes - 1}")
    if kind == "text" and args.prompt is None:
        raise InvalidInput("this model is text-conditional: pass --prompt \"...\"")
    if kind == "concat":
        raise InvalidInput("this is a super-resolution model: use `ldm upscale`")
    if kind == "semantic":
        raise InvalidInput("this is a semantic synthesis model: pass --map LABEL_MAP.png")


def _read_layout(path: Path, index: int, n_classes: int) -> Layout:
    """Layout `index` of a layout file; a missing file, a bad record, an index or class id out of range is one line
    naming the file."""
    from ldm.data.layouts import load_layouts
    from ldm.errors import InputNotFound

    if not path.is_file():
        raise InputNotFound(f"--layout {path}: no such layout file")
    layouts = load_layouts(path)  # InvalidInput naming the file and the record
    if not 0 <= index < len(layouts):
        raise InvalidInput(f"--layout {path}: --index {index} is out of range; the file holds {len(layouts)} "
                           f"layout(s), index 0..{len(layouts) - 1}")
    bad = sorted({box.class_id for box in layouts[index].boxes if box.class_id >= n_classes})
    if bad:
        raise InvalidInput(f"--layout {path}: layout {index} has class ids {bad}; the model knows {n_classes} "
                           f"classes, 0..{n_classes - 1}")
    return layouts[index]


def _size(text: str | None) -> tuple[int, int] | None:
    """--size HxW -> (H, W) pixels, None when not given."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if match is None:
        raise InvalidInput(f"--size {text!r}: give HEIGHTxWIDTH in pixels, e.g. 128x96")
    return int(match[1]), int(match[2])


def _guide_settings(args: argparse.Namespace) -> ImageGuideSettings | None:
    if args.guide is None:
        if args.guide_scale is not None:
            raise InvalidInput("--guide-scale needs --guide IMAGE")
        return None
    try:
        return ImageGuideSettings(scale=GUIDE_DEFAULTS.scale if args.guide_scale is None else args.guide_scale)
    except ValueError as exc:
        raise InvalidInput(f"--guide-scale: {exc}") from None


def sample(args: argparse.Namespace) -> Path:
    """N images of one class / prompt (or unconditional) as PNGs, a grid and settings.json in args.output."""
    from PIL import Image

    from ldm.autoencoder.checkpoint import load_autoencoder
    from ldm.data.grids import save_grid
    from ldm.latent_diffusion.checkpoint import load_ldm
    from ldm.latent_diffusion.generate import latent_size, sample_images
    from ldm.model_dir import LDM, LDM_LAYOUT
    from ldm.reports import write_json

    if args.map is not None:
        return sample_map(args)
    settings, size, guide_settings = sampler_settings(args), _size(args.size), _guide_settings(args)
    guide_image = read_image(args.guide, "--guide ") if guide_settings is not None else None
    autoencoder, _ = load_autoencoder(args.models / "autoencoder")
    loaded = load_ldm(args.models / (LDM if args.layout is None else LDM_LAYOUT))
    cfg, f = loaded.model.config, autoencoder.downsample_factor
    _check_condition(cfg.conditioning.kind, cfg.conditioning.n_classes, args)
    layout = _read_layout(args.layout, args.index, cfg.conditioning.n_classes) if args.layout is not None else None
    if layout is not None:  # the paper samples layouts unguided: there is no null layout to guide against
        settings = dataclasses.replace(settings, guidance_scale=1.0)
    latent = latent_size(loaded.model, f, size, "--size")
    record = _size_record(loaded, autoencoder.config.kind, f, latent)
    guide = _guide(guide_image, guide_settings, tuple(record["size"]), args.guide)
    seeds = [args.seed + i for i in range(args.n)]
    kind = cfg.conditioning.kind
    batch = sample_images(loaded, autoencoder.decode, seeds, settings, batch_size=args.batch_size, size=latent,
                          guide=guide, labels=[args.class_id] * args.n if kind == "class" else None,
                          prompts=[args.prompt] * args.n if kind == "text" else None,
                          layouts=[layout] * args.n if layout is not None else None)  # (N, 3, H, W) uint8
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    for seed, image in zip(seeds, batch):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(out / f"{seed:06d}.png")
    save_grid(batch, out / "grid.png", nrow=min(8, len(batch)))
    guide_record = None if guide is None else {"image": str(args.guide), "resolution": list(guide.image.shape[-2:]),
                                               **guide.settings.to_dict()}
    layout_record = None if layout is None else {"file": str(args.layout), "index": args.index, "key": layout.key,
                                                 "boxes": len(layout.boxes)}
    write_json(out / "settings.json", {"model": str(args.models / (LDM if layout is None else LDM_LAYOUT)),
                                       "preset": loaded.card.preset, "n": args.n, "class": args.class_id,
                                       "prompt": args.prompt, "layout": layout_record, "seeds": [seeds[0], seeds[-1]],
                                       **record, **settings.to_dict(), "image_guide": guide_record})
    log.info("wrote %d samples of %dx%d and grid.png to %s", args.n, *record["size"], out)
    return out


def sample_map(args: argparse.Namespace) -> Path:
    """N images from one label map with the semantic model (`ldm_semantic/`), PNGs, a grid and settings.json."""
    import torch
    from PIL import Image

    from ldm.autoencoder.checkpoint import load_autoencoder
    from ldm.data.grids import save_grid
    from ldm.data.label_maps import read_label_map, resize_nearest
    from ldm.latent_diffusion.checkpoint import load_ldm
    from ldm.latent_diffusion.semantic import check_label_maps, check_semantic_model, sample_from_label_maps
    from ldm.model_dir import LDM_SEMANTIC
    from ldm.reports import write_json

    if args.class_id is not None or args.prompt is not None or args.guide is not None:
        raise InvalidInput("--map draws from a label map alone; leave out --class, --prompt and --guide")
    settings, folder = sampler_settings(args), args.models / LDM_SEMANTIC
    autoencoder, _ = load_autoencoder(args.models / "autoencoder")
    loaded = load_ldm(folder)
    check_semantic_model(loaded, str(folder))
    fmt = loaded.card.label_format
    if fmt is None:
        raise InvalidInput(f"{folder}: its config.json names no label_format; re-train it with train_semantic")
    label_map = read_label_map(args.map, fmt)  # [H x W] ids
    size = _size(args.size) or label_map.shape
    label_map = resize_nearest(label_map, size) if tuple(size) != label_map.shape else label_map
    maps = torch.from_numpy(label_map)[None].repeat(args.n, 1, 1)  # (N, H, W)
    f = autoencoder.downsample_factor
    record = _size_record(loaded, autoencoder.config.kind, f, check_label_maps(loaded, maps, f, f"--map {args.map}"))
    seeds = [args.seed + i for i in range(args.n)]
    batch = sample_from_label_maps(loaded, autoencoder.decode, maps, seeds, settings, f=f, batch_size=args.batch_size,
                                   source=f"--map {args.map}")  # (N, 3, H, W) uint8
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    for seed, image in zip(seeds, batch):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(out / f"{seed:06d}.png")
    save_grid(batch, out / "grid.png", nrow=min(8, len(batch)))
    write_json(out / "settings.json", {"model": str(folder), "preset": loaded.card.preset, "n": args.n,
                                       "map": str(args.map), "label_format": fmt.to_dict(), "seeds": [seeds[0], seeds[-1]],
                                       **record, **settings.to_dict()})
    log.info("wrote %d samples of %dx%d from %s to %s", args.n, *record["size"], args.map, out)
    return out


def _size_record(loaded: LoadedLDM, first_stage_kind: str, f: int, latent: tuple[int, int]) -> dict:
    """Sizes and the latent scale for settings.json; the C.1 note logged when the size is not the training one."""
    from ldm.latent_diffusion.generate import rescaling_warning

    trained = tuple(loaded.model.config.latent_size)
    record = {"size": [latent[0] * f, latent[1] * f], "latent_size": list(latent),
              "trained_size": [trained[0] * f, trained[1] * f], "first_stage": first_stage_kind,
              "scale_factor": loaded.scale_factor}  # the training scale: latents keep its SNR (Sec. C.1)
    if latent != trained:
        log.info("convolutional sampling at %dx%d px (latents %dx%d; trained at %dx%d px) with the training"
                 " scale_factor %g (Sec. C.1)", *record["size"], *latent, *record["trained_size"], loaded.scale_factor)
        warning = rescaling_warning(first_stage_kind, loaded.scale_factor)
        if warning:
            log.warning(warning)
    return record


def _guide(image: np.ndarray | None, settings: ImageGuideSettings | None, size: tuple[int, int],
           path: Path) -> ImageGuide | None:
    """The guide image resized (bicubic) to the sample size / settings.downsample, as an ImageGuide; None: none."""
    if image is None or settings is None:
        return None
    from ldm.data.images import resize_bicubic
    from ldm.data.loader import to_tensor
    from ldm.latent_diffusion.generate import ImageGuide

    resolution = settings.guide_size(size)
    log.info("guiding towards %s (%dx%d px, resized to %dx%d) with scale %g", path, image.shape[0], image.shape[1],
             *resolution, settings.scale)
    return ImageGuide(to_tensor(resize_bicubic(image, resolution)), settings)


def upscale(args: argparse.Namespace) -> Path:
    """Super-resolve one image file with the LDM-BSR model, tiled when larger than --tile."""
    from PIL import Image

    from ldm.autoencoder.checkpoint import load_autoencoder
    from ldm.latent_diffusion.checkpoint import load_ldm
    from ldm.latent_diffusion.upscale import check_sr_model, upscale_image

    settings = sampler_settings(args)
    autoencoder, _ = load_autoencoder(args.models / "autoencoder")
    loaded = load_ldm(args.models / "ldm_sr")
    check_sr_model(loaded, str(args.models / "ldm_sr"))
    image = read_image(args.input, "")
    result = upscale_image(loaded, autoencoder.decode, image, settings=settings, seed=args.seed, tile=args.tile,
                           overlap=args.overlap, downsample=autoencoder.downsample_factor)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result).save(args.output)
    log.info("upscaled %s (%dx%d) to %s (%dx%d)", args.input, image.shape[1], image.shape[0], args.output,
             result.shape[1], result.shape[0])
    return args.output


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """Register `sample` and `upscale` on the `ldm` parser."""
    s = commands.add_parser("sample", help="draw images from a trained LDM", description=sample.__doc__)
    add_sampler_options(s, guidance=True)
    s.add_argument("-n", type=positive, default=16, help="number of images (default: %(default)s)")
    s.add_argument("--class", dest="class_id", type=int, default=None, help="class id (class-conditional models)")
    s.add_argument("--prompt", default=None, help="text prompt (text models)")
    s.add_argument("--layout", type=Path, default=None, metavar="BOXES_JSON",
                   help="layout file (one layout or a list; see the README) for the layout-to-image model in"
                        " MODEL_DIR/ldm_layout")
    s.add_argument("--index", type=int, default=0, help="which layout of a --layout list (default: %(default)s)")
    s.add_argument("--batch-size", type=positive, default=16)
    s.add_argument("--size", default=None, metavar="HxW",
                   help="image size in pixels, e.g. 128x96: multiples of the autoencoder's f times the UNet's"
                        " downsampling (default: the training size); convolutional sampling, Sec. C.1")
    s.add_argument("--map", type=Path, default=None, metavar="LABEL_MAP",
                   help="a label map PNG (the semantic model's format, as its config.json's label_format says):"
                        " samples from models' ldm_semantic/, of the map's size or --size (the map resized nearest)")
    s.add_argument("--guide", type=Path, default=None, metavar="IMAGE",
                   help="L2-guide towards this image (Appendix B, Fig. 12), resized bicubic to the sample size /"
                        f" {GUIDE_DEFAULTS.downsample}; the samples' bicubic {GUIDE_DEFAULTS.downsample}x"
                        " downsampling is compared with it")
    s.add_argument("--guide-scale", type=float, default=None, metavar="S",
                   help=f"weight of the guiding term, 1 / sigma^2 of Eq. 17 (default: {GUIDE_DEFAULTS.scale})")
    s.add_argument("-o", "--output", type=Path, required=True, help="output folder for PNGs, grid.png, settings.json")
    s.set_defaults(handler=sample)
    u = commands.add_parser("upscale", help="super-resolve an image with the LDM-BSR model", description=upscale.__doc__)
    add_sampler_options(u, guidance=False)
    u.add_argument("input", type=Path, help="image file (any size; RGB, grey, alpha are converted)")
    u.add_argument("-o", "--output", type=Path, required=True, help="output PNG")
    u.add_argument("--tile", type=positive, default=64, help="LR tile side in pixels (default: %(default)s)")
    u.add_argument("--overlap", type=int, default=16, help="LR pixels shared by neighbouring tiles (default: %(default)s)")
    u.set_defaults(handler=upscale)
