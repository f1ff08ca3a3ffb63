"""``radsynth evaluate shape`` writes a report with both protocols, the shuffled baseline and plots."""

import json

from typer.testing import CliRunner

from radsynth.cli import app


def test_evaluate_shape_writes_report_and_plots(tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "shape", "--out", str(tmp_path), "--targets", "6", "--seeds", "1"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "shape_report.json").read_text())
    assert "not comparable" in report["disclaimer"]
    assert list(tmp_path.glob("*.png")), "plots expected"
    text = json.dumps(report)
    assert "shuffled" in text and "per_sample" in text
