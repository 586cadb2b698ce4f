"""Throughput profile of an encoder: concept names/s, notes/s at one 256-token window, chunked notes/s.

The workloads are generated deterministically (no data files needed) to resemble the real
inputs: ICD-style concept descriptions of ~8-16 WordPiece tokens, and clinical notes of
``note_words`` words (HPI, exam, labs, assessment/plan vocabulary). Timings are wall-clock
medians over ``repeats`` runs without a cache; the first (warm-up) run is not counted.
Used by ``mingle-bench profile-encoder`` and ``benchmarks/bench_encoders.py``.
"""
from __future__ import annotations

import platform
import random
import statistics
import time
from typing import Any, Callable, Sequence

import torch

from mingle_bench.encoders.base import Encoder

_CONDITIONS = ["hypertension", "heart failure", "kidney failure", "myocardial infarction", "pneumonia",
               "septicemia", "diabetes mellitus", "atrial fibrillation", "respiratory failure", "anemia",
               "hyperlipidemia", "urinary tract infection", "cirrhosis of liver", "fracture of neck of femur",
               "cerebral infarction", "hypothyroidism", "coronary atherosclerosis", "pulmonary embolism",
               "gastrointestinal hemorrhage", "hyponatremia", "chronic obstructive pulmonary disease",
               "pressure ulcer", "delirium", "obstructive sleep apnea", "malignant neoplasm of lung"]
_QUALIFIERS = ["unspecified", "acute", "chronic", "with complication", "without mention of complication",
               "of native coronary artery", "initial episode of care", "type II", "not stated as uncontrolled",
               "due to other specified organism", "with exacerbation", "subsequent episode of care", "stage IV"]
_PROCEDURES = ["Insertion of endotracheal tube", "Venous catheterization", "Transfusion of packed cells",
               "Continuous invasive mechanical ventilation", "Hemodialysis", "Enteral infusion of nutrition",
               "Coronary arteriography using two catheters", "Percutaneous gastrostomy", "Arterial catheterization"]
_NOTE_WORDS = ("patient admitted with worsening shortness of breath chest pain and fever overnight denies nausea "
               "vomiting exam notable for bilateral crackles jugular venous distension lower extremity edema "
               "labs significant for creatinine 2.1 troponin 0.45 lactate 3.2 white count 14.5 sodium 131 "
               "chest x-ray with bilateral infiltrates echocardiogram ejection fraction 30% started on heparin "
               "drip furosemide 40 mg iv vancomycin cefepime blood cultures pending plan continue diuresis "
               "monitor electrolytes wean oxygen as tolerated cardiology consulted for possible "
               "catheterization family meeting regarding goals of care hemodynamically stable on "
               "norepinephrine mean arterial pressure above 65 urine output adequate sedated on propofol "
               "intubated for hypoxic respiratory failure ventilator settings assist control").split()


