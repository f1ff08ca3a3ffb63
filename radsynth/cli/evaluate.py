"""``radsynth evaluate shape|texture|sliders``: fidelity reports (report.json + PNG plots) for the loaded models."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import RadSynthError
from ..report import write_json
from .common import fail, user_errors

evaluate_app = typer.Typer(help="Evaluate shape/texture fidelity and slider monotonicity of the models.",
                           no_args_is_help=True)
OUT = typer.Option(Path("out/evaluate"), "--out", help="Folder for report.json and the plots.")
MODELS = typer.Option(None, "--models", help="Texture model folder (default: the bundled demo model).")
EVAL_STEPS = typer.Option(None, "--steps", min=2, help="Sampler steps (default: the model's).")
SHAPE_MODEL = typer.Option(None, "--shape-model", help="Shape model folder (default: the bundled demo model).")


def _check_out(out: Path, name: str) -> None:
    """Before an evaluation runs for minutes: its report must be writable (and never overwrites a model file)."""
    from ..outputs import Destination, check_destinations
    with user_errors():
        check_destinations([], [Destination(out / name, "--out", (".json",))])


def _write(out: Path, name: str, report: dict) -> None:
    from ..evaluate.fidelity import DISCLAIMER   # deferred: scipy.stats costs ~1.4 s of every CLI start
    from ..outputs import write_all
    with user_errors():
        write_all({out / name: lambda p: write_json({"disclaimer": DISCLAIMER, **report}, p)})
    typer.echo(f"wrote {out / name}  ({DISCLAIMER})")


def _summary(section: dict, label: str) -> None:
    for key, value in section.items():
        if isinstance(value, dict) and "spearman" in value and not isinstance(value["spearman"], dict):
            slope = f"  slope {value['slope']:.3g}" if "slope" in value else ""
            typer.echo(f"{label} {key:40s} Spearman {value['spearman']:.3f}{slope}")



@evaluate_app.command("shape")
def shape_cmd(out: Path = OUT, targets: int = typer.Option(40, "--targets"), seeds: int = typer.Option(2, "--seeds"),
              shape_model: Optional[Path] = SHAPE_MODEL) -> None:
    """Requested vs achieved shape features: per feature across samples, the paper's per-sample protocol, and a
    shuffled-condition baseline; plus the shape slider sweeps."""
    _check_out(out, "shape_report.json")
    from ..pipelines.shape import load_shape_model
    from ..evaluate.shape_eval import evaluate_shape
    try:
        report = evaluate_shape(load_shape_model(shape_model), targets, seeds, np.random.default_rng(0), out=out,
                                log=typer.echo)
    except RadSynthError as exc:
        raise fail(exc) from None
    _write(out, "shape_report.json", report)


@evaluate_app.command("texture")
def texture_cmd(out: Path = OUT, regions: int = typer.Option(12, "--regions"), steps: Optional[int] = EVAL_STEPS,
                models: Optional[Path] = MODELS) -> None:
    """Requested vs achieved texture features inside synthesized tumours on held-out lung regions (both
    protocols + shuffled baseline), and the texture slider sweeps."""
    _check_out(out, "texture_report.json")
    from ..pipelines.loading import load_models
    from ..evaluate.texture_eval import evaluate_texture
    try:
        report = evaluate_texture(load_models(models), regions, steps, out=out, log=typer.echo)
    except RadSynthError as exc:
        raise fail(exc) from None
    _write(out, "texture_report.json", report)


@evaluate_app.command("sliders")
def sliders_cmd(out: Path = OUT, steps: Optional[int] = EVAL_STEPS, models: Optional[Path] = MODELS,
                shape_model: Optional[Path] = SHAPE_MODEL,
                record: bool = typer.Option(False, "--record", help="Store the texture sliders' measured response "
                                            "in the texture model's card: the panel and CLI then say which "
                                            "sliders this model does not follow.")) -> None:
    """Slider monotonicity: each shape and texture slider swept; Spearman (and slope) per slider."""
    _check_out(out, "sliders_report.json")
    from ..pipelines.loading import load_models, texture_folder
    from ..pipelines.shape import load_shape_model
    from ..evaluate.shape_eval import shape_sweeps
    from ..evaluate.texture_eval import texture_sweep
    try:
        report = {"shape": shape_sweeps(load_shape_model(shape_model), out=out),
                  "texture": texture_sweep(load_models(models), steps=steps, out=out)}
    except RadSynthError as exc:
        raise fail(exc) from None
    _summary(report["shape"], "shape  ")
    _summary(report["texture"], "texture")
    _write(out, "sliders_report.json", report)
    if record:
        from ..models import record_in_card
        from ..pipelines.texture_fill import SLIDER_EVALUATION
        keys = ("preset", "steps", "requested", "spearman", "slope", "interior_spearman", "interior_slope")
        record_in_card(texture_folder(models), SLIDER_EVALUATION, {
            "texture": {f: {k: r[k] for k in keys} for f, r in report["texture"].items()},
            "date": datetime.date.today().isoformat(), "by": "radsynth evaluate sliders --record"})
        typer.echo(f"recorded the texture sliders' response in {texture_folder(models)}")
