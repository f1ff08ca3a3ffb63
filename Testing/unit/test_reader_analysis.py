"""Analysis of a read study: numbers from designed answers, report files, iMRMC export, refusals of a bad key."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from radsynth.reader.build import build_study
from radsynth.reader.errors import AnswerKeyError, StudyError
from radsynth.reader.report import analyse_study
from radsynth.reader.responses import ResponseStore
from radsynth.reader.samples import toy_inputs
from radsynth.reader.study import Study

# R1's answers by truth, in case order: (label, confidence, realism, seconds)
R1 = {"synthetic": [("synthetic", 5, 1, 10), ("synthetic", 4, 2, 20), ("real", 1, 4, 30)],
      "real": [("real", 5, 5, 4), ("real", 3, 4, 6), ("synthetic", 2, 3, 8)]}


@pytest.fixture
def built(tmp_path):
    inputs = toy_inputs(tmp_path / "in", 3, 3, shape=(4, 16, 16))
    res = build_study(inputs, tmp_path / "study", readers=3, seed=4, likert=["realism"])
    return res.study, res.key_path, json.loads(res.key_path.read_text(encoding="utf-8"))


def answer(study, key, reader, plan):
    store = ResponseStore(study)
    seen = {"real": 0, "synthetic": 0}
    for case in study.cases:
        truth = key["truth"][case]
        label, confidence, realism, seconds = plan[truth][seen[truth]]
        seen[truth] += 1
        store.record(reader, case, {"label": label, "confidence": confidence, "realism": realism}, 1000.0,
                     1000.0 + seconds)


def test_numbers_files_and_imrmc(built, tmp_path):
    study, key_path, key = built
    # R1 first answers everything wrongly, then changes every answer: only the latest counts
    flipped = {t: [("real" if lab == "synthetic" else "synthetic", c, r, s) for lab, c, r, s in v]
               for t, v in R1.items()}
    answer(study, key, "R1", flipped)
    answer(study, key, "R1", R1)
    answer(study, key, "R2", {t: [("real", 3, 3, 5)] * 3 for t in ("real", "synthetic")})
    out = tmp_path / "report"
    result = analyse_study(study.folder, key_path, out, n_boot=300)

    r1, r2 = result["readers"]["R1"], result["readers"]["R2"]
    assert r1["n_read"] == 6 and r1["confusion"] == {"tp": 2, "fn": 1, "tn": 2, "fp": 1}
    assert (r1["accuracy"], r1["sensitivity"], r1["specificity"]) == pytest.approx((4 / 6, 2 / 3, 2 / 3))
    # ratings synthetic 5, 4, -1 vs real -5, -3, 2: 8 of 9 pairs ordered correctly
    assert r1["auc"] == pytest.approx(8 / 9)
    assert r1["auc_ci"][0] <= 8 / 9 <= r1["auc_ci"][1]
    assert r1["binomial"]["p_value"] == pytest.approx(2 * (15 + 6 + 1) / 64)  # P(X <= 2 or X >= 4), X ~ B(6, .5)
    assert r1["reading_time"]["median_s"] == pytest.approx(9.0) and r1["answer_changes"] == 6
    assert r1["scales"]["realism"] == pytest.approx({"real": 4.0, "synthetic": 7 / 3})
    assert (r2["accuracy"], r2["sensitivity"], r2["specificity"], r2["auc"]) == (0.5, 0.0, 1.0, 0.5)
    pooled = result["pooled"]
    assert pooled["n_read"] == 12 and pooled["accuracy"] == pytest.approx(7 / 12)
    assert pooled["auc"] == pytest.approx((8 / 9 + 0.5) / 2)
    assert result["readers_without_answers"] == ["R3"]
    assert result["agreement"]["label"]["method"] == "cohen"
    assert result["agreement"]["label"]["kappa"] == pytest.approx(0.0)  # R2 always says real
    groups = result["groups"]["method"]
    assert groups["real"]["accuracy"] == pytest.approx(5 / 6)  # specificity of the pooled reads
    assert groups["radsynth toy generator 1.0"]["accuracy"] == pytest.approx(2 / 6)
    assert set(result["groups"]["size"]) == {"small", "large"}
    assert result["reading_time_by_truth"]["synthetic"]["median_s"] == pytest.approx(7.5)

    for name in ("report.json", "report.html", "reads.csv", "reads.imrmc", "imrmc_ids.csv", "roc.png",
                 "accuracy.png", "reading_time.png", "likert.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["readers"]["R1"]["auc"] == pytest.approx(8 / 9)
    assert 'src="roc.png"' in (out / "report.html").read_text(encoding="utf-8")
    lines = (out / "reads.imrmc").read_text(encoding="utf-8").splitlines()
    header = dict(line.split(": ") for line in lines[:lines.index("BEGIN DATA:")] if ": " in line)
    assert header == {"NR": "2", "N0": "3", "N1": "3", "NM": "1"}
    data = [line.split(",") for line in lines[lines.index("BEGIN DATA:") + 1:]]
    truth_rows = [d for d in data if d[0] == "-1"]
    assert len(truth_rows) == 6 and {d[2] for d in truth_rows} == {"0"} and sorted(d[3] for d in truth_rows) == [
        "0", "0", "0", "1", "1", "1"]
    reads = [d for d in data if d[0] != "-1"]
    assert len(reads) == 12 and {d[2] for d in reads} == {"1"}
    r1_scores = sorted(int(d[3]) for d in reads if d[0] == "1")
    assert r1_scores == sorted([5, 4, -1, -5, -3, 2])


def test_fleiss_for_three_readers(built, tmp_path):
    study, key_path, key = built
    answer(study, key, "R1", R1)
    answer(study, key, "R2", {t: [("real", 3, 3, 5)] * 3 for t in ("real", "synthetic")})
    answer(study, key, "R3", R1)
    result = analyse_study(study.folder, key_path, tmp_path / "r", n_boot=100)
    assert result["agreement"]["label"]["method"] == "fleiss"
    labels = {r: {c: row for c, row in ResponseStore(study).latest(r).items()} for r in ("R1", "R2", "R3")}
    table = np.array([[sum(labels[r][c]["label"] == v for r in labels) for v in ("real", "synthetic")]
                      for c in study.cases])
    assert result["agreement"]["label"]["kappa"] == pytest.approx(sm_fleiss(table, method="fleiss"))


def test_refuses_missing_wrong_and_tampered_keys(built, tmp_path):
    study, key_path, key = built
    answer(study, key, "R1", R1)
    out = tmp_path / "report"
    with pytest.raises(AnswerKeyError, match="needed"):
        analyse_study(study.folder, None, out)
    with pytest.raises(AnswerKeyError, match="not found"):
        analyse_study(study.folder, tmp_path / "nothing.json", out)

    other = build_study(toy_inputs(tmp_path / "in2", 1, 1, shape=(4, 8, 8)), tmp_path / "other", readers=1)
    with pytest.raises(AnswerKeyError, match="key of another study"):
        analyse_study(study.folder, other.key_path, out)

    tampered = tmp_path / "tampered.json"
    case = study.cases[0]
    swapped = dict(key, truth={**key["truth"], case: "real" if key["truth"][case] == "synthetic" else "synthetic"})
    tampered.write_text(json.dumps(swapped, indent=2, sort_keys=True) + "\n")
    with pytest.raises(AnswerKeyError, match="sha256 differs"):
        analyse_study(study.folder, tampered, out)

    inside = study.folder / "key.json"
    shutil.copy(key_path, inside)
    with pytest.raises(AnswerKeyError, match="inside the study folder"):
        analyse_study(study.folder, inside, out)
    inside.unlink()
    with pytest.raises(StudyError, match="outside the study folder"):
        analyse_study(study.folder, key_path, study.folder / "report")

    doc = json.loads((study.folder / "study.json").read_text(encoding="utf-8"))
    doc["orders"]["R1"] = doc["orders"]["R1"][::-1]
    (study.folder / "study.json").write_text(json.dumps(doc, indent=2))
    Study.open(study.folder)  # still a valid study ...
    with pytest.raises(AnswerKeyError, match="changed after the study was built"):
        analyse_study(study.folder, key_path, out)  # ... but no longer the one the key sealed
    assert not out.exists() and not (study.folder / "report").exists(), "refusals write nothing"


def test_refuses_a_study_without_answers(built, tmp_path):
    study, key_path, _ = built
    with pytest.raises(StudyError, match="No reader has answered"):
        analyse_study(study.folder, key_path, tmp_path / "r")