def concept_names(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct ICD-9-style concept descriptions."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        if rng.random() < 0.2:
            name = f"{rng.choice(_PROCEDURES)}, {rng.choice(_QUALIFIERS)}"
        else:
            name = f"{rng.choice(_CONDITIONS).capitalize()}, {rng.choice(_QUALIFIERS)}"
        if name in seen:
            name = f"{name} ({len(out)})"
        seen.add(name)
        out.append(name)
    return out


def clinical_notes(n: int, words: int = 200, seed: int = 0) -> list[str]:
    """``n`` distinct synthetic notes of ``words`` words each (sentences of 8-16 words)."""
    rng = random.Random(seed)
    notes = []
    for i in range(n):
        out: list[str] = [f"Note {i}."]
        while len(out) < words:
            sent = [rng.choice(_NOTE_WORDS) for _ in range(rng.randint(8, 16))]
            out.extend(sent[:-1] + [sent[-1] + "."])
        notes.append(" ".join(out[:words]))
    return notes


def _median_rate(fn, n_items: int, repeats: int) -> tuple[float, list[float], float]:
    """Median wall-clock items/s, the per-run rates, and the median process CPU seconds per item.

    CPU time per item is reported too because wall-clock rates on a shared machine drop
    with the load while CPU time per item stays comparable.
    """
    fn()  # warm-up (allocator, thread pool, tokenizer caches)
    rates, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        rates.append(n_items / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / n_items)
    return statistics.median(rates), rates, statistics.median(cpu)


def chunk_overlap(encoder: Encoder) -> int:
    """Tokens shared by consecutive chunks of a note in the chunked workload: 32 unless the window is tiny."""
    return min(32, (encoder.max_length - encoder.num_special_tokens) // 4)


def workloads(encoder: Encoder, names: Sequence[str], notes: Sequence[str],
              batch_tokens: int | None = None) -> dict[str, Callable[[], Any]]:
    """The three timed workloads, uncached and without progress bars; each call returns its result.

    ``names``: ``embed_texts`` of the concept names; ``notes_window``: ``embed_texts`` of the notes,
    each cut to one window (the reference measurement); ``notes_chunked``: ``embed_visit_notes``
    with one note per visit, every token embedded (returns ``(emb, has_notes, report)``).
    """
    from mingle_bench.encoders.embed import embed_texts
    from mingle_bench.encoders.notes import embed_visit_notes

    store = dict(enumerate(notes))
    visits = [[i] for i in range(len(notes))]
    overlap = chunk_overlap(encoder)
    return {
        "names": lambda: embed_texts(encoder, names, cache=None, progress=False, batch_tokens=batch_tokens),
        "notes_window": lambda: embed_texts(encoder, notes, cache=None, progress=False, batch_tokens=batch_tokens),
        "notes_chunked": lambda: embed_visit_notes(encoder, visits, lambda ids: {i: store[i] for i in ids},
                                                   overlap=overlap, cache=None, progress=False,
                                                   batch_tokens=batch_tokens),
    }


def run_profile(encoder: Encoder, n_names: int = 512, n_notes: int = 64, note_words: int = 200,
                repeats: int = 3, batch_tokens: int | None = None) -> dict[str, Any]:
    """Measure the three workloads; returns a JSON-able dict (rates in items/s)."""
    names = concept_names(n_names)
    notes = clinical_notes(n_notes, note_words)
    note_tokens = encoder.tokenize(notes)
    name_tokens = encoder.tokenize(names)
    chunk_report: dict[str, Any] = {}
    overlap = chunk_overlap(encoder)
    work = workloads(encoder, names, notes, batch_tokens)
    run_names, run_notes_window = work["names"], work["notes_window"]

    def run_notes_chunked():
        chunk_report.update(work["notes_chunked"]()[2])

    import logging

    # the window workload truncates on purpose; keep its warning out of the profile output
    emb_log = logging.getLogger("mingle_bench.encoders.embed")
    level = emb_log.level
    names_rate, names_runs, names_cpu = _median_rate(run_names, n_names, repeats)
    emb_log.setLevel(logging.ERROR)
    try:
        win_rate, win_runs, win_cpu = _median_rate(run_notes_window, n_notes, repeats)
    finally:
        emb_log.setLevel(level)
    chunk_rate, chunk_runs, chunk_cpu = _median_rate(run_notes_chunked, n_notes, repeats)
    tokens_per_note = sum(len(t) for t in note_tokens) / max(n_notes, 1)
    return {
        "encoder": encoder.describe(),
        "load_average_1m": _loadavg(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": str(getattr(encoder, "device", "remote")),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "repeats": repeats,
        "names": {"n": n_names, "mean_tokens": round(sum(len(t) for t in name_tokens) / max(n_names, 1), 1),
                  "texts_per_s": round(names_rate, 1), "cpu_ms_per_text": round(names_cpu * 1e3, 2), "runs": [round(r, 1) for r in names_runs]},
        "notes_window": {"n": n_notes, "window_tokens": encoder.max_length,
                         "texts_per_s": round(win_rate, 1), "cpu_ms_per_text": round(win_cpu * 1e3, 1), "runs": [round(r, 1) for r in win_runs]},
        "notes_chunked": {"n": n_notes, "words": note_words, "mean_tokens": round(tokens_per_note, 1),
                          "chunks": chunk_report.get("chunks_embedded"), "overlap": overlap,
                          "notes_per_s": round(chunk_rate, 1), "cpu_ms_per_note": round(chunk_cpu * 1e3, 1), "runs": [round(r, 1) for r in chunk_runs],
                          "tokens_per_s": round(chunk_rate * tokens_per_note, 0)},
    }


def _loadavg() -> float | None:
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None
