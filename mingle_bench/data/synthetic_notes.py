"""Templated clinical prose for the synthetic cohort (written for this project).

Each function turns one admission's latent state into a short note. Which latent facts a
note category reveals is the point of the data card (see :mod:`mingle_bench.data.synthetic`):

========================  ==========================================================
fact                      where it is written
========================  ==========================================================
code status (DNR/DNI)     Physician (always stated), Nursing (often). Never coded.
lactate, pressor need     Physician, Nursing. Pressors also in PRESCRIPTIONS for ~1/3.
frailty                   Physician (functional status), Nursing (fall risk). Never coded.
social context            Physician (social history), Nursing. Never coded.
smoking, alcohol          Physician. Coded (3051, 30500) only some of the time.
HbA1c (diabetes control)  Physician, for diabetics. Never coded as a number.
acute problem             Physician assessment, Radiology findings; also coded.
chronic conditions        Physician PMH names each with its ``pmh_p``; coded with ``code_p``.
outcome                   Discharge summary only (excluded from admission-time inputs).
========================  ==========================================================

``rng`` is a :class:`numpy.random.Generator`; every choice goes through it, so notes are
deterministic for a seed.
"""
from __future__ import annotations

import numpy as np

EVENT_PHRASES = {
    "sepsis": ["sepsis, likely urinary source", "septic picture with fevers and rigors", "sepsis of unclear source",
               "bacteremia with hypotension"],
    "pneumonia": ["community acquired pneumonia", "right lower lobe pneumonia", "multifocal pneumonia",
                  "pneumonia with hypoxemia"],
    "ami": ["NSTEMI", "acute coronary syndrome with troponin leak", "inferior STEMI", "chest pain with ST changes"],
    "chf_exac": ["acute on chronic heart failure exacerbation", "volume overload from CHF", "decompensated heart failure",
                 "CHF exacerbation after dietary indiscretion"],
    "copd_exac": ["COPD exacerbation", "acute bronchospasm in setting of COPD", "hypercarbic COPD flare",
                  "worsening dyspnea from COPD"],
    "aki": ["acute kidney injury", "acute renal failure, likely prerenal", "rising creatinine with oliguria",
            "AKI on CKD"],
    "gi_bleed": ["upper GI bleed", "melena with hemoglobin drop", "hematemesis", "lower GI bleed"],
    "stroke": ["acute ischemic stroke", "left MCA territory infarct", "right sided weakness concerning for CVA",
               "intracranial hemorrhage"],
    "dka": ["diabetic ketoacidosis", "DKA with anion gap acidosis", "hyperglycemia with ketosis"],
    "hip_fracture": ["mechanical fall with hip fracture", "intertrochanteric femur fracture after fall",
                     "left hip fracture after a fall at home"],
    "cabg": ["elective CABG for multivessel CAD", "coronary artery disease admitted for bypass surgery",
             "three vessel disease, s/p CABG"],
    "colectomy": ["admitted for colectomy", "colon mass for resection", "diverticular disease for elective resection"],
}

