"""The package's layering (docs/architecture.md): no import cycle, counting the imports inside
functions and ``importlib.import_module("mingle_bench...")`` strings, and the rules that say
which layer may import which."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package name it is installed under (setup.py's package_dir)
PACKAGES = {"mingle_bench": "mingle_bench", "baselines": "mingle_bench.baselines", "tasks": "mingle_bench.tasks"}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, pkg in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [] if rel.parts == ("__init__",) else [p for p in rel.parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its file (top level or lazily)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [src] + [f"{src}.{a.name}" for a in node.names]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                  and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                targets = [node.args[0].value]
            for t in targets:
                dep = _resolve(t, mods) if t.startswith("mingle_bench") else None
                if dep and dep != mod:
                    graph[mod].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _under(mod: str, prefixes: tuple[str, ...]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def test_the_checker_sees_lazy_imports_and_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    g = import_graph()
    assert "mingle_bench.training" in g["mingle_bench.pipeline"]  # imported inside a function
    assert "mingle_bench.baselines.retain" in g["mingle_bench.zoo"]


def test_no_import_cycle(graph):
    assert cycles(graph) == []


# (importer, modules it must not import): each rule is a layer boundary of docs/architecture.md
RULES = [
    (("mingle_bench.csr", "mingle_bench.devices"), ("mingle_bench",), "bottom modules import nothing of the package"),
    (("mingle_bench.models",), ("mingle_bench.baselines", "mingle_bench.zoo"), "models never import the baselines"),
    (("mingle_bench.data",), ("mingle_bench.tasks", "mingle_bench.features", "mingle_bench.models",
                              "mingle_bench.baselines", "mingle_bench.training", "mingle_bench.pipeline",
                              "mingle_bench.runner", "mingle_bench.report"), "a source knows nothing downstream"),
    (("mingle_bench.tasks",), ("mingle_bench.features", "mingle_bench.models", "mingle_bench.baselines",
                               "mingle_bench.training", "mingle_bench.pipeline", "mingle_bench.runner",
                               "mingle_bench.report"), "tasks come before features and models"),
    (("mingle_bench.encoders",), ("mingle_bench.data", "mingle_bench.tasks", "mingle_bench.features",
                                  "mingle_bench.models", "mingle_bench.baselines", "mingle_bench.zoo",
                                  "mingle_bench.training", "mingle_bench.pipeline", "mingle_bench.runner",
                                  "mingle_bench.report", "mingle_bench.distributed"),
     "encoders see texts, not cohorts or models"),
    (("mingle_bench.report",), ("mingle_bench.runner", "mingle_bench.pipeline", "mingle_bench.training",
                                "mingle_bench.tuning", "mingle_bench.reproduce", "mingle_bench.features"),
     "the report layer reads results folders only"),
    (("mingle_bench.pipeline",), ("mingle_bench.runner", "mingle_bench.tuning", "mingle_bench.reproduce",
                                  "mingle_bench.commands", "mingle_bench.report"), "the facade serves the commands"),
    (("mingle_bench.distributed.cluster", "mingle_bench.distributed.encoding"),
     ("mingle_bench.pipeline", "mingle_bench.distributed.cells", "mingle_bench.runner", "mingle_bench.tuning",
      "mingle_bench.reproduce", "mingle_bench.commands", "mingle_bench.report", "mingle_bench.features",
      "mingle_bench.training", "mingle_bench.data", "mingle_bench.tasks", "mingle_bench.models"),
     "the Ray connection and the sharded encoder sit below the facade (pipeline.open_encoder uses them)"),
    (("mingle_bench.distributed",), ("mingle_bench.runner", "mingle_bench.tuning", "mingle_bench.reproduce",
                                     "mingle_bench.commands", "mingle_bench.report"),
     "the Ray executor serves the runner and tuning, never imports them"),
    (("mingle_bench.training", "mingle_bench.features", "mingle_bench.models", "mingle_bench.baselines",
      "mingle_bench.encoders", "mingle_bench.data", "mingle_bench.tasks", "mingle_bench.runner",
      "mingle_bench.pipeline", "mingle_bench.report"), ("mingle_bench.profiling",),
     "the pipeline never imports the profilers"),
]


@pytest.mark.parametrize("importers,forbidden,why", RULES, ids=[r[2] for r in RULES])
def test_layer_rules(graph, importers, forbidden, why):
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if _under(m, importers)
                 for d in deps if _under(d, forbidden) and not _under(d, importers))
    assert not bad, f"{why}: " + ", ".join(bad)
