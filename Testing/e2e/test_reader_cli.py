"""``radsynth reader build | analyse`` on the real sample chest CTs (lung1, lung2) and synthetic copies of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radsynth.cli.reader import reader_app
from radsynth.reader.blind import header_fields
from radsynth.reader.responses import ResponseStore
from radsynth.reader.samples import sample_ct_inputs
from radsynth.reader.study import Study


def invoke(*args: str):
    result = CliRunner().invoke(reader_app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    inputs = sample_ct_inputs(root / "inputs")
    args = ["build", "--out", root / "study", "--readers", "3", "--seed", "21", "--likert", "realism,continuity",
            "--preset", "Lung:1500:-600", "--preset", "Mediastinum:400:40", "--time-limit", "120",
            "--slices", "5:30"]
    for case in inputs:
        args += [f"--{case.label}", case.path]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return root, inputs, result.output


def test_build_on_real_ct(built):
    root, inputs, output = built
    study = Study.open(root / "study")
    assert "Answer key" in output and str(root / "study.key.json") in output
    assert len(study.cases) == 4 and study.reader_ids == ["R1", "R2", "R3"]
    assert [p["name"] for p in study.presets] == ["Lung", "Mediastinum"] and study.time_limit_s == 120
    assert all(study.slice_range(c) == (5, 30) for c in study.cases)
    sizes = {study.case_path(c).stat().st_size for c in study.cases}
    assert len(sizes) == 1, "lung1 (48 slices) and lung2 (61 slices) files padded to one size"
    assert all(set(header_fields(study.case_path(c))) == {"type", "dimension", "space", "sizes",
                                                         "space directions", "kinds", "endian", "encoding",
                                                         "space origin"} for c in study.cases)
    for case in study.cases:
        raw = study.case_path(case).read_bytes()
        assert b"RadSynth" not in raw and b"lung" not in raw and b"synthetic" not in raw.lower()
    key = json.loads((root / "study.key.json").read_text())
    assert sorted(Path(s).name for s in key["sources"].values()) == sorted(c.path.name for c in inputs)


def test_read_and_analyse(built, tmp_path):
    root, _, _ = built
    study = Study.open(root / "study")
    key = json.loads((root / "study.key.json").read_text())
    store = ResponseStore(study)
    for n, reader in enumerate(study.reader_ids):
        for i, case in enumerate(study.order(reader)):
            truth = key["truth"][case]
            label = truth if (i + n) % 3 else ("real" if truth == "synthetic" else "synthetic")
            store.record(reader, case, {"label": label, "confidence": 1 + (i + n) % 5, "realism": 3,
                                        "continuity": 2 + i % 3}, 100.0 + i, 110.0 + 2 * i)
    result = invoke("analyse", study.folder, "--key", root / "study.key.json", "--out", tmp_path / "report",
                    "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    assert "pooled" in result.output and "kappa label (fleiss)" in result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["pooled"]["n_read"] == 12 and report["n_synthetic"] == 2
    assert set(report["groups"]["method"]) == {"real", "radsynth test edit of lung1", "radsynth test edit of lung2"}
    assert (tmp_path / "report" / "reads.imrmc").exists() and (tmp_path / "report" / "roc.png").exists()


def test_user_errors_are_one_line_and_write_nothing(built, tmp_path):
    root, inputs, _ = built
    result = invoke("analyse", root / "study", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "answer key is needed" in result.output
    wrong = tmp_path / "wrong.key.json"
    doc = json.loads((root / "study.key.json").read_text())
    doc["truth"] = {c: "real" for c in doc["truth"]}
    wrong.write_text(json.dumps(doc))
    result = invoke("analyse", root / "study", "--key", wrong, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "does not match the study" in result.output
    assert not (tmp_path / "r").exists()

    synthetic = next(c for c in inputs if c.label == "synthetic")
    real = [c for c in inputs if c.label == "real"]
    result = invoke("build", "--real", synthetic.path, "--real", real[0].path, "--synthetic", real[1].path,
                    "--out", tmp_path / "s")
    assert result.exit_code == 2 and "carries the RadSynth synthetic mark" in result.output
    result = invoke("build", "--real", real[0].path, "--synthetic", synthetic.path, "--out", tmp_path / "s",
                    "--preset", "Lung")
    assert result.exit_code == 2 and "NAME:WINDOW:LEVEL" in result.output
    result = invoke("build", "--real", real[0].path, "--synthetic", synthetic.path, "--out", tmp_path / "s",
                    "--roi", "0:600,0:10,0:3")
    assert result.exit_code == 2 and "does not fit" in result.output
    result = invoke("serve", tmp_path / "nothing")
    assert result.exit_code == 2 and "not found" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.key.json"]


def test_mounted_in_the_radsynth_command():
    from radsynth.cli import app

    result = CliRunner().invoke(app, ["reader", "--help"])
    assert result.exit_code == 0 and "build" in result.output and "analyse" in result.output
