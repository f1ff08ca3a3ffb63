"""``radsynth tumor ...``: remove, synthesize, place, move, resize and re-texture tumours on CT.

Runs in this process by default (no start-up cost, and Ctrl-C still cancels cleanly within one sampler step);
``--worker`` runs the work in the background worker process instead, the way the Slicer module does. Points and
shifts are given in RAS millimetres, as Slicer shows them; the engine works in LPS. Defaults, ranges and help of
the operation options come from the operations' declarations (``radsynth.pipelines.tumor_ops``).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import RadSynthError
from ..pipelines.tumor_ops import SHAPE_OPTIONS
from .common import (DEVICE, IMAGE, IN_PROCESS, MODELS, OUT, OUT_MASK, REPORT, Device, Inputs, declared,
                     option_flag, parse_ras, read_inputs, run_operation, user_errors)

SHAPE = {o.name: o for o in SHAPE_OPTIONS}

tumor_app = typer.Typer(help="Remove a tumour, or synthesize, place, move, resize or re-texture one.",
                        no_args_is_help=True)

# Options declared by the operations (the same for every tumour operation that takes them).
STEPS = declared("synthesize", "steps")
SEED = declared("synthesize", "seed")
ETA = declared("synthesize", "eta")
GUIDANCE = declared("synthesize", "guidance")
TEXTURE_FROM = typer.Option(None, "--texture-from", metavar="IMAGE,MASK",
                            help="Copy an existing tumour's texture. Excludes --features and --preset.")
FEATURES = typer.Option(None, "--features", help="JSON file of target texture features. Excludes --texture-from "
                                                 "and --preset.")
PRESET = typer.Option(None, "--preset", help="Named texture preset (list them with `radsynth presets`). Excludes "
                                             "--texture-from and --features.")
SET = typer.Option(None, "--set", metavar="FEATURE=VALUE",
                   help="Set one texture feature of the source (repeatable), as the panel's sliders do, e.g. "
                        "--set firstorder_Mean=60; correlated features follow it.")
MASK = typer.Option(..., "--mask", help="The existing tumour (label volume, any grid; every non-zero label "
                                        "counts).")


class ShapeMode(str, Enum):
    painted = "painted"
    inside = "inside"
    around = "around"


def parse_overrides(items: Optional[list[str]]) -> dict[str, float]:
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise RadSynthError(f"--set needs FEATURE=NUMBER, e.g. firstorder_Mean=60 (got {item!r}).") from None
    return out


def check_texture_source(texture_from: Optional[str], features: Optional[Path], preset: Optional[str]) -> None:
    chosen = [name for name, value in (("--texture-from", texture_from), ("--features", features),
                                       ("--preset", preset)) if value]
    if len(chosen) != 1:
        raise RadSynthError("Give exactly one texture source: --texture-from IMAGE,MASK, --features FILE "
                            f"or --preset NAME (got {', '.join(chosen) or 'none'}).")


def texture_target(texture_from: Optional[str], features: Optional[Path], preset: Optional[str],
                   given: Optional[Inputs] = None, models: Optional[Path] = None) -> tuple[dict, dict]:
    """(target texture features, how they were chosen) from exactly one of the three texture sources.

    A feature file's values beyond the model's training tumours are said in ``given.notes``, as for ``--set``."""
    from ..radiomics import load_features_json, outside_range_warnings, texture_source
    check_texture_source(texture_from, features, preset)
    if texture_from:
        image_path, mask_path = texture_from_paths(texture_from)
        if given is not None:
            given.progress(0.0, "measuring texture")
        image, mask = read_inputs(image_path, mask_path, given.notes if given else None, "--texture-from mask")
        return texture_source(image=image, mask=mask), {"texture_from": [str(image_path), str(mask_path)]}
    if preset:
        return texture_source(preset=preset), {"texture_preset": preset}
    target = load_features_json(features)
    if given is not None:
        given.notes.extend(outside_range_warnings(target, _training_ranges(models), f"--features {features.name}"))
    return target, {"texture_features_file": str(features)}


def texture_from_paths(texture_from: str) -> tuple[Path, Path]:
    parts = [p.strip() for p in texture_from.split(",")]
    if len(parts) != 2 or not all(parts):
        raise RadSynthError("--texture-from needs two paths separated by a comma: IMAGE,MASK.")
    return Path(parts[0]), Path(parts[1])


def _training_ranges(models: Optional[Path]) -> dict[str, tuple[float, float]]:
    """{feature: (lowest, highest)} over the texture model's training tumours, read from its card (no weights);
    empty when the card cannot be read: the run itself then says what is wrong with the model."""
    from ..models import default_folder, read_card
    from ..pipelines.texture_fill import card_training_range
    try:
        return card_training_range(read_card(Path(models) if models else default_folder("bbdm-texture")))
    except (RadSynthError, KeyError, TypeError, ValueError, OSError):
        return {}


def _texture_inputs(texture_from: Optional[str], features: Optional[Path]) -> dict[str, Any]:
    """The files a texture source reads (no output may be one of them)."""
    paths: dict[str, Any] = {"--features": features}
    if texture_from:
        with user_errors():
            paths["--texture-from"] = list(texture_from_paths(texture_from))
    return paths


def _run(op: str, image: Path, mask: Optional[Path], out: Path, out_mask, report, steps, seed, eta, device, models,
         in_process, options_fn=None, inputs=None, input_paths=None) -> None:
    sampling = {"steps": steps, "seed": seed, "eta": eta}

    def options(given: Inputs):
        extra, info = options_fn(given) if options_fn else ({}, {})
        return {**extra, **sampling}, info

    run_operation(op, image, mask, out, out_mask, report, device, models, in_process, options, inputs,
                  input_paths)


REMOVAL = declared("remove", "removal", "--removal")


@tumor_app.command("remove")
def tumor_remove(image: Path = IMAGE, mask: Path = typer.Option(..., "--mask", help="Tumour mask (label volume, "
                                                                                    "any grid)."),
                 out: Path = OUT, out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                 margin: float = declared("remove", "margin_mm", "--margin"), removal: str = REMOVAL,
                 steps: Optional[int] = STEPS, seed: int = SEED, eta: Optional[float] = ETA,
                 device: Device = DEVICE, models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Replace the tumour under MASK with plausible healthy tissue."""
    _run("remove", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process,
         lambda _given: ({"margin_mm": margin, "removal": removal}, {}))


