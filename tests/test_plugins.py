"""Open registries with plugins (mingle_bench/plugins.py): a model, a task, a data source and an
encoder backend registered from a ``--plugin`` file or an entry point reach every command."""
from __future__ import annotations

import sys
import textwrap
from types import SimpleNamespace

import pytest

import mingle_bench.zoo  # noqa: F401  (every built-in model registered before a test copies the registry)
from mingle_bench import plugins
from mingle_bench.cli import main
from mingle_bench.data import sources
from mingle_bench.encoders import registry as encoders
from mingle_bench.models import registry as models
from mingle_bench.tasks import registry as tasks

PLUGIN = textwrap.dedent('''
    """A test plugin: one of each kind."""
    from mingle_bench.baselines.logreg import LogReg
    from mingle_bench.data.sources import register_source
    from mingle_bench.encoders.registry import register_backend
    from mingle_bench.models.registry import register_model
    from mingle_bench.tasks import register_task
    from mingle_bench.tasks.mortality import MortalityTask

    register_model("plugged-lr", family="reference", display="Plugged LR")(LogReg)


    @register_task
    class PluggedTask(MortalityTask):
        name = "plugged-task"


    def load(arg, seed, root, progress):
        from mingle_bench.data.sources import load_source
        return load_source("synthetic:small", root, progress)


    register_source("plugged", usage="plugged:NAME", load=load)
    register_backend("plugged-enc", lambda target, **kw: ("encoder", target, kw), options={"dim": int})
''')


@pytest.fixture
def scratch(monkeypatch, tmp_path):
    """Registries that forget what the test registers, and a plugin file."""
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))
    monkeypatch.setattr(encoders, "_BACKENDS", dict(encoders._BACKENDS))
    monkeypatch.setattr(plugins, "_loaded_plugins", {})
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN)
    yield path
    sys.modules.pop("mingle_bench_plugin_my_plugin", None)


def test_a_plugin_file_registers_one_of_each(scratch):
    plugins.load_plugin(str(scratch))
    assert "plugged-lr" in models.list_models("reference")
    assert "plugged-task" in tasks.list_tasks()
    assert "plugged" in sources.list_sources() and "plugged:NAME" in sources.expected()
    assert sources.parse_spec("plugged:x") == ("plugged", "x", 0)
    assert sources.data_id("plugged:x").startswith("plugged-")
    assert encoders.load_encoder("plugged-enc:foo?dim=3") == ("encoder", "foo", {"dim": 3})
    with pytest.raises(ValueError, match="unknown option 'size'"):
        encoders.parse_spec("plugged-enc:foo?size=3")
    plugins.load_plugin(str(scratch))  # once only: a second load registers nothing twice


def test_the_cli_takes_plugin_anywhere_and_lists_its_names(scratch, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--plugin", str(scratch), "--help"])
    out = capsys.readouterr().out
    assert "plugged-task" in out and "plugged-lr" in out and "--plugin" not in out.split("options:")[0]
    # a task unknown without the plugin is one line naming the flag
    assert main(["run", "--task", "nope-task", "--quiet"]) == 1
    assert "--task nope-task: unknown task" in capsys.readouterr().err


def test_plugin_args_are_split_off():
    assert plugins.take_plugin_args(["--plugin", "a.py", "run", "--plugin=b", "--task", "x"]) == (
        ["a.py", "b"], ["run", "--task", "x"])
    with pytest.raises(plugins.PluginError):
        plugins.take_plugin_args(["run", "--plugin"])


@pytest.mark.parametrize("body,expect", [(None, "no such file"), ("raise RuntimeError('boom')", "RuntimeError: boom")])
def test_a_broken_plugin_is_one_line(tmp_path, capsys, monkeypatch, body, expect):
    monkeypatch.setattr(plugins, "_loaded_plugins", {})
    path = tmp_path / "broken.py"
    if body is not None:
        path.write_text(body + "\n")
    assert main(["--plugin", str(path), "models"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mingle-bench: error: --plugin") and expect in err[0]


def test_entry_points_load_once_and_a_broken_one_warns(monkeypatch):
    calls = []

    def good():
        calls.append("good")

    def bad():
        raise ImportError("missing dependency")

    eps = [SimpleNamespace(name="good", value="pkg.good", load=good),
           SimpleNamespace(name="bad", value="pkg.bad", load=bad)]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: eps if group == "test.group" else [])
    monkeypatch.setattr(plugins, "_loaded_groups", set())
    with pytest.warns(UserWarning, match="bad = pkg.bad .* failed to load: ImportError: missing dependency"):
        assert plugins.load_group("test.group") == ["good"]
    assert plugins.load_group("test.group") == [] and calls == ["good"]


@pytest.mark.usefixtures("one_torch_thread")
def test_fit_takes_a_model_class():
    from mingle_bench.profiling.random_task_data import make_random_task_data
    from mingle_bench.training import Budget, fit
    from mingle_bench.zoo import get_model

    data = make_random_task_data(n_samples=24, n_labels=1, n_nodes=16, seed=1)
    cls = get_model("note-mlp")
    by_class = fit(cls, data, cls.tiny_hparams, seed=0, device="cpu", budget=Budget(2, 1, 1))
    by_name = fit("note-mlp", data, cls.tiny_hparams, seed=0, device="cpu", budget=Budget(2, 1, 1))
    assert (by_class.test_probs == by_name.test_probs).all()


def test_every_model_has_tiny_hparams_it_accepts():
    from mingle_bench.zoo import get_model, list_models

    for name in list_models():
        cls = get_model(name)
        assert set(cls.tiny_hparams) <= set(cls.default_hparams), name


def test_the_docs_name_every_registered_entry():
    """The docs' model and task tables follow the registries (a new built-in entry needs its row)."""
    from pathlib import Path

    from mingle_bench.zoo import list_models

    docs = Path(__file__).resolve().parents[1] / "docs"
    models_md, tasks_md = (docs / "models.md").read_text(), (docs / "tasks.md").read_text()
    assert [m for m in list_models() if f"`{m}`" not in models_md] == []
    assert [t for t in tasks.list_tasks() if f"`{t}`" not in tasks_md] == []
    assert [b for b in encoders.list_backends() if b not in (docs / "encoders.md").read_text()] == []
