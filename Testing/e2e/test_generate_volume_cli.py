"""``radsynth generate volume`` with the bundled demo model (few steps): a synthetic CT in HU with the model's grid,
unguided and following the real lung2 CT's automatic map (placed over it, the lungs darker than the body); the
help lists the declared options; bad requests exit with code 2 and write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.models import bundled
from radsynth.sample_data import sample_path
from radsynth.volume import SYNTHETIC_KEY, read_volume, write_volume

STEPS = "8"


def radsynth(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def lung_map(tmp_path_factory):
    from radsynth.pipelines.inpaint.auto_map import auto_map
    path = tmp_path_factory.mktemp("map") / "lung2-map.nrrd"
    amap = auto_map(read_volume(sample_path("lung2", "image"))).map
    write_volume(amap, path)
    return path, amap


def test_help_lists_the_declared_options():
    r = radsynth("generate", "volume", "--help")
    assert r.exit_code == 0
    for flag in ("--model", "--size", "--spacing", "--body-region", "--steps", "--sampler", "--seed",
                 "--segmentation", "--segment-names", "--out", "--report"):
        assert flag in r.output
    assert "--image" not in r.output


def test_demo_volume_unguided_and_following_a_map(tmp_path, lung_map):
    card = json.loads((bundled("demo-volume-ldm") / "card.json").read_text())
    out, report = tmp_path / "synth.nrrd", tmp_path / "report.json"
    r = radsynth("generate", "volume", "--steps", STEPS, "--seed", "2", "--out", str(out), "--report", str(report),
                 "--in-process")
    assert r.exit_code == 0, r.output
    assert "DEMO MODEL" in r.output
    assert sitk.ReadImage(str(out)).GetMetaData(SYNTHETIC_KEY) == "1"
    v = read_volume(out)
    x, y, z = card["grid"]["default_size"]
    assert v.shape == (z, y, x) and v.spacing == pytest.approx(tuple(card["grid"]["default_spacing_mm"]))
    assert -1000 <= v.array.min() and v.array.max() <= 1000
    settings = json.loads(report.read_text())["result"]["settings"]
    assert settings["steps"] == int(STEPS) and settings["follows_maps"] is False

    path, amap = lung_map
    guided = tmp_path / "guided.nrrd"
    r = radsynth("generate", "volume", "--steps", STEPS, "--seed", "2", "--segmentation", str(path),
                 "--out", str(guided), "--worker")
    assert r.exit_code == 0, r.output
    g = read_volume(guided)
    # placed over the map: its centre is the centre of the map's labelled box
    box = np.argwhere(amap.array > 0)
    centre = amap.index_to_physical(((box.min(0) + box.max(0)) / 2.0)[None])[0]
    np.testing.assert_allclose(g.index_to_physical(((np.array(g.shape) - 1) / 2.0)[None])[0], centre, atol=1e-3)
    # the demo follows its body/lung channels: inside the map's lungs darker than in the body's soft tissue
    on_grid = sitk.GetArrayFromImage(sitk.Resample(amap.to_sitk(), g.to_sitk(), sitk.Transform(),
                                                   sitk.sitkNearestNeighbor, 0))
    lungs, body = np.isin(on_grid, (2, 3)), on_grid == 1
    assert g.array[lungs].mean() < g.array[body].mean() - 200
    assert g.array[on_grid == 0].mean() < g.array[body].mean() - 200


@pytest.mark.parametrize("args, says", [        # the other refusals: Testing/unit/test_generate_volume.py
    (("--size", "128,128,128"), "not one this model supports"),
    (("--model", "no-such-model"), "not installed"),
])
def test_bad_requests_exit_2_and_write_nothing(tmp_path, args, says):
    out = tmp_path / "x.nrrd"
    r = radsynth("generate", "volume", *args, "--steps", "2", "--out", str(out), "--in-process")
    assert r.exit_code == 2 and says in r.output.replace("\n", " ")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_segmentation_without_a_body_is_refused(tmp_path, lung_map):
    _path, amap = lung_map
    lungs_only = tmp_path / "lungs.nrrd"
    write_volume(amap.with_array(np.where(np.isin(amap.array, (2, 3)), amap.array, 0).astype(np.uint8)), lungs_only)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"2": "lung_upper_lobe_left", "3": "lung_upper_lobe_right"}))
    out = tmp_path / "x.nrrd"
    r = radsynth("generate", "volume", "--segmentation", str(lungs_only), "--segment-names", str(names),
                 "--steps", "2", "--out", str(out), "--in-process")
    assert r.exit_code == 2 and "needs a body segment" in r.output.replace("\n", " ")
    assert not out.exists()
