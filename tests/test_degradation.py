"""Properties of ldm.degradation.degrade: determinism, shapes, records, parameter ranges, bad input.

The single operations (kernels, blur, noise, JPEG, resize) are in test_degradation_ops.py.
"""

from __future__ import annotations

import json
import random

import cv2
import numpy as np
import pytest
from skimage import data

from ldm.degradation import SCALES, VARIANT_CONFIGS, VARIANTS, DegradationError, degrade
from ldm.degradation.pipeline import MIN_LR_SIDE, _fit_size

H, W = 96, 160  # non-square, so a swapped height and width fails
BSR_VARIANTS = ("bsr", "bsr_light")
RECORD_SEEDS = range(150)


def _photo_crop(name: str, h: int = H, w: int = W) -> np.ndarray:
    """Centre crop of a colour photograph that ships with scikit-image."""
    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[top : top + h, left : left + w, :3])


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return _photo_crop("astronaut")


@pytest.fixture(scope="module")
def records(hr: np.ndarray) -> dict[str, list[dict]]:
    """Records of many seeds per BSR variant at scale 4, shared by the statistics tests."""
    return {v: [degrade(hr, scale=4, variant=v, seed=s)[1] for s in RECORD_SEEDS] for v in BSR_VARIANTS}


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_seed_same_bytes_and_record(hr, variant):
    lr1, rec1 = degrade(hr, scale=4, variant=variant, seed=123)
    lr2, rec2 = degrade(hr.copy(), scale=4, variant=variant, seed=123)
    assert lr1.tobytes() == lr2.tobytes()
    assert rec1 == rec2


@pytest.mark.parametrize("variant", BSR_VARIANTS)
def test_different_seeds_differ(hr, variant):
    outs = {degrade(hr, scale=4, variant=variant, seed=s)[0].tobytes() for s in range(5)}
    assert len(outs) == 5


def test_generator_equals_its_seed(hr):
    lr_seed, rec_seed = degrade(hr, variant="bsr", seed=7)
    lr_gen, rec_gen = degrade(hr, variant="bsr", seed=np.random.default_rng(7))
    assert lr_seed.tobytes() == lr_gen.tobytes()
    assert rec_seed["ops"] == rec_gen["ops"] and rec_gen["seed"] is None


def test_independent_of_cv2_thread_count(hr):
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        single = [degrade(hr, variant="bsr", seed=s)[0].tobytes() for s in range(6)]
        cv2.setNumThreads(4)
        multi = [degrade(hr, variant="bsr", seed=s)[0].tobytes() for s in range(6)]
    finally:
        cv2.setNumThreads(before)
    assert single == multi


@pytest.mark.parametrize("variant", VARIANTS)
def test_global_rng_untouched(hr, variant):
    np.random.seed(1)
    random.seed(1)
    np_state, py_state = np.random.get_state(), random.getstate()
    for s in range(4):
        degrade(hr, variant=variant, seed=s)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(np_state, after))
    assert random.getstate() == py_state


