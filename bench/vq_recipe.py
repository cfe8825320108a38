"""The VQ first stage beside the KL one on the CPU recipe: val PSNR, SSIM and codebook health, in one run.

    .venv/bin/python bench/vq_recipe.py                       # kl-f4-tiny and vq-f4-tiny: two trainings of ~4 min on 2 cores
    .venv/bin/python bench/vq_recipe.py --presets vq-f4-tiny --recipe vq_restart_every=0  # no restarts
    .venv/bin/python bench/vq_recipe.py --images data/images  # reuse shards of the download stage

Cuts the default data once (the `download` stage with params.yaml's `data` and
`download` sections: 64x64 crops of the embedded photographs) unless `--images`
names a shard folder, then runs the `train_autoencoder` stage on it for each
preset with that preset's recipe (300 batches of 16, seed 0; `--recipe KEY=VALUE`
overrides a recipe field for every preset) and prints one row per preset: val
PSNR, SSIM, codebook size, perplexity and dead-code fraction (VQ), the
report's warnings, and the training time. `--out` also writes the rows as JSON.

What it checks: a VQ-regularised `vq-f4-tiny` (EMA codebook, dead-code restarts)
trains to within 1 dB val PSNR of `kl-f4-tiny` in the same budget, with no
codebook-collapse warning. Run it alone: the machine's cores are shared.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import yaml

from stages import download, train_autoencoder
from stages.params import parse_params, read_raw

ROOT = Path(__file__).resolve().parent.parent
DATA_SECTIONS = ("data", "download")  # what the shards depend on, taken from params.yaml


def _value(text: str) -> Any:
    """A --recipe value as YAML reads it (numbers, booleans, strings)."""
    return yaml.safe_load(text)


def _recipe_overrides(items: list[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--recipe takes KEY=VALUE (a train_autoencoder.recipe field), got {item!r}")
        overrides[key] = _value(value)
    return overrides


def _shards(raw: dict[str, Any], work: Path) -> Path:
    """The download stage's train/val shards of params.yaml's data, written under `work`."""
    params = parse_params({name: raw[name] for name in DATA_SECTIONS if name in raw})
    images = work / "images"
    download.run(params, download.Paths(images, work / "download.json", work / "download-cache"))
    return images


def _train(raw: dict[str, Any], preset: str, recipe: dict[str, Any], images: Path, work: Path) -> dict[str, Any]:
    """One `train_autoencoder` run of `preset` on its own recipe (plus `recipe`); its metrics."""
    section = {"threads": 2, "recipe": recipe}
    params = parse_params({"data": raw.get("data", {}), "autoencoder": {"preset": preset}, "train_autoencoder": section})
    out = work / preset
    paths = train_autoencoder.Paths(images, out / "model", out / "checkpoints", out / "metrics.json",
                                    out / "curves.csv", out / "grid.png")
    return train_autoencoder.run(params, paths)


def _row(preset: str, metrics: dict[str, Any]) -> dict[str, Any]:
    codebook = metrics.get("codebook") or {}
    return {"preset": preset, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
            "codebook_size": codebook.get("size"), "perplexity": codebook.get("perplexity"),
            "dead_fraction": codebook.get("dead_fraction"), "seconds": metrics["train"]["seconds"],
            "warnings": metrics["warnings"]}


def _print(rows: list[dict[str, Any]]) -> None:
    print(f"{'preset':<14} {'PSNR dB':>8} {'SSIM':>7} {'|Z|':>6} {'perplexity':>10} {'dead':>6} {'seconds':>8}")
    for r in rows:
        vq = r["codebook_size"] is not None
        size, ppl, dead = (r["codebook_size"], r["perplexity"], f"{r['dead_fraction']:.1%}") if vq else ("-", "-", "-")
        print(f"{r['preset']:<14} {r['psnr']:>8.2f} {r['ssim']:>7.4f} {size:>6} {ppl:>10} {dead:>6} {r['seconds']:>8.0f}")
        for warning in r["warnings"]:
            print(f"  warning: {warning}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["kl-f4-tiny", "vq-f4-tiny"], help="autoencoder presets")
    parser.add_argument("--recipe", nargs="*", default=[], metavar="KEY=VALUE",
                        help="train_autoencoder.recipe overrides for every preset, e.g. vq_restart_every=0")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="source of the data sections")
    parser.add_argument("--images", type=Path, help="existing {train,val}-NNNNNN.tar shards (default: cut them)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    raw, recipe = read_raw(args.params), _recipe_overrides(args.recipe)
    with tempfile.TemporaryDirectory(prefix="vq-recipe-") as tmp:
        work = Path(tmp)
        images = args.images or _shards(raw, work)
        rows = [_row(preset, _train(raw, preset, recipe, images, work)) for preset in args.presets]
    _print(rows)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
