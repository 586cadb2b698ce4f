"""The run specification: every option of ``run``, ``tune`` and ``reproduce``, declared once.

Each :class:`Field` names an option's flag, type, choices (read from the registries where they
exist), default, help text, the ``--help`` group it belongs to (:data:`GROUPS`: data, task,
model, budget, execution, output), the commands that take it, and whether it enters

* the run fingerprint and every cell's input hash (``fingerprint``: :data:`ALWAYS`, or
  :data:`NON_DEFAULT` = written only when it differs from the default, so the folders and
  hashes written before the option existed stay valid),
* the attributes an Optuna study must share with every worker that joins it (``study``, same
  two policies),
* :class:`mingle_bench.pipeline.Inputs`, the options that shape a task's inputs (``inputs``).

Derived from this list: the CLI flags of run/tune/reproduce and their grouped ``--help``
(:func:`add_arguments`), :data:`FINGERPRINT_KEYS` and the ``run_cfg`` dict of
:func:`mingle_bench.runner.run_benchmark` (:func:`fingerprint_dict`), the study attributes of
:func:`mingle_bench.tuning.tune` (:func:`study_attrs`), and the keyword arguments the command
handlers pass on (:func:`values`). Adding an option is one :class:`Field` here (plus the
parameter of the function that uses it).

Keys without a flag (``pipeline``, ``data_id``, ``tuning_trials``, ``split_sha256``) are
computed by the caller; they are declared here so the fingerprint and the study attributes have
one list. This module sits above the facade (it reads its defaults) and below the runner,
tuning, reproduce and the commands.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from mingle_bench import pipeline as P
from mingle_bench.encoders.precision import PRECISIONS
from mingle_bench.report.finalize import DEFAULT_BOOTSTRAP
from mingle_bench.splits import SPLIT_MODES

#: policies of ``Field.fingerprint`` and ``Field.study``
ALWAYS, NON_DEFAULT = "always", "non-default"
COMMANDS = ("run", "tune", "reproduce")
#: help group -> its title in ``--help``, in stage order
GROUPS: dict[str, str] = {
    "data": "data (where the cohort comes from, how it is split)",
    "task": "task and features (samples, labels, input codes, notes, text encoder)",
    "model": "models and hyperparameters",
    "budget": "budget (the same for every model)",
    "execution": "execution",
    "output": "output",
}

#: the paper's rows, then the references every table carries, then RETAIN and GRAM on the index visit only
#: (docs/models.md)
DEFAULT_MODELS: tuple[str, ...] = ("mingle", "hypehr", "retain", "gram", "hypergat", "logreg", "prior", "tfidf-lr",
                                   "codes-notes-lr", "gbm", "note-mlp", "retain-index", "gram-index")
DEFAULT_SEEDS = 5
#: ``reproduce --protocol``: each model's paper defaults, or equal Optuna tuning of every model
PROTOCOLS = ("default", "tuned")
GRAPH_SCOPES = ("all", "samples")


def _tasks() -> list[str]:
    from mingle_bench.tasks import list_tasks

    return list_tasks()


def _models() -> list[str]:
    return P.available_models()


def _note_policies() -> tuple[str, ...]:
    from mingle_bench.tasks.base import NOTE_POLICIES

    return NOTE_POLICIES


def _monitors() -> list[str]:
    from mingle_bench.metrics import MONITORS

    return list(MONITORS)


def _code_type_names() -> tuple[str, ...]:
    from mingle_bench.data.cohort import CODE_TYPES

    return CODE_TYPES


def parse_code_types(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"medication,service"`` -> ``("medication", "service")``; ``None`` = the task's own.
    Anything else is one line naming ``--code-types``."""
    if value is None:
        return None
    names = _code_type_names()
    items = value.split(",") if isinstance(value, str) else list(value)
    types = tuple(str(t).strip() for t in items if str(t).strip())
    bad = [t for t in types if t not in names]
    if not types or bad:
        raise P.RunError(f"--code-types {value!r}: expected a comma list of {', '.join(names)}")
    return types


def _reference(value: str | None) -> str | None:
    return None if value in (None, "none") else value


def _int(value: Any) -> Any:
    return None if value is None else int(value)


def _list(value: Any) -> Any:
    return None if value is None else list(value)


