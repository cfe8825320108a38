"""dvc.yaml cannot go stale: each stage's deps cover the project code it imports (read with `ast`,
transitively) and its params cover the params sections its module reads. No project imports."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ldm", "stages", "flows")  # project top-level packages; anything else is third-party/stdlib
STAGES: dict = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# Params a stage reads that say how its bytes travel, never what they are: tracking one would make DVC rerun every
# stage (and retrain every model) for an edit such as a new S3 endpoint, which docs/storage.md asks of a reader.
TRANSPORT_ONLY = {"storage.s3"}  # the S3 client of s3:// shard folders: endpoint, retries, timeouts, checksums


def _module_file(root: Path, name: str) -> Path | None:
    """The file of project module `name` (a .py or a package __init__.py), None when not in the repo."""
    base = root.joinpath(*name.split("."))
    candidates = (base.with_name(base.name + ".py"), base / "__init__.py") if name.split(".")[0] in PACKAGES else ()
    return next((path for path in candidates if path.is_file()), None)


def _with_parents(root: Path, name: str, problems: list[str], optional: bool = False) -> list[Path]:
    """Files `import name` executes: each package __init__.py on the way, then the module."""
    # A missing project module is a problem, not third-party: a stale import would shrink the closure
    # silently. `optional`: in `from pkg import name`, name may be an attribute rather than a submodule.
    parts = name.split(".")
    found = [_module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    if parts[0] in PACKAGES and found[-1] is None and not optional:
        problems.append(f"imports {name}, which is not in the repo")
    return [path for path in found if path is not None]


def lazy_exports_of(tree: ast.Module) -> dict[str, str]:
    """{public name: submodule} a package __init__ declares with `lazy_exports(__name__, {"sub": ("Name", ...)})`.

    `from pkg import Name` then imports pkg/sub.py, as PEP 562's `__getattr__` does at run time. Raises
    ValueError when the mapping is not a dict literal, so the test fails instead of missing modules.
    """
    exports: dict[str, str] = {}
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if not isinstance(node, ast.Call) or getattr(func, "id", getattr(func, "attr", None)) != "lazy_exports":
            continue
        mapping = node.args[1] if len(node.args) > 1 else None
        if not isinstance(mapping, ast.Dict):
            raise ValueError(f"line {node.lineno}: lazy_exports mapping is not a dict literal")
        for sub, names in zip(mapping.keys, mapping.values):
            exports.update({name: ast.literal_eval(sub) for name in ast.literal_eval(names)})
    return exports


@functools.lru_cache(maxsize=None)
def _lazy(root: Path, package: str) -> dict[str, str]:
    init = _module_file(root, package)
    return lazy_exports_of(ast.parse(init.read_text())) if init and init.name == "__init__.py" else {}


@functools.lru_cache(maxsize=None)
def _imports(root: Path, path: Path) -> tuple[frozenset[Path], tuple[str, ...]]:
    """Project files one file imports directly (any import statement, lazy exports too) and problems."""
    problems: list[str] = []
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(root).with_suffix("").parts
    package = rel[:-1]  # what relative imports resolve against (for an __init__.py, its own package)
    found: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.update(_with_parents(root, alias.name, problems))
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join(base + ((node.module,) if node.module else ()))
            found.update(_with_parents(root, module, problems))
            for alias in node.names:  # `from pkg import name` imports pkg/name.py, or the module a lazy export names
                sub = _lazy(root, module).get(alias.name, alias.name)
                found.update(_with_parents(root, f"{module}.{sub}", problems, optional=True))
    return frozenset(found), tuple(problems)


def closure(root: Path, module: str) -> tuple[set[str], list[str]]:
    """Repo-relative files `python -m module` may execute, and problems ("file: what") met on the way."""
    problems: list[str] = []
    todo, seen = _with_parents(root, module, problems), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            found, what = _imports(root, path)
            todo += found - seen
        except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
            what = (f"cannot analyse it: {exc}",)
        problems += [f"{path.relative_to(root).as_posix()} {w}" for w in what]
    return {path.relative_to(root).as_posix() for path in seen}, problems


def stage_module(cmd: str) -> tuple[str, str | None]:
    """The `python -m` module of a stage's cmd and its `--section NAME`, if any."""
    module, section = re.search(r"(?:^|\s)-m\s+([\w.]+)", cmd), re.search(r"--section[=\s]+([\w.]+)", cmd)
    assert module, f"no `python -m MODULE` in cmd {cmd!r}"
    return module[1], section[1] if section else None


