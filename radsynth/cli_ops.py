"""``radsynth tumor place|move|resize|retexture``: the part-2 manipulations, run in this process.

Points and shifts are given in RAS millimetres, as Slicer shows them; the engine works in LPS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

from .cli import (DEVICE, FEATURES, GUIDANCE, IMAGE, PRESET, SET, TEXTURE_FROM, Device, OUT, OUT_MASK, REPORT, SEED,
                  STEPS, _cancel_on_ctrl_c, _fail, _progress_bar, check_texture_source, parse_overrides,
                  texture_target, tumor_app)
from .errors import RadSynthError
from .volume import mask_on_grid, read_volume, write_volume

MASK = typer.Option(..., "--mask", help="The existing tumour (label volume, any grid).")


def _ras_to_lps(text: str, what: str) -> tuple[float, float, float]:
    try:
        r, a, s = (float(v) for v in text.split(","))
    except ValueError:
        raise RadSynthError(f"{what} must be three numbers in mm separated by commas, e.g. 12.5,-40,100.") from None
    return (-r, -a, s)


def _execute(op: str, image_path: Path, out: Path, out_mask: Optional[Path], report: Optional[Path],
             run: Callable, inputs: dict) -> None:
    """Read, run ``run(image, progress, cancel)``, and write only when everything succeeded."""
    from .demo import operation_report, software_versions, write_json
    try:
        if out.suffix.lower() not in (".nrrd", ".nhdr"):
            raise RadSynthError(f"Write the result as .nrrd (got {out.name}): only NRRD keeps the synthetic mark.")
        with _cancel_on_ctrl_c() as cancel:
            with _progress_bar() as progress:
                image = read_volume(image_path)
                result = run(image, progress, cancel)
            cancel.check()
            write_volume(result.volume, out)
            if out_mask:
                write_volume(result.mask, out_mask)
            if report:
                write_json({"software": software_versions(),
                            **operation_report(op, result, dict(inputs, image=str(image_path)),
                                               {"volume": str(out), "mask": str(out_mask) if out_mask else None},
                                               result.settings.get("steps"), result.settings.get("seed", 0),
                                               "in-process")}, report)
    except RadSynthError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise _fail(RadSynthError(f"Could not write the result: {exc}")) from None
    typer.echo(f"wrote {out} (marked synthetic)")


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
        seed: int = SEED, device: Device = DEVICE) -> None:
    """Place a new tumour at a point (generated shape) or in a painted region."""
    from .pipelines import manipulate
    from .pipelines.loading import load_models

    def run(img, progress, cancel):
        check_texture_source(texture_from, features, preset)
        if (point_ras is None) == (painted is None):
            raise RadSynthError("Give either --point-ras or --painted.")
        target, _ = texture_target(texture_from, features, preset)
        shape_features = {k: v for k, v in (("volume_ml", volume_ml), ("shape_Sphericity", sphericity),
                                             ("shape_Elongation", elongation), ("shape_Flatness", flatness))
                          if v is not None}
        region = mask_on_grid(read_volume(painted), img) if painted else None
        organ_vol = mask_on_grid(read_volume(organ), img) if organ else None
        point = _ras_to_lps(point_ras, "--point-ras") if point_ras else None
        mode = shape if painted else "generate"
        return manipulate.place(img, target, point_lps=point, painted=region, shape=mode,
                                shape_features=shape_features, organ=organ_vol, texture_overrides=parse_overrides(set_),
                                models=load_models(device=device.value), guidance=guidance, steps=steps, seed=seed,
                                progress=progress, cancel=cancel)

    _execute("place", image, out, out_mask, report, run, {"point_ras": point_ras, "painted": str(painted)})


@tumor_app.command("move")
def tumor_move(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
               to_ras: Optional[str] = typer.Option(None, "--to-ras", help="New centre R,A,S in mm."),
               shift_ras: Optional[str] = typer.Option(None, "--shift-ras", help="Shift R,A,S in mm."),
               others: Optional[list[Path]] = typer.Option(None, "--avoid", help="Other tumours not to overlap."),
               out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
               steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE) -> None:
    """Move a tumour: remove it, then synthesize the same shape and texture at the new place."""
    from .pipelines import manipulate
    from .pipelines.loading import load_models
    from .region import mask_center_and_extent

    def run(img, progress, cancel):
        if (to_ras is None) == (shift_ras is None):
            raise RadSynthError("Give either --to-ras or --shift-ras.")
        tumour = mask_on_grid(read_volume(mask), img)
        if shift_ras:
            shift = _ras_to_lps(shift_ras, "--shift-ras")
        else:
            center, _ = mask_center_and_extent(img, tumour.array > 0)
            shift = tuple(t - c for t, c in zip(_ras_to_lps(to_ras, "--to-ras"), center))
        avoid = [read_volume(p) for p in others or []]
        return manipulate.move(img, tumour, shift, others=avoid, models=load_models(device=device.value),
                               steps=steps, seed=seed, progress=progress, cancel=cancel)

    _execute("move", image, out, out_mask, report, run, {"mask": str(mask), "to_ras": to_ras, "shift_ras": shift_ras})


@tumor_app.command("resize")
def tumor_resize(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
                 volume_ml: Optional[float] = typer.Option(None, "--volume-ml", help="New volume in mL."),
                 scale: Optional[float] = typer.Option(None, "--scale", help="Linear scale factor."),
                 out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                 steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE) -> None:
    """Resize a tumour about its centre, keeping its texture."""
    from .pipelines import manipulate
    from .pipelines.loading import load_models

    def run(img, progress, cancel):
        tumour = mask_on_grid(read_volume(mask), img)
        return manipulate.resize(img, tumour, volume_ml=volume_ml, scale=scale,
                                 models=load_models(device=device.value), steps=steps, seed=seed,
                                 progress=progress, cancel=cancel)

    _execute("resize", image, out, out_mask, report, run, {"mask": str(mask), "volume_ml": volume_ml, "scale": scale})


@tumor_app.command("retexture")
def tumor_retexture(image: Path = IMAGE, mask: Path = MASK, out: Path = OUT,
                    texture_from: Optional[str] = TEXTURE_FROM, features: Optional[Path] = FEATURES,
                    preset: Optional[str] = PRESET, set_: Optional[list[str]] = SET, guidance: float = GUIDANCE,
                    out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                    steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE) -> None:
    """Keep a tumour's shape and give it a new texture (with only --set: its own texture, adjusted)."""
    from .pipelines import manipulate
    from .pipelines.loading import load_models
    from .radiomics import texture_features

    def run(img, progress, cancel):
        overrides = parse_overrides(set_)
        tumour = mask_on_grid(read_volume(mask), img)
        if overrides and not (texture_from or features or preset):
            target = texture_features(img, tumour)
        else:
            target, _ = texture_target(texture_from, features, preset)
        return manipulate.retexture(img, tumour, target, texture_overrides=overrides, guidance=guidance,
                                    models=load_models(device=device.value), steps=steps, seed=seed,
                                    progress=progress, cancel=cancel)

    _execute("retexture", image, out, out_mask, report, run, {"mask": str(mask)})