@dataclass(frozen=True)
class Field:
    """One option. ``name`` is its key everywhere (RunConfig attribute, keyword argument,
    config.json / study attribute); ``flag`` its CLI spelling (``None``: computed, no flag)."""

    name: str
    flag: str | None
    group: str
    help: str = ""
    default: Any = None
    type: Callable[[str], Any] | None = None
    #: allowed values: a tuple, or a function returning them (a registry, read when the parser is built)
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    #: argparse enforces ``choices`` (closed sets); a registry's names are checked by the command with one line
    strict: bool = True
    commands: tuple[str, ...] = COMMANDS
    fingerprint: str | None = None
    study: str | None = None
    inputs: bool = False
    #: CLI value -> the value the API takes (e.g. ``"none"`` -> ``None``)
    convert: Callable[[Any], Any] | None = None
    #: API value -> its JSON form in config.json, the fingerprint and study attributes
    record: Callable[[Any], Any] | None = None
    action: str | None = None
    metavar: str | None = None
    required: bool = False
    #: the smallest value a number takes (checked with one line naming the flag); None: any
    minimum: int | float | None = None
    #: command -> {"default": ..., "help": ..., "name": ...}: what differs in that command
    per_command: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        """The argparse attribute (the flag, spelled with underscores)."""
        return (self.flag or self.name).lstrip("-").replace("-", "_")

    def for_command(self, command: str, key: str) -> Any:
        return self.per_command.get(command, {}).get(key, getattr(self, key))

    def allowed(self) -> list[Any] | None:
        c = self.choices() if callable(self.choices) else self.choices
        return None if c is None else list(c)

    def as_record(self, value: Any) -> Any:
        return self.record(value) if self.record else value


def _budget_help(what: str, default: int) -> str:
    return f"{what} (default {default})"


