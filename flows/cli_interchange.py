"""`ldm import` and `ldm export`: models in and out of the reference's checkpoint format and diffusers' folders.

    ldm import model.ckpt --from reference --preset cin-ldm8 [--config config.yaml] [--first-stage vq-f8] -o models/
    ldm import ./ldm-celebahq-256 --from diffusers --preset celebahq-ldm4 -o models/
    ldm export models/ --to diffusers -o exported/
    ldm export models/ --to reference -o exported/

MODEL_DIR (`-o` of import, the input of export) holds `autoencoder/` and `ldm/`
(or `ldm_sr/`), as `dvc repro` and `ldm pull` leave them, so `ldm sample`,
`ldm upscale`, `ldm publish` and the `init_from` params read an imported model
like a trained one. A reference `.ckpt` is read without running its pickle.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

log = logging.getLogger("ldm.interchange")
FORMATS = ("reference", "diffusers")
COMPONENTS = ("ldm", "ldm_sr", "ldm_inpaint", "autoencoder")


def _model_params(path: Path) -> dict:
    """`model.params` of the reference's config.yaml (plain YAML: nothing in it runs)."""
    from ldm.errors import InputNotFound, InvalidInput

    if not path.is_file():
        raise InputNotFound(f"--config {path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput(f"--config {path}: not YAML ({exc})") from None
    params = doc.get("model", {}).get("params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise InvalidInput(f"--config {path}: has no model.params; pass the config.yaml that came with the checkpoint")
    return params


def _import(args: argparse.Namespace) -> int:
    from ldm.errors import InvalidInput
    from ldm.interchange.bundle import resolve_preset

    target = resolve_preset(args.preset, args.first_stage)
    if args.source_format == "diffusers":
        from ldm.interchange.diffusers_io import import_diffusers

        if args.config is not None or args.scale_factor is not None:
            raise InvalidInput("--config and --scale-factor are for --from reference; a diffusers folder carries both")
        report = import_diffusers(args.source, target, args.output)
    else:
        from ldm.interchange.reference import import_reference

        config = _model_params(args.config) if args.config is not None else None
        report = import_reference(args.source, target, args.output, config=config, scale_factor=args.scale_factor)
    what = "first stage" if target.ldm is None else f"{target.ldm_folder}/ and autoencoder/"
    extra = "" if target.ldm is None else (
        f"; {report.weights} weights, scale factor {report.scale_factor:g} ({report.scale_factor_from}),"
        f" schedule from {report.schedule_from}")
    print(f"imported {report.tensors} tensors of {args.source} ({report.format}) as preset {report.preset}:"
          f" {what} in {args.output}{extra}")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.target_format == "diffusers":
        from ldm.interchange.diffusers_io import export_diffusers

        out = export_diffusers(args.model_dir, args.output, args.model)
        print(f"exported {args.model_dir} to {out} (diffusers; load it with DiffusionPipeline.from_pretrained, or"
              " each component folder with its class)")
    else:
        from ldm.interchange.reference import export_reference

        out = export_reference(args.model_dir, args.output, lambda doc: yaml.safe_dump(doc, sort_keys=False),
                               args.model)
        print(f"exported {args.model_dir} to {out} with config.yaml beside it (the reference's key names)")
    return 0


def _scale(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_interchange_commands(commands: argparse._SubParsersAction) -> None:
    """Register `import` and `export` on the `ldm` parser."""
    imp = commands.add_parser(
        "import", help="turn a reference .ckpt or a diffusers folder into a model folder",
        description="Read a reference checkpoint (LDM or first stage; EMA weights when it has them) or a diffusers "
                    "folder, check every key against --preset, and write MODEL_DIR (autoencoder/ + ldm/ or ldm_sr/). "
                    "A key the preset does not explain stops the import and is named.")
    imp.add_argument("source", type=Path, metavar="SRC", help="model.ckpt / state dict / .safetensors, or a diffusers folder")
    imp.add_argument("--from", dest="source_format", choices=FORMATS, required=True, help="the format of SRC")
    imp.add_argument("--preset", required=True,
                     help="the architecture of SRC: an LDM preset (e.g. cin-ldm8) or a first-stage preset (e.g. kl-f8)")
    imp.add_argument("--first-stage", default=None, metavar="PRESET",
                     help="LDM presets: the first-stage preset the LDM was trained on, when not the preset's own"
                          " (as train_ldm.first_stage; an import that does not fit says which fits)")
    imp.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL_DIR", help="new folder to write")
    imp.add_argument("--config", type=Path, default=None,
                     help="reference only: the config.yaml beside the checkpoint (schedule, scale factor)")
    imp.add_argument("--scale-factor", type=_scale, default=None,
                     help="reference only: the latent scale factor, when neither the checkpoint nor --config has it")
    imp.set_defaults(handler=_import)
    exp = commands.add_parser(
        "export", help="write a model folder as a diffusers folder or a reference checkpoint",
        description="diffusers: model_index.json + one folder per component (LDMPipeline, LDMSuperResolutionPipeline, "
                    "LDMTextToImagePipeline; class models as components). reference: model.ckpt + config.yaml.")
    exp.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="folder with autoencoder/ and ldm/ or ldm_sr/")
    exp.add_argument("--to", dest="target_format", choices=FORMATS, required=True, help="the format to write")
    exp.add_argument("--model", choices=COMPONENTS, default=None,
                     help="which model of MODEL_DIR (default: ldm, else ldm_sr, else the autoencoder alone)")
    exp.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="folder to write (replaced whole)")
    exp.set_defaults(handler=_export)
