"""``radsynth evaluate shape|texture|sliders``: fidelity reports (report.json + PNG plots) for the loaded models."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import RadSynthError
from ..report import write_json
from .common import fail, read_label_map, user_errors

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
        from ..pipelines.texture_fill import SLIDER_EVALUATION, verdict
        keys = ("preset", "steps", "requested", "spearman", "slope", "interior_spearman", "interior_slope")
        record_in_card(texture_folder(models), SLIDER_EVALUATION, {
            "texture": {f: dict({k: r[k] for k in keys}, verdict=verdict(r)) for f, r in report["texture"].items()},
            "date": datetime.date.today().isoformat(), "by": "radsynth evaluate sliders --record"})
        typer.echo(f"recorded the texture sliders' response in {texture_folder(models)}")


# -- generation: DiffusionInpaint and CTGenerate (radsynth.evaluate.distribution and friends) ---------------------
FID_WEIGHTS = typer.Option(None, "--fid-weights", help="Inception-v3 weights for FID-Ax/Cor/Sag (torchvision's "
                           "inception_v3 state dict, .safetensors or tensor-only .pt); never downloaded. Without "
                           "it FID is skipped with a note and every other metric is still reported.")


def _write_evaluation(out: Path, name: str, evaluation) -> None:
    """report.json and its PNG montage, both or neither (radsynth.outputs)."""
    from ..evaluate.fidelity import DISCLAIMER
    from ..outputs import write_all
    report = {"disclaimer": DISCLAIMER, **evaluation.report}
    png = out / name.replace("_report.json", "_montage.png")
    with user_errors():
        write_all({out / name: lambda p: write_json(report, p), png: evaluation.draw})
    typer.echo(f"wrote {out / name} and {png.name}  ({DISCLAIMER})")


def _check_outs(out: Path, name: str) -> None:
    from ..outputs import Destination, check_destinations
    with user_errors():
        check_destinations([], [Destination(out / name, "--out", (".json",)),
                                Destination(out / name.replace("_report.json", "_montage.png"), "--out",
                                            (".png",))])


def _cases(text: str) -> tuple[str, ...]:
    from ..errors import InvalidOptionError
    from ..evaluate.generate_eval import CASES
    cases = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        raise fail(InvalidOptionError(f"Unknown case(s) {', '.join(unknown) or '(none)'}; the sample CTs are "
                                      f"{', '.join(CASES)}."))
    return cases


@evaluate_app.command("generate")
def generate_cmd(out: Path = OUT,
                 cases: str = typer.Option("lung1,lung2", "--cases", help="Sample CTs to grow from (comma list)."),
                 slices: int = typer.Option(3, "--slices", min=2, max=32, help="Slices grown per run (≥ 2: "
                                            "continuity needs three slices with the seed)."),
                 variants: int = typer.Option(2, "--variants", min=1, max=16, help="Seeds per configuration; "
                                              "MS-SSIM diversity needs ≥ 2."),
                 rois: int = typer.Option(8, "--rois-per-slice", min=1, max=64, help="Radiomics patches per "
                                          "slice and region (30 mm squares)."),
                 steps: Optional[int] = typer.Option(None, "--steps", min=2, help="Fast-sampler steps (default: "
                                                     "the model's)."),
                 compare_samplers: bool = typer.Option(False, "--compare-samplers", help="Also grow with the "
                                                       "predictor-corrector sampler and compare it with fast."),
                 pc_slices: int = typer.Option(1, "--pc-slices", min=1, help="Slices per case for the comparison."),
                 pc_steps: int = typer.Option(1000, "--pc-steps", min=2, help="PC noise levels (thesis: 1000)."),
                 models: Optional[Path] = typer.Option(None, "--models", help="Slice-score model folder "
                                                       "(default: the bundled demo model)."),
                 icnet: Optional[Path] = typer.Option(None, "--icnet", help="IC-Net folder (default: bundled)."),
                 fid_weights: Optional[Path] = FID_WEIGHTS) -> None:
    """Slice growth from seed slices of the sample CTs: continuity with and without IC-Net against the real slices,
    HU histograms per region, Fréchet radiomics distance, bMMD², MS-SSIM diversity, FID when weights are given."""
    name = "generate_report.json"
    _check_outs(out, name)
    chosen = _cases(cases)
    import torch
    from .. import models as registry
    from ..evaluate.generate_eval import evaluate_generate
    torch.set_flush_denormal(True)
    with user_errors():
        score = registry.load("slice-score", models, device="cpu")
        ic = registry.load("icnet", icnet, device="cpu")
        evaluation = evaluate_generate(score, ic, cases=chosen, slices=slices, variants=variants,
                                       rois_per_slice=rois, compare_samplers=compare_samplers,
                                       pc_slices=pc_slices, pc_steps=pc_steps, steps=steps,
                                       fid_weights=fid_weights, log=typer.echo)
    for line in _generate_summary(evaluation.report):
        typer.echo(line)
    _write_evaluation(out, name, evaluation)


def _generate_summary(report: dict) -> list[str]:
    lines = []
    for case, c in report["continuity"].items():
        for cfg in ("icnet_on", "icnet_off"):
            w = c[cfg]
            lines.append(f"{case} {cfg:9s} stripe/real " + "  ".join(f"{k} {v['stripe_hu_ratio']:.2f}"
                                                                  for k, v in w.items()))
    for cfg, sec in report["radiomics"].items():
        lines.append(f"Fréchet radiomics {cfg:9s} " + "  ".join(
            f"{r} {v['frechet']:.2f}" for r, v in sec["regions"].items() if v.get("frechet") is not None))
    if "samplers" in report:
        for s in ("fast", "pc"):
            r = report["samplers"][s]
            lines.append(f"sampler {s:4s} MAE {r['mae_in_body_hu']:.0f} HU  " + "  ".join(
                f"Fréchet {k} {v['frechet']:.2f}" for k, v in r["radiomics"]["regions"].items()
                if v.get("frechet") is not None))
    return lines


def _inpaint_models(folder: Optional[Path]) -> tuple[dict, object]:
    """{name: fill net} and the SDM net (or None) found in ``folder``'s model subfolders (default: bundled)."""
    from .. import models as registry
    from ..errors import ModelError
    from ..evaluate.inpaint_eval import FILL_KIND, SDM_KIND
    root = Path(folder) if folder is not None else registry.BUNDLED
    if not root.is_dir():
        raise ModelError(f"--models {root}: not a folder.")
    fill, sdm = {}, None
    for sub in sorted(p for p in root.iterdir() if (p / registry.CARD).is_file()):
        kind = registry.read_card(sub).get("kind")
        if kind == FILL_KIND:
            fill[sub.name] = registry.load(kind, sub, device="cpu")
        elif kind == SDM_KIND and sdm is None:
            sdm = registry.load(kind, sub, device="cpu")
    if not fill and sdm is None:
        raise ModelError(f"No inpainting model ({FILL_KIND} or {SDM_KIND}) in {root}: give --models a folder that "
                         "holds model folders (the bundled demo models are trained by "
                         "scripts/train_inpaint_demo.py).")
    return fill, sdm