# ---------------------------------------------------------------- shapes and records


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", SCALES)
def test_lr_shape_non_square(variant, scale):
    hr = _photo_crop("coffee", H, W)
    lr, rec = degrade(hr, scale=scale, variant=variant, seed=scale)
    expected = (H // scale, W // scale, 3)
    assert lr.shape == expected and lr.dtype == np.uint8
    assert rec["lr_size"] == list(expected[:2])
    lr_t, _ = degrade(np.ascontiguousarray(hr.transpose(1, 0, 2)), scale=scale, variant=variant, seed=scale)
    assert lr_t.shape == (W // scale, H // scale, 3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_record_is_json_and_names_the_call(hr, variant):
    _, rec = degrade(hr, scale=2, variant=variant, seed=5)
    assert json.loads(json.dumps(rec)) == rec
    assert (rec["variant"], rec["scale"], rec["seed"], rec["hr_size"]) == (variant, 2, 5, [H, W])


def test_bsr_order_and_final_jpeg(records):
    for variant, recs in records.items():
        cfg = VARIANT_CONFIGS[variant]
        for rec in recs:
            names = [op["op"] for op in rec["ops"]]
            assert names.count("blur") == cfg.blur.passes
            assert names.count("downsample") == names.count("resize") == names.count("noise") == 1
            assert names.index("downsample") < names.index("resize")  # downsample2 before downsample3
            assert rec["ops"][-1] == {"op": "jpeg", "quality": rec["ops"][-1]["quality"], "final": True}
            assert [op.get("final") for op in rec["ops"]].count(True) == 1
            assert "predownsample" not in names[1:]


def test_order_is_random(records):
    orders = {tuple(op["op"] for op in rec["ops"]) for rec in records["bsr"]}
    assert len(orders) > 20
    firsts = {rec["ops"][0]["op"] for rec in records["bsr"] if rec["ops"][0]["op"] != "predownsample"}
    assert firsts == {"blur", "downsample", "noise", "jpeg"}


def test_predownsample_rate_and_scales(records, hr):
    for recs in records.values():
        hits = sum(rec["ops"][0]["op"] == "predownsample" for rec in recs)
        n = len(recs)  # Binomial(n, 0.25): mean 37.5, sd 5.3 for n = 150
        assert abs(hits - 0.25 * n) < 4 * (0.25 * 0.75 * n) ** 0.5
    for scale in (2, 3, 8):
        for s in range(30):
            ops = degrade(hr[:, :128], scale=scale, variant="bsr", seed=s)[1]["ops"]
            assert all(op["op"] != "predownsample" for op in ops)


# ---------------------------------------------------------------- parameter ranges (table of Sec. C.7.1)


def test_configs_match_the_paper_table():
    bsr, light = VARIANT_CONFIGS["bsr"], VARIANT_CONFIGS["bsr_light"]
    assert (bsr.blur.passes, light.blur.passes) == (2, 1)
    assert (min(bsr.blur.iso_ksizes), max(bsr.blur.iso_ksizes)) == (7, 25)
    assert (min(light.blur.iso_ksizes), max(light.blur.iso_ksizes)) == (5, 7)
    assert (min(light.blur.aniso_ksizes), max(light.blur.aniso_ksizes)) == (5, 14)
    assert bsr.blur.iso_sigma_max(4) == pytest.approx(2.8) and light.blur.iso_sigma_max(4) == pytest.approx(0.7)
    assert bsr.blur.aniso_eig_max(4) == pytest.approx(8) and light.blur.aniso_eig_max(4) == pytest.approx(2)
    assert (bsr.downsample.p_resize, light.downsample.p_resize) == (0.75, 0.8)
    assert (bsr.noise.level_min, bsr.noise.level_max, light.noise.level_min, light.noise.level_max) == (2, 25, 1, 2)
    assert (bsr.jpeg.quality_min, bsr.jpeg.quality_max, light.jpeg.quality_min) == (30, 95, 80)


@pytest.mark.parametrize("variant", BSR_VARIANTS)
def test_sampled_parameters_within_variant_ranges(records, variant):
    cfg = VARIANT_CONFIGS[variant]
    seen: dict[str, set] = {"iso": set(), "aniso": set()}
    qualities, levels = set(), set()
    for rec in records[variant]:
        sf = 2 if rec["ops"][0]["op"] == "predownsample" else 4
        for op in rec["ops"]:
            if op["op"] == "blur" and op["kind"] == "iso":
                assert op["ksize"] in cfg.blur.iso_ksizes and "ksize_sampled" not in op
                assert 0 <= op["sigma"] <= cfg.blur.iso_sigma_max(sf)
                seen["iso"].add(op["ksize"])
            elif op["op"] == "blur":
                assert op["ksize"] in cfg.blur.aniso_ksizes
                assert 0 <= op["l1"] <= cfg.blur.aniso_eig_max(sf) and 0 <= op["l2"] <= cfg.blur.aniso_eig_max(sf)
                assert 0 <= op["theta"] < np.pi
                seen["aniso"].add(op["ksize"])
            elif op["op"] == "jpeg":
                assert cfg.jpeg.quality_min <= op["quality"] <= cfg.jpeg.quality_max
                qualities.add(op["quality"])
            elif op["op"] == "noise" and op["kind"] != "correlated":
                assert cfg.noise.level_min <= op["sigma"] <= cfg.noise.level_max
                levels.add(op["sigma"])
            elif op["op"] == "noise":
                assert max(op["channel_sigma"]) <= cfg.noise.level_max + 1e-6
            elif op["op"] == "downsample" and op["kind"] == "resize":
                assert 1 <= op["factor"] <= 2 * sf
            elif op["op"] == "downsample":
                assert 0.1 <= op["sigma"] <= 0.6 * sf and op["stride"] == sf
    # The whole range is reached, not only a part of it.
    assert {min(seen["iso"]), max(seen["iso"])} == {min(cfg.blur.iso_ksizes), max(cfg.blur.iso_ksizes)}
    assert {min(seen["aniso"]), max(seen["aniso"])} == {min(cfg.blur.aniso_ksizes), max(cfg.blur.aniso_ksizes)}
    assert {min(levels), max(levels)} == {cfg.noise.level_min, cfg.noise.level_max}
    assert min(qualities) - cfg.jpeg.quality_min <= 3 and cfg.jpeg.quality_max - max(qualities) <= 3


# ---------------------------------------------------------------- variants against each other


def test_moderated_variant_degrades_less():
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "motorcycle")
    crops = [_photo_crop(n, 128, 128) for n in names]

    def mean_psnr(variant: str) -> float:
        values = []
        for hr in crops:
            for s in range(4):
                lr, _ = degrade(hr, scale=4, variant=variant, seed=s)
                up = cv2.resize(lr, (128, 128), interpolation=cv2.INTER_CUBIC).astype(np.float64)
                values.append(10 * np.log10(255**2 / np.mean((up - hr) ** 2)))
        return float(np.mean(values))

    bicubic, light, original = mean_psnr("bicubic"), mean_psnr("bsr_light"), mean_psnr("bsr")
    assert bicubic > light > original


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("variant", ["bsrgan", "", "BSR"])
def test_unknown_variant(hr, variant):
    with pytest.raises(DegradationError, match=rf"{variant!r}.*bsr, bsr_light, bicubic"):
        degrade(hr, variant=variant)


@pytest.mark.parametrize("scale", [1, 5, 16, 4.0, True])
def test_bad_scale(hr, scale):
    with pytest.raises(DegradationError, match=r"\(2, 3, 4, 8\)"):
        degrade(hr, scale=scale)


def test_degradation_error_is_a_value_error():
    assert issubclass(DegradationError, ValueError)


@pytest.mark.parametrize(
    "image",
    [np.zeros((H, W, 3), np.float32), np.zeros((H, W, 4), np.uint8), np.zeros((2, H, W, 3), np.uint8), [[0]]],
)
def test_bad_arrays(image):
    with pytest.raises(DegradationError, match="image must be"):
        degrade(image)


@pytest.mark.parametrize("scale", SCALES)
def test_too_small_names_size_and_minimum(scale):
    side = MIN_LR_SIDE * scale
    with pytest.raises(DegradationError, match=rf"{side - 1} x {side + 5}.*at least {side} px"):
        degrade(np.zeros((side - 1, side + 5, 3), np.uint8), scale=scale)
    lr, _ = degrade(np.zeros((side, side + 5, 3), np.uint8), scale=scale, variant="bsr")
    assert lr.shape == (MIN_LR_SIDE, (side + 5) // scale, 3)


def test_smallest_image_shrinks_kernels_and_records_it():
    hr = _photo_crop("chelsea", MIN_LR_SIDE * 4, MIN_LR_SIDE * 4)
    shrunk = 0
    for s in range(60):
        lr, rec = degrade(hr, scale=4, variant="bsr", seed=s)
        assert lr.shape == (MIN_LR_SIDE, MIN_LR_SIDE, 3)
        for op in rec["ops"]:
            if "ksize_sampled" in op:
                shrunk += 1
                assert op["ksize"] < op["ksize_sampled"]
    assert shrunk > 0


@pytest.mark.parametrize("shape", [(H, W), (H, W, 1)])
def test_grey_becomes_rgb_and_is_recorded(shape):
    grey = _photo_crop("astronaut")[..., 0].reshape(shape)
    lr, rec = degrade(grey, scale=4, variant="bicubic")
    assert lr.shape == (H // 4, W // 4, 3)
    assert rec["ops"][0] == {"op": "to_rgb", "from_channels": 1}
    assert (lr[..., 0] == lr[..., 1]).all() and (lr[..., 1] == lr[..., 2]).all()


def test_crop_to_multiple_is_centred_and_recorded(hr):
    odd = _photo_crop("coffee", H + 3, W + 2)
    lr, rec = degrade(odd, scale=4, variant="bicubic")
    assert lr.shape == (H // 4, W // 4, 3)
    crop = rec["ops"][0]
    assert crop == {"op": "crop_to_multiple", "anchor": "center", "from": [H + 3, W + 2], "to": [H, W], "offset": [1, 1]}
    expected, _ = degrade(odd[1 : 1 + H, 1 : 1 + W], scale=4, variant="bicubic")
    assert lr.tobytes() == expected.tobytes()


def test_input_untouched_and_views_accepted(hr):
    view = hr[::-1, ::2][:, :64]  # negative and non-unit strides
    view.flags.writeable = False
    before = view.copy()
    lr, _ = degrade(view, scale=4, variant="bsr", seed=3)
    assert np.array_equal(view, before)
    assert lr.tobytes() == degrade(np.ascontiguousarray(view), scale=4, variant="bsr", seed=3)[0].tobytes()


def test_fit_size_fixes_an_off_by_one():
    ops: list[dict] = []
    fixed = _fit_size(np.zeros((23, 41, 3), np.float32), (24, 40), ops)
    assert fixed.shape == (24, 40, 3) and ops == [{"op": "fit_size", "from": [23, 41], "to": [24, 40], "interp": "area"}]
    untouched: list[dict] = []
    _fit_size(np.zeros((24, 40, 3), np.float32), (24, 40), untouched)
    assert untouched == []
