"""``mingle-bench reproduce``: the paper's tables regenerated on any data source.

For each task (``phenotype``, the paper's MIMIC-III task, and ``cvd``, the CRADLE-style task) it
runs (or resumes) ``mingle-bench run`` (:func:`mingle_bench.runner.run_benchmark`) with the
paper's rows: the baselines RETAIN, GRAM, HyperGAT and HypEHR (with RETAIN and GRAM also on the index
visit only, the visits the hypergraph models see), MINGLE, and its two ablations
(:data:`mingle_bench.report.paper.PAPER_MODELS`), plus the reference models every table carries
(:data:`~mingle_bench.report.paper.REFERENCE_MODELS`, shown apart). Under the tuned protocol every model first gets
the same number of Optuna trials (:func:`mingle_bench.tuning.tune`). Then it writes
``<out>/paper/<data-id>/paper.json`` and the tables composed from it
(:mod:`mingle_bench.report.paper`): ``main``, ``ablation`` and ``relative_improvement`` as
``.md``/``.tex``, ``relative_improvement.png`` and ``paper.csv``; and, once a task folder holds
MINGLE cells, ``note_channel`` (:mod:`mingle_bench.report.note_channel`): MINGLE and its semantic
ablations under every text encoder run on the same configuration. A non-default ``--encoder``
writes its own folders (``<data-id>-enc-<encoder>``); each paper folder's note-channel table
gathers all of them.

``RI = (MINGLE - B) / B x 100`` where ``B`` is the mean of the baseline with the best mean
*validation* AUPR of RETAIN, GRAM, HyperGAT and HypEHR (the paper's baselines; the references
are not candidates, so B may differ from the paired comparison's baseline, which is any non-MINGLE
row), so the test set plays no part in choosing it. This is the usual reading of the abstract's "improves
predictive performance by 11.83% relatively"; the abstract does not state the metric or
baseline, so the figure shows that number only as a reference line.

Every row carries a ``data`` column naming the data that produced it (``SYNTHETIC ...`` for
generated data, ``published: MIMIC-III`` for the paper's numbers).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mingle_bench import paper_numbers as PN
from mingle_bench import pipeline as P
from mingle_bench import results as R
from mingle_bench.io import atomic_write_json, atomic_write_text
from mingle_bench import runner
from mingle_bench import runspec as RS
from mingle_bench.report.finalize import DEFAULT_BOOTSTRAP, finalize, select_baseline
from mingle_bench.report.note_channel import note_channel
from mingle_bench.report.paper import (METRICS, PAPER_FILE, PAPER_MODELS, REFERENCE_MODELS, paper_baselines,
                                       relative_improvement, write_paper)

PAPER_TASKS: tuple[str, ...] = ("phenotype", "cvd")
#: the rows reproduce trains by default: the paper's, then the references (a table of their own)
DEFAULT_REPRODUCE_MODELS: tuple[str, ...] = PAPER_MODELS + REFERENCE_MODELS


@dataclass
class ReproduceResult:
    folder: Path
    main_md: str
    files: list[Path] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    task_folders: dict[str, Path] = field(default_factory=dict)


PROTOCOLS = RS.PROTOCOLS
DEFAULT_TRIALS: int = RS.default("trials", "reproduce")


def reproduce(
    data: str = "synthetic", seeds: Sequence[int] = tuple(range(runner.DEFAULT_SEEDS)),
    tasks: Sequence[str] = PAPER_TASKS, models: Sequence[str] | None = None, device: str = "auto",
    encoder: str | None = "default", split_seed: int = 0, max_steps: int = P.DEFAULT_MAX_STEPS,
    eval_every: int = P.DEFAULT_EVAL_EVERY, patience: int = P.DEFAULT_PATIENCE,
    notes: str = P.DEFAULT_NOTES, out: str | os.PathLike = P.DEFAULT_OUT,
    n_boot: int = DEFAULT_BOOTSTRAP, fresh: bool = False, progress: bool = True,
    max_notes_per_visit: int | None = None, max_tokens: int | None = None, command: str = "",
    tables_only: bool = False, protocol: str = "default", trials: int = DEFAULT_TRIALS, storage: str | None = None,
    reference: str | None = "auto", precision: str = P.DEFAULT_PRECISION, executor: str = P.DEFAULT_EXECUTOR,
    ray_address: str | None = None, split: str = P.DEFAULT_SPLIT, graph_scope: str = "all",
    code_types: Sequence[str] | None = None, split_seeds: Sequence[int] | str | None = None,
) -> ReproduceResult:
    """Run the paper's rows on ``tasks`` and write the paper tables (see the module docstring).

    ``protocol``: ``"default"`` trains every model with its own paper's default
    hyperparameters; ``"tuned"`` first gives every model the same number of Optuna trials
    (``trials``, validation metric only, same step budget; :func:`mingle_bench.tuning.tune`,
    one study per task x model in ``storage``), then trains the seeds with each model's best
    parameters. Tuned results go to ``<out>/<task>/<data-id>-tuned/`` and
    ``<out>/paper/<data-id>-tuned/``, so the two protocols never mix.

    ``tables_only``: train nothing; compose the tables from the cells already finished in each
    task's folder (e.g. runs interrupted, or run elsewhere and copied here).

    ``split="meds"``: every task uses the MEDS subject splits of a ``meds:`` cohort; folders get
    the ``-meds-split`` suffix (:func:`mingle_bench.pipeline.results_data_id`).

    ``split_seeds``: repeated splits (:func:`mingle_bench.runner.run_split_seeds`): every task is
    trained on each split seed and pooled in ``<out>/<task>/<data-id>-splits/``; the paper tables
    keep the first split's rows and append each task's pooled table (mean ± std over split x seed
    cells, hierarchical bootstrap CIs, corrected resampled t-test). With ``protocol="tuned"`` every
    split gets its own studies, tuned on its own validation patients (parameters tuned on one split
    would have seen other splits' test patients), and trains with them.
    """
    models = P.resolve_models(list(models or DEFAULT_REPRODUCE_MODELS))
    seeds = runner.parse_seeds(seeds)
    for m in models:  # the hyperparameters every row trains with, checked before any data loads
        P.check_hparams(m, P.model_defaults(m), where=f"--models {m}")
    if not tasks:
        raise P.RunError("--tasks is empty")
    if protocol not in PROTOCOLS:
        raise P.RunError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "tuned" and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise P.RunError(f"--trials must be an integer >= 1, got {trials!r}")
    if split_seeds is not None:
        split_seeds = runner.parse_seeds(split_seeds, flag="--split-seeds")
        if tables_only:
            raise P.RunError("--split-seeds with --tables-only: the pooled tables are written by the run itself "
                             "(rerun without --tables-only: finished cells are resumed)")
    command = command or P.command_line()
    pooled: dict[str, Path] = {}
    task_rows: dict[str, list[dict]] = {}
    comps: dict[str, dict | None] = {}
    folder_id = runner.folder_id(data, split, protocol, encoder)
    res = ReproduceResult(folder=Path(out) / "paper" / folder_id, main_md="")
    for task in tasks:
        if tables_only:
            folder = Path(out) / task / folder_id
            if not (folder / R.CONFIG_FILE).exists():
                raise FileNotFoundError(f"--tables-only: {folder} holds no run of {task}; run without --tables-only first")
            rows, comp, _ = finalize(folder, R.read_json(folder / R.CONFIG_FILE).get("monitor", P.DEFAULT_MONITOR),
                                            n_boot)
            res.task_folders[task] = folder
            task_rows[task] = [r for r in rows if r["model"] in models]
            comps[task] = comp
            continue
        tuned: list[str] = []
        if protocol == "tuned":  # under repeated splits, one study per split on its own validation patients
            for s in (split_seed,) if split_seeds is None else split_seeds:
                tuned = _tune_all(task, models, data=data, device=device, encoder=encoder, split_seed=s,
                                  max_steps=max_steps, eval_every=eval_every, patience=patience, notes=notes, out=out,
                                  trials=trials, storage=storage, progress=progress, command=command,
                                  max_notes_per_visit=max_notes_per_visit, max_tokens=max_tokens, precision=precision,
                                  executor=executor, ray_address=ray_address, split=split,
                                  graph_scope=graph_scope, code_types=code_types, per_split=split_seeds is not None)
        cfg = runner.RunConfig(task=task, data=data, models=models, seeds=list(seeds), split_seed=split_seed,
                               device=device, encoder=encoder, out=str(out), max_steps=max_steps,
                               eval_every=eval_every, patience=patience, notes=notes,
                               max_notes_per_visit=max_notes_per_visit, max_tokens=max_tokens, n_boot=n_boot,
                               fresh=fresh, progress=progress, command=command, tuned=tuned, protocol=protocol,
                               tuning_trials=trials if protocol == "tuned" else None, reference=reference,
                               precision=precision, executor=executor, ray_address=ray_address, split=split,
                               graph_scope=graph_scope, code_types=RS.parse_code_types(code_types))
        if split_seeds is not None:
            sp = runner.run_split_seeds(dataclasses.replace(cfg, split_seeds=tuple(split_seeds)))
            pooled[task] = sp.pooled_folder
            s = sp.runs[0]  # the paper tables show the first split's rows; the pooled table follows them
        else:
            s = runner.run_benchmark(cfg)
        if s.reference:
            from mingle_bench.report.reference import reference_lines

            print("\n".join(reference_lines(s.reference)))
        print(runner.summary_line(s))
        res.failed += [{**f, "task": task} for f in s.failed]
        res.task_folders[task] = s.folder
        task_rows[task] = [r for r in s.rows if r["model"] in models]
        comps[task] = s.comparison
    config = R.read_json(next(iter(res.task_folders.values())) / R.CONFIG_FILE)
    if tables_only:  # describe what the folders hold, not the arguments of this call
        seeds = sorted({s for t in task_rows.values() for r in t for s in r["seeds"]})
        max_steps, eval_every, patience = config.get("max_steps"), config.get("eval_every"), config.get("patience")
        split_seed, notes, trials = config.get("split_seed"), config.get("notes"), config.get("tuning_trials")
        command = " ; ".join(dict.fromkeys(R.read_json(f / R.CONFIG_FILE).get("command", "?")
                                           for f in res.task_folders.values())) + f" ; then: {command}"
    payload = {
        "data": data, "data_id": config.get("data_id"), "command": command, "machine": config.get("machine"),
        "seeds": list(seeds), "max_steps": max_steps, "eval_every": eval_every, "patience": patience,
        "split_seed": split_seed, "notes": notes, "protocol": protocol,
        "encoder": config.get("encoder"), "precision": config.get("precision"),
        **({} if split == P.DEFAULT_SPLIT else {"split": split}),
        "tuning_trials": trials if protocol == "tuned" else None,
        "stopped_at_budget": {t: {r["model"]: r.get("n_budget", 0) for r in task_rows[t]} for t in tasks},
        "tasks": {t: {"rows": task_rows[t], "comparison": comps[t], "folder": str(res.task_folders[t])} for t in tasks},
        "relative_improvement": {t: {m: relative_improvement(
            [r for r in task_rows[t] if r["model"] not in REFERENCE_MODELS], m, _paper_baseline(res.task_folders[t]))
            for m in METRICS} for t in tasks},
        "note_channel": {t: note_channel(Path(out) / t, runner.folder_id(data, split, protocol), n_boot)
                         for t in tasks},
        "published": [p.__dict__ for p in PN.PUBLISHED],
        "published_relative_improvement": {"value": PN.RELATIVE_IMPROVEMENT_PCT, "source": PN.RELATIVE_IMPROVEMENT_SOURCE},
    }
    atomic_write_json(res.folder / PAPER_FILE, payload)
    res.files = write_paper(res.folder)
    if pooled:  # repeated splits: each task's pooled table after the first split's paper tables
        main = res.folder / "main.md"
        blocks = [main.read_text(encoding="utf-8").rstrip("\n"), "", "## Repeated splits, pooled", ""]
        for task, folder in pooled.items():
            blocks += [f"From `{folder}` (one folder per split seed beside it):", "",
                       (folder / "table.md").read_text(encoding="utf-8").replace("# ", "### ", 1), ""]
        atomic_write_text(main, "\n".join(blocks))
    res.main_md = (res.folder / "main.md").read_text(encoding="utf-8")
    return res


def _paper_baseline(folder: Path) -> str | None:
    """B of the relative improvement: the paper's baseline (RETAIN, GRAM, HyperGAT, HypEHR) with the
    best mean validation monitor in ``folder``; the references are not candidates."""
    monitor = R.read_json(folder / R.CONFIG_FILE).get("monitor", P.DEFAULT_MONITOR)
    baselines = paper_baselines()
    return select_baseline([r for r in R.load_runs(folder) if r["model"] in baselines], monitor, baselines)


def _tune_all(task: str, models: Sequence[str], *, trials: int, storage: str | None, out, per_split: bool = False,
              **kw) -> list[str]:
    """One Optuna study per model (same trial count, same budget, validation only); returns the
    paths of the saved best-parameter files for ``RunConfig.tuned``. ``per_split`` (repeated
    splits): the study of split seed s is ``<name>-split<s>`` (:func:`mingle_bench.tuning.split_study_name`)
    and the paths returned are split seed 0's names, which
    :func:`mingle_bench.runner.tuned_for_split` maps to each split's file."""
    from mingle_bench import tuning

    data_id = P.results_data_id(kw["data"], kw["split"])
    paths = []
    for model in models:
        name = f"{task}-{model}-{data_id}{P.encoder_suffix(kw['encoder'])}-s{kw['max_steps']}e{kw['eval_every']}p{kw['patience']}-{kw['notes']}"
        if kw.get("graph_scope", "all") != "all":  # inputs that differ get their own study (older names unchanged)
            name += f"-{kw['graph_scope']}"
        if kw.get("code_types"):
            name += "-" + "+".join(RS.parse_code_types(kw["code_types"]))
        study = tuning.split_study_name(name, kw["split_seed"]) if per_split else name
        res = tuning.tune(task=task, model=model, trials=trials, storage=storage, study_name=study, out=out, **kw)
        if res.path is None:
            raise P.RunError(f"tuning {model} on {task}: no trial completed (see the study {study!r})")
        print(tuning.summary_line(res))
        paths.append(str(Path(res.path).with_name(f"{name}.json")) if per_split else str(res.path))
    return paths


def summary_line(res: ReproduceResult) -> str:
    tail = f"; {len(res.failed)} cells FAILED (see failures.json in the task folders)" if res.failed else ""
    return (f"Paper tables in {res.folder}/ (main, ablation, relative_improvement as .md/.tex, paper.csv, "
            f"relative_improvement.png); per-task runs in {', '.join(str(p) for p in res.task_folders.values())}{tail}")
