"""Tests of ldm.interchange.ckpt_reader: reference checkpoints load as tensors, and their pickles never run."""

from __future__ import annotations

import builtins
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint
from safetensors.torch import save_file

from ldm.errors import InputNotFound, InvalidInput
from ldm.interchange.ckpt_reader import _numpy_globals, _stand_in, read_state_dict

WEIGHT = torch.arange(6, dtype=torch.float32).reshape(2, 3)


def lightning_checkpoint(**extra: object) -> dict[str, object]:
    """What an old pytorch_lightning `.ckpt` of the reference holds besides its weights."""
    return {
        "state_dict": {"a.weight": WEIGHT},
        "epoch": 3,
        "global_step": 10,
        "pytorch-lightning_version": "1.4.2",
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(1.0), "best_model_path": "x"}},
        "optimizer_states": [],
        "lr_schedulers": [],
        **extra,
    }


def assert_weights(state: dict[str, torch.Tensor]) -> None:
    assert list(state) == ["a.weight"]
    assert torch.equal(state["a.weight"], WEIGHT)


def save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_lightning_checkpoint_loads_through_the_stand_ins(tmp_path: Path) -> None:
    path = save(lightning_checkpoint(), tmp_path / "model.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="ModelCheckpoint"):  # the fallback is what reads it
        torch.load(path, map_location="cpu", weights_only=True)
    assert_weights(read_state_dict(path))
    assert_weights(read_state_dict(str(path)))


def test_numpy_scalars_and_arrays_load(tmp_path: Path) -> None:
    path = save(lightning_checkpoint(best=np.float64(1.5), seen=np.zeros(3, dtype=np.int64)), tmp_path / "np.ckpt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)
    assert_weights(read_state_dict(path))


def test_omegaconf_hyper_parameters_and_attribute_dict_load(tmp_path: Path) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    from pytorch_lightning.utilities.parsing import AttributeDict

    config = omegaconf.OmegaConf.create({"model": {"target": "ldm.models.X", "params": {"lr": 1.0e-4, "ch": [1, 2]}}})
    hyper = {"config": config, "hparams": AttributeDict(lr=1.0e-4, ch=[1, 2])}
    path = save(lightning_checkpoint(hyper_parameters=hyper, hparams_type=type(config)), tmp_path / "hp.ckpt")
    assert_weights(read_state_dict(path))


def test_numpy_1x_names_map_to_the_real_reconstructors() -> None:
    """numpy 1.x pickled its scalars under numpy.core; numpy 2 keeps them in numpy._core."""
    real = _numpy_globals()
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        assert _stand_in(f"{module}.scalar", real) is type(np.float64(1.5)).__reduce__(np.float64(1.5))[0]
    assert _stand_in("numpy.dtypes.Float64DType", real) is type(np.dtype(np.float64))


def test_bare_state_dict_and_safetensors_load(tmp_path: Path) -> None:
    assert_weights(read_state_dict(save({"a.weight": WEIGHT}, tmp_path / "bare.pt")))
    torch.save({"a.weight": WEIGHT}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert_weights(read_state_dict(tmp_path / "old.pth"))
    save_file({"a.weight": WEIGHT}, tmp_path / "w.safetensors")
    assert_weights(read_state_dict(tmp_path / "w.safetensors"))


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return os.system, (f"touch {self.marker}",)


class _Exec(_System):
    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


class _Eval(_System):
    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


class _Touch(_System):
    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return Path.touch, (self.marker,)


class _UserClass:
    """An arbitrary class of the writer's code: refused like any code."""


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (_System, os.system.__module__ + ".system"),  # posix.system
        (_Exec, "builtins.exec"),
        (_Eval, "builtins.eval"),
        (_Touch, "builtins.getattr"),  # Path.touch pickles as getattr(Path, "touch")
    ],
)
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, payload: type[_System], named: str) -> None:
    marker = tmp_path / "pwned"
    path = save(lightning_checkpoint(callbacks={"x": payload(marker)}), tmp_path / "evil.ckpt")
    assert not marker.exists()
    with pytest.raises(InvalidInput) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert str(path) in message and named in message and "\n" not in message
    assert "code" in message and "safetensors" in message
    assert not marker.exists()


def test_user_class_is_refused(tmp_path: Path) -> None:
    path = save({"state_dict": {"a.weight": WEIGHT}, "thing": _UserClass()}, tmp_path / "user.ckpt")
    with pytest.raises(InvalidInput, match=f"{__name__}._UserClass"):
        read_state_dict(path)


def test_a_bookkeeping_name_loads_as_the_inert_stand_in_never_the_real_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    fake = types.ModuleType("pytorch_lightning.fake_for_test")

    def touch(target: str) -> None:
        Path(target).touch()

    touch.__module__, touch.__qualname__ = fake.__name__, "touch"
    fake.touch = touch  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)  # resolvable by name while it loads, too

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return touch, (str(marker),)

    path = save(lightning_checkpoint(hook=Payload()), tmp_path / "hook.ckpt")
    assert_weights(read_state_dict(path))
    assert not marker.exists()


def test_missing_file_folder_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="nope.ckpt"):
        read_state_dict(tmp_path / "nope.ckpt")
    with pytest.raises(InvalidInput, match="folder"):
        read_state_dict(tmp_path)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint at all\xff" * 10)
    with pytest.raises(InvalidInput, match="garbage.ckpt: not a PyTorch checkpoint") as caught:
        read_state_dict(garbage)
    assert "\n" not in str(caught.value)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(InvalidInput, match="bad.safetensors"):
        read_state_dict(tmp_path / "bad.safetensors")


def test_truncated_checkpoint(tmp_path: Path) -> None:
    whole = save(lightning_checkpoint(), tmp_path / "whole.ckpt").read_bytes()
    for cut in (len(whole) // 2, len(whole) - 30):
        truncated = tmp_path / f"cut{cut}.ckpt"
        truncated.write_bytes(whole[:cut])
        with pytest.raises(InvalidInput, match=f"cut{cut}.ckpt") as caught:
            read_state_dict(truncated)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("obj", "found"),
    [
        ([WEIGHT], "a list"),
        ({"state_dict": [WEIGHT]}, "'state_dict' entry holds a list"),
        ({"state_dict": {}}, "empty dict"),
        ({"state_dict": {"a.weight": WEIGHT, "step": 3}}, "entry 'step' is int"),
        ({"a.weight": WEIGHT, "epoch": 3}, "entry 'epoch' is int (and there is no 'state_dict' entry)"),
    ],
)
def test_no_tensor_state_dict(tmp_path: Path, obj: object, found: str) -> None:
    path = save(obj, tmp_path / "odd.pt")
    with pytest.raises(InvalidInput) as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value) and found in str(caught.value)
