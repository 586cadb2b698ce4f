"""Conventions of the commands other than run/tune/reproduce/table (issue 22 item 3).

``--json`` prints one JSON object on stdout (nothing else there); a path to write to is ``--out``
(``profile-encoder --json PATH`` still works, with a deprecation line); the cache folder flag is
``--cache-dir`` everywhere (``cache --root`` a hidden alias) and its help names
``$XDG_CACHE_HOME``; ``profile-kernel`` writes to ``runs/kernel`` by default; ``mingle-bench
completion bash|zsh`` prints a shtab script. In-process through ``mingle_bench.cli.main``.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from mingle_bench.cli import build_parser, main
from mingle_bench.encoders.cache import EmbeddingCache, text_key


def _json_out(capsys, argv: list[str]):
    """Run ``argv``; stdout must be exactly one JSON document."""
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def _subparser(path: list[str]):
    """The argparse parser of ``mingle-bench <path...>``."""
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[name]
    return parser


def test_models_and_task_list_print_json(capsys):
    models = _json_out(capsys, ["models", "--json"])
    assert {"mingle", "logreg"} <= {m["name"] for m in models["models"]}
    tasks = _json_out(capsys, ["task", "list", "--json"])
    names = {t["name"] for t in tasks["tasks"]}
    assert names == {"mortality", "los", "phenotype", "readmission", "cvd"}
    pheno = next(t for t in tasks["tasks"] if t["name"] == "phenotype")
    assert len(pheno["labels"]) == 25 and pheno["reference"]


@pytest.mark.parametrize("path", [["models"], ["task", "list"], ["task", "show"], ["data", "info"],
                                  ["data", "signal"], ["data", "synth"], ["data", "export"], ["data", "meds-mapping"],
                                  ["cache", "info"], ["cache", "clear"], ["profile-kernel"], ["profile-model"],
                                  ["profile-encoder"], ["encoder", "probe"], ["evaluate"]])
def test_every_reporting_command_has_json(path):
    flags = {s for a in _subparser(path)._actions for s in a.option_strings}
    assert "--json" in flags, path


@pytest.mark.parametrize("path", [["data", "info"], ["data", "signal"], ["data", "export"], ["task", "show"],
                                  ["cache", "info"], ["cache", "clear"]])
def test_one_cache_flag_whose_help_names_xdg(path):
    parser = _subparser(path)
    action = next(a for a in parser._actions if "--cache-dir" in a.option_strings)
    assert "XDG_CACHE_HOME" in action.help and "MINGLE_CACHE" in action.help
    assert "--root" not in parser.format_help()  # the old spelling is hidden


def test_cache_info_and_clear_with_cache_dir_and_the_hidden_root(tmp_path, capsys):
    root = tmp_path / "cache"
    EmbeddingCache(root / "embeddings").put("e@1", {"kind": "text"}, [text_key("a")], np.zeros((1, 4), np.float32))
    info = _json_out(capsys, ["cache", "info", "--cache-dir", str(root), "--json"])
    assert info["namespaces"][0]["identity"] == "e@1"
    old = _json_out(capsys, ["cache", "info", "--root", str(root / "embeddings"), "--json"])
    assert old["namespaces"] == info["namespaces"]
    cleared = _json_out(capsys, ["cache", "clear", "--cache-dir", str(root), "--json"])
    assert cleared["embeddings"]["bytes_freed"] > 0 and not (root / "embeddings").exists()


def test_profile_kernel_writes_to_runs_by_default_and_prints_json(tmp_path, capsys, monkeypatch):
    parser = _subparser(["profile-kernel"])
    assert parser.get_default("out") == "runs/kernel"
    assert "%%" not in parser.format_help()
    monkeypatch.chdir(tmp_path)
    res = _json_out(capsys, ["profile-kernel", "--sizes", "tiny", "--arms", "reference", "--passes", "fwd",
                             "--repeats", "1", "--threads", "1", "--json"])
    assert res["rows"] and res["rows"][0]["arm"] == "reference" and res["header"]["copy_gbps"] > 0
    assert (tmp_path / "runs" / "kernel" / "kernel-cpu.json").exists()
    assert not (tmp_path / "results").exists()


@pytest.mark.slow  # a subprocess end to end: the slow run (CI) keeps it
def test_profile_encoder_out_and_json(tmp_path, capsys):
    from test_encoders_hf import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "tiny-bert")
    base = ["profile-encoder", "--encoder", f"hf:{bert}", "--names", "4", "--notes", "2", "--note-words", "20",
            "--repeats", "1", "--threads", "1"]
    res = _json_out(capsys, base + ["--json", "--out", str(tmp_path / "a.json")])
    assert json.loads((tmp_path / "a.json").read_text())["workload"] == res["workload"]
    # the old spelling writes the file, says it is deprecated, and still prints the table
    assert main(base + ["--json", str(tmp_path / "b.json")]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "b.json").exists() and "names/s" in captured.out
    assert "deprecated" in captured.err and "--out" in captured.err


@pytest.mark.parametrize("out", ["missing-folder/x.json", "."])
def test_profile_encoder_out_is_checked_before_the_timing(out, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["profile-encoder", "--out", out]) == 1
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "Traceback" not in err


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_prints_a_script(shell, capsys):
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "profile-kernel" in script and "--cache-dir" in script
    assert ("complete" in script) if shell == "bash" else script.startswith("#compdef")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_commands_and_flags(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "mingle-bench.bash"
    script.write_text(capsys.readouterr().out)
    probe = (f"source {script}; "
             "COMP_WORDS=(mingle-bench prof); COMP_CWORD=1; _shtab_mingle_bench; echo \"${COMPREPLY[@]}\"; "
             "COMP_WORDS=(mingle-bench cache info --); COMP_CWORD=3; _shtab_mingle_bench; echo \"${COMPREPLY[@]}\"")
    lines = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert lines[0].split() == ["profile-encoder", "profile-kernel", "profile-model"]
    assert "--cache-dir" in lines[1].split() and "--root" not in lines[1].split()


def test_completion_needs_a_known_shell(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["completion", "fish"])
    assert exc.value.code == 2 and "fish" in capsys.readouterr().err


def test_help_texts_the_issue_listed():
    assert "%%" not in _subparser(["profile-kernel"]).format_help()
    assert "runs/" in _subparser(["reproduce"]).format_help()
    tune_help = " ".join(_subparser(["tune"]).format_help().split())
    assert "minimised" in tune_help



def test_every_command_in_the_readme_parses():
    """The README's shell blocks stay valid: each `mingle-bench ...` line parses (plugins aside,
    which `main` loads before parsing)."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.replace("\\\n", " ").splitlines()]
    commands = [line for line in lines if line.startswith("mingle-bench ") and "--plugin" not in line]
    commands += [c for c in re.findall(r"`(mingle-bench (?:run|data|task|models|cache|profile-\w+)[^`]*)`", text)
                 if " --" in c and not re.search(r"[|\[\]]|\.\.\.| [A-Z]\b|--help", c)]
    assert len(commands) > 15
    parser = build_parser()
    for command in commands:
        parser.parse_args(shlex.split(command)[1:])  # SystemExit(2) on a stale flag


def test_task_show_json_is_one_object_with_summary_and_samples(capsys):
    """On the session's cached synthetic:small cohort (shared with other tests)."""
    res = _json_out(capsys, ["task", "show", "--task", "mortality", "--data", "synthetic:small", "--limit", "2",
                             "--no-texts", "--json"])
    assert res["task"] == "mortality" and len(res["samples"]) == 2
    summary = res["summary"]
    assert summary["samples"] >= sum(summary["split_patients"].values()) > 0
    assert set(summary["split_patients"]) == {"train", "val", "test"} and summary["vocabulary"] > 0
    assert {"sample_id", "labels", "codes", "split"} <= set(res["samples"][0])
