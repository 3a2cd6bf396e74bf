"""The layers of the harness, checked: what each part may import."""

from __future__ import annotations

import ast
import pkgutil
from collections.abc import Callable
from pathlib import Path

import harness.pyref
from tests.support.paths import ROOT


def test_pyref_core_pulls_in_nothing_of_the_harness(modules_loaded_by: Callable[[str], set[str]]) -> None:
    """Importing every module of pyref's sans-IO core loads no other part of the
    harness: not its I/O glue, no target, implementation driver, store or lab model
    (a fresh interpreter, so nothing imported by other tests hides an import)."""
    core = [m.name for m in pkgutil.iter_modules(harness.pyref.__path__, "harness.pyref.") if not m.ispkg]
    assert "harness.pyref.device" in core and "harness.pyref.peer" in core  # the walk found the core
    loaded = modules_loaded_by(f"import importlib\nfor name in {core!r}: importlib.import_module(name)\n")
    outside = sorted(m for m in loaded if m.startswith("harness.") and m != "harness.pyref" and m not in core)
    assert outside == []


# The layers, bottom to top. A module may import from its own layer and those
# below it, never from one above. Each module belongs to the layer of the longest
# prefix that names it; a module no prefix names fails the test (place it).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("harness", "harness.errors", "harness.validate", "harness.progress",
                    "harness.keys", "harness.codec", "harness.procs", "harness.pyref")),
    ("parsers", ("harness.parsers",)),
    ("results", ("harness.results",)),
    ("render", ("harness.results.render", "harness.results.nightly")),
    ("targets", ("harness.targets",)),
    ("impl", ("harness.impl",)),
    ("lab", ("harness.lab", "harness.impair")),
    ("run", ("harness.run", "harness.capture", "harness.probe", "harness.pyref.io")),
    ("fleet", ("harness.fleet",)),
    ("app", ("harness.cli", "harness.__main__", "harness.repro")),
]  # fmt: skip

# The top of harness/ holds the few modules everything shares; every other module
# lives in the folder of its layer.
# Rooms inside a folder of a lower layer: pyref's I/O glue runs the sans-IO core as
# processes (run layer); results' renderers and the nightly report draw on records.
NESTED = ("harness.pyref.io", "harness.results.render", "harness.results.nightly")
LOOSE = {"__init__", "__main__", "cli", "codec", "errors", "keys", "procs", "progress", "validate"}


def _layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _imports(path: Path, module: str) -> set[str]:
    """Every harness module ``path`` imports, at module level or inside functions."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # `from harness import dryrun` imports the module harness.run.dryrun
            found.update(f"{name}.{a.name}" if _is_module(f"{name}.{a.name}") else name for a in node.names)
    return {m for m in found if m == "harness" or m.startswith("harness.")}


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel.with_suffix(".py")).is_file() or (ROOT / rel / "__init__.py").is_file()


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    modules: dict[str, Path] = {}
    for path in sorted((ROOT / "harness").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    assert "harness.run.orchestrator" in modules and "harness.results.store" in modules  # the walk worked
    unplaced = [m for m in modules if _layer_of(m) is None]
    assert unplaced == [], "modules in no layer: add them to LAYERS"
    upward = []
    for module, path in modules.items():
        own = _layer_of(module)
        assert own is not None
        for dep in sorted(_imports(path, module)):
            layer = _layer_of(dep)
            if layer is not None and layer > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {dep} ({LAYERS[layer][0]})")
    assert upward == []


def test_the_top_of_the_package_holds_only_the_shared_modules() -> None:
    loose = {p.stem for p in (ROOT / "harness").glob("*.py")}
    assert loose == LOOSE


def test_each_folder_of_harness_lies_in_one_layer() -> None:
    """A folder is a layer (or part of one): every module under a top-level folder of
    harness/ is placed in the folder's own layer, except the nested rooms of NESTED."""
    mixed = []
    for folder in sorted(p for p in (ROOT / "harness").iterdir() if (p / "__init__.py").is_file()):
        top = _layer_of(f"harness.{folder.name}")
        for path in folder.rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if any(module == n or module.startswith(n + ".") for n in NESTED):
                continue
            if _layer_of(module) != top:
                mixed.append(module)
    assert mixed == []


def test_the_layer_walk_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a module of the results layer importing the orchestrator
    is reported, and a relative import resolves to its package."""
    fake = tmp_path / "m.py"
    fake.write_text("from harness.run.orchestrator import LabInstance\nfrom . import stats\n")
    deps = _imports(fake, "harness.results.fake")
    assert deps == {"harness.run.orchestrator", "harness.results.stats"}
    assert _layer_of("harness.results.fake") < _layer_of("harness.run.orchestrator")  # type: ignore[operator]


def test_the_tests_mirror_the_package() -> None:
    """Each folder of tests/ holds the tests of the folder of harness/ that has its
    name; what several tests share is in tests/support/, captured outputs in tests/data/."""
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"}
    packages = {p.name for p in (ROOT / "harness").iterdir() if (p / "__init__.py").is_file()}
    assert folders - {"support", "data"} <= packages
    assert all((ROOT / "tests" / f / "__init__.py").is_file() for f in folders - {"data"})
