"""The package's layering (docs/architecture.md): no import cycle, counting the imports inside
functions and ``importlib.import_module(...)`` calls, and the rules that say which layer may
import which.

``import_module`` is followed when its argument is a string constant or an expression the
checker can evaluate statically: a name bound (by assignment or a ``for`` loop) to strings or
to tuples, lists, sets or dicts of strings, a subscript of such a collection (a dict gives its
values), and ``+`` / f-string concatenations of those. Any other argument is reported by
:func:`test_every_import_module_is_followed`, so no import escapes the graph unseen."""
from __future__ import annotations

import ast
import itertools
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


def _bindings(tree: ast.AST) -> dict[str, list[ast.expr]]:
    """name -> the expressions bound to it anywhere in the file: ``x = e`` (also annotated), and
    ``for x in e`` / ``[... for x in e]``, recorded as ``ast.Starred(e)`` (one element of ``e``)."""
    out: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            pairs = [(t, node.value) for t in node.targets]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs = [(node.target, node.value)]
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            pairs = [(node.target, ast.Starred(value=node.iter))]
        else:
            continue
        for target, value in pairs:
            if isinstance(target, ast.Name):
                out.setdefault(target.id, []).append(value)
    return out


def _strings(node: ast.expr, bound: dict[str, list[ast.expr]], seen: frozenset = frozenset()) -> list[str] | None:
    """Every string ``node`` can evaluate to (for a collection: its string members; for a dict:
    its values), or ``None`` when the checker cannot tell."""
    def each(nodes) -> list[str] | None:
        parts = [_strings(n, bound, seen) for n in nodes]
        return None if any(p is None for p in parts) else [v for p in parts for v in p]

    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else None
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return each(node.elts)
    if isinstance(node, ast.Dict):
        return each(node.values)
    if isinstance(node, ast.Starred):          # one element of a collection: its members
        return _strings(node.value, bound, seen)
    if isinstance(node, ast.Subscript):        # coll[key]: any member of coll
        return _strings(node.value, bound, seen)
    if isinstance(node, ast.Name):            # every value bound to the name (a loop variable: the loop's items)
        return _name_strings(node.id, bound, seen) if node.id in bound and node.id not in seen else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _strings(node.left, bound, seen), _strings(node.right, bound, seen)
        return None if left is None or right is None else [a + b for a, b in itertools.product(left, right)]
    if isinstance(node, ast.JoinedStr):
        parts = [_strings(v.value if isinstance(v, ast.FormattedValue) else v, bound, seen) for v in node.values]
        return None if any(p is None for p in parts) else ["".join(c) for c in itertools.product(*parts)]
    return None


def _name_strings(name: str, bound: dict[str, list[ast.expr]], seen: frozenset) -> list[str] | None:
    """The strings of every value bound to ``name`` (``None`` if one of them is unknown)."""
    out: list[str] = []
    for value in bound[name]:
        got = _strings(value, bound, seen | {name})
        if got is None:
            return None
        out += got
    return out


def _scan() -> tuple[dict[str, set[str]], list[str]]:
    """The import graph, and the ``import_module`` calls whose argument could not be evaluated
    (``"path:line"``)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    unresolved: list[str] = []
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = _bindings(tree)
        for node in ast.walk(tree):
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
                  and node.args):
                found = _strings(node.args[0], bound)
                if found is None:
                    unresolved.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                targets = found or []
            for t in targets:
                dep = _resolve(t, mods) if t.startswith("mingle_bench") else None
                if dep and dep != mod:
                    graph[mod].add(dep)
    return graph, unresolved


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its file (top level or lazily)."""
    return _scan()[0]


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
    # import_module of a variable: a loop over a tuple of names (cli), a dict's values (lazy exports)
    assert "mingle_bench.commands.run_cmd" in g["mingle_bench.cli"]
    assert "mingle_bench.encoders.hf" in g["mingle_bench.encoders"]
    assert "mingle_bench.distributed.cluster" in g["mingle_bench.distributed"]


def _evaluate(source: str) -> list[str] | None:
    """What the checker makes of the argument of the one ``import_module`` call in ``source``."""
    tree = ast.parse(source)
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "import_module")
    return _strings(call.args[0], _bindings(tree))


@pytest.mark.parametrize("source,expected", [
    ('importlib.import_module("mingle_bench.a")', ["mingle_bench.a"]),
    ('M = "mingle_bench.a"\ndef f():\n    importlib.import_module(M)', ["mingle_bench.a"]),
    ('MODS = ("mingle_bench.a", "mingle_bench.b")\nfor m in MODS:\n    importlib.import_module(m)',
     ["mingle_bench.a", "mingle_bench.b"]),
    ('E = {"x": "mingle_bench.a", "y": "mingle_bench.b"}\ndef g(n):\n    return importlib.import_module(E[n])',
     ["mingle_bench.a", "mingle_bench.b"]),
    ('S = ("a", "b")\n[importlib.import_module("mingle_bench." + s) for s in S]', ["mingle_bench.a", "mingle_bench.b"]),
    ('P = "mingle_bench"\nimportlib.import_module(f"{P}.c")', ["mingle_bench.c"]),
    ('def h(name):\n    return importlib.import_module(name)', None),          # a parameter: unknown
    ('n = input()\nimportlib.import_module(n)', None),
])
def test_the_checker_evaluates_import_module_arguments(source, expected):
    assert _evaluate(source) == expected


def test_every_import_module_is_followed():
    """An ``import_module`` the checker cannot evaluate would hide an edge of the import graph:
    bind its argument to string constants (or a collection of them) instead."""
    assert _scan()[1] == []


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


def module_aliases(files) -> dict[str, set[str]]:
    """alias -> the package modules it names, over ``import a.b as X`` and ``from a import b as X``
    (``b`` a module) in ``files``; an alias equal to the module's own name is no alias."""
    mods = _modules()
    out: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                named = [(a.name, a.asname) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                named = [(f"{node.module}.{a.name}", a.asname) for a in node.names]
            else:
                continue
            for full, alias in named:
                if alias and full in mods and alias != full.rpartition(".")[2]:
                    out.setdefault(alias, set()).add(full)
    return out


def test_module_aliases_are_unambiguous():
    """One alias never names two modules (``R`` is ``mingle_bench.results`` wherever it is used),
    in the package, its benchmarks and tests (issue 22 item 8)."""
    files = [p for folder in (*PACKAGES, "benchmarks", "tests") for p in sorted((ROOT / folder).rglob("*.py"))]
    aliases = module_aliases(files)
    assert aliases["R"] == {"mingle_bench.results"} and aliases["P"] == {"mingle_bench.pipeline"}
    clashes = {a: sorted(m) for a, m in aliases.items() if len(m) > 1}
    assert not clashes, f"one alias, several modules: {clashes}"
