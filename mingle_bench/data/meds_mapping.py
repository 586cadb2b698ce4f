"""How MEDS events become a :class:`~mingle_bench.data.cohort.Cohort`, and back: the one home of
the MEDS code conventions, shared by the reader (:mod:`mingle_bench.data.meds`) and the
exporter (:mod:`mingle_bench.data.meds_export`).

A MEDS dataset (Medical Event Data Standard, ``meds`` 0.4) is a folder::

    data/**/*.parquet              subject_id int64, time timestamp[us], code string,
                                   numeric_value float32, text_value large_string (optional),
                                   plus extra columns (e.g. hadm_id)
    metadata/dataset.json          dataset name, version, ETL
    metadata/codes.parquet         code, description, parent_codes
    metadata/subject_splits.parquet  subject_id, split (train / tuning / held_out)

The default mapping follows the conventions of the MIMIC-IV MEDS ETL, so a MEDS copy of MIMIC-IV
reads without a mapping file:

================  =====================================================  ==========================
cohort            MEDS code (regular expression, RE2 syntax)              time
================  =====================================================  ==========================
admission         ``HOSPITAL_ADMISSION//<admission type>[//...]``        admit time
discharge         ``HOSPITAL_DISCHARGE//<location>``                     discharge time
diagnosis         ``DIAGNOSIS//ICD//<version>//<code>``                  ignored (see ``untimed``)
procedure         ``PROCEDURE//ICD//<version>//<code>``                  procedure time
medication        ``MEDICATION//[START//]<drug>`` (not ``//STOP//``)      start time
service           ``SERVICE//<curr_service>`` (this toolkit's own)       transfer time
note              ``NOTE//<category>``, text in ``text_value``           chart time
birth / death     ``MEDS_BIRTH`` / ``MEDS_DEATH``                        date of birth / death
sex               ``GENDER//<F|M>``                                      none (static)
================  =====================================================  ==========================

Linking events to admissions: with a ``hadm_id`` column, events carry their admission's id
(code events whose ``hadm_id`` is null are linked by time, like the no-column case; a note or a
``MEDS_DEATH`` with a null ``hadm_id`` belongs to no admission: MIMIC notes without ``HADM_ID``, and
the patient-level date of death); without it,
each ``HOSPITAL_ADMISSION`` opens an admission that the subject's next ``HOSPITAL_DISCHARGE``
closes, admissions get ids by (subject, admit time), and an event belongs to the admission
whose ``[admit, discharge]`` interval holds its time.

In-hospital death: a ``MEDS_DEATH`` linked to the admission (by ``hadm_id``; in data without a
``hadm_id`` column, by its time inside the stay), or a discharge code matching ``discharge_died``
(``HOSPITAL_DISCHARGE//DIED``); the death time is the ``MEDS_DEATH`` time, else the discharge.
With a ``hadm_id`` column, a ``MEDS_DEATH`` without one is the patient's date of death and never
makes a stay fatal: MIMIC's ``dod`` is a date, and a patient discharged alive (to hospice, say)
who died later that day has a midnight ``dod`` inside the stay. Without the column this cannot
be told apart, so a date-only death inside a stay counts; prefer ``HOSPITAL_DISCHARGE//DIED``.

Optional extra columns the exporter writes and the reader uses when present (absent columns
are not an error): ``seq_num`` (diagnosis/procedure order), ``note_id`` (int64; otherwise
notes are numbered in (subject, time, code, text) order), ``note_description``, and
``time_known`` (bool; ``false`` marks an event whose source had no time, so ``time`` is a
stand-in: the discharge time for codes, the chart *date* for notes).

Deviation from the MIMIC-IV MEDS ETL, stated: its ``DIAGNOSIS`` events are stamped at the
discharge time (billing codes are assigned then). The benchmark's tasks treat diagnoses as
known throughout their admission (as the MIMIC loaders do), so the default mapping lists
``diagnosis`` under ``untimed``: their MEDS time is not used.

A mapping file (``--meds-config FILE``, JSON or YAML) overrides any of the keys of
:data:`DEFAULT_MAPPING`; unknown keys are an error naming the file and the key.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

SEP = "//"

#: code-pattern keys and the named groups each pattern must define (optional ones in brackets)
PATTERN_GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # key: (required groups, optional groups)
    "admission": ((), ("admission_type",)),
    "discharge": ((), ()),
    "discharge_died": ((), ()),
    "diagnosis": (("version", "code"), ()),
    "procedure": (("version", "code"), ()),
    "medication": (("code",), ()),
    "medication_exclude": ((), ()),
    "service": (("code",), ()),
    "note": (("category",), ()),
    "gender": (("value",), ()),
}
EXACT_KEYS = ("birth", "death")
COLUMN_KEYS = ("hadm_id_column", "seq_num_column", "note_id_column", "note_description_column", "time_known_column")
UNTIMED_TYPES = ("diagnosis", "procedure", "medication", "service")
#: MEDS split name (``meds.train_split``, ``tuning_split``, ``held_out_split``) -> the benchmark's split
MEDS_TO_SPLIT = {"train": "train", "tuning": "val", "held_out": "test"}
SPLIT_TO_MEDS = {v: k for k, v in MEDS_TO_SPLIT.items()}


@dataclass(frozen=True)
class MedsMapping:
    """Regular expressions (RE2, matched against the whole code) and column names that turn
    MEDS events into cohort rows. See the module docstring for the defaults' meaning."""

    admission: str = r"^HOSPITAL_ADMISSION(?://(?P<admission_type>[^/]*))?(?://.*)?$"
    discharge: str = r"^HOSPITAL_DISCHARGE(?://.*)?$"
    discharge_died: str = r"^HOSPITAL_DISCHARGE//DIED(?://.*)?$"
    diagnosis: str = r"^DIAGNOSIS//ICD//(?P<version>[0-9]+)//(?P<code>.+)$"
    procedure: str = r"^PROCEDURE//ICD//(?P<version>[0-9]+)//(?P<code>.+)$"
    medication: str = r"^MEDICATION//(?:START//)?(?P<code>.+)$"
    medication_exclude: str = r"^MEDICATION//STOP//"
    service: str = r"^SERVICE//(?P<code>.+)$"
    note: str = r"^NOTE//(?P<category>.+)$"
    gender: str = r"^GENDER//(?P<value>.+)$"
    birth: str = "MEDS_BIRTH"
    death: str = "MEDS_DEATH"
    hadm_id_column: str = "hadm_id"
    seq_num_column: str = "seq_num"
    note_id_column: str = "note_id"
    note_description_column: str = "note_description"
    time_known_column: str = "time_known"
    #: code types whose MEDS time is not used (known throughout their admission)
    untimed: tuple[str, ...] = ("diagnosis",)
    #: where the mapping came from ("default" or the file), for reports; not part of the identity
    origin: str = field(default="default", compare=False)

    def __post_init__(self) -> None:
        where = f"MEDS mapping ({self.origin})"
        for key, (required, optional) in PATTERN_GROUPS.items():
            pattern = getattr(self, key)
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"{where}: {key!r} must be a non-empty regular expression string")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{where}: {key!r} is not a valid regular expression ({exc})") from None
            missing = [g for g in required if g not in compiled.groupindex]
            if missing:
                raise ValueError(f"{where}: {key!r} pattern {pattern!r} lacks the named group(s) "
                                 + ", ".join(f"(?P<{g}>...)" for g in missing))
            extra = sorted(set(compiled.groupindex) - set(required) - set(optional))
            if extra:
                raise ValueError(f"{where}: {key!r} pattern {pattern!r} has unknown named group(s) {extra}; "
                                 f"allowed: {list(required + optional)}")
        for key in EXACT_KEYS + COLUMN_KEYS:
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"{where}: {key!r} must be a non-empty string")
        bad = [t for t in self.untimed if t not in UNTIMED_TYPES]
        if bad:
            raise ValueError(f"{where}: 'untimed' has unknown code type(s) {bad}; allowed: {list(UNTIMED_TYPES)}")

    def group(self, key: str, name: str) -> int:
        """The 1-based index of named group ``name`` in pattern ``key`` (for DuckDB's
        ``regexp_extract``), or 0 when the pattern does not define it."""
        return re.compile(getattr(self, key)).groupindex.get(name, 0)

    def to_dict(self) -> dict[str, Any]:
        """The mapping as a JSON-able dict (``origin`` left out), e.g. to write a template file."""
        d = asdict(self)
        d.pop("origin")
        d["untimed"] = list(self.untimed)
        return d

    def fingerprint(self) -> str:
        """A stable text of every setting: part of a MEDS source's cache key."""
        return json.dumps(self.to_dict(), sort_keys=True)