@evaluate_app.command("inpaint")
def inpaint_cmd(out: Path = OUT,
                models: Optional[Path] = typer.Option(None, "--models", help="Folder of inpainting model folders "
                                                      "(default: the bundled demo models)."),
                regions: int = typer.Option(8, "--regions", min=4, max=64, help="Held-out lesion-shaped regions "
                                            "on lung2 (half on the lung edge; ≥ 4 for the Fréchet distance)."),
                continuity_regions: int = typer.Option(3, "--continuity-regions", min=0, max=16, help="3D regions "
                                                       "filled slice by slice for the continuity score (0: skip)."),
                steps_sweep: bool = typer.Option(False, "--steps-sweep", help="Also report inside-mask PSNR per "
                                                 "DDIM step count against 1000 steps (the 0.5 dB rule)."),
                sweep_steps: str = typer.Option("5,10,20,50,100,1000", "--sweep-steps", help="Step counts of the "
                                                "sweep; the largest is the reference."),
                fid_weights: Optional[Path] = FID_WEIGHTS) -> None:
    """Inside-mask PSNR/SSIM/MAE on lung2's held-out slices, SDM label adherence, slice continuity, HU histogram
    and Fréchet radiomics distances, FID when weights are given."""
    name = "inpaint_report.json"
    _check_outs(out, name)
    try:
        sweep = [int(s) for s in sweep_steps.split(",") if s.strip()] if steps_sweep else None
    except ValueError:
        raise fail(RadSynthError(f"--sweep-steps {sweep_steps!r}: give whole numbers separated by commas.")) from None
    import torch
    from ..evaluate.inpaint_eval import evaluate_inpaint
    torch.set_flush_denormal(True)
    with user_errors():
        fill, sdm = _inpaint_models(models)
        evaluation = evaluate_inpaint(fill, sdm, regions=regions, continuity_n=continuity_regions, sweep=sweep,
                                      fid_weights=fid_weights, log=typer.echo)
    for model, sec in evaluation.report["models"].items():
        s = sec["summary"]
        typer.echo(f"{model:28s} PSNR {s['psnr_db']['mean']:.2f} dB  SSIM {s['ssim']['mean']:.3f}  "
                   f"MAE {s['mae_hu']['mean']:.0f} HU")
        if "steps_sweep" in sec:
            typer.echo(f"{model:28s} smallest steps within 0.5 dB of 1000: "
                       f"{sec['steps_sweep']['smallest_within_tolerance']}")
    _write_evaluation(out, name, evaluation)