RADIOLOGY = {
    "pneumonia": ("CHEST (PORTABLE AP)", ["Right lower lobe consolidation concerning for pneumonia.",
                                          "Patchy bilateral opacities, left greater than right, consistent with infection.",
                                          "Dense retrocardiac opacity, likely pneumonia in the appropriate setting."]),
    "chf_exac": ("CHEST (PA & LAT)", ["Cardiomegaly with pulmonary vascular congestion and small bilateral effusions.",
                                      "Interstitial edema and bilateral pleural effusions, worse than prior.",
                                      "Moderate pulmonary edema."]),
    "stroke": ("CT HEAD W/O CONTRAST", ["Hypodensity in the left MCA territory consistent with acute infarct.",
                                        "Loss of gray-white differentiation in the right frontal lobe.",
                                        "Intraparenchymal hemorrhage in the left basal ganglia with mild edema."]),
    "hip_fracture": ("HIP UNILAT MIN 2 VIEWS", ["Displaced intertrochanteric fracture of the left femur.",
                                                "Comminuted fracture of the femoral neck.",
                                                "Acute right hip fracture, no dislocation."]),
    "copd_exac": ("CHEST (PORTABLE AP)", ["Hyperinflated lungs with flattened diaphragms, no focal consolidation.",
                                          "Emphysematous changes, no acute process."]),
    "gi_bleed": ("CT ABDOMEN W/CONTRAST", ["No active extravasation. Diverticulosis of the sigmoid colon.",
                                           "Thickened gastric wall, no free air."]),
}
COMPLAINTS = {
    "sepsis": ["fever", "rigors and confusion", "hypotension"], "pneumonia": ["cough and fever", "shortness of breath"],
    "ami": ["chest pain", "chest pressure radiating to the left arm"], "chf_exac": ["shortness of breath", "leg swelling"],
    "copd_exac": ["shortness of breath", "wheezing"], "aki": ["decreased urine output", "weakness"],
    "gi_bleed": ["black stools", "vomiting blood"], "stroke": ["right sided weakness", "slurred speech"],
    "dka": ["nausea and vomiting", "high blood sugars"], "hip_fracture": ["fall", "hip pain after a fall"],
    "cabg": ["elective surgery"], "colectomy": ["elective surgery"],
}
PLANS = {
    "sepsis": ["broad spectrum antibiotics, follow cultures", "fluid resuscitation, trend lactate"],
    "pneumonia": ["antibiotics for pneumonia, sputum culture", "supplemental oxygen, incentive spirometry"],
    "ami": ["heparin drip, aspirin, statin, cardiology consult for cath", "serial troponins and ECGs"],
    "chf_exac": ["IV diuresis with furosemide, strict I/Os, daily weights", "low sodium diet, echo"],
    "copd_exac": ["nebulizers, steroids, azithromycin", "wean oxygen to goal sats 88-92%"],
    "aki": ["hold nephrotoxins, renally dose medications", "fluids, urine lytes, renal ultrasound"],
    "gi_bleed": ["two large bore IVs, PPI drip, GI consult for EGD", "transfuse for Hgb below 7"],
    "stroke": ["neuro checks q1h, permissive hypertension", "neurology following, MRI brain"],
    "dka": ["insulin drip, replete potassium, q1h glucose", "close the anion gap, then transition to SC insulin"],
    "hip_fracture": ["orthopedics for fixation, pain control", "DVT prophylaxis, PT after surgery"],
    "cabg": ["post-op monitoring, chest tubes to suction", "wean from ventilator, pacing wires in place"],
    "colectomy": ["post-op care, NPO, advance diet as tolerated", "pain control, early ambulation"],
}
DEFAULT_RADIOLOGY = ("CHEST (PORTABLE AP)", ["No acute cardiopulmonary process.", "Lungs are clear. No effusion.",
                                             "Stable cardiomediastinal silhouette, no consolidation."])


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _maybe(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def functional_status(rng, frailty: float) -> str:
    if frailty > 1.2:
        return _pick(rng, ["bedbound at baseline, nursing home resident, dependent for all ADLs",
                           "wheelchair bound, requires two person assist for transfers, lives in long term care",
                           "severely deconditioned, needs help with bathing, dressing and feeding"])
    if frailty > 0.4:
        return _pick(rng, ["ambulates with a walker, two falls in the past six months",
                           "uses a cane, needs help with shopping and cooking, recent weight loss",
                           "slow gait, fell at home last month, home PT twice weekly"])
    return _pick(rng, ["independent with ADLs, walks without assistance", "fully independent, still drives",
                       "active at baseline, walks two miles daily"])


def social_history(rng, ctx: dict) -> str:
    social = ctx["social"]
    if social == "homeless":
        s = _pick(rng, ["Currently homeless, staying at a shelter, no phone.",
                        "Unstably housed, sleeps in his car, no regular PCP."])
    elif social == "alone":
        s = _pick(rng, ["Lives alone in an apartment, daughter lives out of state.",
                        "Widowed, lives alone, limited support, neighbor checks in occasionally.",
                        "Lives alone on the third floor without an elevator, no nearby family."])
    else:
        s = _pick(rng, ["Lives with spouse, retired teacher.", "Lives with daughter and her family.",
                        "Married, lives with wife who is very involved.", "Lives with husband, supportive family nearby."])
    if ctx["smoker"]:
        s += " " + _pick(rng, [f"Current smoker, {int(rng.integers(20, 80))} pack-years.",
                               "Smokes one pack per day.", "Active tobacco use, half a pack daily."])
    else:
        s += " " + _pick(rng, ["Never smoker.", "Former smoker, quit many years ago.", "Denies tobacco."])
    if ctx["alcohol"]:
        s += " " + _pick(rng, ["Drinks six to eight beers daily.", "Heavy alcohol use, a pint of vodka a day.",
                               "Daily alcohol use, last drink yesterday."])
    else:
        s += " " + _pick(rng, ["Occasional wine.", "Denies alcohol.", "Rare social alcohol."])
    return s


def physician_note(rng, ctx: dict) -> str:
    age, sex = ctx["age_text"], ("man" if ctx["sex"] == "M" else "woman")
    pmh = [c for c in ctx["pmh"]]
    pmh_text = ", ".join(pmh) if pmh else "no significant past medical history"
    event = _pick(rng, EVENT_PHRASES[ctx["event"]]) if ctx["event_in_notes"] else "acute decline"
    lines = [
        _pick(rng, ["Chief complaint:", "CC:", "Reason for admission:"]) + " " + (
            _pick(rng, COMPLAINTS[ctx["event"]]) if ctx["event_in_notes"] else _pick(rng, ["weakness", "malaise"])),
        f"HPI: {age} year old {sex} with {pmh_text} who presents with {event}. "
        + _pick(rng, ["Symptoms began two days ago.", "Family noted worsening over the past week.",
                      "Brought in by EMS from home.", "Transferred from an outside hospital."]),
        f"Vitals: T {ctx['temp']:.1f} HR {ctx['hr']} BP {ctx['sbp']}/{ctx['dbp']} RR {int(rng.integers(14, 30))} "
        f"SpO2 {int(rng.integers(88, 100))}%.",
        "Exam: " + _pick(rng, ["uncomfortable appearing, dry mucous membranes, no JVD",
                               "tachypneic, crackles at the bases, trace edema",
                               "resting comfortably, regular rhythm, abdomen soft and nontender",
                               "diaphoretic, cool extremities, delayed capillary refill"]) + ".",
        f"Labs notable for lactate {ctx['lactate']:.1f}, "
        + _pick(rng, [f"WBC {ctx['wbc']:.1f}", f"creatinine {ctx['creat']:.1f}", f"Hgb {ctx['hgb']:.1f}"]) + ".",
    ]
    if ctx["pressors"]:
        lines.append(_pick(rng, [f"Hypotensive to MAP {int(rng.integers(48, 60))} despite fluids, started on norepinephrine.",
                                 "Required levophed and vasopressin for blood pressure support.",
                                 "Remains on pressors, norepinephrine titrated overnight."]))
    else:
        lines.append(_pick(rng, ["Hemodynamically stable on arrival.", "Blood pressure stable, no pressor requirement.",
                                 "Normotensive, mentating well."]))
    if ctx["vent"]:
        lines.append(_pick(rng, ["Intubated for hypoxemic respiratory failure.", "Intubated in the ED for airway protection."]))
    if ctx["a1c"] is not None:
        lines.append(f"Last HbA1c {ctx['a1c']:.1f}%.")
    lines.append("Functional status: " + functional_status(rng, ctx["frailty"]) + ".")
    lines.append("Social: " + social_history(rng, ctx))
    if ctx["dnr"]:
        lines.append(_pick(rng, ["Code: DNR/DNI, confirmed with patient and health care proxy.",
                                 "Code status DNR/DNI per prior discussions with family.",
                                 "Code: DNR/DNI, comfort focused goals discussed."]))
    else:
        lines.append(_pick(rng, ["Code: Full code.", "Code status: full code (confirmed).", "Code: FULL."]))
    if ctx["event_in_notes"]:
        lines.append("Plan: " + "; ".join(PLANS[ctx["event"]]) + ".")
    lines.append("A/P: " + _pick(rng, ["Will continue current management and reassess.",
                                        "Admit to the unit, close monitoring.",
                                        "Plan discussed with attending, continue supportive care."]))
    return "\n".join(lines)


def nursing_note(rng, ctx: dict) -> str:
    parts = [_pick(rng, ["Neuro: alert and oriented x3.", "Neuro: lethargic but arousable, follows commands.",
                         "Neuro: intermittently confused, reorients easily."])
             if not ctx["vent"] else "Neuro: sedated on propofol, opens eyes to voice."]
    if ctx["pressors"]:
        parts.append(_pick(rng, ["CV: on levophed, weaning as tolerated, MAP goal above 65.",
                                 "CV: norepinephrine drip titrated for MAP above 60.",
                                 "CV: remains pressor dependent."]))
    else:
        parts.append(_pick(rng, ["CV: NSR, hemodynamically stable.", "CV: afebrile, vital signs stable.",
                                 "CV: BP within parameters, no drips."]))
    parts.append(_pick(rng, ["Resp: on ventilator, AC mode, suctioned for thick secretions."]
                       if ctx["vent"] else ["Resp: on 2L nasal cannula, lungs with scattered crackles.",
                                            "Resp: room air, sats in the mid 90s.", "Resp: on 4L NC, diminished bases."]))
    parts.append(_pick(rng, ["Pain: denies pain, resting comfortably.", "Pain: reports 6/10 pain, relieved with medication.",
                             "Pain: grimaces with turning, PRN morphine given with effect."]))
    parts.append(_pick(rng, ["Skin: intact, no breakdown noted.", "Skin: stage 2 ulcer on coccyx, dressing changed.",
                             "Skin: bruising on both forearms, otherwise intact."]))
    parts.append(_pick(rng, ["Access: two peripheral IVs, patent.", "Access: right IJ central line, site clean and dry.",
                             "Access: left arm PICC line in place."]))
    parts.append(_pick(rng, ["GI/GU: tolerating diet, foley draining clear yellow urine.",
                             "GI/GU: NPO for procedure, adequate urine output.",
                             "GI/GU: poor appetite, voiding without difficulty."]))
    if ctx["frailty"] > 0.6:
        parts.append(_pick(rng, ["Safety: high fall risk, bed alarm on, frail and deconditioned.",
                                 "Safety: needs assist of two, at risk for falls."]))
    if ctx["dnr"] and _maybe(rng, 0.6):
        parts.append("Code: DNR/DNI.")
    if ctx["social"] in ("alone", "homeless") and _maybe(rng, 0.6):
        parts.append(_pick(rng, ["Social work consulted for discharge planning, no one at home to help.",
                                 "No visitors today, case management aware of housing issues."]))
    if ctx["lactate"] > 3 and _maybe(rng, 0.5):
        parts.append(f"Repeat lactate {ctx['lactate'] * rng.uniform(0.7, 1.1):.1f}.")
    parts.append(_pick(rng, ["Plan: continue to monitor, update family.", "Plan: pain control, reposition q2h.",
                             "Plan: follow labs, encourage ambulation."]))
    return "\n".join(parts)


def radiology_note(rng, ctx: dict) -> tuple[str, str]:
    title, findings = RADIOLOGY.get(ctx["event"], DEFAULT_RADIOLOGY)
    if not ctx["event_in_notes"]:
        title, findings = DEFAULT_RADIOLOGY
    lines = [f"{title}", f"Reason: {_pick(rng, ['eval for acute process', 'assess interval change', 'new symptoms'])}",
             "COMPARISON: " + _pick(rng, ["None available.", "Prior study from the previous admission.",
                                          "Outside hospital films."]),
             "TECHNIQUE: " + _pick(rng, ["Single portable frontal view.", "Standard protocol, images reviewed on PACS.",
                                         "Two views obtained."]),
             "FINDINGS: " + _pick(rng, findings) + " " + _pick(rng, [
                 "No pneumothorax.", "Osseous structures are unremarkable.", "Degenerative changes of the spine.",
                 "Atherosclerotic calcifications are noted."])]
    if ctx["vent"] and title.startswith("CHEST"):
        lines.append("Endotracheal tube terminates 4 cm above the carina.")
    lines.append("IMPRESSION: " + _pick(rng, findings))
    return title, "\n".join(lines)


def discharge_summary(rng, ctx: dict) -> str:
    adm, dis = ctx["admit_deid"], ctx["disch_deid"]
    dx = [ctx["event_label"]] + [c for c in ctx["chronic_labels"]]
    lines = [f"Admission Date:  [**{adm}**]     Discharge Date:   [**{dis}**]",
             f"Service: {ctx['service']}",
             "History of Present Illness: " + f"{ctx['age_text']} year old with {', '.join(dx[1:]) or 'no chronic illness'} "
             f"admitted with {ctx['event_label']}.",
             "Hospital Course: " + _pick(rng, ["Treated per protocol with improvement.",
                                               "Course complicated by delirium and slow recovery.",
                                               "Managed in the ICU initially, then transferred to the floor."]),
             "Pertinent Results: " + f"lactate {ctx['lactate']:.1f} on admission, WBC {ctx['wbc']:.1f}, "
             f"creatinine {ctx['creat']:.1f}, Hgb {ctx['hgb']:.1f}.",
             "Discharge Diagnosis: " + "; ".join(dx) + "."]
    if ctx.get("meds"):
        lines.append("Discharge Medications: " + ", ".join(ctx["meds"][:8]) + ".")
    if ctx["died"]:
        lines.append("Discharge Disposition: Expired")
        lines.append("Discharge Condition: " + _pick(rng, ["Patient expired after transition to comfort measures.",
                                                            "Patient died despite maximal support."]))
    else:
        lines.append("Discharge Disposition: " + _pick(rng, ["Home", "Home With Service", "Extended Care"]))
        lines.append("Discharge Condition: " + _pick(rng, ["stable", "improved, ambulating with assistance",
                                                            "mental status at baseline"]))
        lines.append("Followup: " + _pick(rng, ["PCP in one week.", "Cardiology clinic in two weeks.",
                                                "Call your doctor with fevers or chest pain."]))
    return "\n".join(lines)
