"""``radsynth evaluate generate-volume`` with the bundled demo volume model (2 steps: a wiring test, the quality
numbers are in BENCHMARKS.md): HU histograms per region against the real CTs, Fréchet radiomics, MS-SSIM diversity,
FID's note, and organ adherence for a segmentation the volumes follow; a bad option writes nothing."""

import json

import numpy as np
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.volume import Volume, write_volume


def _segmentation(path):
    """Body ellipsoid (1) with two lung ellipsoids (2 left, 3 right) on the demo model's 64 x 64 x 48 grid, 4 mm."""
    k, j, i = np.ogrid[:48, :64, :64]
    body = ((i - 31.5) / 28) ** 2 + ((j - 31.5) / 20) ** 2 + ((k - 23.5) / 30) ** 2 <= 1
    seg = body.astype(np.uint8)
    for value, ci in ((2, 45), (3, 18)):          # LPS: +x is the patient's left
        seg[((i - ci) / 10) ** 2 + ((j - 30) / 12) ** 2 + ((k - 26) / 18) ** 2 <= 1] = value
    write_volume(Volume(seg, (0.0, 0.0, 0.0), (4.0, 4.0, 4.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)), path)


def test_evaluate_generate_volume_reports_distances_diversity_and_organ_adherence(tmp_path):
    seg = tmp_path / "seg.nrrd"
    _segmentation(seg)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["evaluate", "generate-volume", "--out", str(out), "--variants", "2", "--steps", "2",
                                 "--rois-per-slice", "1", "--mask", str(seg)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "generate_volume_report.json").read_text())
    assert (out / "generate_volume_montage.png").is_file()
    assert report["protocol"]["real_resampled_to_mm"] == [4.0, 4.0, 4.0] and report["protocol"]["follows_segmentation"]
    assert report["hu_histogram"]["soft_tissue"]["wasserstein_hu"] > 0
    assert report["radiomics"]["regions"]["soft_tissue"]["samples_real"] >= 4
    assert 0 < report["diversity_ms_ssim"]["ms_ssim_mean"] < 1
    assert report["fid"]["computed"] is False
    for adherence in report["organ_adherence"]:
        segs = adherence["segments"]
        assert set(segs) == {"body", "left lung", "right lung"}
        assert segs["left lung"]["organ"] == "lung" and segs["left lung"]["range_hu"] == [-950, -600]
        assert isinstance(segs["body"]["inside"], bool)
    assert 0 <= report["organ_adherence_mean"] <= 1


def test_evaluate_generate_volume_refuses_bad_segment_names(tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "generate-volume", "--out", str(tmp_path / "o"), "--segment-names",
                                 "body"])
    assert r.exit_code == 2 and "VALUE=NAME" in r.output
    assert not (tmp_path / "o").exists()
