"""`ldm sample --size` (convolutional sampling, Sec. C.1) and `--guide` (L2 image guiding, Appendix B, Fig. 12)
on untrained tiny models: kl-f4-tiny at 64 px, latents 16x16."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from flows.cli import main as ldm
from ldm.conditioning import ConditioningConfig, build_tokenizer
from ldm.data.loader import to_tensor
from ldm.latent_diffusion import LatentDiffusionModel, LDMCard, preset_config, save_ldm

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = {"none": "tiny-uncond", "class": "tiny-cond", "text": "tiny-txt"}
CONDITION = {"none": [], "class": ["--class", "1"], "text": ["--prompt", "a red cat"]}
FAST = ["-n", "2", "--steps", "4"]
SCALE_FACTOR = 0.7
TEXT = ConditioningConfig(kind="text", tokenizer="learned", vocab_size=60, max_seq_len=16, dim=16, depth=1)


def _text_model(cache: Path) -> tuple[LatentDiffusionModel, object]:
    rng = random.Random(0)
    words = ["cat", "dog", "red", "blue", "photo", "street", "a", "the", "on", "of"]
    tokenizer = build_tokenizer(TEXT, [" ".join(rng.choices(words, k=5)) for _ in range(200)], cache)
    base = preset_config("tiny-txt")
    config = dataclasses.replace(base, conditioning=dataclasses.replace(base.conditioning, **{
        f.name: getattr(TEXT, f.name) for f in dataclasses.fields(TEXT)}), unet=dataclasses.replace(base.unet, context_dim=16))
    return LatentDiffusionModel(dataclasses.replace(config, scale_factor=SCALE_FACTOR)), tokenizer


@pytest.fixture(scope="module")
def models(tmp_path_factory, save_autoencoder) -> dict[str, Path]:
    """{kind: a models/ folder}: one untrained kl-f4-tiny beside an untrained tiny LDM of each kind."""
    root = tmp_path_factory.mktemp("sample-cli")
    autoencoder = save_autoencoder(root / "autoencoder", "kl-f4-tiny")
    folders = {}
    for kind, preset in KINDS.items():
        torch.manual_seed(0)
        tokenizer = None
        if kind == "text":
            model, tokenizer = _text_model(root / "tokenizers")
        else:
            model = LatentDiffusionModel(dataclasses.replace(preset_config(preset), scale_factor=SCALE_FACTOR))
        folders[kind] = root / kind
        shutil.copytree(autoencoder, folders[kind] / "autoencoder")
        save_ldm(folders[kind] / "ldm", model, LDMCard(model=model.config, preset=preset), tokenizer)
    return folders


@pytest.fixture(scope="module")
def guide_png(tmp_path_factory) -> Path:
    """A 40x56 guide, not the guide resolution, with strong structure: white left half, green band."""
    image = np.zeros((40, 56, 3), np.uint8)
    image[:, :28] = 255
    image[10:30, :, 1] = 200
    path = tmp_path_factory.mktemp("guide") / "guide.png"
    Image.fromarray(image).save(path)
    return path


def _images(folder: Path, n: int = 2) -> torch.Tensor:
    """The PNGs of seeds 0..n-1 as [N x 3 x H x W] in [-1, 1]."""
    return torch.stack([to_tensor(np.array(Image.open(folder / f"{seed:06d}.png"))) for seed in range(n)])


@pytest.mark.parametrize("kind,size", [("none", "128x128"), ("class", "128x96"), ("text", "128x128")])
def test_sampling_at_twice_the_training_size_writes_images_of_that_size(models, tmp_path, kind, size):
    out = tmp_path / "big"
    assert ldm(["sample", "--models", str(models[kind]), *CONDITION[kind], *FAST, "--size", size, "-o", str(out)]) == 0
    height, width = (int(side) for side in size.split("x"))
    assert Image.open(out / "000001.png").size == (width, height)  # PIL gives (W, H): a swap fails here
    assert Image.open(out / "grid.png").size[1] > height
    settings = json.loads((out / "settings.json").read_text())
    assert settings["size"] == [height, width] and settings["latent_size"] == [height // 4, width // 4]
    assert settings["trained_size"] == [64, 64] and settings["scale_factor"] == SCALE_FACTOR
    assert settings["first_stage"] == "kl" and settings["image_guide"] is None


def test_guiding_pulls_samples_towards_the_guide_as_the_scale_rises(models, guide_png, tmp_path):
    """Same seeds at scales 0, 0.3, 1: the L2 distance at the guide resolution (32x32) falls by >= 5% a step."""
    distances = []
    for scale in ("0", "0.3", "1"):
        out = tmp_path / scale
        argv = ["sample", "--models", str(models["class"]), "--class", "1", *FAST, "--guide", str(guide_png)]
        assert ldm([*argv, "--guide-scale", scale, "-o", str(out)]) == 0
        settings = json.loads((out / "settings.json").read_text())["image_guide"]
        assert settings == {"image": str(guide_png), "resolution": [32, 32], "scale": float(scale), "downsample": 2}
        y = F.interpolate(to_tensor(np.array(Image.open(guide_png)))[None], size=(32, 32), mode="bicubic",
                          antialias=True, align_corners=False)  # (1, 3, 32, 32)
        x = F.interpolate(_images(out), size=(32, 32), mode="bicubic", antialias=True, align_corners=False)
        distances.append((x - y).pow(2).mean(dim=(1, 2, 3)))  # (N,)
    none, weak, strong = distances
    assert bool((weak < 0.95 * none).all()) and bool((strong < 0.95 * weak).all()), distances


def test_guided_samples_do_not_depend_on_the_batch_size(models, guide_png, tmp_path):
    common = ["sample", "--models", str(models["class"]), "--class", "1", "-n", "2", "--steps", "3",
              "--guide", str(guide_png), "--guide-scale", "1", "--size", "64x96"]
    assert ldm([*common, "--batch-size", "2", "-o", str(tmp_path / "two")]) == 0
    assert ldm([*common, "--batch-size", "1", "-o", str(tmp_path / "one")]) == 0
    together, alone = _images(tmp_path / "two"), _images(tmp_path / "one")
    assert together.shape == (2, 3, 64, 96)
    assert float((together - alone).abs().max()) <= 2 / 127.5  # float rounding may move a pixel by a level


@pytest.mark.parametrize("argv,message", [
    (["--size", "big"], "--size 'big': give HEIGHTxWIDTH in pixels"),
    (["--size", "68x64"], "--size 68x64: height and width must be multiples of 8 px (the autoencoder's f=4 times"),
    (["--size", "0x64"], "--size 0x64: height and width must be multiples of 8 px"),
    (["--guide", "{tmp}/absent.png"], "--guide {tmp}/absent.png: no such image file"),
    (["--guide", "{tmp}"], "--guide {tmp}: no such image file"),
    (["--guide-scale", "2"], "--guide-scale needs --guide IMAGE"),
])
def test_bad_size_and_guide_are_one_line_errors(models, tmp_path, capsys, argv, message):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert ldm(["sample", "--models", str(models["class"]), "--class", "1", *FAST, "-o", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("error: ") and message.format(tmp=tmp_path) in err


def test_a_negative_guide_scale_is_refused(models, guide_png, tmp_path, capsys):
    argv = ["--guide", str(guide_png), "--guide-scale", "-1"]
    assert ldm(["sample", "--models", str(models["class"]), "--class", "1", "-o", str(tmp_path / "s"), *argv]) == 2
    assert "--guide-scale: image guiding: scale must be >= 0, got -1.0" in capsys.readouterr().err