def _segment_names(text: Optional[str]) -> Optional[dict[int, str]]:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        value, sep, label = part.partition("=")
        if not sep or not value.strip().isdigit() or not label.strip():
            raise fail(RadSynthError(f"--segment-names {text!r}: give VALUE=NAME pairs, e.g. 1=body,2=left lung."))
        out[int(value)] = label.strip()
    return out


@evaluate_app.command("generate-volume")
def generate_volume_cmd(out: Path = OUT,
                        models: Optional[str] = typer.Option(None, "--models", help="Whole-volume model: a folder "
                                                             "or an installed name (default: the bundled demo)."),
                        variants: int = typer.Option(3, "--variants", min=1, max=32, help="Volumes generated "
                                                     "(seeds 0, 1, …); MS-SSIM diversity needs ≥ 2."),
                        steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampler steps (default: "
                                                            "the model's)."),
                        rois: int = typer.Option(4, "--rois-per-slice", min=1, max=64, help="Radiomics patches per "
                                                 "slice and region (30 mm squares, every other slice)."),
                        mask: Optional[Path] = typer.Option(None, "--mask", help="Organ segmentation (label volume) "
                                                            "to follow; organ adherence is then reported."),
                        segment_names: Optional[str] = typer.Option(None, "--segment-names", help="VALUE=NAME,… for "
                                                                    "--mask (default: the automatic map's labels)."),
                        fid_weights: Optional[Path] = FID_WEIGHTS) -> None:
    """Whole-volume generation against the real sample CTs: HU histograms per region, Fréchet radiomics distance,
    bMMD², MS-SSIM diversity, 2.5D FID when weights are given, organ adherence with --mask."""
    name = "generate_volume_report.json"
    _check_outs(out, name)
    names = _segment_names(segment_names)
    import torch
    from ..evaluate.volume_eval import evaluate_volume
    from ..pipelines.generate.whole_volume import load
    torch.set_flush_denormal(True)
    with user_errors():
        segmentation = read_label_map(mask, "--mask") if mask is not None else None
        model = load(models, "cpu")
        evaluation = evaluate_volume(model, variants=variants, steps=steps, rois_per_slice=rois,
                                     segmentation=segmentation, segment_names=names, fid_weights=fid_weights,
                                     log=typer.echo)
    r = evaluation.report
    typer.echo("HU W1 (HU) " + "  ".join(f"{k} {v['wasserstein_hu']:.0f}" for k, v in r["hu_histogram"].items()
                                        if "wasserstein_hu" in v))
    typer.echo("Fréchet radiomics " + "  ".join(f"{k} {v['frechet']:.2f}" for k, v in r["radiomics"]["regions"]
                                               .items() if v.get("frechet") is not None))
    if "organ_adherence_mean" in r:
        typer.echo(f"organ adherence (share of segments in their organ's HU range): {r['organ_adherence_mean']}")
    _write_evaluation(out, name, evaluation)
