"""Training layout-to-image models: the batch's layout JSON tokenised by the model's own box tokenizer, the
`train_layout` params section, and the stage on a latent cache whose samples carry layouts."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ldm.data.layouts import Box, Layout
from ldm.latent_diffusion import LatentDiffusionModel, LDMTrainingModule, TrainConfig, preset_config
from stages.params import ParamsError, parse_params

pytestmark = pytest.mark.usefixtures("one_thread")


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
