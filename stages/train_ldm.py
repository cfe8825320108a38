"""Stages `train_ldm`, `train_sr`, `train_inpaint`, `train_semantic` and `train_layout`: cached latents -> a latent
diffusion model (Eq. 2, Sec. 3.3, D.1).

Trains the section's preset with Lightning on the cached latents multiplied by
the scale factor measured in the cache's `stats.json` (never a constant); the
factor becomes a field of the model's config. `--section train_sr` trains on the
pair latents (`pairs/` of the cache), the LR image concatenated to the input;
`--section train_inpaint` on the image latents with their inpainting extras (the
masked image's latent and the latent mask, cached with `cache_latents.masks`),
both concatenated to the input (Sec. 4.5).
`--section train_semantic` on the image latents with their label maps (cache_latents.label_maps),
the label map through the model's spatial rescaler (Sec. 4.3.2).
`--section train_layout` on the image latents with their layouts (boxes, Sec. 4.3.1).
Writes the model folder (the EMA weights, `config.json` with the model config and
where it came from, the tokenizer of a text model), a metrics JSON and a loss CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ldm.autoencoder.checkpoint import autoencoder_sha256, read_card
from ldm.conditioning.tokenizer import build_tokenizer
from ldm.data import remote
from ldm.data.label_maps import LABEL_FORMAT, LabelMapFormat
from ldm.data.latents import latent_loader
from ldm.data.loader import ShardData, rank_shards, shard_urls
from ldm.data.location import Location, join
from ldm.data.schema import LatentSample
from ldm.data.shards import read_shards, shards_sha256
from ldm.data.survey import Survey, survey
from ldm.errors import InvalidInput
from ldm.latent_diffusion.checkpoint import LDMCard, init_ldm, save_ldm
from ldm.latent_diffusion.config import LDMConfig
from ldm.latent_diffusion.lightning_module import LDMTrainingModule
from ldm.latent_diffusion.model import LatentDiffusionModel
from ldm.latents.stats import PAIRS, LatentStats, check_shard, read_stats
from ldm.model_dir import LDM, LDM_INPAINT, LDM_LAYOUT, LDM_SEMANTIC, LDM_SR
from ldm.reports import write_json
from ldm.storage.settings import S3Settings
from ldm.trainer import fit, make_trainer, resume_path, write_curves
from stages.cli import arg, stage_main
from stages.params import Params, TrainLDMParams, lineage, recipe_lineage, to_config
from stages.params.models import PlacementParams

log = logging.getLogger("stages.train_ldm")


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    latents: Location = arg("the latent cache folder or s3://bucket/prefix (shards + stats.json)")
    autoencoder: Path = arg("the autoencoder that encoded the cache")
    model: Path = arg("output folder: model.safetensors + config.json (+ tokenizer/)")
    checkpoints: Path = arg("resumable Lightning checkpoints (kept across runs)")
    metrics: Path = arg("output JSON: losses and lineage")
    curves: Path = arg("output CSV: training loss per step")
    section: Literal["train_ldm", "train_sr", "train_inpaint", "train_semantic", "train_layout"] = arg(
        "params section: train_ldm (image latents), train_sr (SR pairs), train_inpaint (latents with masks), "
        "train_semantic (latents + label maps) or train_layout (image latents with boxes)")


# the MODEL_DIR folder each section writes
MODEL_NAMES = {"train_ldm": LDM, "train_sr": LDM_SR, "train_inpaint": LDM_INPAINT, "train_semantic": LDM_SEMANTIC,
               "train_layout": LDM_LAYOUT}


def _config(params: Params, section: str, stats: LatentStats, first: LatentSample, ae_hash: str) -> LDMConfig:
    """The section's model (`Params.ldm_config`) with the cache's scale factor, checked against the cache."""
    p: TrainLDMParams = getattr(params, section)
    config = dataclasses.replace(params.ldm_config(section), scale_factor=stats.scale_factor)
    if stats.autoencoder_sha256 != ae_hash:
        raise InvalidInput(f"the latent cache was encoded by autoencoder {stats.autoencoder_sha256[:12]} but "
                           f"{section} trains with {ae_hash[:12]}; re-run `dvc repro cache_latents`")
    cached = stats.autoencoder_preset
    if cached and config.first_stage != cached:
        raise InvalidInput(f"the latent cache holds {cached!r} latents but autoencoder.preset is "
                           f"{config.first_stage!r}; re-run `dvc repro cache_latents`")
    if section == "train_inpaint" and first.masked is None:
        raise InvalidInput(f"the latent cache holds no masked-image latents for train_inpaint (sample {first.key}); "
                           "set cache_latents.masks: true and re-run `dvc repro cache_latents`")
    if tuple(first.latent.shape) != config.latent_shape:
        raise InvalidInput(f"{section}.preset {p.preset!r} expects latents {config.latent_shape} (C, h, w) at "
                           f"data.resolution, the cache holds {tuple(first.latent.shape)}; re-run `dvc repro cache_latents`")
    return config


def _check_labels(config: LDMConfig, shards: list[str], section: str) -> list[str]:
    """Class ids within range, captions, label maps and layouts present, as the conditioning needs; the captions come back."""
    kind, captions, top, box_top, without_layout = config.conditioning.kind, [], -1, -1, 0
    for sample in map(LatentSample.decode, read_shards(shards)):
        top = max(top, sample.label)
        captions.append(sample.caption)
        if sample.layout is None:
            without_layout += 1
        else:
            box_top = max([box_top, *(box.class_id for box in sample.layout.boxes)])
        if kind == "semantic":
            _check_label_map(sample, config, section)
    if kind == "class" and top >= config.conditioning.n_classes:
        raise InvalidInput(f"the cache has class ids up to {top}, {section}.preset {config.conditioning.n_classes} "
                           f"classes; set {section}.n_classes: {top + 1}")
    if kind == "text" and not any(c.strip() for c in captions):
        raise InvalidInput(f"{section}.preset is text-conditioned but every caption in the cache is empty")
    if kind == "layout" and without_layout:
        raise InvalidInput(f"{without_layout} of {len(captions)} cached latents have no layout; set "
                           "cache_latents.label_maps: true and re-run `dvc repro cache_latents` (boxes from label_maps)")
    if kind == "layout" and box_top >= config.conditioning.n_classes:
        raise InvalidInput(f"the cache's layouts have box class ids up to {box_top}, {section}.preset "
                           f"{config.conditioning.n_classes} classes; set {section}.n_classes: {box_top + 1}")
    return captions


def _check_label_map(sample: LatentSample, config: LDMConfig, section: str) -> None:
    """A semantic model's sample has a label map whose ids its classes cover."""
    if sample.label_map is None:
        raise InvalidInput(f"{section} trains on label maps but latent {sample.key} has none; set "
                           "cache_latents.label_maps: true and re-run `dvc repro cache_latents`")
    n_classes, top = config.conditioning.n_classes, int(sample.label_map.max())
    if top >= n_classes:
        raise InvalidInput(f"latent {sample.key}: label map ids up to {top}, {section} has {n_classes} classes; "
                           f"set {section}.n_classes: {top + 1}")


