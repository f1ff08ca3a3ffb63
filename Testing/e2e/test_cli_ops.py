"""``radsynth tumor place|move|resize|retexture`` on the real lung1 CT with the bundled demo models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.demo import choose_site
from radsynth.radiomics import texture_features
from radsynth.sample_data import sample_path
from radsynth.shape_features import fast_shape_features
from radsynth.volume import SYNTHETIC_KEY, read_volume, write_volume

FAST = "4"


def radsynth(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    image = read_volume(sample_path("lung1"))
    s = choose_site(image, read_volume(sample_path("lung1", "label")))
    path = tmp_path_factory.mktemp("site") / "site.nrrd"
    write_volume(s.mask, path)
    return image, path, s.center_lps


def _ras(lps) -> str:
    return f"{-lps[0]},{-lps[1]},{lps[2]}"


def test_place_at_a_ras_point(tmp_path, site):
    image, _, center = site
    out, out_mask = tmp_path / "placed.nrrd", tmp_path / "placed_mask.nrrd"
    r = radsynth("tumor", "place", "--image", str(sample_path("lung1")), "--point-ras", _ras(center),
                 "--volume-ml", "2.5", "--sphericity", "0.8", "--preset", "lung2-tumor", "--out", str(out),
                 "--out-mask", str(out_mask), "--steps", FAST)
    assert r.exit_code == 0, r.output
    assert sitk.ReadImage(str(out)).GetMetaData(SYNTHETIC_KEY) == "1"
    mask = read_volume(out_mask).array > 0
    ml = fast_shape_features(mask, np.asarray(image.spacing)[::-1])["shape_VoxelVolume"] / 1000
    assert ml == pytest.approx(2.5, rel=0.2)
    com = np.asarray(ndimage.center_of_mass(mask))
    assert np.linalg.norm(image.index_to_physical(com[None])[0] - np.asarray(center)) < 5.0


@pytest.mark.parametrize("mode", ["--in-process", "--worker"])
def test_move_by_a_ras_shift(tmp_path, site, mode):
    image, mask_path, _ = site
    out, out_mask, report = tmp_path / "moved.nrrd", tmp_path / "moved_mask.nrrd", tmp_path / "r.json"
    r = radsynth("tumor", "move", "--image", str(sample_path("lung1")), "--mask", str(mask_path),
                 "--shift-ras", "0,-10,0", "--out", str(out), "--out-mask", str(out_mask), "--steps", FAST,
                 "--report", str(report), mode)
    assert r.exit_code == 0, r.output
    doc = json.loads(report.read_text())
    assert doc["mode"] == mode.strip("-") and doc["result"]["operation"] == "move" and doc["result"]["model_cards"]
    old = read_volume(mask_path).array > 0
    new = read_volume(out_mask).array > 0
    # -10 mm anterior (RAS) = +10 mm posterior (LPS y) = +10/spacing along j
    dj = ndimage.center_of_mass(new)[1] - ndimage.center_of_mass(old)[1]
    assert dj == pytest.approx(10 / image.spacing[1], abs=1.0)


def test_resize_and_retexture(tmp_path, site):
    _, mask_path, _ = site
    for args in (("resize", "--scale", "1.3"), ("retexture", "--preset", "lung1-tumor")):
        out = tmp_path / f"{args[0]}.nrrd"
        r = radsynth("tumor", args[0], "--image", str(sample_path("lung1")), "--mask", str(mask_path), *args[1:],
                     "--out", str(out), "--steps", FAST)
        assert r.exit_code == 0, r.output
        assert out.exists()


def test_retexture_with_only_a_slider_keeps_the_tumours_own_texture(tmp_path, site):
    _, mask_path, _ = site
    out, report = tmp_path / "denser.nrrd", tmp_path / "r.json"
    r = radsynth("tumor", "retexture", "--image", str(sample_path("lung1")), "--mask", str(mask_path),
                 "--set", "firstorder_Mean=40", "--out", str(out), "--report", str(report), "--steps", FAST)
    assert r.exit_code == 0, r.output
    rows = {f["name"]: f["target"] for f in json.loads(report.read_text())["result"]["tables"]["features"]}
    assert rows["firstorder_Mean"] == 40.0
    # the source is the site's own (healthy lung) texture, far below 40 HU: the filled median follows the mean up
    own = texture_features(read_volume(sample_path("lung1")), read_volume(mask_path))
    assert own["firstorder_Mean"] < -500 and rows["firstorder_Median"] > own["firstorder_Median"] + 100


@pytest.mark.parametrize("args, message", [
    (("place", "--preset", "lung2-tumor", "--volume-ml", "2"), "--point-ras or --painted"),
    (("place", "--preset", "lung2-tumor", "--point-ras", "1,2"), "three numbers"),
    (("place", "--preset", "lung2-tumor", "--point-ras", "9999,9999,9999", "--volume-ml", "2"), "outside"),
    (("place", "--preset", "lung2-tumor", "--point-ras", "0,0,0", "--volume-ml", "2", "--sphericity", "1.5"),
     "phericity"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, site, args, message):
    out = tmp_path / "never.nrrd"
    r = radsynth("tumor", *args, "--image", str(sample_path("lung1")), "--out", str(out))
    assert r.exit_code == 2, r.output
    assert message in r.output.replace("\n", " ")
    assert not out.exists()
