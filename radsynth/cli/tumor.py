"""``radsynth tumor ...``: remove, synthesize, place, move, resize and re-texture tumours on CT.

Runs in this process by default (no start-up cost, and Ctrl-C still cancels cleanly within one sampler step);
``--worker`` runs the work in the background worker process instead, the way the Slicer module does. Points and
shifts are given in RAS millimetres, as Slicer shows them; the engine works in LPS. Defaults, ranges and help of
the operation options come from the operations' declarations (``radsynth.pipelines.tumor_ops``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import RadSynthError
from ..volume import mask_on_grid, read_volume
from ..pipelines.tumor_ops import SHAPE_OPTIONS
from .common import (DEVICE, IMAGE, IN_PROCESS, MODELS, OUT, OUT_MASK, REPORT, Device, declared, option_flag,
                     parse_ras, read_inputs, run_operation, user_errors)

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
MASK = typer.Option(..., "--mask", help="The existing tumour (label volume, any grid).")


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


def texture_target(texture_from: Optional[str], features: Optional[Path], preset: Optional[str]) -> tuple[dict, dict]:
    """(target texture features, how they were chosen) from exactly one of the three texture sources."""
    from ..radiomics import texture_source
    check_texture_source(texture_from, features, preset)
    if texture_from:
        parts = [p.strip() for p in texture_from.split(",")]
        if len(parts) != 2 or not all(parts):
            raise RadSynthError("--texture-from needs two paths separated by a comma: IMAGE,MASK.")
        image, mask = read_inputs(Path(parts[0]), Path(parts[1]))
        return texture_source(image=image, mask=mask), {"texture_from": parts}
    if preset:
        return texture_source(preset=preset), {"texture_preset": preset}
    return texture_source(features_file=features), {"texture_features_file": str(features)}


def _run(op: str, image: Path, mask: Optional[Path], out: Path, out_mask, report, steps, seed, eta, device, models,
         in_process, options_fn=None, inputs=None) -> None:
    sampling = {"steps": steps, "seed": seed, "eta": eta}

    def options(img, msk):
        extra, info = options_fn(img, msk) if options_fn else ({}, {})
        return {**extra, **sampling}, info

    run_operation(op, image, mask, out, out_mask, report, device, models, in_process, options, inputs)


@tumor_app.command("remove")
def tumor_remove(image: Path = IMAGE, mask: Path = typer.Option(..., "--mask", help="Tumour mask (label volume, "
                                                                                    "any grid)."),
                 out: Path = OUT, out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                 margin: float = declared("remove", "margin_mm", "--margin"),
                 steps: Optional[int] = STEPS, seed: int = SEED, eta: Optional[float] = ETA,
                 device: Device = DEVICE, models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Replace the tumour under MASK with plausible healthy tissue."""
    _run("remove", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process,
         lambda _i, _m: ({"margin_mm": margin}, {}))


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

    def options(_image, _mask) -> tuple[dict, dict]:
        target, info = texture_target(texture_from, features, preset)
        return {"target": target, "overrides": overrides, "guidance": guidance, "margin_mm": margin}, info

    _run("synthesize", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process, options)