def _label_format(first: LatentSample, config: LDMConfig) -> LabelMapFormat | None:
    """A semantic model's label-map format, as the label_maps stage recorded it with the cached maps."""
    if config.conditioning.kind != "semantic":
        return None
    return LabelMapFormat.from_dict(first.meta[LABEL_FORMAT])


def _model(p: TrainLDMParams, section: str, config: LDMConfig, tokenizer: Any) -> tuple[LatentDiffusionModel, str, Any]:
    """Fresh weights, or those of `init_from` (and a text model's own vocabulary): (model, init hash, tokenizer)."""
    if not p.init_from:
        return LatentDiffusionModel(config), "", tokenizer
    model, init_hash, init_tokenizer = init_ldm(Path(p.init_from), MODEL_NAMES[section], config, f"{section}.init_from")
    return model, init_hash, init_tokenizer or tokenizer  # a text model keeps the vocabulary its weights were trained with


def _data(p: TrainLDMParams, train: list[str], val: list[str], scale: float) -> ShardData:
    settings = p.loader_settings()

    def make_loader(urls: list[str], training: bool) -> DataLoader:
        if training:
            return latent_loader(urls, scale_factor=scale, batch_size=p.batch_size, settings=settings,
                                 shuffle=p.shuffle_buffer, seed=p.seed, endless=True)
        return latent_loader(urls, scale_factor=scale, batch_size=p.batch_size, settings=settings)

    return ShardData(train, val, make_loader)


def _distributed(p: TrainLDMParams, trainer: pl.Trainer, lr: float, accumulate: int) -> dict:
    """Where the run went and the batch and learning rate that follow (logged, and kept in the metrics)."""
    world = trainer.world_size
    out = {"world_size": world, "num_nodes": trainer.num_nodes, "devices_per_node": world // trainer.num_nodes,
           "strategy": type(trainer.strategy).__name__, "batch_per_device": p.batch_size, "accumulate": accumulate,
           "global_batch": p.batch_size * world * accumulate, "effective_lr": lr,
           "lr_rule": "lr x batch x devices x accumulate" if p.recipe.scale_lr else "lr (scale_lr: false)"}
    log.info("%d rank(s) (%d node(s) x %d) x batch %d x accumulate %d = global batch %d; lr %.3g (%s)", world,
             trainer.num_nodes, out["devices_per_node"], p.batch_size, accumulate, out["global_batch"], lr, out["lr_rule"])
    return out


