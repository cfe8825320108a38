"""Read the tensors of a reference (CompVis latent-diffusion) checkpoint without running its pickle.

A `.safetensors` file is read as is. Anything else goes through `torch.load(weights_only=True)`, which
builds only tensors and plain containers. A Lightning `.ckpt` usually fails that: its bookkeeping names
classes (`callbacks` keyed by `ModelCheckpoint`, omegaconf `hyper_parameters`, numpy scalars). Then the
pickle's globals are listed statically (`get_unsafe_globals_in_checkpoint`, nothing runs) and sorted:

    Lightning / omegaconf / typing names     -> `Inert`, a stand-in that accepts anything and keeps
                                                nothing (Lightning's AttributeDict -> a plain dict)
    numpy's data-only reconstructors         -> the real numpy objects (scalars, dtypes, arrays)
    builtins' plain types, defaultdict       -> themselves (omegaconf records them as type hints)
    anything else (os.system, builtins.exec, a user class, ...)  -> the file is refused, loading nothing

and the file is loaded again, still weights_only, with just those names allowed. Only the `state_dict`
entry (or a bare dict of tensors) comes back.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Self

import torch

from ldm.errors import InputNotFound, InvalidInput

_BOOKKEEPING = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.", "typing.")
_PLAIN = {f"builtins.{t.__name__}": t for t in (dict, list, tuple, set, frozenset, int, float, bool, str, bytes)}
_PLAIN["collections.defaultdict"] = collections.defaultdict


class Inert:
    """Stands in for a bookkeeping class or function: built, called or restored with anything, keeps nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _numpy_globals() -> dict[str, Any]:
    """numpy's data-only reconstructors under the names numpy 1.x and 2.x pickle them as."""
    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core
    real: dict[str, Any] = {"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        real[f"{module}.scalar"] = core.multiarray.scalar
        real[f"{module}._reconstruct"] = core.multiarray._reconstruct
    for name, cls in vars(getattr(np, "dtypes", object)).items():  # a pickled dtype is BUILT as its DType class
        if name.endswith("DType") and isinstance(cls, type):
            real[f"numpy.dtypes.{name}"] = cls
    return real


def _stand_in(name: str, numpy_globals: dict[str, Any]) -> Any | None:
    """What the global `name` may load as; None if it is code the pickle must not run."""
    if name.startswith(_BOOKKEEPING):
        return dict if name.endswith(".AttributeDict") else Inert
    return _PLAIN.get(name) or numpy_globals.get(name)


def _reason(err: BaseException) -> str:
    """The informative first sentence of a (torch) exception message, without torch's advice to trust the file."""
    text = str(err).split("WeightsUnpickler error:")[-1]
    line = next((s.strip() for s in text.splitlines() if s.strip()), type(err).__name__)
    return line.split(". ")[0][:200]


def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - classified below from the file itself
        first = err
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - not a zip torch.save wrote: garbage, or the pre-1.6 format
        raise InvalidInput(
            f"{path}: not a PyTorch checkpoint, or one in the pre-zip format whose pickle cannot be vetted"
            f" ({_reason(first)})"
        ) from None
    numpy_globals = _numpy_globals() if any(n.startswith("numpy.") for n in names) else {}
    refused = [n for n in names if _stand_in(n, numpy_globals) is None]
    if refused:
        raise InvalidInput(
            f"{path}: refused, its pickle references code it would run on load ({', '.join(refused)}); only tensors,"
            " plain containers and Lightning's bookkeeping are read. Convert it to .safetensors where it came from,"
            " or use a trusted copy"
        )
    if not names:
        raise InvalidInput(f"{path}: unreadable checkpoint ({_reason(first)})")
    allowed = [(_stand_in(n, numpy_globals), n) for n in names]
    allowed += [(obj, n) for n, obj in numpy_globals.items() if n not in names]
    with torch.serialization.safe_globals(allowed):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a stand-in that does not fit
            raise InvalidInput(f"{path}: unreadable checkpoint ({_reason(err)})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat tensor state dict of a reference checkpoint (.ckpt/.pt/.pth, its `state_dict` entry or a bare
    dict of tensors) or a .safetensors file; nothing in the file's pickle runs."""
    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise InvalidInput(f"{path}: is a folder, not a checkpoint file (.ckpt, .pt, .pth or .safetensors)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise InvalidInput(f"{path}: not a readable safetensors file ({_reason(err)})") from None
    obj = _load(path)
    where = "its 'state_dict' entry" if isinstance(obj, dict) and "state_dict" in obj else "it"
    state = obj["state_dict"] if where != "it" else obj
    if not isinstance(state, dict) or not state:
        found = "an empty dict" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise InvalidInput(f"{path}: {where} holds {found}, not a state dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InvalidInput(
                f"{path}: {where} is not a state dict of tensors: entry {key!r} is {type(value).__name__}"
                + ("" if where != "it" else " (and there is no 'state_dict' entry)")
            )
    return dict(state)
