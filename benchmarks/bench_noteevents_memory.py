"""Peak memory of the MIMIC-III loader on a large generated NOTEEVENTS (bounded-memory proof).

The full MIMIC-III NOTEEVENTS is about 4 GB. This benchmark writes a MIMIC-III folder whose
NOTEEVENTS.csv has a chosen size (MIMIC-style rows: quoted multi-line texts with commas and
quotes, a few ISERROR=1 rows, some rows without HADM_ID), then loads it in a fresh process and
reports that process's peak RSS. Loading streams the notes through DuckDB into parquet, so the
peak should stay roughly flat as the file grows (DuckDB's ``memory_limit``, ``$MINGLE_DUCKDB_MEMORY`` or a
quarter of the machine's memory capped at 8GB, bounds the engine; pandas only ever sees note metadata).

Not part of the default test run. Run it as a script::

    python benchmarks/bench_noteevents_memory.py --gb 0.25 1 2 1 --text-scale 1 1 1 4

or through pytest (skipped unless ``MINGLE_BENCH_NOTES_GB`` is set)::

    MINGLE_BENCH_NOTES_GB=0.5 python -m pytest benchmarks/bench_noteevents_memory.py -s --benchmark-disable
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LINES = [
    "Admission Date:  [**2151-7-16**]       Discharge Date:  [**2151-8-4**]",
    "Service: MEDICINE",
    "Chief Complaint: shortness of breath, worse over two days",
    "History of Present Illness: 72 yo man with CHF, CKD and AF, presents with dyspnea, orthopnea and 10 lb weight gain.",
    'He reports "feeling like I am drowning" at night, sleeps on three pillows, and has been taking his meds.',
    "Past Medical History: CHF (EF 25%), CKD stage III, atrial fibrillation on warfarin, DM2, HTN, HLD.",
    "Physical Exam: T 98.1, HR 92, BP 108/64, RR 24, O2 91% on 4L. JVP to the angle of the jaw, crackles to mid-lung.",
    "Pertinent Results: BNP 4,210; creatinine 2.1 (baseline 1.6); K 5.1; INR 2.8; troponin 0.04.",
    "Brief Hospital Course: diuresed with IV furosemide, net negative 6 L, creatinine peaked at 2.4 then improved.",
    "Medications on Admission: furosemide 40 mg daily, carvedilol 12.5 mg BID, warfarin 5 mg, insulin glargine 20 U.",
    "Discharge Disposition: Home With Service",
    "Discharge Instructions: weigh yourself every morning, call if weight goes up more than 3 lbs.",
    "Followup Instructions: Dr. [**Last Name (STitle) **] in cardiology clinic on [**2151-8-12**] at 10:00.",
]


def write_large_noteevents(path: Path, target_bytes: int, subjects: list[int], hadms: list[tuple[int, int]],
                           seed: int = 0, text_scale: float = 1.0) -> int:
    """Write MIMIC-style rows to ``path`` until it holds ``target_bytes``; returns the row count.

    ``text_scale`` multiplies the note length (8-40 lines, ~2 KB, at 1.0)."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(500):
        k = max(1, int(rng.integers(8, 40) * text_scale))
        pool.append("\n".join(LINES[int(i)] for i in rng.integers(0, len(LINES), size=k)).replace('"', '""'))
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write('"ROW_ID","SUBJECT_ID","HADM_ID","CHARTDATE","CHARTTIME","STORETIME","CATEGORY","DESCRIPTION",'
                 '"CGID","ISERROR","TEXT"\n')
        size = fh.tell()
        while size < target_bytes:
            n += 1
            subj, hadm = hadms[n % len(hadms)]
            hadm_s = "" if n % 37 == 0 else str(hadm)
            err = "1" if n % 211 == 0 else ""
            row = (f'{n},{subj},{hadm_s},2151-07-17,2151-07-17 10:{n % 60:02d}:00,,"Nursing/other","Report",'
                   f'{14000 + n % 500},{err},"Note {n}\n{pool[n % len(pool)]}"\n')
            fh.write(row)
            size += len(row.encode("utf-8"))
    return n


def build_folder(root: Path, gb: float, text_scale: float = 1.0) -> tuple[Path, int, int]:
    from mingle_bench.data.synthetic import generate

    generate(root, patients=200, seed=0)
    import pandas as pd

    adm = pd.read_csv(root / "ADMISSIONS.csv", usecols=["SUBJECT_ID", "HADM_ID"])
    pairs = list(zip(adm.SUBJECT_ID.astype(int), adm.HADM_ID.astype(int)))
    n = write_large_noteevents(root / "NOTEEVENTS.csv", int(gb * 1e9), sorted(set(adm.SUBJECT_ID)), pairs,
                               text_scale=text_scale)
    return root, n, (root / "NOTEEVENTS.csv").stat().st_size


_CHILD = r"""
import json, resource, sys, time
t = time.time()
from mingle_bench.data.mimic3 import load_mimic3
c = load_mimic3(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.time() - t, "notes": len(c.notes),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "skipped": c.report["skipped"]}))
"""


def measure(gb: float, text_scale: float = 1.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="mingle-notes-bench-") as tmp:
        t = time.time()
        folder, rows, size = build_folder(Path(tmp) / "src", gb, text_scale)
        gen_s = time.time() - t
        out = subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(Path(tmp) / "out")],
                             capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res.update(noteevents_mb=size / 1e6, rows_written=rows, generate_seconds=gen_s, text_scale=text_scale)
        return res


def test_noteevents_peak_memory_is_bounded():
    import pytest

    gb = os.environ.get("MINGLE_BENCH_NOTES_GB")
    if not gb:
        pytest.skip("set MINGLE_BENCH_NOTES_GB (e.g. 0.5) to run the NOTEEVENTS memory benchmark")
    res = measure(float(gb))
    print(json.dumps(res, indent=2))
    assert res["notes"] > 0
    # the loader must not hold the file in memory: peak RSS well under the file size plus a fixed base
    assert res["peak_rss_mb"] < 600 + 0.5 * res["noteevents_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, nargs="+", default=[0.25, 1.0], help="NOTEEVENTS sizes in GB")
    ap.add_argument("--text-scale", type=float, nargs="+", default=[1.0],
                    help="note length multipliers, one per --gb value or one for all (same size, fewer longer "
                         "notes: shows the peak follows the number of notes, not the text volume)")
    args = ap.parse_args()
    scales = args.text_scale * len(args.gb) if len(args.text_scale) == 1 else args.text_scale
    if len(scales) != len(args.gb):
        ap.error("--text-scale takes one value or one per --gb value")
    from tabulate import tabulate

    rows = []
    for gb, scale in zip(args.gb, scales):
        r = measure(gb, scale)
        rows.append((f"{r['noteevents_mb']:,.0f}", f"{scale:g}", f"{r['rows_written']:,}", f"{r['notes']:,}",
                     f"{r['seconds']:.1f}", f"{r['peak_rss_mb']:,.0f}"))
        print(json.dumps(r), flush=True)
    print(tabulate(rows, headers=["NOTEEVENTS MB", "text scale", "rows", "notes kept", "load s", "peak RSS MB"]))


if __name__ == "__main__":
    main()
