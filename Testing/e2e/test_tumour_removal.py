"""TumorSynth's removal on lung2's real tumour (24.6 mL, against the chest wall) with the bundled demo models: by
default the healthy fill of DiffusionInpaint (ADR 0012), which must leave aerated lung where the bridge left soft
tissue; every voxel beyond the fill's reach is the input's."""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.pipelines import tumor_ops
from radsynth.sample_data import sample_path
from radsynth.volume import read_volume


def test_default_removal_refills_the_chest_wall_tumour_with_lung(tmp_path):
    assert tumor_ops.REMOVAL.default == "inpaint"
    image, label = sample_path("lung2", "image"), sample_path("lung2", "label")
    out, report = tmp_path / "removed.nrrd", tmp_path / "r.json"
    result = CliRunner().invoke(app, ["tumor", "remove", "--image", str(image), "--mask", str(label), "--out",
                                      str(out), "--report", str(report)])
    assert result.exit_code == 0, result.output
    ct, tumour, removed = read_volume(image), read_volume(label).array > 0, read_volume(out)
    assert removed.is_synthetic and removed.same_grid(ct)
    before, after = ct.array[tumour].mean(), removed.array[tumour].astype(np.float64).mean()
    assert before > -50 and after < -500, (before, after)       # issue target: the neighbourhood's aerated lung
    assert (removed.array[tumour] < -500).mean() > 0.8
    settings = json.loads(report.read_text())["result"]["settings"]
    assert settings["removal"] == "inpaint" and settings["mode"] == "healthy"
    # beyond mask + 3 mm margin + 3 mm feather (+ one 1.25 mm model pixel's diagonal), in-plane on its slices,
    # and on every other slice, nothing changed
    reach = np.zeros_like(tumour)
    for k in np.flatnonzero(tumour.any(axis=(1, 2))):
        reach[k] = ndimage.distance_transform_edt(~tumour[k], sampling=ct.spacing[:2][::-1]) <= 6.0 + 1.25 * 2 ** 0.5
    assert np.array_equal(removed.array[~reach], ct.array[~reach])


def test_bridge_removal_is_still_there_and_says_so(tmp_path):
    image, label = sample_path("lung2", "image"), sample_path("lung2", "label")
    out, report = tmp_path / "removed.nrrd", tmp_path / "r.json"
    result = CliRunner().invoke(app, ["tumor", "remove", "--image", str(image), "--mask", str(label), "--out",
                                      str(out), "--report", str(report), "--removal", "bridge", "--steps", "2"])
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())["result"]
    assert "removal" not in doc["settings"] and "demo-tumor-bbdm" in doc["models"]
    bad = CliRunner().invoke(app, ["tumor", "remove", "--image", str(image), "--mask", str(label), "--out",
                                   str(tmp_path / "x.nrrd"), "--removal", "eraser"])
    assert bad.exit_code == 2 and "eraser" in bad.output and not (tmp_path / "x.nrrd").exists()
