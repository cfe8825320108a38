"""Dependencies point one way: flows -> (dvc) -> stages -> ldm."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "ldm": ("stages", "flows", "prefect", "dvc", "yaml"),
    "stages": ("flows", "prefect"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down_only(layer):
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & set(FORBIDDEN[layer]))
        for path in (ROOT / layer).rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_flows_never_import_model_code():
    for path in (ROOT / "flows").rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert not [m for m in modules if m == "torch" or m.startswith(("ldm.autoencoder", "ldm.unet", "ldm.diffusion"))], path


def test_library_uses_no_global_random_state():
    """Randomness in ldm/ comes in as a generator or a seed (STYLE.md)."""
    for path in (ROOT / "ldm").rglob("*.py"):
        text = path.read_text()
        for pattern in ("np.random.seed(", "random.seed(", "torch.manual_seed(", "np.random.rand", "np.random.randint("):
            assert pattern not in text, f"{path.relative_to(ROOT)} uses {pattern}"
