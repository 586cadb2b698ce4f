"""`mingle-bench reproduce` on the fake pipeline: tables, published numbers, relative improvement."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mingle_bench import reproduce as RP
from mingle_bench.cli import main as cli_main
from mingle_bench.report.paper import PAPER_MODELS, REFERENCE_MODELS, paper_baselines, relative_improvement


def test_relative_improvement_definition():
    rows = [{"model": "mingle", "acc_mean": 0.80, "brier_mean": 0.1},
            {"model": "retain", "acc_mean": 0.70, "brier_mean": 0.2},
            {"model": "hypehr", "acc_mean": 0.75, "brier_mean": 0.15},
            {"model": "mingle-no-notes", "acc_mean": 0.99, "brier_mean": 0.01}]  # an ablation, never "the baseline"
    ri = relative_improvement(rows, "acc")
    assert ri["baseline"] == "hypehr" and ri["value"] == pytest.approx(100 * (0.80 - 0.75) / 0.75)
    assert relative_improvement([{"model": "retain", "acc_mean": 0.7}], "acc") is None


def test_reproduce_writes_paper_tables(fakes, tmp_path, capsys):
    res = RP.reproduce(data="synthetic:small", seeds=[0, 1], out=str(tmp_path), max_steps=2, eval_every=1, patience=2,
                       n_boot=50, progress=False, command="mingle-bench reproduce (test)", reference=None)
    folder = tmp_path / "paper" / "synthetic-small"
    assert res.folder == folder
    for name in ("main.md", "main.tex", "ablation.md", "ablation.tex", "relative_improvement.md",
                 "relative_improvement.tex", "relative_improvement.png", "paper.csv", "paper.json"):
        assert (folder / name).is_file(), name
    assert set(res.task_folders) == {"phenotype", "cvd"}
    main = (folder / "main.md").read_text()
    assert "## phenotype (the paper's MIMIC-III task)" in main and "## cvd (the paper's CRADLE task)" in main
    for name in ("RETAIN", "GRAM", "HyperGAT", "HypEHR", "MINGLE"):
        assert f"| {name} " in main
    assert "w/o" not in main  # ablations live in their own table
    # the published row sits beside ours, labelled with its data
    pub = next(line for line in main.splitlines() if "MINGLE (published)" in line)
    assert "published: MIMIC-III" in pub and "80.17" in pub and "≈46" in pub
    assert main.count("SYNTHETIC (synthetic-small)") >= 10  # every row of ours says which data produced it
    abl = (folder / "ablation.md").read_text()
    for name in ("MINGLE w/o concept semantics", "MINGLE w/o note semantics", "HypEHR"):
        assert name in abl
    rel = (folder / "relative_improvement.md").read_text()
    assert "RI = (MINGLE − B) / B × 100" in rel and "+11.83%" in rel
    payload = json.loads((folder / "paper.json").read_text())
    ri = payload["relative_improvement"]["cvd"]["aupr"]
    rows = {r["model"]: r for r in payload["tasks"]["cvd"]["rows"]}
    # B is the paired comparison's baseline, chosen on validation, never on the test means
    best = payload["tasks"]["cvd"]["comparison"]["b"]
    assert best in paper_baselines() and ri["baseline"] == best
    assert ri["value"] == pytest.approx(100 * (rows["mingle"]["aupr_mean"] - rows[best]["aupr_mean"]) / rows[best]["aupr_mean"])
    assert r"\begin{tabular}" in (folder / "main.tex").read_text()
    # the protocol and the step budget are stated and recorded; every fake stops at the budget
    assert payload["protocol"] == "default" and payload["tuning_trials"] is None and payload["notes"] == "default"
    assert (payload["max_steps"], payload["eval_every"], payload["patience"]) == (2, 1, 2)
    assert payload["stopped_at_budget"]["cvd"] == {m: 2 for m in PAPER_MODELS + REFERENCE_MODELS}
    # the references every table carries: a table of their own, apart from the paper's rows
    refs = main.split("### cvd: reference models")[1].split("## ")[0]
    assert "| Prior (training prevalence) " in refs and "| Note MLP " in refs and "TF-IDF" in refs
    assert "Prior" not in main.split("### cvd: reference models")[0].split("## cvd")[1]
    assert "protocol **default**" in main and "budget 2 optimiser steps, validation every 1 steps, patience 2" in main
    assert "at budget" in main and "| MINGLE † " in main
    assert "protocol default" in (folder / "main.tex").read_text()
    # table re-renders the paper folder in all formats
    for fmt, needle in (("md", "# Main table"), ("latex", r"\begin{tabular}"), ("csv", "task,model,data,metric")):
        assert cli_main(["table", str(folder), "--format", fmt]) == 0
        assert needle in capsys.readouterr().out
    assert not math.isnan(ri["value"])


def test_tables_only_composes_finished_cells(fakes, tmp_path):
    from mingle_bench import runner

    for task in ("phenotype", "cvd"):  # e.g. two machines, one task each, one seed finished
        runner.run_benchmark(runner.RunConfig(task=task, data="synthetic:small", models=list(PAPER_MODELS),
                                              seeds=[0], out=str(tmp_path), max_steps=2, eval_every=1, patience=2,
                                              n_boot=20, progress=False, command=f"mingle-bench run --task {task}",
                                              reference=None))
    res = RP.reproduce(data="synthetic:small", out=str(tmp_path), tables_only=True, n_boot=20, progress=False,
                       command="mingle-bench reproduce --tables-only")
    payload = json.loads((res.folder / "paper.json").read_text())
    assert payload["seeds"] == [0]  # what the folders hold, not the default 5
    assert (payload["max_steps"], payload["eval_every"], payload["patience"]) == (2, 1, 2)  # ditto for the budget
    assert payload["notes"] == "default" and payload["protocol"] == "default"
    assert "mingle-bench run --task phenotype" in payload["command"] and "--tables-only" in payload["command"]
    with pytest.raises(FileNotFoundError, match="holds no run"):
        RP.reproduce(data="synthetic:small", tasks=["los"], out=str(tmp_path), tables_only=True, progress=False)


@pytest.mark.slow  # end to end: tunes every model, then trains
def test_tuned_protocol_tunes_every_model_then_runs_into_its_own_folders(fakes, tmp_path, monkeypatch, capsys):
    import optuna

    from mingle_bench import pipeline
    from mingle_bench import results as R

    monkeypatch.setattr(pipeline, "search_space", lambda model, trial: {"scale": trial.suggest_float("scale", 0.5, 2.0)})
    models = ["retain", "hypehr", "mingle"]
    kw = dict(data="synthetic:small", seeds=[0], tasks=["cvd"], models=models, out=str(tmp_path), max_steps=3,
              eval_every=1, patience=2, n_boot=20, progress=False, protocol="tuned", trials=2, reference=None,
              command="mingle-bench reproduce --protocol tuned")
    res = RP.reproduce(**kw)
    assert res.folder == tmp_path / "paper" / "synthetic-small-tuned"
    task_folder = tmp_path / "cvd" / "synthetic-small-tuned"
    assert res.task_folders == {"cvd": task_folder}
    assert not (tmp_path / "cvd" / "synthetic-small").exists()  # the default protocol's folder is not touched
    payload = json.loads((res.folder / "paper.json").read_text())
    assert payload["protocol"] == "tuned" and payload["tuning_trials"] == 2
    main = (res.folder / "main.md").read_text()
    assert "protocol **tuned**: every model got 2 Optuna trials" in main
    cfg = json.loads((task_folder / "config.json").read_text())
    assert cfg["protocol"] == "tuned" and cfg["tuning_trials"] == 2 and sorted(cfg["tuned"]) == sorted(models)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for r in R.load_runs(task_folder):
        study_file = json.loads(Path(r["config"]["tuned_from"]).read_text())
        assert study_file["model"] == r["model"]
        assert r["config"]["hparams"]["scale"] == study_file["best_params"]["scale"]
        study = optuna.load_study(study_name=Path(r["config"]["tuned_from"]).stem, storage=storage)
        assert len(study.trials) == 2
        assert {k: study.user_attrs[k] for k in ("max_steps", "eval_every", "patience", "notes")} == \
            {"max_steps": 3, "eval_every": 1, "patience": 2, "notes": "default"}
    # a rerun joins the finished studies (no new trials) and resumes every cell
    before = {(r["model"], r["seed"]): r["finished_at"] for r in R.load_runs(task_folder)}
    capsys.readouterr()
    RP.reproduce(**kw)
    assert "0 trained, 3 resumed" in capsys.readouterr().out
    assert {(r["model"], r["seed"]): r["finished_at"] for r in R.load_runs(task_folder)} == before


def test_protocol_and_trials_are_checked(fakes, tmp_path):
    from mingle_bench import runner

    with pytest.raises(runner.RunError, match="--protocol must be one of default, tuned"):
        RP.reproduce(data="synthetic:small", out=str(tmp_path), protocol="best", progress=False)
    with pytest.raises(runner.RunError, match="--trials must be an integer >= 1"):
        RP.reproduce(data="synthetic:small", out=str(tmp_path), protocol="tuned", trials=0, progress=False)
    assert not any(tmp_path.iterdir())


def test_reproduce_with_the_meds_split(fakes, tmp_path):
    """reproduce --split meds: every task folder and the paper folder carry the -meds-split suffix
    and every cell records the split mode."""
    import json

    res = RP.reproduce(data="meds:x", tasks=["phenotype"], seeds=[0], out=str(tmp_path), max_steps=2, eval_every=1,
                       patience=2, n_boot=0, progress=False, reference=None, split="meds")
    assert res.folder == tmp_path / "paper" / "meds-x-meds-split"
    task_folder = tmp_path / "phenotype" / "meds-x-meds-split"
    assert json.loads((task_folder / "config.json").read_text())["split"] == "meds"
    records = [json.loads(x) for x in (task_folder / "runs.jsonl").read_text().splitlines() if x.strip()]
    assert records and all(r["config"]["split"] == "meds" for r in records)


def test_each_encoder_keeps_its_folders_and_the_note_channel_table_sets_them_side_by_side(fakes, tmp_path):
    from mingle_bench import pipeline as P

    assert P.encoder_suffix("default") == "" and P.encoder_suffix(None) == P.encoder_suffix("none") == "-enc-none"
    assert P.encoder_suffix("tfidf?dim=256") == "-enc-tfidf-dim-256"
    assert P.encoder_suffix("hf:/models/Bio_ClinicalBERT/?pooling=max") == "-enc-hf-bio-clinicalbert-pooling-max"
    kw = dict(data="synthetic:small", seeds=[0, 1], tasks=["cvd"], out=str(tmp_path), max_steps=2, eval_every=1,
              patience=2, n_boot=30, progress=False, reference=None)
    models = ["retain", "hypehr", "mingle", "mingle-no-notes", "mingle-no-concept"]
    RP.reproduce(models=models, **kw)
    res = RP.reproduce(models=models[2:], encoder="tfidf", **kw)
    assert (tmp_path / "cvd" / "synthetic-small" / "config.json").is_file()
    assert json.loads((tmp_path / "cvd" / "synthetic-small-enc-tfidf" / "config.json").read_text())["encoder"] == "tfidf"
    assert res.folder == tmp_path / "paper" / "synthetic-small-enc-tfidf"
    # every table says which encoder made the vectors
    assert "- text encoder: `tfidf` (TF-IDF then truncated SVD" in (res.folder / "main.md").read_text()
    assert "- text encoder: `default` (all-MiniLM-L6-v2" in (tmp_path / "cvd" / "synthetic-small" / "table.md").read_text()
    # the default encoder's paper folder gathers both encoders once its tables are recomposed
    RP.reproduce(tables_only=True, **kw)
    payload = json.loads((tmp_path / "paper" / "synthetic-small" / "paper.json").read_text())
    entries = payload["note_channel"]["cvd"]
    assert [e["encoder"] for e in entries] == ["default", "tfidf"]
    assert entries[0]["vs_default"] is None and entries[1]["vs_default"]["b"] == "mingle [default]"
    gap = entries[1]["gaps"]["mingle-no-notes"]["metrics"]["auroc"]
    assert gap["n_seeds"] == 2 and gap["ci_low"] <= gap["diff"] <= gap["ci_high"]
    table = (tmp_path / "paper" / "synthetic-small" / "note_channel.md").read_text()
    assert "MINGLE [tfidf] − MINGLE [default]" in table and "what note semantics add" in table
    # HypEHR reads no text vectors: the default folder's cells pair with MINGLE under every encoder
    assert entries[1]["gaps"]["hypehr"]["b"] == "hypehr [default]" and entries[0]["gaps"]["hypehr"]["b"] == "hypehr"
    assert "MINGLE − HypEHR [default] (what both semantic channels add)" in table
    assert r"\begin{tabular}" in (tmp_path / "paper" / "synthetic-small" / "note_channel.tex").read_text()
    # the comparisons are kept per folder by their inputs: recomposing computes none again
    from mingle_bench.report import comparison, note_channel as NC

    calls = []
    real = comparison.paired_comparison

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(comparison, "paired_comparison", counted)
        again = NC.note_channel(tmp_path / "cvd", "synthetic-small", n_boot=30)
        assert calls == [] and json.loads(json.dumps(again, default=str)) == json.loads(json.dumps(entries, default=str))
        # read back from the cache, the table is the same text (columns in the reported metrics' order)
        assert NC.render_task("cvd", again, "md") == NC.render_task("cvd", entries, "md")
        assert entries[0]["metrics"] == ["auroc", "aupr"]
        header = next(line for line in NC.render_task("cvd", again, "md") if line.startswith("| encoder"))
        assert header.index("AUROC") < header.index("AUPR")
        assert (tmp_path / "cvd" / "synthetic-small-enc-tfidf" / NC.NOTE_CHANNEL_CACHE).is_file()
        NC.note_channel(tmp_path / "cvd", "synthetic-small", n_boot=20)  # other inputs: computed anew
        assert len(calls) == 7  # 3 gaps in the default folder, 3 gaps and vs_default in the tfidf one
    # no MINGLE cell anywhere: no note-channel table
    RP.reproduce(data="synthetic:small", seeds=[0], tasks=["cvd"], models=["retain"], out=str(tmp_path / "other"),
                 max_steps=2, eval_every=1, patience=2, n_boot=0, progress=False, reference=None)
    assert not (tmp_path / "other" / "paper" / "synthetic-small" / "note_channel.md").exists()
