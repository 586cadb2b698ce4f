"""Throughput profile of an encoder: concept names/s, notes/s at one 256-token window, chunked notes/s.

The workloads are generated deterministically (no data files needed) to resemble the real
inputs: ICD-style concept descriptions of ~8-16 WordPiece tokens, and clinical notes of
``note_words`` words (HPI, exam, labs, assessment/plan vocabulary). Timings are wall-clock
medians over ``repeats`` runs without a cache; the first (warm-up) run is not counted.
Used by ``mingle-bench profile-encoder`` and ``benchmarks/bench_encoders.py``.

:func:`profile_precisions` measures one encoder at several compute precisions (``fp32``,
``bf16``, ``auto``). The precisions' timed runs are interleaved (repeat 1 of every precision,
then repeat 2, ...), so that a change in the machine's load hits them alike; each non-fp32 block
adds ``speedup_vs_fp32`` (notes_window texts/s, wall-clock and CPU time) and
``min_cosine_vs_fp32``: the smallest cosine between its vector and the fp32 vector of the same
text, over every notes_window note and every concept name.
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
    texts = []
    for i in range(n):
        out: list[str] = [f"Note {i}."]
        while len(out) < words:
            sent = [rng.choice(_NOTE_WORDS) for _ in range(rng.randint(8, 16))]
            out.extend(sent[:-1] + [sent[-1] + "."])
        texts.append(" ".join(out[:words]))
    return texts


def chunk_overlap(encoder: Encoder) -> int:
    """Tokens shared by consecutive chunks of a note in the chunked workload: 32 unless the window is tiny."""
    return min(32, (encoder.max_length - encoder.num_special_tokens) // 4)


def workloads(encoder: Encoder, names: Sequence[str], note_texts: Sequence[str],
              batch_tokens: int | None = None) -> dict[str, Callable[[], Any]]:
    """The three timed workloads, uncached and without progress bars; each call returns its result.

    ``names``: ``embed_texts`` of the concept names; ``notes_window``: ``embed_texts`` of ``note_texts``,
    each cut to one window (the reference measurement); ``notes_chunked``: ``embed_visit_notes``
    with one note per visit, every token embedded (returns ``(emb, has_notes, report)``).
    """
    from mingle_bench.encoders.embed import embed_texts
    from mingle_bench.encoders.notes import embed_visit_notes

    store = dict(enumerate(note_texts))
    visits = [[i] for i in range(len(note_texts))]
    overlap = chunk_overlap(encoder)
    return {
        "names": lambda: embed_texts(encoder, names, cache=None, progress=False, batch_tokens=batch_tokens),
        "notes_window": lambda: embed_texts(encoder, note_texts, cache=None, progress=False, batch_tokens=batch_tokens),
        "notes_chunked": lambda: embed_visit_notes(encoder, visits, lambda ids: {i: store[i] for i in ids},
                                                   overlap=overlap, cache=None, progress=False,
                                                   batch_tokens=batch_tokens),
    }


def run_profile(encoder: Encoder, n_names: int = 512, n_notes: int = 64, note_words: int = 200,
                repeats: int = 3, batch_tokens: int | None = None) -> dict[str, Any]:
    """Measure the three workloads of one encoder; returns a JSON-able dict (rates in items/s):
    ``encoder``, ``load_average_1m``, ``machine``, ``repeats`` and the ``names``, ``notes_window``
    and ``notes_chunked`` sections (one block of :func:`profile_precisions`)."""
    res = profile_precisions({getattr(encoder, "precision", "fp32"): encoder}, n_names, n_notes, note_words,
                             repeats, batch_tokens)
    (block,) = res["precisions"].values()
    return {"encoder": block["encoder"], "load_average_1m": res["load_average_1m"], "machine": res["machine"],
            "repeats": repeats, **{k: block[k] for k in ("names", "notes_window", "notes_chunked")}}


def _machine(encoder: Encoder) -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": _cpu_capability(), "cpu_bf16": _cpu_bf16(),
            "device": str(getattr(encoder, "device", "remote")),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _cpu_capability() -> str | None:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        return None


def _cpu_bf16() -> bool:
    from mingle_bench.encoders.hf import cpu_supports_bf16

    return cpu_supports_bf16()


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def profile_precisions(encoders: dict[str, Encoder], n_names: int = 512, n_notes: int = 64,
                       note_words: int = 200, repeats: int = 3, batch_tokens: int | None = None) -> dict[str, Any]:
    """Profile one model at several precisions: ``encoders`` maps a requested precision label
    (``fp32``, ``bf16``, ``auto``) to the encoder loaded at it.

    Returns ``{"load_average_1m", "machine", "repeats", "workload", "precisions": {label: block}}``;
    each block has ``precision`` (the resolved one), ``encoder`` (``describe()``) and the
    ``names``, ``notes_window`` and ``notes_chunked`` sections of :func:`run_profile`. Blocks other
    than ``fp32`` add ``min_cosine_vs_fp32`` (with ``cosine_over`` saying over which texts) and,
    when ``fp32`` is profiled too, ``speedup_vs_fp32``. The fp32 reference vectors come from the
    ``fp32`` encoder when it is among ``encoders``; otherwise the caller must include it.
    """
    import logging

    if not encoders:
        raise ValueError("profile_precisions needs at least one encoder")
    names = concept_names(n_names)
    note_texts = clinical_notes(n_notes, note_words)
    labels = list(encoders)
    works = {p: workloads(enc, names, note_texts, batch_tokens) for p, enc in encoders.items()}
    reports: dict[str, dict] = {p: {} for p in labels}
    outputs: dict[str, dict[str, torch.Tensor]] = {p: {} for p in labels}

    def job(p: str, what: str):
        def run():
            res = works[p][what]()
            if what == "notes_chunked":
                reports[p].update(res[2])
            else:
                outputs[p][what] = res
        return run

    emb_log = logging.getLogger("mingle_bench.encoders.embed")
    level = emb_log.level
    timings: dict[str, dict[str, tuple[list[float], list[float]]]] = {p: {} for p in labels}
    n_items = {"names": n_names, "notes_window": n_notes, "notes_chunked": n_notes}
    for what in ("names", "notes_window", "notes_chunked"):
        if what == "notes_window":  # the window workload truncates on purpose; keep its warning out
            emb_log.setLevel(logging.ERROR)
        try:
            for p in labels:  # warm-up (allocator, thread pool, oneDNN kernels, tokenizer caches)
                job(p, what)()
            for p in labels:
                timings[p][what] = ([], [])
            for _ in range(repeats):
                for p in labels:
                    wall, cpu = _timed(job(p, what))
                    timings[p][what][0].append(n_items[what] / wall)
                    timings[p][what][1].append(cpu / n_items[what])
        finally:
            emb_log.setLevel(level)

    blocks: dict[str, dict[str, Any]] = {}
    for p in labels:
        enc = encoders[p]
        note_tokens, name_tokens = enc.tokenize(note_texts), enc.tokenize(names)
        tokens_per_note = sum(len(t) for t in note_tokens) / max(n_notes, 1)
        (nr, nc), (wr, wc), (cr, cc) = (timings[p][w] for w in ("names", "notes_window", "notes_chunked"))
        names_rate, win_rate, chunk_rate = (statistics.median(r) for r in (nr, wr, cr))
        names_cpu, win_cpu, chunk_cpu = (statistics.median(c) for c in (nc, wc, cc))
        blocks[p] = {
            "precision": getattr(enc, "precision", "fp32"),
            "encoder": enc.describe(),
            "names": {"n": n_names, "mean_tokens": round(sum(len(t) for t in name_tokens) / max(n_names, 1), 1),
                      "texts_per_s": round(names_rate, 1), "cpu_ms_per_text": round(names_cpu * 1e3, 2),
                      "runs": [round(r, 1) for r in nr]},
            "notes_window": {"n": n_notes, "window_tokens": enc.max_length, "texts_per_s": round(win_rate, 1),
                             "cpu_ms_per_text": round(win_cpu * 1e3, 1), "runs": [round(r, 1) for r in wr]},
            "notes_chunked": {"n": n_notes, "words": note_words, "mean_tokens": round(tokens_per_note, 1),
                              "chunks": reports[p].get("chunks_embedded"), "overlap": chunk_overlap(enc),
                              "notes_per_s": round(chunk_rate, 1), "cpu_ms_per_note": round(chunk_cpu * 1e3, 1),
                              "runs": [round(r, 1) for r in cr], "tokens_per_s": round(chunk_rate * tokens_per_note, 0)},
        }
    if "fp32" in labels:
        ref = outputs["fp32"]
        w32 = blocks["fp32"]["notes_window"]
        for p in labels:
            if p == "fp32":
                continue
            cos = torch.cat([(outputs[p][w].float() * ref[w].float()).sum(1) for w in ("notes_window", "names")])
            w = blocks[p]["notes_window"]
            blocks[p]["min_cosine_vs_fp32"] = round(float(cos.min()), 6)
            blocks[p]["mean_cosine_vs_fp32"] = round(float(cos.mean()), 6)
            blocks[p]["cosine_over"] = f"{n_notes} notes_window notes and {n_names} names"
            blocks[p]["speedup_vs_fp32"] = {
                "notes_window_texts_per_s": round(w["texts_per_s"] / max(w32["texts_per_s"], 1e-9), 2),
                "notes_window_cpu_time": round(w32["cpu_ms_per_text"] / max(w["cpu_ms_per_text"], 1e-9), 2),
                "names_texts_per_s": round(blocks[p]["names"]["texts_per_s"]
                                           / max(blocks["fp32"]["names"]["texts_per_s"], 1e-9), 2),
                "notes_chunked_notes_per_s": round(blocks[p]["notes_chunked"]["notes_per_s"]
                                                   / max(blocks["fp32"]["notes_chunked"]["notes_per_s"], 1e-9), 2)}
    first = encoders[labels[0]]
    return {"load_average_1m": _loadavg(), "machine": _machine(first), "repeats": repeats,
            "workload": {"names": n_names, "notes": n_notes, "note_words": note_words, "batch_tokens": batch_tokens,
                         "timing": "interleaved: each repeat runs every precision in turn"},
            "precisions": blocks}


def _loadavg() -> float | None:
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None