FIELDS: tuple[Field, ...] = (
    # ---- computed keys (no flag) --------------------------------------------------------------
    Field("pipeline", None, "output", "pipeline version", fingerprint=ALWAYS, study=ALWAYS),
    Field("data_id", None, "data", "the data source's id (results folder name)", fingerprint=ALWAYS, study=ALWAYS),
    Field("split_sha256", None, "data", "sha256 of the split manifest", study=ALWAYS),
    Field("tuning_trials", None, "model", "Optuna trials per model under --protocol tuned", fingerprint=ALWAYS),
    # ---- data ---------------------------------------------------------------------------------
    Field("data", "--data", "data", default="synthetic", fingerprint=ALWAYS, study=ALWAYS, inputs=True,
          metavar="SOURCE",
          help="data source: synthetic[:small|default|mimic] (default: synthetic, generated on first use), "
               "mimic3:DIR, mimic4:DIR, meds:DIR (a MEDS folder; meds:DIR;config=FILE or --meds-config for a "
               "mapping file), or a plugin's source kind (docs/extending.md)"),
    Field("meds_config", "--meds-config", "data", metavar="FILE",
          help="with --data meds:DIR: a JSON or YAML file overriding the MEDS code mapping "
               "(mingle_bench/data/meds_mapping.py lists the keys)"),
    Field("split", "--split", "data", default=P.DEFAULT_SPLIT, choices=SPLIT_MODES, fingerprint=NON_DEFAULT,
          study=NON_DEFAULT, inputs=True,
          help="random (default): the seeded patient-level 7:1:2 split; meds: the MEDS subject splits of a "
               "meds:DIR cohort (train -> train, tuning -> validation, held_out -> test; results go to "
               "<data-id>-meds-split)"),
    Field("split_seed", "--split-seed", "data", default=0, type=int, fingerprint=ALWAYS, study=ALWAYS, inputs=True,
          record=_int, help="seed of the patient-level 7:1:2 split (default 0)", minimum=0),
    Field("split_seeds", "--split-seeds", "data", commands=("run", "tune", "reproduce"), metavar="N|LIST",
          help="repeated splits: a count (3 -> split seeds 0..2) or a comma list. run/reproduce: each split is a "
               "full results folder (split seed 0 in <data-id>/, seed s in <data-id>-split<s>/) and the pooled "
               "report (hierarchical bootstrap CIs, corrected resampled t-test) goes to <data-id>-splits/; tune: one "
               "study per split seed (<study>-split<s> for s > 0), each on its own split's validation patients, "
               "which run --split-seeds --tuned <study> picks up split by split"),
    # ---- task and features ----------------------------------------------------------------------
    Field("task", "--task", "task", default="mortality", choices=_tasks, strict=False, commands=("run", "tune"),
          fingerprint=ALWAYS, study=ALWAYS, inputs=True, help="task name"),
    Field("tasks", "--tasks", "task", default="phenotype,cvd", commands=("reproduce",),
          help="tasks of the main table, a comma list (default phenotype,cvd)"),
    Field("notes", "--notes", "task", default=P.DEFAULT_NOTES, choices=_note_policies, fingerprint=ALWAYS,
          study=ALWAYS, inputs=True,
          help="note policy: default = the task's (discharge-time tasks read the index admission's own discharge "
               "summary, as the paper); in-stay = never a discharge summary (see docs/tasks.md)"),
    Field("code_types", "--code-types", "task", fingerprint=ALWAYS, study=NON_DEFAULT, inputs=True,
          convert=parse_code_types, record=_list, metavar="LIST",
          help="comma list of input code types (diagnosis,procedure,medication,service; default: the task's)"),
    Field("graph_scope", "--graph-scope", "task", default="all", choices=GRAPH_SCOPES, fingerprint=ALWAYS,
          study=NON_DEFAULT, inputs=True,
          help="admissions that become hyperedges: all (HypEHR/MINGLE, transductive; default) or only the task's "
               "samples (see docs/tasks.md)"),
    Field("encoder", "--encoder", "task", default="default", fingerprint=ALWAYS, study=ALWAYS, inputs=True,
          help="text encoder for concept/note embeddings: default (local MiniLM), hf:PATH, openai:MODEL, tfidf, "
               "a plugin's backend, or none"),
    Field("precision", "--precision", "task", default=P.DEFAULT_PRECISION, choices=PRECISIONS,
          fingerprint=NON_DEFAULT, study=NON_DEFAULT, inputs=True,
          help="encoder arithmetic: fp32 (default, bit-reproducible across machines), bf16 (autocast on CPUs with "
               "AMX/AVX512-BF16 and on GPUs) or auto (bf16 where supported, else fp32); part of the embedding "
               "cache key"),
    Field("max_notes_per_visit", "--max-notes-per-visit", "task", type=int, fingerprint=ALWAYS, study=NON_DEFAULT,
          inputs=True, help="cap on notes embedded per visit", minimum=1),
    Field("max_tokens", "--max-tokens", "task", type=int, fingerprint=ALWAYS, study=NON_DEFAULT, inputs=True,
          help="cap on tokens embedded per note", minimum=1),
    # ---- models -------------------------------------------------------------------------------
    Field("models", "--models", "model", default=",".join(DEFAULT_MODELS), commands=("run", "reproduce"),
          choices=_models, strict=False, metavar="LIST",
          help=f"comma list of registered models, or 'all' (default: {','.join(DEFAULT_MODELS)})",
          per_command={"reproduce": {"default": None,
                                     "help": "override the model list (default: the paper's rows)"}}),
    Field("model", "--model", "model", commands=("tune",), choices=_models, strict=False, required=True,
          study=ALWAYS, help="registered model name"),
    Field("seeds", "--seeds", "model", default=str(DEFAULT_SEEDS), commands=("run", "reproduce"), metavar="N|LIST",
          help=f"number of training seeds (0..N-1) or a comma list (default {DEFAULT_SEEDS})"),
    Field("tuned", "--tuned", "model", default=[], action="append", commands=("run",), metavar="STUDY",
          help="use the best hyperparameters of a `mingle-bench tune` study (name or JSON path); repeatable. "
               "A study tuned on another task or data is refused"),
    Field("tuned_anyway", "--tuned-anyway", "model", default=False, action="store_true", commands=("run",),
          help="use --tuned files although they were tuned on another task or data (with a warning)"),
    Field("protocol", "--protocol", "model", default="default", choices=PROTOCOLS, commands=("reproduce",),
          fingerprint=ALWAYS,
          help="default: every model with its paper's default hyperparameters; tuned: every model gets --trials "
               "Optuna trials on validation (same budget), then its best parameters with every seed"),
    Field("trials", "--trials", "model", default=50, type=int, commands=("tune", "reproduce"),
          help="total trials of the study (capped across all workers)",
          per_command={"reproduce": {"default": 20,
                                     "help": "Optuna trials per model under --protocol tuned (default 20)"}}, minimum=1),
    Field("storage", "--storage", "model", commands=("tune", "reproduce"), metavar="URL",
          help="Optuna RDB URL; default sqlite:///<out>/optuna.db. Use postgresql://... for many machines "
               "(optuna-dashboard opens either)"),
    Field("study_name", "--study-name", "model", commands=("tune",), help="default: <task>-<model>-<data-id>"),
    Field("seed", "--seed", "model", default=0, type=int, commands=("tune",),
          help="sampler and training seed (default 0)", minimum=0),
    Field("worker_id", "--worker-id", "model", default=0, type=int, commands=("tune",),
          help="index of this worker when several share a study (offsets the sampler seed)", minimum=0),
    # ---- budget -------------------------------------------------------------------------------
    Field("max_steps", "--max-steps", "budget", default=P.DEFAULT_MAX_STEPS, type=int, fingerprint=ALWAYS,
          study=ALWAYS, record=_int,
          help=_budget_help("budget in optimiser steps, the same for every model; a full-graph step and a "
                            "minibatch step count alike", P.DEFAULT_MAX_STEPS)),
    Field("eval_every", "--eval-every", "budget", default=P.DEFAULT_EVAL_EVERY, type=int, fingerprint=ALWAYS,
          study=ALWAYS, record=_int, help=_budget_help("validate every N optimiser steps", P.DEFAULT_EVAL_EVERY)),
    Field("patience", "--patience", "budget", default=P.DEFAULT_PATIENCE, type=int, fingerprint=ALWAYS,
          study=ALWAYS, record=_int,
          help=_budget_help("stop after N evaluations without a better validation value", P.DEFAULT_PATIENCE)),
    Field("monitor", "--monitor", "budget", default=P.DEFAULT_MONITOR, choices=_monitors, strict=False,
          commands=("run", "tune"), fingerprint=ALWAYS, study=ALWAYS,
          help="validation metric for early stopping and model selection (default aupr; brier, ece and loss, "
               "the validation BCE, are minimised, the others maximised)"),
    Field("timeout", "--timeout", "budget", type=float, commands=("tune",), metavar="SECONDS",
          help="stop this worker after this many seconds"),
    Field("epochs", "--epochs", "budget", type=int, help=argparse.SUPPRESS),
    # ---- execution ----------------------------------------------------------------------------
    Field("device", "--device", "execution", default="auto", help="auto (cuda when visible), cpu or cuda[:N]"),
    Field("executor", "--executor", "execution", default=P.DEFAULT_EXECUTOR, choices=P.EXECUTORS,
          help="where cells, trials and embedding shards run: local (this process; default) or ray"),
    Field("ray_address", "--ray-address", "execution", metavar="ADDRESS",
          help="Ray cluster to join with --executor ray (default: $RAY_ADDRESS, else start a local Ray)"),
    Field("workers", "--workers", "execution", default=1, type=int, commands=("tune",),
          help="with --executor ray: Optuna workers started as Ray tasks on the study's storage (default 1)", minimum=1),
    Field("fresh", "--fresh", "execution", default=False, action="store_true",
          help="discard earlier results in the output folder",
          per_command={"tune": {"help": "start the study anew when it is lost (its storage was emptied or holds "
                                        "no such study) although <out>/tuning/<study>.json exists; that file is "
                                        "kept as <study>.lost-<time>.json"},
                       "reproduce": {"help": "discard earlier per-task results"}}),
    # ---- output -------------------------------------------------------------------------------
    Field("out", "--out", "output", default=P.DEFAULT_OUT, metavar="DIR",
          help="results root (default: runs/; the committed reference results live in results/)"),
    Field("reference", "--reference", "output", default="auto", commands=("run", "reproduce"), convert=_reference,
          metavar="DIR|auto|none",
          help="committed reference results to check every trained cell against (default: the checkout's "
               "results/; 'none' disables the check)"),
    Field("n_boot", "--bootstrap", "output", default=DEFAULT_BOOTSTRAP, type=int, commands=("run", "reproduce"),
          help=f"bootstrap resamples for the paired comparison (default {DEFAULT_BOOTSTRAP}; 0 disables)", minimum=0),
    Field("save_checkpoints", "--save-checkpoints", "output", default=False, action="store_true", commands=("run",),
          help="write each cell's best weights and config to <folder>/checkpoints/<model>-<seed>/ "
               "(for `mingle-bench predict`; docs/extending.md)"),
    Field("tables_only", "--tables-only", "output", default=False, action="store_true", commands=("reproduce",),
          help="train nothing: write the paper tables from the cells already finished in the task folders"),
    Field("json", "--json", "output", default=False, action="store_true",
          help="print one JSON summary to stdout instead of the tables (progress and logs stay on stderr)",
          per_command={"tune": {"help": "print the best trial and parameters as JSON to stdout"}}),
    Field("quiet", "--quiet", "output", default=False, action="store_true", help="no progress bars"),
    Field("debug", "--debug", "output", default=False, action="store_true",
          help="show tracebacks instead of one-line errors"),
)