def params_fields(root: Path) -> set[str]:
    """Annotated class-level fields of `class Params` in stages/params.py or the stages/params/ package."""
    package = root / "stages" / "params"
    files = sorted(package.rglob("*.py")) if package.is_dir() else [root / "stages" / "params.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef) and node.name == "Params":
                return {item.target.id for item in node.body
                        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    raise AssertionError(f"no `class Params` in {[p.relative_to(root).as_posix() for p in files]}")


def inherited_sections(root: Path) -> dict[str, str]:
    """`INHERITS = {"child": "parent", ...}` of the params package: a child section reads its parent too."""
    for path in sorted((root / "stages" / "params").rglob("*.py")):
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "INHERITS" for t in node.targets):
                return ast.literal_eval(node.value)
    return {}


def params_reads(source: str, fields: set[str]) -> set[str]:
    """Dotted reads `params.a.b` (also `self.params.a.b`) whose first attribute is a Params field."""
    # The chain stops at the first non-attribute node and at pydantic methods (`model_*`):
    # `params.data.model_dump()` reads the whole section "data".
    reads: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Attribute):
            chain, cur = [], node
            while isinstance(cur, ast.Attribute):
                chain.insert(0, cur.attr)
                cur = cur.value
            names = [getattr(cur, "id", None)] + chain
            if "params" in names:
                keys = names[names.index("params") + 1:]
                keys = keys[: next((i for i, k in enumerate(keys) if k.startswith("model_")), len(keys))]
                if keys and keys[0] in fields:
                    reads.add(".".join(keys))
            visit(cur)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return reads


def _param_entries(stage: dict) -> set[str]:
    """The params keys a dvc stage tracks; a file with no key list tracks everything ("")."""
    entries: set[str] = set()
    for entry in stage.get("params") or []:
        for keys in ([[entry]] if isinstance(entry, str) else entry.values()):
            entries.update(keys or [""])
    return entries


def _uncovered(items: set[str], entries: set[str], sep: str) -> list[str]:
    """Items no entry covers; an entry covers itself and everything below it ("a" covers "a.b", "" all)."""
    def covered(item: str) -> bool:
        parts = item.split(sep)
        return any(sep.join(parts[:i]) in entries for i in range(len(parts) + 1))
    return sorted(item for item in items if not covered(item))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_imported_code(name: str) -> None:
    """Every project file the stage's module imports, transitively, is under one of its deps."""
    stage = STAGES[name]
    files, problems = closure(ROOT, stage_module(stage["cmd"])[0])
    deps = {str(dep).strip("/").removeprefix("./") for dep in stage.get("deps") or []}
    missing = _uncovered(files, deps, "/")
    add = sorted({"/".join(f.split("/")[:2]) if f.count("/") > 1 else f for f in missing})  # subpackage folders
    report = [f"stage {name!r}: {problem}" for problem in problems]
    if missing:
        report.append(f"stage {name!r} imports {len(missing)} file(s) its deps don't cover: {', '.join(missing)}\n"
                      f"Add to stages.{name}.deps in dvc.yaml:" + "".join(f"\n  - {a}" for a in add))
    if report:
        pytest.fail("\n".join(report), pytrace=False)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_transport_params_do_not_make_a_stage_stale(name: str) -> None:
    """No stage tracks a transport-only key, itself or through its section."""
    tracked = _param_entries(STAGES[name])
    assert not [key for key in TRANSPORT_ONLY if not _uncovered({key}, tracked, ".")], \
        f"stage {name!r} tracks {sorted(TRANSPORT_ONLY)}, which never changes its bytes; drop it from its params"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_cover_sections_read(name: str) -> None:
    """Every params section (or key) the stage module reads is tracked in the stage's params."""
    stage = STAGES[name]
    module, section = stage_module(stage["cmd"])
    path = _module_file(ROOT, module)
    assert path is not None, f"stage {name}: module {module} not found"
    try:
        reads = params_reads(path.read_text(), params_fields(ROOT)) | ({section} if section else set())
        reads |= {parent for child, parent in inherited_sections(ROOT).items() if child in {r.split(".")[0] for r in reads}}
    except SyntaxError as exc:
        pytest.fail(f"stage {name}: could not parse {exc.filename}: {exc}", pytrace=False)
    missing = _uncovered(reads - TRANSPORT_ONLY, _param_entries(stage), ".")
    add = [r for r in missing if not any(r.startswith(m + ".") for m in missing)]  # "data" makes "data.x" moot
    if missing:
        pytest.fail(f"stage {name!r} reads params {', '.join(missing)} that its params don't track.\n"
                    f"Add to stages.{name}.params in dvc.yaml:" + "".join(f"\n  - {r}" for r in add), pytrace=False)


