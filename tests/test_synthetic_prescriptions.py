"""Synthetic PRESCRIPTIONS product fields: NDC-keyed readers find medication events, one product
per drug, and filling the fields changes nothing else the generator writes."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mingle_bench.data import synthetic
from mingle_bench.data import synthetic_vocab as vocab
from mingle_bench.data.synthetic import generate
from mingle_bench.data.synthetic_vocab import RxProduct, drug_vocabulary, rx_products

PRODUCT_COLUMNS = ["FORMULARY_DRUG_CD", "GSN", "NDC", "PROD_STRENGTH"]


def _read(folder: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A small generated folder (200 patients, about 370 admissions)."""
    out = tmp_path_factory.mktemp("synth-rx")
    generate(out, patients=200, seed=0)
    return out


def _ndc_events(rx: pd.DataFrame) -> pd.DataFrame:
    """Rows an NDC-keyed reader (PyHealth-style) keeps: an 11-digit NDC, NDC "0" ignored."""
    return rx[rx.NDC.str.fullmatch(r"\d{11}") & (rx.NDC != "0")]


def test_ndc_keyed_reader_finds_medication_events(folder: Path) -> None:
    rx, adm = _read(folder, "PRESCRIPTIONS"), _read(folder, "ADMISSIONS")
    per_adm = _ndc_events(rx).groupby("HADM_ID").NDC.nunique()
    with_rx = set(rx.HADM_ID)
    # measured: every admission has prescriptions and every row an NDC (100% on seeds 0 and 3)
    assert len(set(per_adm.index) & with_rx) >= 0.95 * len(with_rx)
    assert len(set(per_adm.index) & set(adm.HADM_ID)) >= 0.90 * len(adm)
    assert per_adm.median() >= 5  # several distinct drugs per stay, not one code for all


def test_one_product_per_drug_and_one_drug_per_ndc(folder: Path) -> None:
    rx = _read(folder, "PRESCRIPTIONS")
    filled = rx[rx.NDC != ""]
    assert filled.NDC.str.fullmatch(r"\d{11}").all()
    assert filled.GSN.str.fullmatch(r"\d{6}").all()
    assert filled.FORMULARY_DRUG_CD.str.fullmatch(r"[A-Z0-9]{2,12}").all()
    assert (filled.PROD_STRENGTH.str.strip() != "").all()
    per_drug = filled.groupby("DRUG")[PRODUCT_COLUMNS].nunique()
    assert (per_drug == 1).all().all()
    assert (filled.groupby("NDC").DRUG.nunique() == 1).all()
    # the file carries exactly the vocabulary's products
    table = rx_products()
    first = filled.drop_duplicates("DRUG").set_index("DRUG")
    for drug, row in first.iterrows():
        p = table[drug]
        assert (row.NDC, row.GSN, row.FORMULARY_DRUG_CD, row.PROD_STRENGTH) == (
            p.ndc, p.gsn, p.formulary_drug_cd, p.prod_strength)


def test_vocabulary_products_are_distinct_and_cover_every_drug() -> None:
    table = rx_products()
    drugs = drug_vocabulary()
    assert sorted(table) == drugs and len(drugs) >= 100
    for field in ("ndc", "gsn", "formulary_drug_cd"):
        values = [getattr(p, field) for p in table.values()]
        assert len(set(values)) == len(values), field
    assert all(len(p.ndc) == 11 and p.ndc.isdigit() and p.ndc[:5] != "00000" for p in table.values())
    assert table["Heparin"].prod_strength == "5000 Units / mL"


def test_missing_strength_is_named(monkeypatch) -> None:
    monkeypatch.delitem(vocab.RX_STRENGTH, "Heparin")
    vocab.rx_products.cache_clear()
    try:
        with pytest.raises(ValueError, match="Heparin"):
            vocab.rx_products()
    finally:
        monkeypatch.undo()
        vocab.rx_products.cache_clear()


def test_product_fields_change_nothing_else(tmp_path: Path, monkeypatch) -> None:
    """With the product fields blanked (the output before they existed) every other file is
    byte-identical and PRESCRIPTIONS differs only in the four product columns: the fields draw
    no random numbers, so the signal and every table the loader reads are unchanged."""
    generate(tmp_path / "filled", patients=30, seed=3)
    blank = {d: RxProduct("", "", "", "") for d in drug_vocabulary()}
    monkeypatch.setattr(synthetic, "rx_products", lambda: blank)
    generate(tmp_path / "blank", patients=30, seed=3)
    names = sorted(p.name for p in (tmp_path / "filled").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "blank").iterdir())
    for name in names:
        if name != "PRESCRIPTIONS.csv":
            assert (tmp_path / "filled" / name).read_bytes() == (tmp_path / "blank" / name).read_bytes(), name
    filled, empty = _read(tmp_path / "filled", "PRESCRIPTIONS"), _read(tmp_path / "blank", "PRESCRIPTIONS")
    others = [c for c in filled.columns if c not in PRODUCT_COLUMNS]
    assert filled[others].equals(empty[others])
    assert (empty[PRODUCT_COLUMNS] == "").all().all() and (filled[PRODUCT_COLUMNS] != "").all().all()


def test_products_do_not_depend_on_the_seed(folder: Path, tmp_path: Path) -> None:
    generate(tmp_path, patients=30, seed=4)
    a = _read(folder, "PRESCRIPTIONS").drop_duplicates("DRUG").set_index("DRUG")[PRODUCT_COLUMNS]
    b = _read(tmp_path, "PRESCRIPTIONS").drop_duplicates("DRUG").set_index("DRUG")[PRODUCT_COLUMNS]
    shared = a.index.intersection(b.index)
    assert len(shared) >= 30
    assert a.loc[shared].equals(b.loc[shared])
