"""Building and opening a reader study: blinded files, sealed key, reproducible orders, clear refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radsynth.reader import blind
from radsynth.reader.build import CaseInput, build_study, parse_preset, parse_roi
from radsynth.reader.errors import StudyError
from radsynth.reader.key import sha256_bytes
from radsynth.reader.samples import toy_inputs
from radsynth.reader.study import Study
from radsynth.volume import Volume, read_volume, write_volume


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[CaseInput]:
    return toy_inputs(tmp_path_factory.mktemp("inputs"), 3, 3)


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    return build_study(inputs, root / "study", readers=3, seed=11, likert=["realism", "continuity"])


def test_cases_are_written_identically(built, inputs):
    study = built.study
    paths = [study.case_path(c) for c in study.cases]
    assert len(paths) == 6 and all(p.parent.name == "cases" for p in paths)
    assert len({p.stat().st_size for p in paths}) == 1, "every case file has the same size"
    assert len({p.stat().st_mtime for p in paths}) == 1, "every case file has the same mtime"
    for p in paths:
        assert tuple(blind.header_fields(p)) == blind.HEADER_FIELDS
        raw = p.read_bytes()
        assert b"RadSynth" not in raw and b"synthetic" not in raw.lower() and b"patient" not in raw
        img = sitk.ReadImage(str(p))
        assert img.GetPixelID() == sitk.sitkInt16
        assert not [k for k in img.GetMetaDataKeys() if "RadSynth" in k or "Provenance" in k]
    # the voxels survive: each case equals its source rounded to int16
    key = json.loads(built.key_path.read_text())
    for case_id, source in key["sources"].items():
        original = read_volume(source)
        written = read_volume(study.case_path(case_id))
        assert np.array_equal(written.array, np.rint(original.array).astype(np.int16))
        assert written.same_grid(original) and not written.metadata


def test_key_is_sealed_outside_the_study(built):
    study = built.study
    assert built.key_path == study.folder.with_name("study.key.json")
    assert not built.key_path.resolve().is_relative_to(study.folder.resolve())
    assert sha256_bytes(built.key_path.read_bytes()) == study.key_sha256
    key = json.loads(built.key_path.read_text())
    assert key["study_id"] == study.study_id and key["study_sha256"] == study.digest()
    assert sorted(key["truth"].values()) == ["real"] * 3 + ["synthetic"] * 3
    assert {g["method"] for g in key["groups"].values()} == {"real", "radsynth toy generator 1.0"}
    public = json.loads((study.folder / "study.json").read_text())
    del public["questions"]  # the only place the words real and synthetic belong
    text = json.dumps(public).lower()
    assert not [w for w in ("real", "synthetic", "patient", "method", "radsynth toy") if w in text]


def test_orders_reproducible_from_seed_and_different_across_readers(built, inputs, tmp_path):
    study = built.study
    orders = [study.order(r) for r in study.reader_ids]
    assert study.reader_ids == ["R1", "R2", "R3"] and all(sorted(o) == study.cases for o in orders)
    assert len({tuple(o) for o in orders}) == 3
    for i, reader in enumerate(study.reader_ids):
        expected = [study.cases[j] for j in np.random.default_rng(11 + i).permutation(6)]
        assert study.order(reader) == expected
    again = build_study(inputs, tmp_path / "again", readers=3, seed=11)
    # new secret: new case ids; same seed: the same permutations of the sorted ids
    assert set(again.study.cases).isdisjoint(study.cases)
    for reader in study.reader_ids:
        assert [again.study.cases.index(c) for c in again.study.order(reader)] == [
            study.cases.index(c) for c in study.order(reader)]


def test_questions_presets_and_tokens(built):
    study = built.study
    assert [q["id"] for q in study.questions] == ["label", "confidence", "realism", "continuity", "comment"]
    assert study.presets[0] == {"name": "Lung", "window": 1500, "level": -600}
    token = study.readers[1]["token"]
    assert study.reader_for_token(token) == "R2"
    with pytest.raises(StudyError, match="does not belong"):
        study.reader_for_token("0" * 32)
    with pytest.raises(StudyError, match="not part"):
        study.order("R9")
    assert parse_preset("Soft tissue:400:40") == {"name": "Soft tissue", "window": 400, "level": 40}
    with pytest.raises(StudyError, match="NAME:WINDOW:LEVEL"):
        parse_preset("Lung")


def test_roi_crop_and_slice_range(inputs, tmp_path):
    res = build_study(inputs, tmp_path / "s", readers=1, seed=0, roi=parse_roi("4:27,2:29,1:6"), slices=(1, 3),
                      presets=[parse_preset("Lung:1500:-600")], time_limit_s=30, allow_changes=False,
                      no_going_back=True)
    study = res.study
    key = json.loads(res.key_path.read_text())
    case = study.cases[0]
    written, source = read_volume(study.case_path(case)), read_volume(key["sources"][case])
    assert written.shape == (6, 28, 24)
    assert np.array_equal(written.array, np.rint(source.array[1:7, 2:30, 4:28]).astype(np.int16))
    assert np.allclose(written.origin, source.index_to_physical(np.array([[1, 2, 4]]))[0], atol=1e-4)
    assert study.slice_range(case) == (1, 3)
    assert (study.time_limit_s, study.allow_changes, study.no_going_back) == (30, False, True)
    with pytest.raises(StudyError, match="does not fit"):
        build_study(inputs, tmp_path / "s2", roi=parse_roi("0:40,0:10,0:3"))
    with pytest.raises(StudyError, match="slices"):
        build_study(inputs, tmp_path / "s3", slices=(2, 8))
    assert not (tmp_path / "s2").exists() and not (tmp_path / "s3").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "s.key.json"], "failed builds leave nothing"


def test_build_refusals_change_nothing(inputs, tmp_path):
    real = [c for c in inputs if c.label == "real"]
    with pytest.raises(StudyError, match="at least one real and one synthetic"):
        build_study(real, tmp_path / "a")
    marked = next(c for c in inputs if c.label == "synthetic")
    with pytest.raises(StudyError, match="listed as real but carries the RadSynth synthetic mark"):
        build_study([CaseInput(marked.path, "real"), *[c for c in inputs if c.path != marked.path]], tmp_path / "b")
    with pytest.raises(StudyError, match="outside the study folder"):
        build_study(inputs, tmp_path / "c", key_out=tmp_path / "c" / "key.json")
    with pytest.raises(StudyError, match="not found"):
        build_study([*inputs, CaseInput(tmp_path / "nope.nrrd", "real")], tmp_path / "d")
    with pytest.raises(StudyError, match="listed twice"):
        build_study([*inputs, CaseInput(inputs[0].path, "synthetic")], tmp_path / "e")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x").write_text("x")
    with pytest.raises(StudyError, match="not an empty folder"):
        build_study(inputs, tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_open_refuses_missing_and_tampered_studies(built, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built.study.folder, copy)
    Study.open(copy).verify()
    with pytest.raises(StudyError, match="no study.json"):
        Study.open(tmp_path)
    with pytest.raises(StudyError, match="not found"):
        Study.open(tmp_path / "nothing")
    case = Study.open(copy).cases[2]
    path = copy / "cases" / f"{case}.nrrd"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    study = Study.open(copy)  # same size: only the checksum sees it
    with pytest.raises(StudyError, match="checksum mismatch"):
        study.verify()
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(StudyError, match="tampered"):
        Study.open(copy)
    path.unlink()
    with pytest.raises(StudyError, match="missing"):
        Study.open(copy)
    doc = json.loads((built.study.folder / "study.json").read_text())
    for field, value, message in (("format", "other/1", "format"), ("orders", {"R1": []}, "orders"),
                                  ("cases", ["zz"], "cases")):
        bad = dict(doc, **{field: value})
        (copy / "study.json").write_text(json.dumps(bad))
        with pytest.raises(StudyError, match=message):
            Study.open(copy)
    (copy / "study.json").write_text("{not json")
    with pytest.raises(StudyError, match="cannot be read"):
        Study.open(copy)


def test_float_geometry_noise_and_int16(tmp_path):
    """A synthetic volume whose geometry went through float32 prints like its real twin."""
    arr = np.random.default_rng(0).normal(-500, 300, (4, 10, 10))
    real = Volume(np.rint(arr).astype(np.int16), (-146.123456, -325.5, -777.5), (0.6269531, 0.6269531, 5.0),
                  (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    noisy = Volume(arr.astype(np.float32), tuple(float(np.float32(v)) for v in real.origin),
                   tuple(float(np.float32(v)) for v in real.spacing), real.direction)
    noisy.mark_synthetic("x")
    write_volume(real, tmp_path / "r.nrrd")
    write_volume(noisy, tmp_path / "s.nrrd")
    res = build_study([CaseInput(tmp_path / "r.nrrd", "real"), CaseInput(tmp_path / "s.nrrd", "synthetic")],
                      tmp_path / "study", readers=1, seed=1)
    headers = [blind.header_fields(res.study.case_path(c)) for c in res.study.cases]
    assert headers[0] == headers[1]
    assert res.warnings == []
    assert os.path.getsize(res.study.case_path(res.study.cases[0])) == os.path.getsize(
        res.study.case_path(res.study.cases[1]))


def test_engine_imports_without_torch_slicer_or_the_test_references():
    import subprocess
    import sys

    code = ("import sys, radsynth.reader.report, radsynth.reader.build, radsynth.reader.responses; "
            "print([m for m in ('torch', 'slicer', 'sklearn', 'statsmodels') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