_BY_NAME = {f.name: f for f in FIELDS}
#: config keys that define a run: a results folder holds runs of one such configuration, and
#: every cell's input hash covers them (runner.input_hash)
def split_name(name: str, split_seed: int) -> str:
    """The name of ``name``'s study, tuned file or results folder for split seed ``split_seed`` under
    repeated splits: ``name`` itself for split seed 0, ``<name>-split<s>`` otherwise."""
    return name if int(split_seed) == 0 else f"{name}-split{int(split_seed)}"


FINGERPRINT_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.fingerprint)
#: study attributes a joining worker must match; those of NON_DEFAULT are absent at their default
STUDY_ATTRS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.study == ALWAYS)
OPTIONAL_STUDY_ATTRS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.study == NON_DEFAULT)
INPUT_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.inputs)

#: the examples at the end of each command's ``--help``
EXAMPLES: dict[str, str] = {
    "run": """examples:
  mingle-bench run --data synthetic:small --models logreg,mingle --seeds 1     # a 2-minute smoke run
  mingle-bench run --task mortality                                            # the main job
  mingle-bench run --task los --notes in-stay --code-types diagnosis,medication --max-steps 500
  mingle-bench run --task mortality --tuned mort-mingle                        # a tune study's best parameters
  mingle-bench run --plugin examples/custom_model.py --models tiny-mlp,logreg --json""",
    "tune": """examples:
  mingle-bench tune --task mortality --model mingle --trials 50 --study-name mort-mingle
  mingle-bench tune --task los --model retain --trials 20 --graph-scope samples --code-types diagnosis
  mingle-bench tune --task mortality --model mingle --trials 200 --storage postgresql://host/db --worker-id 1
  optuna-dashboard sqlite:///runs/optuna.db                                    # browse the studies""",
    "reproduce": """examples:
  mingle-bench reproduce                                    # the paper's tables on the synthetic cohort
  mingle-bench reproduce --protocol tuned --trials 20       # after equal Optuna tuning of every model
  mingle-bench reproduce --data mimic3:/data/mimic-iii --seeds 3 --json""",
}


