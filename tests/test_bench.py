"""The benchmark suite's own parts: its peers compute what ours do, its rows and report read right."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench import sampling
from bench.common import Goal, Row, interleaved, rate_row
from bench.models import Place, autoencoder_pair, ldm_config, relative_difference, unet_inputs, unet_pair

CPU = Place(torch.device("cpu"), bf16=False)
SAME = 1e-5  # float rounding between two implementations of one function


@pytest.mark.parametrize("preset", ["tiny-uncond", "tiny-cond"])
def test_the_diffusers_unet_of_a_row_computes_ours(preset):
    cfg = ldm_config(preset, None)
    ours, theirs = unet_pair(cfg)
    inputs = unet_inputs(cfg, 2, CPU)
    with torch.no_grad():
        mine = ours(inputs["x"], inputs["t"], inputs["context"])
        kwargs = {} if inputs["context"] is None else {"encoder_hidden_states": inputs["context"]}
        other = theirs(inputs["x"], inputs["t"], **kwargs).sample
    assert mine.abs().max() > 0.01  # not the zero-initialised output layer
    assert relative_difference(mine, other) < SAME


@pytest.mark.parametrize("preset", ["kl-f4-tiny", "vq-f4-tiny"])
def test_the_diffusers_autoencoder_of_a_row_computes_ours(preset):
    ours, theirs = autoencoder_pair(preset, None, 32)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        z = ours.encode_mode(x)
        encoded = theirs.encode(x)
        assert relative_difference(z, encoded.latent_dist.mode() if preset.startswith("kl") else encoded.latents) < SAME
        assert relative_difference(ours.decode(z), theirs.decode(z).sample) < SAME


@pytest.mark.parametrize("name", list(sampling.SAMPLERS))
def test_each_sampler_steps_as_its_diffusers_scheduler(name):
    cfg = ldm_config("tiny-cond", None)
    unet = unet_pair(cfg)[0].eval()
    inputs = unet_inputs(cfg, 2, CPU)
    eps = lambda x, t: unet(x, t, inputs["context"])  # noqa: E731
    with torch.no_grad():
        # 5 divides T = 1000: the reference's uniform spacing visits range(0, T, T // steps), one step more otherwise
        ours = sampling.sample(name, eps, inputs["x"], cfg.diffusion.make_schedule(), steps=5)
        theirs = sampling.with_scheduler(name, eps, inputs["x"], cfg.diffusion, 5)
    assert relative_difference(ours, theirs) < SAME


def test_the_interp2d_shim_interpolates_linearly_on_the_grid():
    from bench.data import _Interp2dLinear

    x, y = np.arange(5.0), np.arange(4.0)
    z = 2 * x[None, :] + 3 * y[:, None] + 1  # a plane: linear interpolation reproduces it exactly
    out = _Interp2dLinear(x, y, z)(x + 0.5, y + 0.25)  # bsrgan's shift_pixel call: (x1, y1) -> [len(y1) x len(x1)]
    expected = 2 * np.clip(x + 0.5, 0, 4)[None, :] + 3 * np.clip(y + 0.25, 0, 3)[:, None] + 1
    assert out.shape == (4, 5) and np.allclose(out[:, :-1], expected[:, :-1])


def test_rows_keep_their_goal_through_json_and_say_whether_it_is_met():
    fast = rate_row("UNet", "step", "samples/s", ours_s=1.0, peer_s=2.0, items=8, peer_name="peer", goal=1.1)
    slow = rate_row("UNet", "step", "samples/s", ours_s=2.0, peer_s=2.0, items=8, peer_name="peer", goal=1.1)
    assert (fast.ours, fast.peer, fast.ratio, fast.met) == (8.0, 4.0, 2.0, True) and slow.met is False
    again = Row.from_dict(json.loads(json.dumps(fast.to_dict())))
    assert again == fast and again.met is True
    overhead = Row("Pipeline", "flow", "s", 14.0, 3.0, "dvc", 14 / 3, "cost", Goal("difference", "<=", 10.0))
    assert overhead.met is False


def test_interleaved_times_both_sides_in_turns():
    calls: list[str] = []
    timing = interleaved(lambda: calls.append("a"), lambda: calls.append("b"), repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4 and timing.repeats == 3 and timing.ours_s >= 0


def test_the_report_renders_every_row_its_goal_and_what_did_not_run(tmp_path):
    from bench.report import main as report

    rows = [rate_row("UNet", "training step, tiny", "samples/s", 1.5, 1.0, 32, "diffusers UNet2DModel", 1.1, "note"),
            Row("Sample quality", "DDIM, 5 steps", "FID", 9.0, 9.0, "DDIM, 5 steps", 1.0, "quality", extra={"steps": 5}),
            Row("Sample quality", "DDIM, 10 steps", "FID", 4.0, 4.0, "DDIM, 10 steps", 1.0, "quality", extra={"steps": 10})]
    results = {"machine": {"cpu": "a CPU", "cores": 2, "threads": 2, "cuda": None, "python": "3.11", "platform": "linux",
                           "versions": {"torch": "2"}, "date": "2026-12-03", "git_revision": "abc"},
               "seconds": {"unet": 1.0}, "rows": [row.to_dict() for row in rows],
               "not_run": [{"group": "gpu", "reason": "no CUDA device here"}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    out, charts = tmp_path / "BENCHMARKS.md", tmp_path / "charts.png"
    assert report(["--results", str(tmp_path / "results.json"), "--out", str(out), "--charts", str(charts)]) == 0
    text = out.read_text()
    assert "| training step, tiny | 21.3 samples/s | diffusers UNet2DModel | 32 | 0.67x | ratio >= 1.1: **missed** |" in text
    assert "**missed**" in text and "Goals: 0 of 1 met" in text and "- gpu: no CUDA device here" in text
    assert charts.read_bytes()[:4] == b"\x89PNG"
    assert report(["--results", str(tmp_path / "none.json")]) == 2


def test_the_suite_answers_help_at_once():
    result = subprocess.run([sys.executable, "-m", "bench.suite", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--only" in result.stdout and "quality" in result.stdout


def test_a_missing_model_or_peer_says_what_to_run(tmp_path, monkeypatch):
    from bench import data
    from bench.common import NotReady

    with pytest.raises(NotReady, match="no trained model; run `dvc repro train_ldm`"):
        sampling.quality_rows(tmp_path, samples=4, batch_size=4)
    monkeypatch.setattr(data, "PEERS", tmp_path)
    monkeypatch.setitem(sys.modules, "bsrgan", None)  # not importable, wherever it is installed
    with pytest.raises(NotReady, match="the bsrgan peer is missing.*`make bench` installs it"):
        data.import_bsrgan()
