"""``radsynth evaluate inpaint`` with a tiny test-made SDM model: the label-adherence section (class means against
the real CT's, a drawn nodule and lung2's erased nodule checked) is filled in."""

import json
import math

from inpaint_support import tiny_models
from typer.testing import CliRunner

from radsynth.cli import app


def test_evaluate_inpaint_sdm_label_adherence(tmp_path):
    made = tiny_models(tmp_path / "all")
    folder = tmp_path / "models"
    folder.mkdir()
    made["sdm"].rename(folder / made["sdm"].name)
    r = CliRunner().invoke(app, ["evaluate", "inpaint", "--out", str(tmp_path / "out"), "--models", str(folder),
                                 "--regions", "4", "--continuity-regions", "0"])
    assert r.exit_code == 0, r.output
    labels = json.loads((tmp_path / "out" / "inpaint_report.json").read_text())["models"]["sdm"]["labels"]
    assert labels["drawn"]["threshold_hu"] == -400 and isinstance(labels["drawn"]["present"], bool)
    assert "absent" in labels["erased"] or "not rendered" in labels["erased"]["note"]
    real = labels["real_class_statistics"]
    assert real["left lung"]["mean_hu"] < -600 < real["body"]["mean_hu"]      # the real CT's classes, as known
    assert labels["class_adherence"] and all(math.isfinite(v["z"]) for v in labels["class_adherence"].values())
