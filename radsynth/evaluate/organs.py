"""Organ adherence of mask-guided generation: the median HU inside each organ's mask against the organ's real range
(MAISI reports the same check), and the label adherence of SDM renders (mean HU per class against real class
statistics; a nodule present where one was drawn, absent where one was erased).

``ORGAN_HU`` gives each organ a range of plausible *median* HU over the whole organ, wide enough for unenhanced and
portal-venous CT (generators trained on mixed data produce either). Sources: the Hounsfield-scale tables of standard
radiology references (e.g. Radiopaedia, "Hounsfield unit"; Lamba et al., Abdom Imaging 2014, unenhanced abdominal
soft tissue); contrast uplifts from routine portal-venous protocols. Each entry carries its reason.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Optional

import numpy as np

from ..errors import InvalidMaskError


@dataclasses.dataclass(frozen=True)
class OrganRange:
    low: float
    high: float
    reason: str
    patterns: tuple[str, ...]     # regular expressions matched against a segment / label name


ORGAN_HU: dict[str, OrganRange] = {
    # first match wins: "lung nodule" is a nodule, not lung
    "nodule": OrganRange(-300, 150, "solid lung nodules -100 to 100 HU; part-solid down to about -300",
                         (r"nodule", r"tumou?r", r"lesion", r"mass")),
    "lung": OrganRange(-950, -600, "aerated parenchyma about -850 HU; -600 allows dependent atelectasis",
                       (r"lung",)),
    "airway": OrganRange(-1024, -850, "air in the trachea and bronchi (-1000 HU) with partial-volume walls",
                         (r"trachea", r"airway", r"bronch")),
    "liver": OrganRange(30, 140, "unenhanced 50-65 HU; portal-venous about 100-130 HU", (r"liver", r"hepat")),
    "spleen": OrganRange(30, 150, "unenhanced 40-50 HU; portal-venous about 110-130 HU", (r"spleen", r"splen")),
    "kidney": OrganRange(20, 220, "unenhanced about 30 HU; nephrographic phase up to about 200 HU",
                         (r"kidney", r"renal")),
    "pancreas": OrganRange(20, 140, "unenhanced 40-50 HU; pancreatic phase about 100-130 HU", (r"pancrea",)),
    "aorta": OrganRange(20, 400, "unenhanced blood 35-50 HU; arterial contrast up to about 400 HU", (r"aorta",)),
    "heart": OrganRange(20, 400, "myocardium and blood pool, unenhanced 35-50 HU up to arterial contrast",
                        (r"heart", r"myocard", r"atri", r"ventricle")),
    "muscle": OrganRange(10, 80, "skeletal muscle 40-60 HU; fatty infiltration lowers it", (r"muscle", r"psoas",
                                                                                             r"gluteus")),
    "fat": OrganRange(-150, -50, "adipose tissue -120 to -80 HU", (r"fat",)),
    "bone": OrganRange(120, 900, "vertebral bodies: cancellous 150-400 HU with a cortical rim to 1000+",
                       (r"vertebra", r"rib", r"bone", r"femur", r"hip", r"sacrum", r"skull", r"sternum")),
    "bladder": OrganRange(-10, 40, "urine 0-20 HU (unenhanced)", (r"bladder",)),
    "stomach": OrganRange(-1024, 80, "wall 30-60 HU around gas (-1000) or fluid (0-20) content",
                          (r"stomach", r"gastr")),
    "soft tissue": OrganRange(-150, 150, "body soft tissue mixes fat (-100) and muscle/organs (40-60)",
                              (r"^body$", r"soft tissue")),
}


def organ_of(name: str) -> Optional[str]:
    """The ``ORGAN_HU`` entry a segment name refers to (first pattern that matches), or None."""
    key = name.lower().replace("_", " ")
    for organ, entry in ORGAN_HU.items():
        if any(re.search(p, key) for p in entry.patterns):
            return organ
    return None


def organ_adherence(volume_hu: np.ndarray, masks: Mapping[str, np.ndarray], min_voxels: int = 20) -> dict:
    """{segments: {name: {organ, median_hu, range, inside}}, adherence: share inside, unmapped: [...]}: the median
    HU of ``volume_hu`` inside each named mask against its organ's range."""
    if not masks:
        raise InvalidMaskError("Organ adherence needs at least one organ mask.")
    rows, unmapped = {}, []
    for name, mask in masks.items():
        m = np.asarray(mask, dtype=bool)
        if m.shape != volume_hu.shape:
            raise InvalidMaskError(f"The mask of {name!r} ({m.shape}) is not on the generated volume's grid "
                                   f"({volume_hu.shape}).")
        organ = organ_of(name)
        if organ is None:
            unmapped.append(name)
            continue
        if m.sum() < min_voxels:
            rows[name] = {"organ": organ, "median_hu": None, "note": f"fewer than {min_voxels} voxels"}
            continue
        r = ORGAN_HU[organ]
        med = float(np.median(volume_hu[m]))
        rows[name] = {"organ": organ, "median_hu": med, "range_hu": [r.low, r.high], "inside": bool(r.low <= med
                                                                                                    <= r.high),
                      "voxels": int(m.sum()), "reason": r.reason}
    judged = [r["inside"] for r in rows.values() if "inside" in r]
    return {"segments": rows, "adherence": float(np.mean(judged)) if judged else None,
            "unmapped": unmapped, "ranges_from": "radsynth.evaluate.organs.ORGAN_HU (see its sources)"}


