"""``radsynth inpaint auto-map | fill | render-map`` end to end: the automatic map of the real lung1 CT, and fill and
render-map with tiny test-made models (2 steps) on a crop of lung1, in process and in one worker. Every voxel
beyond the blend band is bit-identical to the input; a semantic map arrives with its labels (not binarised; an
unknown label is named); bad input exits with code 2 and writes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from inpaint_support import lung1_crop, tiny_models
from scipy import ndimage
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.errors import UnknownLabelError
from radsynth.pipelines.inpaint import labels as L
from radsynth.sample_data import sample_path
from radsynth.volume import SYNTHETIC_KEY, read_volume, write_volume
from radsynth.worker import Runner, WorkerClient

#: margin + feather (2 + 3 mm) and a model pixel (1.25 mm) of resampling reach, in-plane
REACH_MM = 6.25


def radsynth(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The lung1 crop (CT, tumour, a map with the tumour as nodule, the same map with an unknown label 9) and the
    tiny models."""
    root = tmp_path_factory.mktemp("inpaint")
    ct, tumour = lung1_crop()
    paths = {"ct": root / "ct.nrrd", "tumour": root / "tumour.nrrd", "map": root / "map.nrrd",
             "bad_map": root / "bad_map.nrrd", "empty": root / "empty.nrrd", "whole": root / "whole.nrrd",
             "mr": root / "mr.nrrd"}
    write_volume(ct, paths["ct"])
    write_volume(tumour, paths["tumour"])
    label_map = np.where(ct.array > -400, L.BODY, L.RIGHT_LUNG).astype(np.uint8)
    label_map[tumour.array > 0] = L.NODULE
    write_volume(ct.label_like(label_map), paths["map"])
    bad = label_map.copy()
    bad[0, :4, :4] = 9
    write_volume(ct.label_like(bad), paths["bad_map"])
    write_volume(ct.label_like(np.zeros(ct.shape, bool)), paths["empty"])
    whole = np.zeros(ct.shape, bool)
    whole[5] = True
    write_volume(ct.label_like(whole), paths["whole"])
    write_volume(ct.with_array((ct.array.astype(np.float32) + 1024) / 4096), paths["mr"])
    return paths, tiny_models(root / "models"), ct, tumour


def far_from(mask: np.ndarray, spacing, mm: float) -> np.ndarray:
    out = np.ones(mask.shape, bool)
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        out[k] = ndimage.distance_transform_edt(~mask[k], sampling=spacing[1::-1]) > mm
    return out


