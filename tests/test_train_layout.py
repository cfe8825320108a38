"""Training layout-to-image models: the batch's layout JSON tokenised by the model's own box tokenizer, the
`train_layout` params section, and the stage on a latent cache whose samples carry layouts."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from ldm.data.layouts import Box, Layout
from ldm.data.schema import LatentSample
from ldm.data.shards import read_shards, write_shard
from ldm.errors import InvalidInput
from ldm.latent_diffusion import LatentDiffusionModel, LDMTrainingModule, TrainConfig, load_ldm, preset_config
from stages import evaluate_layout, train_ldm
from stages.params import ParamsError, parse_params

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


def _layout_json(key: str, boxes: tuple[Box, ...]) -> str:
    """A batch's "layout" entry, as the latent loader writes it (the contract: the Layout's JSON)."""
    return json.dumps(Layout(key, 64, 64, boxes).to_dict())


def test_the_training_module_tokenises_the_batch_layouts():
    torch.manual_seed(0)
    model = LatentDiffusionModel(preset_config("tiny-layout"))
    module = LDMTrainingModule(model, TrainConfig(ema_decay=0.0), batch_size=2)
    z = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    layouts = [_layout_json("a", (Box(0, 0.0, 0.0, 0.5, 1.0),)),
               _layout_json("b", (Box(7, 0.25, 0.5, 1.0, 1.0), Box(3, 0.0, 0.0, 0.2, 0.2)))]
    tokens = module.condition({"z": z, "layout": layouts}, None)
    assert tokens.shape == (2, 50) and tokens.dtype == torch.long
    assert torch.equal(tokens[1], module.layout_tokenizer.encode(Layout.from_dict(json.loads(layouts[1]))))
    loss = module.loss(model, {"z": z, "layout": layouts}, module.sample_generators(0, 2, z.device), drop=True)
    again = module.loss(model, {"z": z, "layout": layouts}, module.sample_generators(0, 2, z.device), drop=True)
    assert math.isfinite(float(loss.detach())) and torch.equal(loss.detach(), again.detach())  # per-sample generators: the same draw
    with pytest.raises(ValueError, match="p_uncond needs class or text conditioning, not 'layout'"):
        LDMTrainingModule(model, TrainConfig(p_uncond=0.1), batch_size=2)


def test_train_layout_params_inherit_the_loop_and_check_the_preset():
    params = parse_params({"train_ldm": {"seed": 5, "threads": 1}, "train_layout": {"n_classes": 12}})
    p = params.train_layout
    assert (p.preset, p.seed, p.threads, p.batch_size) == ("tiny-layout", 5, 1, 32)  # loop from train_ldm, recipe
    config = params.ldm_config("train_layout")
    assert config.conditioning.n_classes == 12 and config.conditioning.vocab_size == 17 * 17 + 12 + 1
    with pytest.raises(ParamsError, match="train_layout.preset 'tiny-cond' is not a layout model"):
        parse_params({"train_layout": {"preset": "tiny-cond"}})
    with pytest.raises(ParamsError, match="train_ldm.preset 'tiny-layout' reads boxes; train it as train_layout"):
        parse_params({"train_ldm": {"preset": "tiny-layout"}})
    with pytest.raises(ParamsError, match="train_layout.recipe.p_uncond"):
        parse_params({"train_layout": {"recipe": {"p_uncond": 0.1}}})
    with pytest.raises(ParamsError, match=r"train_layout.n_classes: .* ids up to 11, .* set train_layout.n_classes: 12"):
        parse_params({"label_maps": {"n_regions": 12}})  # the stand-in's regions are the boxes' classes
    fitted = {"label_maps": {"n_regions": 12}, "train_layout": {"n_classes": 12}, "train_semantic": {"n_classes": 12}}
    assert parse_params(fitted).train_layout.n_classes == 12
    with pytest.raises(ParamsError, match="evaluate_layout.sampling.guidance_scale: 2.0, but layout models"):
        parse_params({"evaluate_layout": {"sampling": {"guidance_scale": 2.0}}})


# ----------------------------------------------------------------------------- the stages on a cache with layouts

DATA = {"resolution": 64, "shard_size": 40}  # as conftest.ldm_inputs
SHORT = {"steps": 6, "batch_size": 8, "val_every": 6, "checkpoint_every": 6, "threads": 1, "shuffle_buffer": 20}


def _random_layout(key: str, classes: int) -> Layout:
    """Up to 5 seeded boxes for a sample key, class ids below `classes`."""
    g = torch.Generator().manual_seed(sum(map(ord, key)))
    boxes = []
    for _ in range(int(torch.randint(1, 6, (1,), generator=g))):
        x, y = sorted(torch.rand(2, generator=g).tolist()), sorted(torch.rand(2, generator=g).tolist())
        boxes.append(Box(int(torch.randint(classes, (1,), generator=g)), x[0], y[0], x[1], y[1]))
    return Layout(key, 64, 64, tuple(boxes))


def _with_layouts(latents: Path, out: Path, classes: int = 8) -> Path:
    """A copy of a latent cache whose samples carry layouts (LatentSample.layout, tar field layout.json)."""
    shutil.copytree(latents, out)
    for shard in sorted(out.glob("*.tar")):
        samples = [dataclasses.replace(s, layout=_random_layout(s.key, classes))
                   for s in map(LatentSample.decode, read_shards([shard]))]
        write_shard(shard, samples)
    return out


@pytest.fixture(scope="module")
def cache(ldm_inputs, tmp_path_factory, record_shards) -> Path:
    """ldm_inputs with a latent cache of layouts beside the plain one."""
    record_shards(_with_layouts(ldm_inputs / "latents", ldm_inputs / "latents_layouts"))
    return ldm_inputs


def _paths(cache: Path, out: Path, latents: str = "latents_layouts") -> train_ldm.Paths:
    return train_ldm.Paths(cache / latents, cache / "models" / "autoencoder", out / "models" / "ldm_layout",
                           out / "ckpt", out / "metrics.json", out / "loss.csv", "train_layout")


def test_train_layout_then_evaluate_layout(cache, tmp_path):
    metrics = train_ldm.run(parse_params({"data": DATA, "train_layout": SHORT}), _paths(cache, tmp_path))
    assert metrics["train"]["batches"] == 6 and math.isfinite(metrics["loss"]["first_10pct"] or 0.0)
    assert all(math.isfinite(v) for v in metrics["val"].values()) and "val/loss" in metrics["val"]
    loaded = load_ldm(tmp_path / "models" / "ldm_layout")
    assert loaded.model.config.conditioning.kind == "layout" and list(loaded.card.lineage["params"]) == ["train_layout"]
    shutil.copytree(cache / "models" / "autoencoder", tmp_path / "models" / "autoencoder")
    params = parse_params({"data": DATA, "evaluate_layout": {"layouts": 3, "seeds": 2, "sampling": {"steps": 2},
                                                             "feature_extractor": "random-conv"}})
    out = evaluate_layout.run(params, evaluate_layout.Paths(tmp_path / "models", cache / "latents_layouts",
                                                             cache / "images", tmp_path / "eval.json",
                                                             tmp_path / "reports"))
    assert out["seeds"] == [0, 1] and len(out["layouts"]) == 3 and out["size"] == [64, 64]
    with Image.open(tmp_path / "reports" / evaluate_layout.PICTURE) as picture:
        assert picture.width > 4 * 64 and picture.height > 3 * 64  # 4 columns of 3 rows
    assert json.loads((tmp_path / "eval.json").read_text())["lineage"]["inputs_sha256"]["model"]
    fid = out["fid"]  # Tab. 9's score, here with the seeded stand-in extractor (named as one)
    assert fid["samples"] == 6 and math.isfinite(fid["fid"]) and fid["stand_in"] and fid["reference"]["images"] > 0
    urls = sorted(str(u) for u in (cache / "images").glob("val-*.tar"))
    absent = parse_params({"data": DATA, "evaluate_layout": {"inception_weights": str(tmp_path / "none.pth")}})
    skipped = evaluate_layout._fid(absent, torch.zeros(2, 2, 3, 64, 64, dtype=torch.uint8), urls)
    assert "none.pth" in skipped["skipped"] and "evaluate_layout.inception_weights" in skipped["skipped"]


def test_a_cache_without_layouts_names_the_setting(cache, tmp_path):
    with pytest.raises(InvalidInput, match="have no layout; set cache_latents.label_maps: true"):
        train_ldm.run(parse_params({"data": DATA, "train_layout": SHORT}), _paths(cache, tmp_path, "latents"))


def test_box_classes_beyond_the_model_name_the_key(cache, tmp_path):
    # params say the boxes have 4 classes (so the params check passes); the cache's boxes have ids up to 7
    params = parse_params({"data": DATA, "label_maps": {"n_regions": 4}, "train_layout": {**SHORT, "n_classes": 4}})
    with pytest.raises(InvalidInput, match=r"box class ids up to 7, .* set train_layout.n_classes: 8"):
        train_ldm.run(params, _paths(cache, tmp_path))