# ----------------------------------------------------------------------------------------------- SDM labels

#: a drawn nodule counts as rendered when its mean HU is above this (solid or part-solid tissue, not aerated lung);
#: an erased one as gone when the region's mean is below ``AERATED_HU`` (aerated parenchyma is about -850 HU)
NODULE_PRESENT_HU = -400.0
AERATED_HU = -500.0


def class_statistics(volume_hu: np.ndarray, label_map: np.ndarray, classes: Mapping[int, str],
                     where: Optional[np.ndarray] = None, min_voxels: int = 20) -> dict[str, dict]:
    """{class name: {mean_hu, sd_hu, voxels}} of ``volume_hu`` per label value (inside ``where`` when given)."""
    out = {}
    for value, name in classes.items():
        m = np.asarray(label_map) == value
        if where is not None:
            m &= where
        if m.sum() >= min_voxels:
            v = volume_hu[m].astype(np.float64)
            out[name] = {"mean_hu": float(v.mean()), "sd_hu": float(v.std()), "voxels": int(m.sum())}
    return out


def label_adherence(generated: Mapping[str, dict], real: Mapping[str, dict]) -> dict[str, dict]:
    """Per class: generated mean HU, real mean ± SD, and z = (generated − real mean) / real SD."""
    out = {}
    for name, g in generated.items():
        if name not in real:
            continue
        r = real[name]
        z = (g["mean_hu"] - r["mean_hu"]) / r["sd_hu"] if r["sd_hu"] > 0 else float("nan")
        out[name] = {"generated_mean_hu": g["mean_hu"], "real_mean_hu": r["mean_hu"], "real_sd_hu": r["sd_hu"],
                     "z": float(z), "voxels": g["voxels"]}
    return out


def nodule_check(volume_hu: np.ndarray, drawn: Optional[np.ndarray] = None,
                 erased: Optional[np.ndarray] = None) -> dict:
    """Nodule present where drawn (mean HU > NODULE_PRESENT_HU) and absent where erased (mean < AERATED_HU)."""
    out = {}
    if drawn is not None and drawn.any():
        mean = float(volume_hu[drawn].mean())
        out["drawn"] = {"mean_hu": mean, "present": mean > NODULE_PRESENT_HU, "threshold_hu": NODULE_PRESENT_HU}
    if erased is not None and erased.any():
        mean = float(volume_hu[erased].mean())
        out["erased"] = {"mean_hu": mean, "absent": mean < AERATED_HU, "threshold_hu": AERATED_HU}
    return out