def test_auto_map_of_lung1(tmp_path):
    out = tmp_path / "map.nrrd"
    r = radsynth("inpaint", "auto-map", "--image", sample_path("lung1"), "--nodules", sample_path("lung1", "label"),
                 "--nodule-label", "malignant nodule", "--out", out, "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert "marked synthetic" not in r.output                 # a map of the real CT is not a synthetic image
    m = read_volume(out)
    ct, tumour = read_volume(sample_path("lung1")), read_volume(sample_path("lung1", "label"))
    assert m.same_grid(ct) and set(np.unique(m.array)) == {L.BACKGROUND, L.BODY, L.LEFT_LUNG, L.RIGHT_LUNG,
                                                            L.TRACHEA, L.MALIGNANT}
    np.testing.assert_array_equal(m.array == L.MALIGNANT, tumour.array > 0)
    x = {v: ct.index_to_physical(np.argwhere(m.array == v))[:, 0].mean() for v in (L.LEFT_LUNG, L.RIGHT_LUNG)}
    assert x[L.LEFT_LUNG] > x[L.RIGHT_LUNG]                   # LPS: +x is the patient's left
    rows = {row["name"]: row for row in json.loads((tmp_path / "r.json").read_text())["result"]["tables"]["labels"]}
    assert rows["left lung"]["volume_ml"] > 500 and rows["right lung"]["volume_ml"] > 500


def test_fill_keeps_every_voxel_beyond_the_blend_band(tmp_path, files):
    paths, models, ct, tumour = files
    out, mask_out = tmp_path / "filled.nrrd", tmp_path / "region.nrrd"
    r = radsynth("inpaint", "fill", "--image", paths["ct"], "--mask", paths["tumour"], "--models", models["palette"],
                 "--steps", 2, "--seed", 3, "--out", out, "--out-mask", mask_out, "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert "marked synthetic" in r.output
    assert sitk.ReadImage(str(out)).GetMetaData(SYNTHETIC_KEY) == "1"
    a = read_volume(out).array
    region = tumour.array > 0
    far = far_from(region, ct.spacing, REACH_MM)
    np.testing.assert_array_equal(a[far], ct.array[far])
    assert not np.array_equal(a[region], ct.array[region])
    np.testing.assert_array_equal(read_volume(mask_out).array > 0, region)
    settings = json.loads((tmp_path / "r.json").read_text())["result"]["settings"]
    assert settings["steps"] == 2 and settings["seed"] == 3 and settings["method"] == "mask-conditioned DDIM"


def test_without_margin_and_feather_only_the_mask_changes(tmp_path, files):
    paths, models, ct, tumour = files
    out = tmp_path / "filled.nrrd"
    r = radsynth("inpaint", "fill", "--image", paths["ct"], "--mask", paths["tumour"], "--models", models["palette"],
                 "--steps", 2, "--margin-mm", 0, "--feather-mm", 0, "--out", out)
    assert r.exit_code == 0, r.output
    a, region = read_volume(out).array, tumour.array > 0
    np.testing.assert_array_equal(a[~region], ct.array[~region])      # every voxel outside the mask, bit for bit
    assert (a[region] != ct.array[region]).mean() > 0.9


def test_render_map_gets_the_labels_not_a_binary_mask(tmp_path, files):
    """The default region is the map's nodules: a binarised map would have none (and be refused)."""
    paths, models, ct, tumour = files
    out, mask_out = tmp_path / "rendered.nrrd", tmp_path / "region.nrrd"
    r = radsynth("inpaint", "render-map", "--image", paths["ct"], "--label-map", paths["map"], "--models",
                 models["sdm"], "--steps", 2, "--out", out, "--out-mask", mask_out)
    assert r.exit_code == 0, r.output
    region = read_volume(mask_out).array > 0
    np.testing.assert_array_equal(region, tumour.array > 0)
    a = read_volume(out).array
    far = far_from(region, ct.spacing, REACH_MM)
    np.testing.assert_array_equal(a[far], ct.array[far])
    bad = tmp_path / "bad.nrrd"
    r = radsynth("inpaint", "render-map", "--image", paths["ct"], "--label-map", paths["bad_map"], "--models",
                 models["sdm"], "--steps", 2, "--out", bad)
    assert r.exit_code == 2 and "label 9 that the label scheme does not know" in r.output and not bad.exists()


def test_the_worker_gets_the_label_map_as_labels(files):
    """The worker path (Slicer's, and ``--worker``'s): the map travels as a file with its values; one worker."""
    paths, models, ct, tumour = files
    label_map = read_volume(paths["map"])
    with WorkerClient() as client, Runner(worker=True, model_dir=str(models["sdm"]), client=client) as runner:
        result = runner("render-map", ct, None, label_map=label_map, steps=2)
        np.testing.assert_array_equal(result.mask.array > 0, tumour.array > 0)
        assert result.volume.is_synthetic and result.settings["method"] == "SDM + RePaint"
        with pytest.raises(UnknownLabelError, match="label 9"):
            runner("render-map", ct, None, label_map=read_volume(paths["bad_map"]), steps=2)


def test_render_map_in_a_given_region(tmp_path, files):
    paths, models, ct, tumour = files
    out, mask_out = tmp_path / "rendered.nrrd", tmp_path / "region.nrrd"
    r = radsynth("inpaint", "render-map", "--image", paths["ct"], "--label-map", paths["map"], "--region",
                 paths["tumour"], "--models", models["sdm"], "--steps", 2, "--guidance", 1, "--out", out,
                 "--out-mask", mask_out)
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_volume(mask_out).array > 0, tumour.array > 0)


def test_the_bundled_demo_models_are_the_defaults(tmp_path, files):
    paths, models, ct, tumour = files
    for args, name in ((("fill", "--mask", paths["tumour"]), "demo-inpaint-palette"),
                       (("render-map", "--label-map", paths["map"]), "demo-inpaint-sdm")):
        report = tmp_path / f"{args[0]}.json"
        r = radsynth("inpaint", *args, "--image", paths["ct"], "--steps", 2, "--out", tmp_path / f"{args[0]}.nrrd",
                     "--report", report)
        assert r.exit_code == 0, r.output
        result = json.loads(report.read_text())["result"]
        assert list(result["model_cards"]) == [name] and result["settings"]["demo_models"] is True


def test_bad_input_exits_2_and_writes_nothing(tmp_path, files):
    paths, models, ct, tumour = files
    cases = [
        (("fill", "--image", paths["ct"], "--mask", paths["empty"], "--models", models["palette"]), "empty"),
        (("fill", "--image", paths["ct"], "--mask", paths["whole"], "--models", models["palette"]), "edge"),
        (("fill", "--image", paths["mr"], "--mask", paths["tumour"], "--models", models["palette"]),
         "does not look like a CT"),
        (("fill", "--image", paths["ct"], "--mask", paths["tumour"], "--models", models["slice"], "--mode",
          "regenerate"), "mask-conditioned"),
        (("fill", "--image", paths["ct"], "--mask", paths["tumour"], "--models", tmp_path / "nowhere"), "nowhere"),
        (("render-map", "--image", paths["ct"], "--models", models["sdm"]), "needs a label map"),
        (("render-map", "--image", paths["ct"], "--label-map", paths["mr"], "--models", models["sdm"]),
         "fractional"),
        (("auto-map", "--image", paths["mr"]), "does not look like a CT"),
    ]
    for args, message in cases:
        out = tmp_path / "out.nrrd"
        r = radsynth("inpaint", *args, "--steps", 2, "--out", out) if args[0] != "auto-map" else \
            radsynth("inpaint", *args, "--out", out)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output, (message, r.output)
        assert list(tmp_path.iterdir()) == [], r.output
