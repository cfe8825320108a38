"""Moving paper-sized models in and out: export and import times, file sizes, bit-exact round trips, and the
UNet of the exported diffusers folder against ours, in one run.

    .venv/bin/python bench/bench_interchange.py                          # cin-ldm8 and celebahq-ldm4, ~3 min
    .venv/bin/python bench/bench_interchange.py --presets txt2img-ldm8   # the 1.45B text model, ~6 GB of RAM

For each LDM preset: random weights (seeded) are written as a model folder, then
exported to diffusers and to the reference's format and imported back (the CLI's
library calls); the row gives each step's wall time, the files' size, whether
every tensor came back bit for bit, and the max |ours - diffusers| of the UNet
on one input (fp32; diffusers' `from_pretrained` on the exported folder, the
peer loading it). Run it alone: the machine's cores are shared.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from ldm.autoencoder.model import Autoencoder
from ldm.interchange.bundle import ImportReport, read_model_dir, resolve_preset, write_model_dir
from ldm.interchange.diffusers_io import export_diffusers, import_diffusers
from ldm.interchange.reference import export_reference, import_reference
from ldm.latent_diffusion.model import LatentDiffusionModel


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    model = read_model_dir(folder, None)
    return {**{f"ae.{k}": v for k, v in model.autoencoder.state_dict().items()}, **model.ldm.model.state_dict()}


def _timed(work, *args, **kwargs) -> float:
    start = time.perf_counter()
    work(*args, **kwargs)
    return round(time.perf_counter() - start, 1)


def _unet_difference(models: Path, exported: Path) -> float:
    import diffusers

    ours = read_model_dir(models, None).ldm.model
    cfg = ours.config
    cls = "UNet2DConditionModel" if cfg.unet.attention == "cross" else "UNet2DModel"
    theirs = getattr(diffusers, cls).from_pretrained(exported / "unet").eval()
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(1, cfg.unet.in_channels, *cfg.latent_size, generator=g), torch.tensor([500])
    context = torch.randn(1, 77, cfg.unet.context_dim, generator=g) if cfg.unet.attention == "cross" else None
    with torch.no_grad():
        a = ours.unet(z, t, context)
        b = theirs(z, t, **({"encoder_hidden_states": context} if context is not None else {})).sample
    return float((a - b).abs().max() / a.abs().max())


def run(preset: str, root: Path) -> dict:
    target = resolve_preset(preset)
    torch.manual_seed(0)
    tokenizer = None
    if target.ldm.conditioning.kind == "text":
        from ldm.conditioning.tokenizer import load_bert_tokenizer

        tokenizer = load_bert_tokenizer()
    model, autoencoder = LatentDiffusionModel(target.ldm), Autoencoder(target.autoencoder)
    with torch.no_grad():  # the UNet's zero-initialised output layers would make both outputs 0
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    models = root / preset / "models"
    write_model_dir(models, target, autoencoder.state_dict(), ImportReport("bench", "random", preset),
                    model.state_dict(), tokenizer)
    row = {"preset": preset, "parameters": model.num_parameters() + autoencoder.num_parameters()}
    del model, autoencoder
    row["export_diffusers_s"] = _timed(export_diffusers, models, root / preset / "diffusers")
    row["import_diffusers_s"] = _timed(import_diffusers, root / preset / "diffusers", target, root / preset / "back-d")
    row["export_reference_s"] = _timed(export_reference, models, root / preset / "reference", yaml.safe_dump)
    row["import_reference_s"] = _timed(import_reference, root / preset / "reference" / "model.ckpt", target,
                                       root / preset / "back-r")
    row["size_mb"] = {name: round(_size(root / preset / name) / 1e6) for name in ("models", "diffusers", "reference")}
    ours = _tensors(models)
    for name in ("back-d", "back-r"):
        back = _tensors(root / preset / name)
        row[f"bit_exact_{name[-1]}"] = ours.keys() == back.keys() and all(torch.equal(ours[k], back[k]) for k in ours)
    row["unet_rel_max_diff"] = _unet_difference(models, root / preset / "diffusers")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cin-ldm8", "celebahq-ldm4"])
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(preset, Path(tmp)) for preset in args.presets]
    for row in rows:
        print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
