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
    "retain-index": "baseline", "gram-index": "baseline",
    "logreg": "reference", "note-mlp": "reference", "transformer": "reference",
    "prior": "reference", "tfidf-lr": "reference", "codes-notes-lr": "reference", "gbm": "reference",
}
DISPLAY = {  # the names in the tables
    "mingle": "MINGLE", "mingle-no-concept": "MINGLE w/o concept semantics",
    "mingle-no-notes": "MINGLE w/o note semantics", "mingle-no-structural": "MINGLE w/o structural (DeepWalk)",
    "hypehr": "HypEHR", "retain": "RETAIN", "gram": "GRAM", "hypergat": "HyperGAT",
    "retain-index": "RETAIN (index visit only)", "gram-index": "GRAM (index visit only)",
    "logreg": "Logistic regression (bag of codes)", "note-mlp": "Note MLP", "transformer": "Set Transformer",
    "mingle-gated": "MINGLE (gated fusion)", "mingle-sum": "MINGLE (sum fusion)",
    "prior": "Prior (training prevalence)", "tfidf-lr": "Logistic regression (TF-IDF notes)",
    "codes-notes-lr": "Logistic regression (codes + TF-IDF notes)",
    "gbm": "Gradient boosting (LightGBM, code counts + TF-IDF notes)",
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
    assert list_models("baseline") == ["gram", "gram-index", "hypehr", "hypergat", "retain", "retain-index"]
    assert list_models("reference") == ["codes-notes-lr", "gbm", "logreg", "note-mlp", "prior", "tfidf-lr", "transformer"]
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
    if getattr(cls, "sklearn", False):        # fitted by its solver: no trainer key is searched
        assert not set(space) & {"lr", "weight_decay", "batch_size"}
        gbm = {"learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction", "lambda_l2"}
        assert set(space) == {"prior": set(), "gbm": gbm}.get(name, {"C"})
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
# The package-wide import graph, its cycles and layer rules are checked in test_architecture.py;
# here: what the registry and the models package import, and the zoo's explicit list.
def _package_imports(path: Path) -> set[str]:
    """Absolute ``mingle_bench`` modules named by the imports anywhere in ``path`` (lazy ones too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import"
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("mingle_bench")}


def test_registry_and_models_package_import_no_model():
    models = ROOT / "mingle_bench" / "models"
    assert not {m for m in _package_imports(models / "registry.py") if m.startswith("mingle_bench.models")}
    assert _package_imports(models / "__init__.py") <= {
        "mingle_bench.models.base", "mingle_bench.models.base.EHRModel",
        "mingle_bench.models.registry", "mingle_bench.models.registry.FAMILIES",
        "mingle_bench.models.registry.register_model"}
    for path in models.glob("*.py"):
        assert not {m for m in _package_imports(path) if m.startswith(("mingle_bench.baselines", "mingle_bench.zoo"))}


def test_the_zoo_lists_every_registering_module():
    """Adding a model = one module + one entry in zoo.MODEL_MODULES: a module that registers a
    model but is missing from the list fails here."""
    files = {f"mingle_bench.models.{p.stem}": p for p in (ROOT / "mingle_bench" / "models").glob("*.py")}
    files |= {f"mingle_bench.baselines.{p.stem}": p for p in (ROOT / "baselines").glob("*.py")}
    registering = {m for m, p in files.items() if not m.endswith(".registry")
                   and "register_model(" in p.read_text(encoding="utf-8")}
    assert {m.__name__ for m in zoo.MODEL_MODULES} == registering
    assert not {"mingle_bench.baselines.ontology", "mingle_bench.baselines.sequence"} & registering
