"""``radsynth generate organs`` on the real lung1 chest CT with the bundled demo organ model (few steps): from the
CT's automatic map (the first slice conditioned on the CT's slice below the start) and from a map file (the real
tumour drawn in as nodule, on another grid: grown from air), the generated slices lie on the map's grid at the
start slice, are marked synthetic and report what was kept and replaced; an unknown organ name and a map value
outside the scheme exit with code 2, before anything slow, and write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.pipelines.inpaint import labels
from radsynth.sample_data import sample_path
from radsynth.volume import SYNTHETIC_KEY, Volume, read_volume, write_volume

FAST = "4"
START = 22


def radsynth(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def ct() -> Volume:
    return read_volume(sample_path("lung1", "image"))


@pytest.fixture(scope="module")
def half_ct(ct, tmp_path_factory):
    """lung1 at every 2nd pixel in-plane (256², 1.1 mm): the real CT, with an automatic map 4× quicker to make."""
    half = Volume(np.ascontiguousarray(ct.array[:, ::2, ::2]), ct.origin, (2 * ct.spacing[0], 2 * ct.spacing[1],
                  ct.spacing[2]), ct.direction)
    path = tmp_path_factory.mktemp("ct") / "lung1_half.nrrd"
    write_volume(half, path)
    return half, path


def test_organs_from_the_automatic_map(tmp_path, half_ct):
    ct, ct_path = half_ct
    out, report = tmp_path / "organs.nrrd", tmp_path / "report.json"
    r = radsynth("generate", "organs", "--image", str(ct_path), "--start", str(START), "--slices", "2",
                 "--keep", "body, left lung, right lung", "--steps", FAST, "--out", str(out), "--report", str(report),
                 "--in-process")
    assert r.exit_code == 0, r.output
    assert sitk.ReadImage(str(out)).GetMetaData(SYNTHETIC_KEY) == "1"
    v = read_volume(out)
    assert v.shape == (2, 256, 256) and v.spacing == pytest.approx(ct.spacing)
    np.testing.assert_allclose(v.origin, ct.index_to_physical(np.array([[START, 0, 0]], float))[0], atol=1e-4)
    assert v.array[:, :5, :5].mean() < -900                                # air outside the body
    settings = json.loads(report.read_text())["result"]["settings"]
    assert settings["organ_map"].startswith("automatic") and settings["keep"] == ["body", "left lung", "right lung"]
    assert settings["first_neighbour"] == "image slice below the start"
    assert "trachea" in settings["replaced_voxels_model_grid"] and settings["slices_generated"] == 2


def test_organs_from_a_map_file_on_another_grid_through_the_worker(tmp_path, ct):
    nodule = read_volume(sample_path("lung1", "label")).array > 0
    body = ct.array > -500                                   # a quick map: thresholded body, the real tumour on top
    label_map = ct.label_like(labels.compose({labels.BODY: body, labels.NODULE: nodule}, ct.shape))
    coarse = Volume(np.ascontiguousarray(label_map.array[:, ::2, ::2]), label_map.origin,
                    (2 * label_map.spacing[0], 2 * label_map.spacing[1], label_map.spacing[2]), label_map.direction)
    path, out, report = tmp_path / "map.nrrd", tmp_path / "organs.nrrd", tmp_path / "report.json"
    write_volume(coarse, path)
    start = int(np.nonzero((coarse.array == labels.NODULE).any(axis=(1, 2)))[0][0])
    r = radsynth("generate", "organs", "--image", str(sample_path("lung1")), "--organ-map", str(path),
                 "--start", str(start), "--slices", "1", "--steps", FAST, "--icnet", "off", "--out", str(out),
                 "--report", str(report), "--worker")     # one slice comes back from the worker as a file
    assert r.exit_code == 0, r.output
    v = read_volume(out, single_slice=True)
    assert v.shape == (1, 256, 256) and v.spacing == pytest.approx(coarse.spacing)     # the map's grid
    doc = json.loads(report.read_text())
    assert "nodule" in doc["result"]["settings"]["keep"] and doc["result"]["settings"]["first_neighbour"] == "air"
    assert any("nearest neighbour" in w for w in doc["result"]["warnings"])


def test_unknown_organs_and_values_exit_2_and_write_nothing(tmp_path, ct):
    out = tmp_path / "organs.nrrd"
    r = radsynth("generate", "organs", "--image", str(sample_path("lung1")), "--keep", "body,liver",
                 "--slices", "1", "--steps", FAST, "--out", str(out), "--in-process")
    assert r.exit_code == 2 and "'liver'" in r.output and not out.exists()
    bad = Volume(np.where(ct.array > -500, 9, 0).astype(np.uint8), ct.origin, ct.spacing, ct.direction)
    path = tmp_path / "bad.nrrd"
    write_volume(bad, path)
    r = radsynth("generate", "organs", "--image", str(sample_path("lung1")), "--organ-map", str(path),
                 "--slices", "1", "--steps", FAST, "--out", str(out), "--in-process")
    assert r.exit_code == 2 and "9" in r.output and not out.exists()
