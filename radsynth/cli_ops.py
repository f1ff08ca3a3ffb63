"""``radsynth tumor place|move|resize|retexture``: the part-2 manipulations, here or in the worker.

Points and shifts are given in RAS millimetres, as Slicer shows them; the engine works in LPS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import (DEVICE, FEATURES, GUIDANCE, IMAGE, IN_PROCESS, MODELS, OUT, OUT_MASK, PRESET, REPORT, SEED, SET,
                  STEPS, TEXTURE_FROM, Device, check_texture_source, parse_overrides, run_operation, texture_target,
                  tumor_app)
from .errors import RadSynthError
from .volume import mask_on_grid, read_volume

MASK = typer.Option(..., "--mask", help="The existing tumour (label volume, any grid).")


def _ras_to_lps(text: str, what: str) -> tuple[float, float, float]:
    try:
        r, a, s = (float(v) for v in text.split(","))
    except ValueError:
        raise RadSynthError(f"{what} must be three numbers in mm separated by commas, e.g. 12.5,-40,100.") from None
    return (-r, -a, s)


@tumor_app.command("place")
def tumor_place(
        image: Path = IMAGE, out: Path = OUT,
        point_ras: Optional[str] = typer.Option(None, "--point-ras", help="Tumour centre R,A,S in mm (as in Slicer)."),
        painted: Optional[Path] = typer.Option(None, "--painted", help="A painted region (label volume)."),
        shape: str = typer.Option("generate", "--shape", help="With --painted: painted | inside | around."),
        volume_ml: Optional[float] = typer.Option(None, "--volume-ml", help="Tumour volume in mL."),
        sphericity: Optional[float] = typer.Option(None, "--sphericity"),
        elongation: Optional[float] = typer.Option(None, "--elongation"),
        flatness: Optional[float] = typer.Option(None, "--flatness"),
        organ: Optional[Path] = typer.Option(None, "--organ", help="Keep the tumour inside this label volume."),
        texture_from: Optional[str] = TEXTURE_FROM, features: Optional[Path] = FEATURES,
        preset: Optional[str] = PRESET, set_: Optional[list[str]] = SET, guidance: float = GUIDANCE,
        out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT, steps: Optional[int] = STEPS,
        seed: int = SEED, device: Device = DEVICE, models: Optional[Path] = MODELS,
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
        return {"target": target, "overrides": parse_overrides(set_), "guidance": guidance,
                "point_lps": _ras_to_lps(point_ras, "--point-ras") if point_ras else None,
                "painted": mask_on_grid(read_volume(painted), img) if painted else None,
                "shape_mode": shape if painted else "generate", "shape_features": shape_features,
                "organ": mask_on_grid(read_volume(organ), img) if organ else None}, info

    run_operation("place", image, None, out, out_mask, report, steps, seed, device, models, in_process, options,
                  {"point_ras": point_ras, "painted": str(painted) if painted else None})


@tumor_app.command("move")
def tumor_move(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
               to_ras: Optional[str] = typer.Option(None, "--to-ras", help="New centre R,A,S in mm."),
               shift_ras: Optional[str] = typer.Option(None, "--shift-ras", help="Shift R,A,S in mm."),
               others: Optional[list[Path]] = typer.Option(None, "--avoid", help="Other tumours not to overlap."),
               out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
               steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE,
               models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Move a tumour: remove it, then synthesize the same shape and texture at the new place."""
    from .region import mask_center_and_extent

    def options(img, tumour):
        if (to_ras is None) == (shift_ras is None):
            raise RadSynthError("Give either --to-ras or --shift-ras.")
        if shift_ras:
            shift = _ras_to_lps(shift_ras, "--shift-ras")
        else:
            center, _ = mask_center_and_extent(img, tumour.array > 0)
            shift = tuple(t - c for t, c in zip(_ras_to_lps(to_ras, "--to-ras"), center))
        return {"shift_lps": shift, "others": [read_volume(p) for p in others or []]}, {}

    run_operation("move", image, mask, out, out_mask, report, steps, seed, device, models, in_process, options,
                  {"to_ras": to_ras, "shift_ras": shift_ras})


@tumor_app.command("resize")
def tumor_resize(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
                 volume_ml: Optional[float] = typer.Option(None, "--volume-ml", help="New volume in mL."),
                 scale: Optional[float] = typer.Option(None, "--scale", help="Linear scale factor."),
                 out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                 steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE,
                 models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Resize a tumour about its centre, keeping its texture."""
    run_operation("resize", image, mask, out, out_mask, report, steps, seed, device, models, in_process,
                  lambda _img, _tumour: ({"volume_ml": volume_ml, "scale": scale}, {}),
                  {"volume_ml": volume_ml, "scale": scale})


@tumor_app.command("retexture")
def tumor_retexture(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
                    texture_from: Optional[str] = TEXTURE_FROM, features: Optional[Path] = FEATURES,
                    preset: Optional[str] = PRESET, set_: Optional[list[str]] = SET, guidance: float = GUIDANCE,
                    out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                    steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE,
                    models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Keep a tumour's shape and give it a new texture (with only --set: its own texture, adjusted)."""
    from .radiomics import texture_features

    def options(img, tumour):
        overrides = parse_overrides(set_)
        if overrides and not (texture_from or features or preset):
            target, info = texture_features(img, tumour), {"texture_from": "the tumour itself"}
        else:
            target, info = texture_target(texture_from, features, preset)
        return {"target": target, "overrides": overrides, "guidance": guidance}, info

    run_operation("retexture", image, mask, out, out_mask, report, steps, seed, device, models, in_process, options)
