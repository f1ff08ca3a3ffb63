"""``radsynth evaluate inpaint`` with a tiny test-made mask-conditioned model (the demo models' quality is measured
by the same command in BENCHMARKS.md): held-out regions on lung2, scores, continuity, the steps sweep and FID's note;
a folder without inpainting models is refused before any work."""

import json
import math

from inpaint_support import tiny_models
from typer.testing import CliRunner

from radsynth.cli import app


def test_evaluate_inpaint_scores_held_out_regions_and_sweeps_steps(tmp_path):
    made = tiny_models(tmp_path / "all")
    folder = tmp_path / "models"
    folder.mkdir()
    made["palette"].rename(folder / made["palette"].name)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["evaluate", "inpaint", "--out", str(out), "--models", str(folder), "--regions", "4",
                                 "--continuity-regions", "1", "--steps-sweep", "--sweep-steps", "2,3"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "inpaint_report.json").read_text())
    assert (out / "inpaint_montage.png").is_file()
    sec = report["models"]["tiny-inpaint-palette"]
    assert [row["slice"] % 5 for row in sec["regions"]] == [0, 0, 0, 0]          # held-out slices only
    assert {row["where"] for row in sec["regions"]} == {"interior", "edge"}
    for row in sec["regions"]:
        assert math.isfinite(row["psnr_db"]) and row["mae_hu"] > 0 and -1 <= row["ssim"] <= 1
    assert sec["hu_histogram"]["wasserstein_hu"] > 0 and sec["radiomics"]["samples_real"] == 4
    cont = sec["continuity"]["regions"][0]
    assert cont["real"]["stripe_hu"] > 0 and cont["filled"]["slices"] == cont["real"]["slices"]
    sweep = sec["steps_sweep"]
    assert sweep["reference_steps"] == 3 and sweep["delta_db"]["3"] == 0
    assert sweep["smallest_within_tolerance"] in (2, 3)
    assert report["fid"]["computed"] is False


def test_evaluate_inpaint_refuses_a_folder_without_inpainting_models(tmp_path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["evaluate", "inpaint", "--out", str(tmp_path / "o"), "--models",
                                 str(tmp_path / "empty")])
    assert r.exit_code == 2 and "No inpainting model" in r.output
    assert not (tmp_path / "o").exists()