def _loss_drop(curve: Path) -> dict:
    """Mean training loss over the first and the last 10% of logged steps."""
    losses = [float(row["loss"]) for row in csv.DictReader(curve.open())]
    if len(losses) < 10:
        return {"first_10pct": None, "last_10pct": None, "ratio": None}
    k = max(1, len(losses) // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return {"first_10pct": first, "last_10pct": last, "ratio": last / first}


def _shards(params: Params, paths: Paths, stats: LatentStats) -> tuple[list[str], list[str], Survey]:
    """The train and val latent shards this section reads (`data.on_corrupt`), and their record for the metrics."""
    folder = join(paths.latents, PAIRS) if paths.section == "train_sr" else paths.latents
    train, val = shard_urls(folder, "train"), shard_urls(folder, "val")
    corrupt = survey(train + val, params.data.on_corrupt, verify=partial(check_shard, stats, paths.latents))
    return corrupt.keep(train), corrupt.keep(val), corrupt


def run(params: Params, paths: Paths) -> dict | None:
    """Train, export and report; the metrics written to `paths.metrics` come back (None on ranks other than 0)."""
    section = paths.section
    p: TrainLDMParams = getattr(params, section)
    torch.set_num_threads(p.threads)
    remote.configure(to_config(params.storage.s3, S3Settings))
    stats = read_stats(paths.latents)
    train, val, corrupt = _shards(params, paths, stats)
    ae_hash = autoencoder_sha256(paths.autoencoder)
    first = LatentSample.decode(next(read_shards(train[:1])))
    config = _config(params, section, stats, first, ae_hash)
    captions = _check_labels(config, train, section)
    tokenizer = (build_tokenizer(config.conditioning, captions, paths.checkpoints.parent / "tokenizers")
                 if config.conditioning.kind == "text" else None)
    data_hash = shards_sha256(train + val)
    pl.seed_everything(p.seed, workers=True, verbose=False)
    model, init_hash, tokenizer = _model(p, section, config, tokenizer)
    train_config = p.train_config()
    module = LDMTrainingModule(model, train_config, tokenizer, batch_size=p.batch_size)
    logs = paths.checkpoints / "logs"
    trainer = make_trainer(steps=p.steps, done=lambda: module.global_step, val_every=min(p.val_every, p.steps),
                           checkpoints=paths.checkpoints, checkpoint_every=p.checkpoint_every, logs=logs,
                           precision=p.precision, placement=p.placement(), grad_clip=p.recipe.grad_clip,
                           accumulate=train_config.accumulate)
    rank_shards(train, 0, trainer.world_size)  # every rank needs a shard: say so before any process starts
    lr = train_config.effective_lr(p.batch_size, trainer.world_size)
    distributed = _distributed(p, trainer, lr, train_config.accumulate)
    # What the weights depend on: the global batch, not how it is split over ranks or loader workers.
    loop = p.model_dump(mode="json", exclude={"batch_size", "threads", "loader", "resume", *PlacementParams.model_fields})
    settings = {"section": section, "params": loop, "global_batch": distributed["global_batch"], "data_sha256": data_hash,
                "scale_factor": config.scale_factor, "init_sha256": init_hash}
    ckpt = resume_path(paths.checkpoints, settings, p.resume)
    start = time.perf_counter()
    fit(trainer, module, _data(p, train, val, config.scale_factor), ckpt)
    seconds = time.perf_counter() - start
    if trainer.global_rank != 0:
        return None  # rank 0 writes the outputs
    write_curves(logs / "metrics.csv", paths.curves, {"loss": "train/loss"})
    val_logs = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    model = (module.ema if module.ema is not None else module.model).eval()
    inputs = {"latents": data_hash, "autoencoder": ae_hash, **({"init_from": init_hash} if init_hash else {})}
    line = lineage({section: p}, inputs, recipe=recipe_lineage(params, section, lr))
    sr_scale = 0
    if config.conditioning.kind == "concat" and first.lr is not None:  # HR side / LR side: what `ldm upscale` multiplies by
        f = read_card(paths.autoencoder).downsample_factor
        sr_scale = config.latent_size[0] * f // first.lr.shape[0]
    prompts = tuple(c for c, _ in Counter(c for c in captions if c.strip()).most_common(64)) if tokenizer else ()
    save_ldm(paths.model, model, LDMCard(
        model=config, preset=p.preset, weights="ema" if module.ema is not None else "raw", autoencoder_sha256=ae_hash,
        autoencoder_preset=stats.autoencoder_preset, sr_scale=sr_scale, captions=prompts, lineage=line,
        label_format=_label_format(first, config)), tokenizer)
    metrics = {"preset": p.preset, "parameters": model.num_parameters(),
               "train": {"batches": int(module.global_step), "seconds": round(seconds, 1),
                         "resumed_from": str(ckpt) if ckpt else None, "skipped_steps": module.bad_steps.skipped},
               "distributed": distributed, "loss": _loss_drop(paths.curves), "val": val_logs, "corrupt": corrupt.to_dict(),
               "lineage": line}
    write_json(paths.metrics, metrics)
    log.info("%s: %d batches in %.0f s; train loss %s -> %s", section, metrics["train"]["batches"], seconds,
             metrics["loss"]["first_10pct"], metrics["loss"]["last_10pct"])
    return metrics


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