def test_analysis_on_mini_project(tmp_path: Path) -> None:
    """The helpers find relative, function-level and lazy imports, and report unparsable files."""
    files = {
        "ldm/__init__.py": "",
        "ldm/a.py": "import os\nimport numpy\nfrom .b import helper\n",
        "ldm/b.py": "def helper():\n    import ldm.c\n",
        "ldm/c.py": "from ldm.lazy import Thing\nfrom ldm.gone import x\n",
        "ldm/d.py": "",
        "ldm/unused.py": "",
        "ldm/lazy/__init__.py": "from ldm._lazy import lazy_exports\n"
                                "__getattr__, __dir__ = lazy_exports(__name__, {'mod': ('Thing',), 'other': ('X',)})\n",
        "ldm/lazy/mod.py": "from .. import d\n",
        "ldm/lazy/other.py": "",
        "ldm/_lazy.py": "",
        "stages/__init__.py": "",
        "stages/run.py": "from ldm import a\nif False:\n    from stages import broken\n",
        "stages/broken.py": "def oops(:\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found, problems = closure(tmp_path, "stages.run")
    assert found == set(files) - {"ldm/unused.py", "ldm/lazy/other.py"}
    assert sorted(problems)[0] == "ldm/c.py imports ldm.gone, which is not in the repo"
    assert len(problems) == 2 and sorted(problems)[1].startswith("stages/broken.py cannot analyse it: ")
    assert _uncovered({"ldm/a.py", "ldm2/b.py", "stages/run.py"}, {"ldm", "stages/run.py"}, "/") == ["ldm2/b.py"]
    reads = params_reads("x = params.data.resolution + self.params.train.lr\nparams.data.model_dump()\n"
                         "params.other.y\nargs.params\n", {"data", "train"})
    assert reads == {"data.resolution", "train.lr", "data"}
    assert stage_module("python -m stages.train_ldm --section train_sr\n  --params p.yaml") == ("stages.train_ldm",
                                                                                              "train_sr")


def test_real_download_closure_is_not_empty() -> None:
    """The download stage's closure holds its module and ldm/data code: the analysis isn't vacuous."""
    files, _ = closure(ROOT, stage_module(STAGES["download"]["cmd"])[0])
    assert "stages/download.py" in files and any(f.startswith("ldm/data/") for f in files), sorted(files)
    assert {"data", "download"} <= params_fields(ROOT)
    assert inherited_sections(ROOT) == {s: "train_ldm" for s in ("train_sr", "train_inpaint", "train_semantic", "train_layout")}
