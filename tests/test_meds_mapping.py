"""The MEDS mapping: defaults, overrides from a file, and the errors a bad mapping file gives."""
from __future__ import annotations

import json

import pytest

from mingle_bench.cli import main
from mingle_bench.data.meds_mapping import DEFAULT_MAPPING, load_mapping, split_meds_arg, with_meds_config


def test_default_patterns_read_the_etl_codes():
    import re

    m = DEFAULT_MAPPING
    assert re.search(m.admission, "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM").group("admission_type") == "EW EMER."
    assert re.search(m.diagnosis, "DIAGNOSIS//ICD//10//I5021").groupdict() == {"version": "10", "code": "I5021"}
    assert re.search(m.medication, "MEDICATION//START//heparin").group("code") == "heparin"
    assert re.search(m.medication_exclude, "MEDICATION//STOP//heparin")
    assert re.search(m.discharge_died, "HOSPITAL_DISCHARGE//DIED") and not re.search(m.discharge_died,
                                                                                     "HOSPITAL_DISCHARGE//HOME")


def test_template_printed_by_the_cli_loads_back_as_the_default(tmp_path, capsys):
    assert main(["data", "meds-mapping"]) == 0
    path = tmp_path / "mapping.yaml"
    path.write_text(capsys.readouterr().out)
    assert load_mapping(path) == DEFAULT_MAPPING
    assert main(["data", "meds-mapping", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == DEFAULT_MAPPING.to_dict()


def test_override_changes_the_fingerprint(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"note": "^NOTE_(?P<category>.+)$", "untimed": "procedure"}))
    m = load_mapping(path)
    assert m.note == "^NOTE_(?P<category>.+)$" and m.untimed == ("procedure",) and m.origin == str(path)
    assert m.diagnosis == DEFAULT_MAPPING.diagnosis
    assert m.fingerprint() != DEFAULT_MAPPING.fingerprint()


@pytest.mark.parametrize("content, message", [
    ("bogus: 1\n", "unknown key(s) ['bogus']"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("diagnosis: '^DIAGNOSIS//(?P<code>.+)$'\n", "lacks the named group(s) (?P<version>...)"),
    ("note: '^NOTE//(?P<cat>.+)$'\n", "lacks the named group(s) (?P<category>...)"),
    ("service: '^SERVICE//(?P<code>.+'\n", "not a valid regular expression"),
    ("untimed: [labs]\n", "'untimed' has unknown code type(s) ['labs']"),
    ("birth: 3\n", "'birth' must be a string"),
    ("note: [unclosed\n", "not valid YAML"),
])
def test_bad_mapping_file_names_file_and_key(tmp_path, content, message):
    path = tmp_path / "mapping.yaml"
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        load_mapping(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_mapping_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="--meds-config .*missing.yaml: file not found"):
        load_mapping(tmp_path / "missing.yaml")


def test_spec_with_config():
    assert with_meds_config("meds:/d", "/m.yaml") == "meds:/d;config=/m.yaml"
    assert split_meds_arg("/d;config=/m.yaml") == ("/d", "/m.yaml")
    assert with_meds_config("synthetic", None) == "synthetic"
    with pytest.raises(ValueError, match="applies to --data meds:DIR only"):
        with_meds_config("mimic3:/d", "/m.yaml")
    with pytest.raises(ValueError, match="already names a mapping file"):
        with_meds_config("meds:/d;config=/a.yaml", "/b.yaml")
