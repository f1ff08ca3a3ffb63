"""Blinding: from the study folder alone (no key), try to recover which case is synthetic from every clue a reader
could look at besides the voxels (file names, header fields and values, image metadata, voxel type, file size,
modification / change times, inode numbers, gzip header bytes, the reading orders and study.json's per-case
entries), and check that no clue predicts the label better than chance.

Each clue is attacked with leave-one-out prediction: a categorical clue predicts the majority label of the other
cases sharing its value, a numeric one its nearest neighbour's label. A clue "leaks" when the attack's accuracy is
significantly above 0.5 (one-sided exact binomial test, p < 1e-4 over 60 cases: a clue right 3 times in 4 is
caught, a chance clue is flagged about once in ten thousand runs). The naive folder below (originals copied with
their names, headers and sizes, in label order) must be caught: that shows the attack can fail the real build.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import SimpleITK as sitk
from scipy.stats import binomtest

from radsynth.reader.build import build_study
from radsynth.reader.samples import toy_inputs

LEAK_P = 1e-4


def clues(folder: Path) -> dict[str, dict[str, object]]:
    """clue -> case -> value, from what a reader can see in the folder (never the key)."""
    files = sorted((folder / "cases").iterdir())
    doc = json.loads((folder / "study.json").read_text())
    out: dict[str, dict[str, object]] = {name: {} for name in (
        "name_letters", "name_number", "size", "mtime", "atime", "ctime", "inode", "header_fields",
        "header_text", "voxel_type", "metadata_keys", "gzip_header", "position_in_cases", "study_json_entry",
        "position_in_files_entry")}
    for path in files:
        st = path.stat()  # before any read touches the access time
        case = path.name.split(".")[0]
        out["size"][case], out["mtime"][case], out["atime"][case] = st.st_size, st.st_mtime_ns, st.st_atime_ns
        out["ctime"][case], out["inode"][case] = st.st_ctime_ns, st.st_ino
    for path in files:
        case = path.name.split(".")[0]
        out["name_letters"][case] = "".join(ch for ch in path.name if not ch.isdigit())
        digits = "".join(ch for ch in case if ch in "0123456789abcdef")
        out["name_number"][case] = int(digits[:12], 16) if digits else 0
        raw = path.read_bytes()
        end = raw.index(b"\n\n")
        header = raw[:end].decode("latin-1").splitlines()
        out["header_fields"][case] = tuple(line.split(":")[0] for line in header)
        out["header_text"][case] = "\n".join(header)
        for line in header[1:]:  # one clue per field: a field only some files have, or a value only they have
            field, _, value = line.partition(":")
            out.setdefault(f"header[{field}]", {})[case] = value
        image = sitk.ImageFileReader()
        image.SetFileName(str(path))
        image.ReadImageInformation()
        out["voxel_type"][case] = image.GetPixelIDTypeAsString() if hasattr(image, "GetPixelIDTypeAsString") \
            else str(image.GetPixelID())
        out["metadata_keys"][case] = tuple(sorted(image.GetMetaDataKeys()))
        for k in image.GetMetaDataKeys():
            out.setdefault(f"metadata[{k}]", {})[case] = image.GetMetaData(k)
        out["gzip_header"][case] = raw[end + 2:end + 12]
        out["position_in_cases"][case] = doc["cases"].index(case) if case in doc["cases"] else -1
        entry = {k: v for k, v in (doc.get("files", {}).get(case) or {}).items() if k != "sha256"}
        out["study_json_entry"][case] = json.dumps([entry, (doc.get("view") or {}).get(case)], sort_keys=True)
        out["position_in_files_entry"][case] = list(doc.get("files", {})).index(case) if case in doc.get(
            "files", {}) else -1
    for reader, order in doc["orders"].items():
        out[f"order_{reader}"] = {case: order.index(case) for case in order}
    return out


def attack(values: dict[str, object], truth: dict[str, str]) -> float:
    """Leave-one-out accuracy of predicting each case's label from this clue (absent = its own value)."""
    values = {c: values.get(c, "<absent>") for c in truth}
    cases = list(values)
    numeric = all(isinstance(values[c], (int, float)) for c in cases)
    correct = 0
    for case in cases:
        others = [c for c in cases if c != case]
        if numeric:
            best = min(abs(values[c] - values[case]) for c in others)
            pool = [truth[c] for c in others if abs(values[c] - values[case]) == best]
        else:
            pool = [truth[c] for c in others if values[c] == values[case]]
        votes = Counter(pool).most_common()
        guess = votes[0][0] if votes and (len(votes) == 1 or votes[0][1] > votes[1][1]) else "real"
        correct += guess == truth[case]
    return correct / len(cases)


def leaks(folder: Path, truth: dict[str, str]) -> dict[str, float]:
    found = {}
    for clue, values in clues(folder).items():
        accuracy = attack(values, truth)
        if binomtest(round(accuracy * len(truth)), len(truth), 0.5, alternative="greater").pvalue < LEAK_P:
            found[clue] = accuracy
    return found


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return toy_inputs(tmp_path_factory.mktemp("inputs"), 30, 30, shape=(4, 12, 12))


def test_no_clue_beats_chance_in_a_built_study(inputs, tmp_path):
    res = build_study(inputs, tmp_path / "study", readers=4, seed=9, slices=(1, 2))
    truth = json.loads(res.key_path.read_text())["truth"]
    assert len(truth) == 60 and Counter(truth.values()) == {"real": 30, "synthetic": 30}
    assert leaks(res.study.folder, truth) == {}
    assert not any(p.name.startswith(".") or "key" in p.name for p in res.study.folder.rglob("*"))


def test_the_attack_catches_a_naive_folder(inputs, tmp_path):
    """The originals copied as they are, in label order: names, headers, metadata, sizes, times and orders leak."""
    folder = tmp_path / "naive"
    (folder / "cases").mkdir(parents=True)
    truth = {}
    for n, case in enumerate(sorted(inputs, key=lambda c: c.label)):
        name = f"{n:03d}-{case.path.name.replace(' ', '_')}"
        shutil.copy(case.path, folder / "cases" / name)
        truth[name.split(".")[0]] = case.label
    order = sorted(truth)
    (folder / "study.json").write_text(json.dumps({"cases": order, "orders": {"R1": order}}))
    found = leaks(folder, truth)
    assert {"name_letters", "header[type]", "header[RadSynth.Synthetic]", "metadata[RadSynth.Synthetic]",
            "voxel_type", "size", "inode", "order_R1"} <= set(found)


def test_the_attack_catches_a_kept_synthetic_mark(inputs, tmp_path):
    """A build that forgot only one thing (the RadSynth mark in the header) is caught too."""
    res = build_study(inputs, tmp_path / "study", readers=1, seed=2)
    truth = json.loads(res.key_path.read_text())["truth"]
    for case, label in truth.items():
        if label == "synthetic":
            path = res.study.case_path(case)
            raw = path.read_bytes()
            end = raw.index(b"\n\n")
            path.write_bytes(raw[:end] + b"\nRadSynth.Synthetic:=1" + raw[end:])
            os.utime(path, ns=(0, 0))
    assert {"header[RadSynth.Synthetic]", "metadata[RadSynth.Synthetic]"} <= set(leaks(res.study.folder, truth))
