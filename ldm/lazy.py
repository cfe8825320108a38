"""Lazy package exports (PEP 562): `from ldm.autoencoder import Autoencoder` works, `import ldm.autoencoder.presets` stays light.

A package names each public object beside the submodule that defines it; the
submodule is imported on first access. So a command that only reads configs
(`ldm --help`, `ldm params check`) never imports torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable, list[str]]:
    """(`__getattr__`, `__dir__`, `__all__`) of `package`, whose `exports` map submodule -> public names."""
    where = {name: module for module, names in exports.items() for name in names}
    clash = sorted(set(where) & set(exports))
    if clash:  # importing the submodule would set the package attribute and hide the export
        raise ImportError(f"{package}: exports {clash} share a name with a submodule; rename one")

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, sorted(where)