@tumor_app.command("place")
def tumor_place(
        image: Path = IMAGE, out: Path = OUT,
        point_ras: Optional[str] = typer.Option(None, "--point-ras", help="Tumour centre R,A,S in mm (as in Slicer). "
                                                                         "Excludes --painted."),
        painted: Optional[Path] = typer.Option(None, "--painted", help="A painted region (label volume). Excludes "
                                                                       "--point-ras."),
        shape: str = declared("place", "shape_mode", "--shape",
                              help="With --painted: painted (as drawn), inside (a generated shape clipped to it) or "
                                   "around (a generated shape of its volume, centred on it); default painted."),
        volume_ml: Optional[float] = option_flag(
            SHAPE["volume_ml"], "--volume-ml", default=None,
            help=SHAPE["volume_ml"].describe().replace("default 4", "default 4 mL at a point, the painted region's "
                                                                   "volume with --painted")),
        sphericity: Optional[float] = option_flag(SHAPE["shape_Sphericity"], "--sphericity", default=None),
        elongation: Optional[float] = option_flag(SHAPE["shape_Elongation"], "--elongation", default=None),
        flatness: Optional[float] = option_flag(SHAPE["shape_Flatness"], "--flatness", default=None),
        organ: Optional[Path] = typer.Option(None, "--organ", help="Keep the tumour inside this label volume."),
        texture_from: Optional[str] = TEXTURE_FROM, features: Optional[Path] = FEATURES,
        preset: Optional[str] = PRESET, set_: Optional[list[str]] = SET, guidance: float = GUIDANCE,
        out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT, steps: Optional[int] = STEPS,
        seed: int = SEED, eta: Optional[float] = ETA, device: Device = DEVICE, models: Optional[Path] = MODELS,
        in_process: bool = IN_PROCESS) -> None:
    """Place a new tumour at a point (generated shape) or in a painted region."""
    def options(img, _mask):
        check_texture_source(texture_from, features, preset)
        if (point_ras is None) == (painted is None):
            raise RadSynthError("Give either --point-ras or --painted.")
        target, info = texture_target(texture_from, features, preset)
        shape_features = {k: v for k, v in (("volume_ml", volume_ml), ("shape_Sphericity", sphericity),
                                             ("shape_Elongation", elongation), ("shape_Flatness", flatness))
                          if v is not None}
        if point_ras:   # a generated shape needs a volume: the panel's default, declared once
            shape_features.setdefault("volume_ml", SHAPE["volume_ml"].default)
        return {"target": target, "overrides": parse_overrides(set_), "guidance": guidance,
                "point_lps": parse_ras(point_ras, "--point-ras") if point_ras else None,
                "painted": mask_on_grid(read_volume(painted), img) if painted else None,
                "shape_mode": (shape if shape != "generate" else "painted") if painted else "generate",
                "shape_features": shape_features,
                "organ": mask_on_grid(read_volume(organ), img) if organ else None}, info

    _run("place", image, None, out, out_mask, report, steps, seed, eta, device, models, in_process, options,
         {"point_ras": point_ras, "painted": str(painted) if painted else None})


@tumor_app.command("move")
def tumor_move(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
               to_ras: Optional[str] = typer.Option(None, "--to-ras", help="New centre R,A,S in mm. Excludes "
                                                                           "--shift-ras."),
               shift_ras: Optional[str] = typer.Option(None, "--shift-ras", help="Shift R,A,S in mm. Excludes "
                                                                                 "--to-ras."),
               others: Optional[list[Path]] = typer.Option(None, "--avoid", help="Other tumours not to overlap "
                                                                                 "(repeatable)."),
               out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
               steps: Optional[int] = STEPS, seed: int = SEED, eta: Optional[float] = ETA, device: Device = DEVICE,
               models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Move a tumour: remove it, then synthesize the same shape and texture at the new place."""
    from ..region import mask_center_and_extent

    def options(img, tumour):
        if (to_ras is None) == (shift_ras is None):
            raise RadSynthError("Give either --to-ras or --shift-ras.")
        if shift_ras:
            shift = parse_ras(shift_ras, "--shift-ras")
        else:
            center, _ = mask_center_and_extent(img, tumour.array > 0)
            shift = tuple(t - c for t, c in zip(parse_ras(to_ras, "--to-ras"), center))
        return {"shift_lps": shift, "others": [read_volume(p) for p in others or []]}, {}

    _run("move", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process, options,
         {"to_ras": to_ras, "shift_ras": shift_ras})


@tumor_app.command("resize")
def tumor_resize(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
                 volume_ml: Optional[float] = declared("resize", "volume_ml", "--volume-ml",
                                                       help="New volume in mL (range 0.01–1000). Excludes --scale."),
                 scale: Optional[float] = declared("resize", "scale", help="Linear scale factor (range 0.1–5). "
                                                                           "Excludes --volume-ml."),
                 out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                 steps: Optional[int] = STEPS, seed: int = SEED, eta: Optional[float] = ETA,
                 device: Device = DEVICE, models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Resize a tumour about its centre, keeping its texture."""
    _run("resize", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process,
         lambda _img, _tumour: ({"volume_ml": volume_ml, "scale": scale}, {}),
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

    def options(img, tumour):
        overrides = parse_overrides(set_)
        if overrides and not (texture_from or features or preset):
            target, info = texture_source(image=img, mask=tumour), {"texture_from": "the tumour itself"}
        else:
            target, info = texture_target(texture_from, features, preset)
        return {"target": target, "overrides": overrides, "guidance": guidance}, info

    _run("retexture", image, mask, out, out_mask, report, steps, seed, eta, device, models, in_process, options)


HANDWRITTEN = ("remove", "synthesize", "place", "move", "resize", "retexture")