@tumor_app.command("synthesize")
def tumor_synthesize(
        image: Path = IMAGE,
        mask: Path = typer.Option(..., "--mask", help="Where to grow the tumour (label volume, any grid)."),
        texture_from: Optional[str] = TEXTURE_FROM, features: Optional[Path] = FEATURES,
        preset: Optional[str] = PRESET, set_: Optional[list[str]] = SET,
        out: Path = OUT, out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
        guidance: float = GUIDANCE, margin: float = declared("synthesize", "margin_mm", "--margin"),
        steps: Optional[int] = STEPS, seed: int = SEED, eta: Optional[float] = ETA, device: Device = DEVICE,
        models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Grow a tumour inside MASK whose texture features match a tumour, a feature file or a preset."""
    with user_errors():
        check_texture_source(texture_from, features, preset)
        overrides = parse_overrides(set_)

    def options(given: Inputs) -> tuple[dict, dict]:
        given.site.check_region(given.mask.array > 0, f"The region to grow the tumour in (--mask {mask.name})")
        target, info = texture_target(texture_from, features, preset, given, models)
        return {"target": target, "overrides": overrides, "guidance": guidance, "margin_mm": margin}, info

    _run("synthesize", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process, options,
         input_paths=_texture_inputs(texture_from, features))


@tumor_app.command("place")
def tumor_place(
        image: Path = IMAGE, out: Path = OUT,
        point_ras: Optional[str] = typer.Option(None, "--point-ras", help="Tumour centre R,A,S in mm (as in Slicer). "
                                                                         "Excludes --painted."),
        painted: Optional[Path] = typer.Option(None, "--painted", help="A painted region (label volume). Excludes "
                                                                       "--point-ras."),
        shape: ShapeMode = typer.Option(
            ShapeMode.painted, "--shape", help="With --painted: painted (as drawn), inside (a generated shape "
            "clipped to it) or around (a generated shape of its volume, centred on it); default painted. Ignored "
            "with --point-ras (a generated shape)."),
        volume_ml: Optional[float] = option_flag(
            SHAPE["volume_ml"], "--volume-ml", default=None,
            help=SHAPE["volume_ml"].describe().replace("default 4", "default 4 mL at a point, the painted region's "
                                                                   "volume with --painted")),
        sphericity: Optional[float] = option_flag(SHAPE["shape_Sphericity"], "--sphericity", default=None),
        elongation: Optional[float] = option_flag(SHAPE["shape_Elongation"], "--elongation", default=None),
        flatness: Optional[float] = option_flag(SHAPE["shape_Flatness"], "--flatness", default=None),
        organ: Optional[Path] = typer.Option(None, "--organ", help="Keep the tumour inside this label volume "
                                                                   "(e.g. a lung segmentation); default: anywhere "
                                                                   "in the body."),
        texture_from: Optional[str] = TEXTURE_FROM, features: Optional[Path] = FEATURES,
        preset: Optional[str] = PRESET, set_: Optional[list[str]] = SET, guidance: float = GUIDANCE,
        out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT, steps: Optional[int] = STEPS,
        seed: int = SEED, eta: Optional[float] = ETA, device: Device = DEVICE, models: Optional[Path] = MODELS,
        in_process: bool = IN_PROCESS) -> None:
    """Place a new tumour at a point (generated shape) or in a painted region."""
    with user_errors():
        check_texture_source(texture_from, features, preset)
        if (point_ras is None) == (painted is None):
            raise RadSynthError("Give either --point-ras or --painted (not both).")
        point_lps = parse_ras(point_ras, "--point-ras") if point_ras else None
        overrides = parse_overrides(set_)

    def options(given: Inputs):
        organ_mask = given.read_mask(organ, "--organ") if organ else None
        inside_organ = organ_mask.array > 0 if organ_mask is not None else None
        painted_mask = given.read_mask(painted, "--painted") if painted else None
        if point_lps is not None:
            given.site.check_point(point_lps, inside_organ)
        else:
            given.site.check_region(painted_mask.array > 0, f"The painted region (--painted {painted.name})",
                                    inside_organ if shape == ShapeMode.painted else None)
        target, info = texture_target(texture_from, features, preset, given, models)
        shape_features = {k: v for k, v in (("volume_ml", volume_ml), ("shape_Sphericity", sphericity),
                                             ("shape_Elongation", elongation), ("shape_Flatness", flatness))
                          if v is not None}
        if point_lps is not None:   # a generated shape needs a volume: the panel's default, declared once
            shape_features.setdefault("volume_ml", SHAPE["volume_ml"].default)
        return {"target": target, "overrides": overrides, "guidance": guidance, "point_lps": point_lps,
                "painted": painted_mask, "shape_mode": shape.value if painted else "generate",
                "shape_features": shape_features, "organ": organ_mask}, info

    _run("place", image, None, out, out_mask, report, steps, seed, eta, device, models, in_process, options,
         {"point_ras": point_ras, "painted": str(painted) if painted else None},
         {"--painted": painted, "--organ": organ, **_texture_inputs(texture_from, features)})


@tumor_app.command("move")
def tumor_move(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
               to_ras: Optional[str] = typer.Option(None, "--to-ras", help="New centre R,A,S in mm. Excludes "
                                                                           "--shift-ras."),
               shift_ras: Optional[str] = typer.Option(None, "--shift-ras", help="Shift R,A,S in mm. Excludes "
                                                                                 "--to-ras."),
               others: Optional[list[Path]] = typer.Option(None, "--avoid", help="Other tumours not to overlap "
                                                                                 "(repeatable)."),
               out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT, removal: str = REMOVAL,
               steps: Optional[int] = STEPS, seed: int = SEED, eta: Optional[float] = ETA, device: Device = DEVICE,
               models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Move a tumour: remove it, then synthesize the same shape and texture at the new place."""
    from ..region import mask_center_and_extent

    with user_errors():
        if (to_ras is None) == (shift_ras is None):
            raise RadSynthError("Give either --to-ras or --shift-ras (not both).")
        shift_lps = parse_ras(shift_ras, "--shift-ras") if shift_ras else None
        to_lps = parse_ras(to_ras, "--to-ras") if to_ras else None

    def options(given: Inputs):
        tumour = given.mask.array > 0
        if shift_lps is not None:
            shift = shift_lps
        else:
            center, _ = mask_center_and_extent(given.image, tumour)
            shift = tuple(float(t - c) for t, c in zip(to_lps, center))
        given.site.check_region(given.site.shifted(tumour, shift), "The moved tumour")
        return {"shift_lps": shift, "others": [given.read_mask(p, "--avoid") for p in others or []],
                "removal": removal}, {}

    _run("move", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process, options,
         {"to_ras": to_ras, "shift_ras": shift_ras}, {"--avoid": list(others or [])})


@tumor_app.command("resize")
def tumor_resize(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
                 volume_ml: Optional[float] = declared("resize", "volume_ml", "--volume-ml",
                                                       help="New volume; range 0.01–1000 mL; no default: give "
                                                            "this or --scale. Excludes --scale."),
                 scale: Optional[float] = declared("resize", "scale", help="Linear scale factor about the tumour's "
                                                  "centre; range 0.1–5; no default: give this or --volume-ml. "
                                                  "Excludes --volume-ml."),
                 out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT, removal: str = REMOVAL,
                 steps: Optional[int] = STEPS, seed: int = SEED, eta: Optional[float] = ETA,
                 device: Device = DEVICE, models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Resize a tumour about its centre, keeping its texture."""
    with user_errors():
        if (volume_ml is None) == (scale is None):
            raise RadSynthError("Give either --volume-ml or --scale (not both).")
    _run("resize", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process,
         lambda _given: ({"volume_ml": volume_ml, "scale": scale, "removal": removal}, {}),
         {"volume_ml": volume_ml, "scale": scale})


@tumor_app.command("retexture")
def tumor_retexture(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
                    texture_from: Optional[str] = TEXTURE_FROM, features: Optional[Path] = FEATURES,
                    preset: Optional[str] = PRESET, set_: Optional[list[str]] = SET, guidance: float = GUIDANCE,
                    out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                    steps: Optional[int] = STEPS, seed: int = SEED, eta: Optional[float] = ETA,
                    device: Device = DEVICE, models: Optional[Path] = MODELS,
                    in_process: bool = IN_PROCESS) -> None:
    """Keep a tumour's shape and give it a new texture (with only --set: its own texture, adjusted)."""
    from ..radiomics import texture_source
    with user_errors():
        overrides = parse_overrides(set_)
        if not overrides or texture_from or features or preset:
            check_texture_source(texture_from, features, preset)

    def options(given: Inputs):
        if overrides and not (texture_from or features or preset):
            given.progress(0.0, "measuring texture")
            target, info = texture_source(image=given.image, mask=given.mask), {"texture_from": "the tumour itself"}
        else:
            target, info = texture_target(texture_from, features, preset, given, models)
        return {"target": target, "overrides": overrides, "guidance": guidance}, info

    _run("retexture", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process, options,
         input_paths=_texture_inputs(texture_from, features))


HANDWRITTEN = ("remove", "synthesize", "place", "move", "resize", "retexture")
