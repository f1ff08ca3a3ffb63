"""``radsynth evaluate generate`` on the bundled demo slice models (lung2, 2 slices grown, few sampler steps): every
section of the report is there and finite, IC-Net on and off are both measured, FID says why it was skipped, and a
bad option writes nothing."""

import json
import math

from typer.testing import CliRunner

from radsynth.cli import app


def test_evaluate_generate_reports_continuity_distances_and_diversity(tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "generate", "--out", str(tmp_path), "--cases", "lung2", "--slices", "2",
                                 "--variants", "2", "--rois-per-slice", "2", "--steps", "6"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "generate_report.json").read_text())
    assert (tmp_path / "generate_montage.png").stat().st_size > 10_000
    cont = report["continuity"]["lung2"]
    for config in ("icnet_on", "icnet_off"):
        for window in ("whole", "window_-150_150"):
            assert math.isfinite(cont[config][window]["stripe_hu_ratio"])
            assert cont[config][window]["stripe_hu"] >= 0
        for region in ("soft_tissue", "lung"):
            assert report["hu_histogram"][config][region]["wasserstein_hu"] > 0
            row = report["radiomics"][config]["regions"][region]
            assert row["samples_generated"] >= 4 and math.isfinite(row["frechet"]) and row["frechet"] > 0
            assert "median-heuristic" in row["bmmd2"]["kernel"]
        div = report["diversity_ms_ssim"][config]["lung2"]["whole"]
        assert 0 < div["ms_ssim_mean"] < 1 and div["pairs"] == 1      # two seeds differ, but not completely
    assert report["fid"]["icnet_on"]["computed"] is False and "never downloads" in report["fid"]["icnet_on"]["note"]
    assert "FID not computed" in r.output


def test_evaluate_generate_refuses_an_unknown_case_and_writes_nothing(tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "generate", "--out", str(tmp_path / "o"), "--cases", "lung3"])
    assert r.exit_code == 2 and "lung3" in r.output
    assert not (tmp_path / "o").exists()