DEFAULT_MAPPING = MedsMapping()


def load_mapping(path: str | Path | None) -> MedsMapping:
    """The default mapping, overridden by the keys of a JSON or YAML file (``None``: the default).

    Errors name the file and the key: a missing or unreadable file, a top level that is not a
    mapping, an unknown key, a wrong type, an invalid regular expression or a pattern without
    the named groups its key needs."""
    if path is None:
        return DEFAULT_MAPPING
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"--meds-config {p}: file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--meds-config {p}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            obj = yaml.safe_load(text)
        else:
            obj = json.loads(text)
    except Exception as exc:  # yaml and json raise different error types
        raise ValueError(f"--meds-config {p}: not valid {'YAML' if p.suffix.lower() in ('.yaml', '.yml') else 'JSON'}"
                         f" ({str(exc).splitlines()[0]})") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ValueError(f"--meds-config {p}: the top level must be a mapping of keys to values, "
                         f"got {type(obj).__name__}")
    known = {f.name for f in fields(MedsMapping)} - {"origin"}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ValueError(f"--meds-config {p}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    values: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "untimed":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"--meds-config {p}: 'untimed' must be a list of code types")
            values[key] = tuple(value)
        elif not isinstance(value, str):
            raise ValueError(f"--meds-config {p}: {key!r} must be a string, got {type(value).__name__}")
        else:
            values[key] = value
    return replace(DEFAULT_MAPPING, origin=str(p), **values)


# -- the spec: meds:DIR, optionally with its mapping file --------------------------------------
CONFIG_MARK = ";config="


def meds_spec(directory: str, config: str | None = None) -> str:
    """The ``--data`` spec of a MEDS folder read with ``config`` (``meds:DIR;config=FILE``)."""
    return f"meds:{directory}" + (f"{CONFIG_MARK}{config}" if config else "")


def split_meds_arg(arg: str) -> tuple[str, str | None]:
    """``DIR`` or ``DIR;config=FILE`` (the part after ``meds:``) -> (DIR, FILE or None)."""
    directory, mark, config = arg.partition(CONFIG_MARK)
    return directory, (config or None) if mark else None


def with_meds_config(spec: str, config: str | None) -> str:
    """Apply a ``--meds-config`` flag to a ``--data`` spec; an error unless the spec is ``meds:``."""
    if not config:
        return spec
    kind, _, arg = spec.strip().partition(":")
    if kind.lower() != "meds":
        raise ValueError(f"--meds-config applies to --data meds:DIR only, got --data {spec!r}")
    directory, old = split_meds_arg(arg)
    if old and old != config:
        raise ValueError(f"--data {spec!r} already names a mapping file ({old}); drop --meds-config or the "
                         f"{CONFIG_MARK}... part")
    return meds_spec(directory, config)


# -- the codes the exporter writes (the default conventions above) -----------------------------
def admission_code(admission_type: str) -> str:
    t = (admission_type or "").strip()
    return f"HOSPITAL_ADMISSION{SEP}{t}" if t else "HOSPITAL_ADMISSION"


def discharge_code(died: bool) -> str:
    return f"HOSPITAL_DISCHARGE{SEP}{'DIED' if died else 'UNK'}"


def icd_code(code_type: str, version: int, code: str) -> str:
    """``DIAGNOSIS//ICD//9//4019`` or ``PROCEDURE//ICD//10//0DTJ4ZZ``."""
    prefix = {"diagnosis": "DIAGNOSIS", "procedure": "PROCEDURE"}[code_type]
    return f"{prefix}{SEP}ICD{SEP}{int(version)}{SEP}{code}"


def medication_code(drug: str) -> str:
    return f"MEDICATION{SEP}START{SEP}{drug}"


def service_code(service: str) -> str:
    return f"SERVICE{SEP}{service}"


def note_code(category: str) -> str:
    return f"NOTE{SEP}{category}"


def gender_code(sex: str) -> str:
    return f"GENDER{SEP}{sex}"


__all__ = [
    "DEFAULT_MAPPING", "MEDS_TO_SPLIT", "MedsMapping", "SPLIT_TO_MEDS", "admission_code", "discharge_code", "gender_code", "icd_code",
    "load_mapping", "medication_code", "meds_spec", "note_code", "service_code", "split_meds_arg",
    "with_meds_config",
]
