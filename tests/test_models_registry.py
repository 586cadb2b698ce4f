"""The model registry: facts per entry, merged hyperparameters and search spaces, explicit
registration without an import cycle, and the committed results' hyperparameters."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mingle_bench import zoo
from mingle_bench.models import registry
from mingle_bench.models.base import TRAIN_DEFAULTS, TRAIN_SEARCH, EHRModel, choice, log_uniform
from mingle_bench.models.mingle import Mingle
from mingle_bench.zoo import display_name, get_model, list_models, model_entry, model_family

ROOT = Path(__file__).resolve().parents[1]
FAMILY_OF = {
    "mingle": "mingle", "mingle-no-concept": "mingle", "mingle-no-notes": "mingle",
    "mingle-no-structural": "mingle", "mingle-gated": "mingle", "mingle-sum": "mingle",
    "hypehr": "baseline", "retain": "baseline", "gram": "baseline", "hypergat": "baseline",
    "logreg": "reference", "note-mlp": "reference", "transformer": "reference",
}
DISPLAY = {  # the names the committed tables use
    "mingle": "MINGLE", "mingle-no-concept": "MINGLE w/o concept semantics",
    "mingle-no-notes": "MINGLE w/o note semantics", "mingle-no-structural": "MINGLE w/o structural (DeepWalk)",
    "hypehr": "HypEHR", "retain": "RETAIN", "gram": "GRAM", "hypergat": "HyperGAT",
    "logreg": "logreg", "note-mlp": "note-mlp", "transformer": "transformer",
    "mingle-gated": "mingle-gated", "mingle-sum": "mingle-sum",
}


class RecordingTrial:
    """Records every ``suggest_*`` call (name and arguments) and returns the low end / first choice."""

    def __init__(self):
        self.calls = []

    def suggest_float(self, name, low, high, log=False):
        self.calls.append((name, "float", low, high, log))
        return low

    def suggest_int(self, name, low, high):
        self.calls.append((name, "int", low, high))
        return low

    def suggest_categorical(self, name, choices):
        self.calls.append((name, "categorical", tuple(choices)))
        return choices[0]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register test models into a copy of the registry, dropped after the test."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_families_and_display_names():
    assert {n: model_family(n) for n in list_models()} == FAMILY_OF
    assert {n: display_name(n) for n in list_models()} == DISPLAY
    assert list_models("mingle") == sorted(n for n, f in FAMILY_OF.items() if f == "mingle")
    assert list_models("baseline") == ["gram", "hypehr", "hypergat", "retain"]
    assert list_models("reference") == ["logreg", "note-mlp", "transformer"]
    assert display_name("not-a-model") == "not-a-model"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        model_family("nope")
    with pytest.raises(ValueError, match="unknown model family"):
        list_models("baselines")
    entry = model_entry("hypehr")
    assert entry.cls is get_model("hypehr") and entry.fixed == {"use_concept": False, "use_notes": False}
    assert entry.cls.__mro__[1] is Mingle and entry.cls.family == "baseline" and entry.cls.display == "HypEHR"


@pytest.mark.parametrize("name", sorted(FAMILY_OF))
def test_search_space_merges_the_base_ranges(name):
    cls = get_model(name)
    trial = RecordingTrial()
    space = cls.search_space(trial)
    assert list(space) == list(cls.search_ranges) == [c[0] for c in trial.calls]
    if name == "logreg":                      # fitted by its solver: no trainer key is searched
        assert set(space) == {"C"}
        return
    assert [c[0] for c in trial.calls[:2]] == ["lr", "weight_decay"]   # the trainer keys first
    assert cls.search_ranges["lr"] == TRAIN_SEARCH["lr"] == log_uniform(1e-4, 1e-2)
    want_wd = log_uniform(1e-7, 1e-3) if name == "hypergat" else TRAIN_SEARCH["weight_decay"]
    assert cls.search_ranges["weight_decay"] == want_wd
    assert trial.calls[0] == ("lr", "float", 1e-4, 1e-2, True)


@pytest.mark.parametrize("name", sorted(FAMILY_OF))
def test_default_hparams_are_base_merged_with_the_model(name):
    cls = get_model(name)
    assert set(TRAIN_DEFAULTS) <= set(cls.default_hparams)
    assert cls.resolve_hparams({}) == cls.default_hparams
    for key, value in model_entry(name).fixed.items():
        assert cls.default_hparams[key] == value


def test_variants_do_not_propose_their_fixed_hparams(scratch_registry):
    for name in list_models():
        cls = get_model(name)
        assert not set(cls.search_space(RecordingTrial())) & set(cls.variant_overrides)
    registry.register_model("mingle-fixed-width", hidden=32)(Mingle)
    cls = get_model("mingle-fixed-width")
    assert cls.default_hparams["hidden"] == 32 and cls.family == "mingle"
    assert "hidden" in Mingle.search_ranges and "hidden" not in cls.search_space(RecordingTrial())
    with pytest.raises(ValueError, match="fixes hidden"):
        cls.resolve_hparams({"hidden": 64})


def test_registration_errors(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("mingle")(Mingle)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("retain", family="baseline")(Mingle)
    with pytest.raises(ValueError, match="family must be one of"):
        registry.register_model("mingle-x", family="baselines")(Mingle)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        registry.register_model("mingle-y", hiden=3)(Mingle)
    with pytest.raises(ValueError, match="lower case"):
        registry.register_model("Mingle-Z")(Mingle)

    class Tiny(EHRModel):
        default_hparams = {"width": 4, "batch_size": 0}
        search_ranges = {"width": choice(2, 4), "lr": None}

    with pytest.raises(ValueError, match="family must be one of"):
        registry.register_model("tiny")(Tiny)     # no family on the class nor in the call
    registry.register_model("tiny", family="reference")(Tiny)
    assert model_entry("tiny").display == "tiny" and "tiny" in list_models("reference")
    assert Tiny.default_hparams == {**TRAIN_DEFAULTS, "width": 4, "batch_size": 0}
    assert list(Tiny.search_ranges) == ["weight_decay", "width"]


def _committed_default_records():
    for path in sorted(ROOT.glob("results/*/*/runs.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                cfg = rec.get("config") or {}
                if cfg.get("protocol") == "default" and not cfg.get("tuned_from"):
                    yield path.relative_to(ROOT), rec


def test_committed_results_used_todays_default_hparams():
    """The hyperparameters feed every cell's input hash: each registered model's merged defaults
    must equal those recorded in the committed reference results."""
    records = list(_committed_default_records())
    if not records:
        pytest.skip("no committed results/*/*/runs.jsonl")
    seen = set()
    for path, rec in records:
        cls = get_model(rec["model"])
        assert cls.default_hparams == rec["config"]["hparams"], f"{path}: {rec['model']} seed {rec['seed']}"
        assert cls.resolve_hparams({}) == rec["config"]["hparams"]
        seen.add(rec["model"])
    assert {"mingle", "hypehr", "retain", "gram", "hypergat"} <= seen


# ----------------------------------------------------------------------------- layering
PACKAGE_DIRS = {"mingle_bench": ROOT / "mingle_bench", "mingle_bench.baselines": ROOT / "baselines"}


def _module_files() -> dict[str, Path]:
    mods = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if name.startswith("mingle_bench.baselines.") and prefix == "mingle_bench":
                continue
            mods[name] = path
    return mods


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Every package module ``path`` imports anywhere (lazy imports included), plus string
    arguments of ``importlib.import_module`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found = set()

    def add(name: str) -> None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module if is_pkg else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            for a in node.names:
                add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                add(node.args[0].value)
    found.discard(module)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = _module_files()
    known = set(files)
    return {m: _imports(p, m, known) for m, p in files.items()}


def _mine(m: str) -> bool:
    return m.startswith(("mingle_bench.models", "mingle_bench.baselines")) or m == "mingle_bench.zoo"


def test_models_layering():
    graph = _import_graph()
    for m, deps in graph.items():
        if m.startswith("mingle_bench.models"):
            assert not {d for d in deps if d.startswith("mingle_bench.baselines") or d == "mingle_bench.zoo"}, m
        if m.startswith("mingle_bench.baselines"):
            assert "mingle_bench.zoo" not in deps, m
    assert not {d for d in graph["mingle_bench.models.registry"] if d.startswith("mingle_bench.models")}
    assert graph["mingle_bench.models"] <= {"mingle_bench.models.base", "mingle_bench.models.registry"}


def test_no_import_cycle_through_the_models():
    graph = _import_graph()
    # Tarjan's strongly connected components; a component of 2+ modules is a cycle
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = [sorted(c) for c in comps if len(c) > 1 and any(_mine(m) for m in c)]
    assert not cycles


def test_the_zoo_lists_every_registering_module():
    """Adding a model = one module + one entry in zoo.MODEL_MODULES: a module that registers a
    model but is missing from the list fails here."""
    files = _module_files()
    registering = {m for m, p in files.items() if _mine(m) and m != "mingle_bench.models.registry"
                   and "register_model(" in p.read_text(encoding="utf-8")}
    assert {m.__name__ for m in zoo.MODEL_MODULES} == registering
    assert not {"mingle_bench.baselines.ontology", "mingle_bench.baselines.sequence"} & registering
