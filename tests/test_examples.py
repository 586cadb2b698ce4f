"""The examples (examples/custom_model.py, examples/custom_task.py) run through the CLI as a user
types them, in a fresh process (their registrations never leak into the other tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data", "synthetic:small", "--seeds", "1", "--max-steps", "20", "--eval-every", "5", "--patience", "2",
        "--encoder", "none", "--reference", "none", "--quiet", "--json"]


def _cli(*args: str, out: Path) -> tuple[int, dict | None, str]:
    proc = subprocess.run([sys.executable, "-m", "mingle_bench", *args, *TINY, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "MINGLE_NO_PROGRESS": "1"}, timeout=600)
    doc = json.loads(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, doc, proc.stderr


@pytest.mark.slow  # a subprocess end to end: the slow run (CI) keeps it
def test_the_custom_model_and_task_examples_run_through_the_cli(tmp_path):
    # both examples at once: the example model on the example task, beside a registered model
    rc, doc, err = _cli("--plugin", "examples/custom_model.py", "run", "--plugin", "examples/custom_task.py",
                        "--task", "death-7d", "--models", "bag-mlp,logreg", out=tmp_path)
    assert rc == 0, err
    assert sorted(map(tuple, doc["trained"])) == [("bag-mlp", 0), ("logreg", 0)] and doc["failed"] == []
    folder = Path(doc["folder"])
    assert folder == tmp_path / "death-7d" / "synthetic-small-enc-none"  # --encoder none: its own folders
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == "death-7d" and config["label_names"] == ["death_within_7d"]
    assert "--plugin examples/custom_model.py" in config["command"]
    assert {r["model"] for r in doc["rows"]} == {"bag-mlp", "logreg"}


@pytest.mark.slow
def test_the_custom_model_example_on_mortality(tmp_path):
    rc, doc, err = _cli("run", "--plugin", "examples/custom_model.py", "--models", "bag-mlp,logreg", out=tmp_path)
    assert rc == 0, err
    assert doc["failed"] == [] and {r["model"] for r in doc["rows"]} == {"bag-mlp", "logreg"}


@pytest.mark.slow  # a subprocess end to end: the slow run (CI) keeps it
def test_the_examples_fail_without_the_plugin(tmp_path):
    rc, _, err = _cli("run", "--task", "death-7d", "--models", "logreg", out=tmp_path)
    assert rc == 1 and "--task death-7d: unknown task" in err