def get(name: str) -> Field:
    """The field called ``name`` (``KeyError`` for an unknown one)."""
    return _BY_NAME[name]


def fields(command: str | None = None, *, with_flag: bool = True) -> list[Field]:
    """The fields of ``command`` (every field when ``None``), in declaration order."""
    return [f for f in FIELDS if (not with_flag or f.flag) and (command is None or command in f.commands)]


def default(name: str, command: str = "run") -> Any:
    """The default of a field in ``command``, as the API takes it (converted)."""
    f = _BY_NAME[name]
    value = f.for_command(command, "default")
    return f.convert(value) if f.convert and value is not None else value


def _record(which: str, values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in FIELDS:
        policy = getattr(f, which)
        if not policy:
            continue
        value = f.as_record(values[f.name] if f.name in values else f.default)  # absent: its default
        if policy == NON_DEFAULT and value == f.as_record(f.default):
            continue  # absent at its default: keys and hashes from before the option existed stay valid
        out[f.name] = value
    return out


def fingerprint_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``run_cfg`` of a run: the :data:`FINGERPRINT_KEYS` of ``values`` (a mapping from field
    names, the computed keys included) in their JSON form, the NON_DEFAULT ones only when they
    differ from their default. Its :func:`fingerprint` names the configuration of a results folder."""
    return _record("fingerprint", values)


def fingerprint(run_cfg: Mapping[str, Any]) -> str:
    """The 16-hex-digit configuration fingerprint written to config.json."""
    from mingle_bench.results import stable_hash

    return stable_hash(dict(run_cfg))


def study_attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes an Optuna study records and every joining worker must match."""
    return _record("study", values)


def inputs_kwargs(obj: Any) -> dict[str, Any]:
    """The :class:`mingle_bench.pipeline.Inputs` keyword arguments read from ``obj`` (attributes or a mapping)."""
    get_ = obj.get if isinstance(obj, Mapping) else (lambda k, d=None: getattr(obj, k, d))
    out = {name: get_(name, _BY_NAME[name].default) for name in INPUT_FIELDS}
    if out.get("code_types") is not None:
        out["code_types"] = tuple(out["code_types"])
    return out


def inputs(obj: Any) -> "P.Inputs":
    """:class:`mingle_bench.pipeline.Inputs` from a RunConfig, the arguments of ``tune`` or a mapping."""
    return P.Inputs(**inputs_kwargs(obj))


# ---------------------------------------------------------------------------------------------
# the command line


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout; wraps the help texts."""


def add_arguments(parser: argparse.ArgumentParser, command: str) -> dict[str, argparse._ArgumentGroup]:
    """Add ``command``'s fields to ``parser`` in argument groups by stage, and its examples as the
    epilog. Returns the groups, so a command can add an option of its own to one of them."""
    parser.formatter_class = _Formatter
    if command in EXAMPLES and not parser.epilog:
        parser.epilog = EXAMPLES[command]
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for f in fields(command):
        kw: dict[str, Any] = {"default": f.for_command(command, "default"), "dest": f.dest}
        help_ = f.for_command(command, "help")
        allowed = f.allowed() if f.choices is not None else None
        if f.action:
            kw["action"] = f.action
        else:
            if f.type is not None:
                kw["type"] = f.type
            if allowed is not None and f.strict:
                kw["choices"] = allowed
            if f.metavar or f.type in (int, float):
                kw["metavar"] = f.metavar or ("N" if f.type is int else "X")
        if f.required:
            kw["required"] = True
            kw.pop("default")
        if allowed is not None and not f.strict and help_ is not argparse.SUPPRESS:
            help_ = f"{help_}; one of: {', '.join(map(str, allowed))}"
            if kw.get("default") is not None and "default" not in help_:
                help_ += f" (default {kw['default']})"
        elif allowed is not None and help_ is not argparse.SUPPRESS and "default" in kw and kw["default"] is not None:
            help_ = help_ if "default" in help_ else f"{help_} (default {kw['default']})"
        kw["help"] = help_
        groups[f.group].add_argument(f.flag, **kw)
    return groups


def values(args: argparse.Namespace, command: str, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``command``'s parsed options by field name, converted to what the API takes. Options a
    command handles itself (``json``, ``quiet``, ``debug``, ``meds_config``, ``epochs``) are left out."""
    skip = {"json", "quiet", "debug", "meds_config", "epochs", *exclude}
    out = {}
    for f in fields(command):
        if f.name in skip or not hasattr(args, f.dest):
            continue
        v = getattr(args, f.dest)
        out[f.name] = f.convert(v) if f.convert and v is not None else v
    return out


def check_minimums(args: argparse.Namespace, command: str) -> None:
    """Numbers below a field's ``minimum``: one line naming the flag, before anything runs."""
    for f in fields(command):
        value = getattr(args, f.dest, None)
        if f.minimum is not None and value is not None and value < f.minimum:
            raise P.RunError(f"{f.flag} must be >= {f.minimum}, got {value}")


def check_choices(args: argparse.Namespace, command: str) -> None:
    """The registry-backed choices argparse does not enforce (tasks, models, monitors): one line
    naming the flag and what it accepts, before any data, folder or bar exists."""
    for f in fields(command):
        if f.strict or f.choices is None or not hasattr(args, f.dest):
            continue
        v = getattr(args, f.dest)
        if v is None:
            continue
        allowed = f.allowed() or []
        given = [x for x in str(v).replace(" ", "").split(",") if x] if f.name == "models" else [v]
        if f.name == "models" and given == ["all"]:
            continue
        bad = [x for x in given if x not in allowed]
        if bad:
            noun = {"models": "model(s)", "model": "model", "task": "task", "monitor": "metric"}.get(f.name, "value")
            raise P.RunError(f"{f.flag} {','.join(map(str, bad))}: unknown {noun}; "
                             f"choose one of {', '.join(map(str, allowed))}")


__all__ = ["ALWAYS", "COMMANDS", "DEFAULT_MODELS", "DEFAULT_SEEDS", "EXAMPLES", "FIELDS", "FINGERPRINT_KEYS",
           "Field", "GROUPS", "INPUT_FIELDS", "NON_DEFAULT", "OPTIONAL_STUDY_ATTRS", "PROTOCOLS", "STUDY_ATTRS",
           "add_arguments", "check_choices", "check_minimums", "default", "fields", "fingerprint", "fingerprint_dict", "get",
           "inputs", "inputs_kwargs", "parse_code_types", "study_attrs", "values"]
