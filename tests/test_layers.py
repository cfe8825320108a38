"""Dependencies point one way: flows -> (dvc) -> stages -> ldm, followed transitively; the CLI answers at once."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_dvc_deps import _lazy, _module_file

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "ldm": ("stages", "flows", "prefect", "dvc", "yaml"),
    "stages": ("flows", "prefect"),
}
HEAVY = ("torch", "torchvision", "pytorch_lightning", "lightning", "transformers", "torch_fidelity", "lpips")
# Modules that hold or run models: a flow reaching one at import time drags torch in.
MODEL_CODE = ("ldm.autoencoder.model", "ldm.latent_diffusion.model", "ldm.latent_diffusion.unet", "ldm.diffusion.schedule")
STAGE_SUPPORT = {"stages", "stages.cli", "stages.params"}  # what a stage may import from stages/


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level: bool) -> set[str]:
    """Modules a file imports (`module_level`: only what runs on import, not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if module_level and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            for alias in node.names:  # a submodule, or the module a lazy export names
                sub = _lazy(ROOT, module).get(alias.name, alias.name)
                if _module_file(ROOT, f"{module}.{sub}"):
                    names.add(f"{module}.{sub}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _closure(module: str, module_level: bool) -> set[str]:
    """Every module `import module` reaches, third-party ones included, through project modules and their packages."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            seen.add(prefix)
            path = _module_file(ROOT, prefix)
            if path is not None:
                todo += _imports(path, module_level)
    return seen


def _project_files(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down_only(layer):
    """Followed transitively: ldm never reaches stages, flows, Prefect, DVC or YAML; stages never reach flows."""
    offenders = {}
    for path in _project_files(layer):
        reached = {name.split(".")[0] for name in _closure(_module_name(path), module_level=False)}
        if reached & set(FORBIDDEN[layer]):
            offenders[str(path.relative_to(ROOT))] = sorted(reached & set(FORBIDDEN[layer]))
    assert offenders == {}


def test_stages_never_import_each_other():
    """A stage module imports the library, params and the CLI helper; never another stage."""
    offenders = {}
    for path in _project_files("stages"):
        own = _module_name(path)
        others = {name for name in _imports(path, module_level=False) if name.startswith("stages")}
        others = {name for name in others if name not in STAGE_SUPPORT and not name.startswith("stages.params.")} - {own}
        if others:
            offenders[own] = sorted(others)
    assert offenders == {}


def test_stages_holds_stage_modules_params_and_the_cli_helper_only():
    """Every stages/*.py but the helpers is a stage that dvc.yaml runs."""
    import yaml

    commands = " ".join(stage["cmd"] for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values())
    modules = {path.stem for path in (ROOT / "stages").glob("*.py")} - {"__init__", "cli"}
    assert {m for m in modules if f"-m stages.{m} " not in commands} == set()
    assert {p.name for p in (ROOT / "stages").iterdir() if p.is_dir() and p.name != "__pycache__"} == {"params"}


def test_flows_reach_no_model_code_at_import():
    """Followed through stages/ and ldm/: importing any flows module loads no torch, Lightning or model code."""
    offenders = {}
    for path in _project_files("flows"):
        reached = _closure(_module_name(path), module_level=True)
        bad = sorted(name for name in reached if name.split(".")[0] in HEAVY or name in MODEL_CODE)
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_the_analysis_sees_transitive_imports():
    """The closure is not vacuous: a stage reaches torch and model code through ldm/."""
    reached = _closure("stages.train_ldm", module_level=True)
    assert {"torch", "ldm.latent_diffusion.model", "stages.params"} <= reached


@pytest.mark.parametrize("argv", [["--help"], ["params", "check"], ["releases", "ldm", "--store", "{tmp}/store"],
                                  ["sample", "--help"]])
def test_the_cli_imports_nothing_heavy(argv, tmp_path):
    """`ldm --help`, `ldm params check`, `ldm releases` and a command's help run without torch, Lightning or transformers."""
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    code = ("import json, sys\nfrom flows.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in %r)), file=sys.stderr)" % (argv, HEAVY))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    loaded = json.loads(result.stderr.strip().splitlines()[-1])
    assert loaded == [], f"ldm {' '.join(argv)} imported {loaded[:5]}"


def test_library_uses_no_global_random_state():
    """Randomness in ldm/ comes in as a generator or a seed (STYLE.md)."""
    for path in (ROOT / "ldm").rglob("*.py"):
        text = path.read_text()
        for pattern in ("np.random.seed(", "random.seed(", "torch.manual_seed(", "np.random.rand", "np.random.randint("):
            assert pattern not in text, f"{path.relative_to(ROOT)} uses {pattern}"
