"""The layers of the suite and the direction of its imports (DESIGN.md, "Who imports whom").

Every module of ``repro``, ``baselines``, ``tables`` and ``data_prep`` belongs to one layer (``LAYERS``; a module
that no entry names fails the test), and a layer imports only the layers ``ALLOWED`` lists: the core knows no
data loader, trainer, method, record or table; a method knows no record, table or pipeline, and no other
method; the tables read records and their own spec, never a method. Imports are read from the source with
``ast``, those inside functions and under ``TYPE_CHECKING`` included, so a circle cannot hide in a function.
The checker is shown to catch a planted upward import, an unmapped module, a circle and a method importing
another.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("repro", "baselines", "tables", "data_prep")

# module -> layer; "pkg.*" names a package's every module (the method packages: a new method is one new file)
LAYERS: dict[str, str] = {
    **dict.fromkeys(["repro", "repro.arch", "repro.atomic", "repro.config", "repro.constraint", "repro.dataset",
                     "repro.distributed", "repro.exit", "repro.hardware", "repro.keys", "repro.lock", "repro.method",
                     "repro.quiet", "repro.stats", "repro.reference", "repro.registry", "repro.space", "repro.profiles",
                     "repro.cost.*", "repro.models.*"], "core"),
    **dict.fromkeys(["repro.data.*", "data_prep.*"], "data"),
    "repro.train.*": "train",
    **dict.fromkeys(["repro.search.*", "baselines", "baselines.amc", "baselines.amc_ddpg", "baselines.autopruner",
                     "baselines.cp", "baselines.metapruning", "baselines.metapruning_net",
                     "baselines.metapruning_train", "baselines.netadapt", "baselines.sfp", "baselines.thinet",
                     "baselines.uniform", "baselines.random_search"], "methods"),
    "baselines.zoo.*": "zoo",  # the architectures the baselines' authors released: data, read by the tables
    "repro.results": "records",
    "tables.*": "tables",
    **dict.fromkeys(["repro.pipeline", "repro.runner", "repro.discover", "repro.cluster"], "pipeline"),
    **dict.fromkeys(["repro.cli", "repro.__main__"], "commands"),
}
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "data": {"core", "data"},
    "train": {"core", "data", "train"},
    "methods": {"core", "data", "train", "methods"},
    "zoo": {"core", "zoo"},
    "records": {"core", "records"},
    "tables": {"core", "zoo", "records", "tables"},
    "pipeline": {"core", "data", "train", "methods", "zoo", "records", "tables", "pipeline"},
    "commands": {"core", "data", "train", "methods", "zoo", "records", "tables", "pipeline", "commands"},
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    """module -> (source, is a package)"""
    return {module_name(p, root): (p.read_text(), p.name == "__init__.py")
            for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def imports(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """module -> the project's modules it imports (anywhere in its source)."""

    def resolve(name: str) -> str | None:
        while name and name not in sources:
            name = name.rpartition(".")[0]
        return name or None

    out: dict[str, set[str]] = {}
    for mod, (text, is_pkg) in sources.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found.update(filter(None, (resolve(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                for a in node.names:  # `from pkg import module` imports the module
                    target = f"{base}.{a.name}"
                    found.add(target if target in sources else resolve(base))
        found.discard(None)
        found.discard(mod)
        out[mod] = found
    return out


def layer_of(mod: str) -> str | None:
    if mod in LAYERS:
        return LAYERS[mod]
    parts = mod.split(".")
    for n in range(len(parts), 0, -1):
        pattern = ".".join(parts[:n]) + ".*"
        if pattern in LAYERS:
            return LAYERS[pattern]
    return None


def _method_of(mod: str) -> str:
    """The method a module belongs to: ``baselines.amc_ddpg`` -> ``amc``; the paper's method is ``proposed``."""
    if mod.startswith("repro.search"):
        return "proposed"
    return mod.split(".")[1].split("_")[0] if mod.count(".") else mod


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    graph = imports(sources)
    out = [f"{m} is in no layer: add it to tests/test_layers.py LAYERS" for m in graph if layer_of(m) is None]
    for mod, targets in sorted(graph.items()):
        here = layer_of(mod)
        for t in sorted(targets):
            there = layer_of(t)
            if here and there and there not in ALLOWED[here]:
                out.append(f"{mod} ({here}) imports {t} ({there})")
            elif here == there == "methods" and _method_of(mod) != _method_of(t) and t != "baselines":
                out.append(f"{mod} imports another method's module {t}: shared machinery belongs in the core or "
                           f"the trainer")
    out += [f"import circle: {' -> '.join(c)}" for c in _circles(graph)]
    return out


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_points_down_and_there_is_no_circle():
    assert violations(read_sources()) == []


def _planted(module: str, line: str) -> list[str]:
    sources = dict(read_sources())
    text, is_pkg = sources[module]
    sources[module] = (text + f"\n\ndef _planted():\n    {line}\n", is_pkg)
    return violations(sources)


@pytest.mark.parametrize("module,line,expected", [
    ("repro.arch", "from repro.pipeline import run_cell", "repro.arch (core) imports repro.pipeline (pipeline)"),
    ("repro.cost.budget", "import baselines.uniform", "repro.cost.budget (core) imports baselines.uniform (methods)"),
    ("repro.method", "from repro.results import RunRecord", "repro.method (core) imports repro.results (records)"),
    ("tables.render", "from repro.search import proposed", "tables.render (tables) imports repro.search.proposed"),
    ("baselines.thinet", "from baselines.cp import make_choose", "baselines.thinet imports another method's"),
    ("repro.space", "from repro.search.joint import joint_search", "repro.space (core) imports repro.search.joint"),
])
def test_the_checker_catches_a_planted_upward_import(module, line, expected):
    assert any(v.startswith(expected) for v in _planted(module, line)), _planted(module, line)


def test_the_checker_catches_a_circle_and_an_unmapped_module():
    # the trainer importing the subsets module that imports it: a circle inside one layer
    assert any(v.startswith("import circle:") and "repro.train.subsets" in v
               for v in _planted("repro.train.trainer", "from repro.train.subsets import SubsetData"))
    sources = dict(read_sources())
    sources["repro.stray"] = ("import repro.arch\n", False)
    assert "repro.stray is in no layer: add it to tests/test_layers.py LAYERS" in violations(sources)
