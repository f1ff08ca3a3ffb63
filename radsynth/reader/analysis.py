"""Analyse a read study against its answer key: per reader and pooled detection, ROC, agreement, timing, groups.

Each reader's latest answer per case counts (earlier rows are the history of a changed answer). See
:mod:`.stats` for the definitions; docs/reader-study.md explains them for users.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timezone
from typing import Any, Optional

import numpy as np

from . import stats
from .errors import StudyError
from .key import AnswerKey
from .questions import CONFIDENCE, LABEL, REAL, SYNTHETIC
from .responses import ResponseStore
from .study import Study

DEFINITIONS = {
    "positive": "synthetic",
    "sensitivity": "synthetic cases called synthetic / synthetic cases read",
    "specificity": "real cases called real / real cases read",
    "accuracy": "correct calls / cases read; 0.5 is chance for a forced choice",
    "binomial_test": "exact two-sided binomial test of the correct calls against p = 0.5 (scipy.stats.binomtest); "
                     "pooled over readers it treats reads as independent, which overstates the evidence",
    "rating": "+confidence if the answer is synthetic, -confidence if real (-5 = certainly real, 5 = certainly "
              "synthetic)",
    "auc": "Mann-Whitney AUC of the rating, synthetic vs real (ties count 1/2); 0.5 = indistinguishable",
    "auc_ci": "95 % percentile bootstrap interval; per reader: cases resampled within real and synthetic; pooled "
              "(reader-averaged AUC): readers and cases resampled",
    "kappa": "Cohen's kappa for two readers (quadratic weights on scale items), Fleiss' kappa for more, over the "
             "cases every reader answered",
    "reading_time": "answered_at - shown_at of the answer that counts, in seconds",
}


def latest_reads(study: Study, store: ResponseStore) -> dict[str, dict[str, dict[str, Any]]]:
    """reader -> case -> latest row; answers of readers or cases no longer in the study are refused."""
    reads: dict[str, dict[str, dict[str, Any]]] = {}
    changes: dict[str, int] = {}
    for row in store.rows():
        if row["reader_id"] not in study.reader_ids or row["case_id"] not in study.cases:
            raise StudyError(f"The answers database holds an answer of {row['reader_id']} for case "
                             f"{row['case_id']}, which this study does not have; it was tampered with.")
        mine = reads.setdefault(row["reader_id"], {})
        if row["case_id"] in mine:
            changes[row["reader_id"]] = changes.get(row["reader_id"], 0) + 1
        mine[row["case_id"]] = row
    for reader, n in changes.items():
        for row in reads[reader].values():
            row["_changes"] = n
    return reads


def analyse(study: Study, key: AnswerKey, n_boot: int = 2000, seed: Optional[int] = None) -> dict[str, Any]:
    if key.study_id != study.study_id:
        raise StudyError("The answer key belongs to another study.")
    seed = study.seed if seed is None else seed
    reads = latest_reads(study, ResponseStore(study))
    if not reads:
        raise StudyError("No reader has answered yet; there is nothing to analyse.")
    truth = {c: 1 if key.truth[c] == SYNTHETIC else 0 for c in study.cases}
    scale_items = [q["id"] for q in study.questions if q["kind"] == "scale" and q["id"] != CONFIDENCE]
    readers = [r for r in study.reader_ids if r in reads]

    per_reader = {r: _detection(reads[r], truth, n_boot, seed + i, study.time_limit_s, scale_items)
                  for i, r in enumerate(study.reader_ids) if r in reads}
    all_reads = {f"{r}/{c}": row for r in readers for c, row in reads[r].items()}
    pooled = _detection(all_reads, {f"{r}/{c}": truth[c] for r in readers for c in reads[r]}, 0, seed,
                        study.time_limit_s, scale_items)
    matrix = np.full((len(readers), len(study.cases)), np.nan)
    for i, r in enumerate(readers):
        for j, c in enumerate(study.cases):
            if c in reads[r]:
                matrix[i, j] = _rating(reads[r][c])
    truth_vec = np.array([truth[c] for c in study.cases])
    pooled["auc_all_reads"] = pooled.pop("auc")
    pooled.pop("auc_ci")
    pooled["auc"] = stats.reader_averaged_auc(matrix, truth_vec)
    pooled["auc_ci"] = list(stats.bootstrap_reader_averaged_auc(matrix, truth_vec, n_boot, seed)) if n_boot else None
    pooled["readers"] = len(readers)

    return {
        "study_id": study.study_id, "analysed_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "n_cases": len(study.cases), "n_real": sum(1 for v in truth.values() if v == 0),
        "n_synthetic": sum(truth.values()), "bootstrap": {"n": n_boot, "seed": seed},
        "readers": per_reader, "pooled": pooled,
        "readers_without_answers": [r for r in study.reader_ids if r not in reads],
        "agreement": _agreement(study, reads, readers, scale_items),
        "groups": _groups(study, key, reads, readers, truth),
        "reading_time_by_truth": {
            name: _times([row for r in readers for c, row in reads[r].items() if truth[c] == value])
            for name, value in ((REAL, 0), (SYNTHETIC, 1))},
        "definitions": DEFINITIONS,
    }


def _rating(row: dict[str, Any]) -> int:
    return stats.signed_rating(row["answers"][LABEL], row["answers"][CONFIDENCE])


def _times(rows) -> dict[str, Optional[float]]:
    values = [row["answered_at"] - row["shown_at"] for row in rows]
    if not values:
        return {"n": 0, "median_s": None, "mean_s": None, "total_s": None}
    return {"n": len(values), "median_s": float(statistics.median(values)), "mean_s": float(np.mean(values)),
            "total_s": float(np.sum(values))}


def _detection(rows: dict[str, dict[str, Any]], truth: dict[str, int], n_boot: int, seed: int,
               time_limit: Optional[int], scale_items: list[str]) -> dict[str, Any]:
    keys = list(rows)
    t = [truth[k] for k in keys]
    called = [1 if rows[k]["answers"][LABEL] == SYNTHETIC else 0 for k in keys]
    counts = stats.confusion(t, called)
    correct = counts["tp"] + counts["tn"]
    ratings = np.array([_rating(rows[k]) for k in keys], dtype=float)
    tv = np.array(t)
    pos, neg = ratings[tv == 1], ratings[tv == 0]
    times = _times(rows.values())
    return {
        "n_read": len(keys), "confusion": counts, "accuracy": stats.ratio(correct, len(keys)),
        "sensitivity": stats.ratio(counts["tp"], counts["tp"] + counts["fn"]),
        "specificity": stats.ratio(counts["tn"], counts["tn"] + counts["fp"]),
        "binomial": stats.binomial(correct, len(keys)),
        "auc": stats.auc(pos, neg), "auc_ci": list(stats.bootstrap_auc(pos, neg, n_boot, seed)) if n_boot else None,
        "roc": dict(zip(("fpr", "tpr"), stats.roc_points(pos, neg))),
        "reading_time": times,
        "over_time_limit": (sum(1 for r in rows.values() if r["answered_at"] - r["shown_at"] > time_limit)
                            if time_limit else 0),
        "answer_changes": max((r.get("_changes", 0) for r in rows.values()), default=0),
        "scales": {item: {name: _mean([rows[k]["answers"].get(item) for k in keys if truth[k] == value])
                          for name, value in ((REAL, 0), (SYNTHETIC, 1))} for item in scale_items},
    }


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _agreement(study: Study, reads, readers: list[str], scale_items: list[str]) -> dict[str, Any]:
    if len(readers) < 2:
        return {}
    common = [c for c in study.cases if all(c in reads[r] for r in readers)]
    out: dict[str, Any] = {}
    for item in [LABEL, CONFIDENCE, *scale_items]:
        q = study.question(item)
        categories = q["choices"] if q["kind"] == "choice" else list(range(q["min"], q["max"] + 1))
        values = [[reads[r][c]["answers"][item] for r in readers] for c in common]
        if len(readers) == 2:
            kappa = stats.cohen_kappa([v[0] for v in values], [v[1] for v in values], categories,
                                      None if q["kind"] == "choice" else "quadratic")
            method = "cohen" if q["kind"] == "choice" else "cohen_quadratic"
        else:
            kappa = stats.fleiss_kappa(stats.fleiss_table(values, categories)) if values else None
            method = "fleiss"
        out[item] = {"method": method, "kappa": kappa, "n_cases": len(common), "readers": list(readers)}
    return out


def _groups(study: Study, key: AnswerKey, reads, readers: list[str], truth: dict[str, int]) -> dict[str, Any]:
    """Per group key (e.g. method) and value: pooled accuracy of the reads of those cases and, for a value holding
    synthetic cases, the AUC of those cases against all real cases (reads pooled over readers)."""
    names = sorted({name for g in key.groups.values() for name in g})
    real_ratings = [_rating(reads[r][c]) for r in readers for c in reads[r] if truth[c] == 0]
    out: dict[str, Any] = {}
    for name in names:
        values = sorted({str(key.groups.get(c, {}).get(name)) for c in study.cases
                         if name in key.groups.get(c, {})})
        out[name] = {}
        for value in values:
            cases = {c for c in study.cases if str(key.groups.get(c, {}).get(name)) == value}
            rows = [(c, reads[r][c]) for r in readers for c in reads[r] if c in cases]
            correct = sum(1 for c, row in rows if (row["answers"][LABEL] == SYNTHETIC) == bool(truth[c]))
            synthetic = [_rating(row) for c, row in rows if truth[c] == 1]
            out[name][value] = {
                "n_cases": len(cases), "n_reads": len(rows), "accuracy": stats.ratio(correct, len(rows)),
                "auc_vs_real": stats.auc(synthetic, real_ratings) if synthetic else None,
                "reading_time": _times([row for _, row in rows]),
            }
    return out
