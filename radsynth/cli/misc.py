"""``radsynth sample-data | presets | demo``: the sample chest CTs, the texture presets and the demo job."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (DEVICE, IN_PROCESS, MODELS, Device, cancel_on_ctrl_c, progress_bar, run_in_background,
                     user_errors)
from .tumor import SEED, STEPS


def register(app: typer.Typer) -> None:
    app.command("sample-data")(sample_data_cmd)
    app.command("presets")(presets_cmd)
    app.command("demo")(demo_cmd)


def sample_data_cmd() -> None:
    """Fetch the sample chest CTs (pyradiomics source distribution, via pip) and print where they are."""
    from ..sample_data import fetch
    with user_errors():
        typer.echo(str(fetch()))


def presets_cmd(show: bool = typer.Option(False, "--show", help="Also print every texture feature name with each "
                                                                "preset's value (the names --set and --features "
                                                                "take); default: names of the presets only.")) -> None:
    """List the named texture presets for ``tumor synthesize --preset``; with --show, their feature values."""
    from ..radiomics import list_presets, load_preset
    names = list_presets()
    if not show:
        for name in names:
            typer.echo(name)
        return
    presets = {name: load_preset(name) for name in names}
    features = sorted({f for values in presets.values() for f in values})
    width = max(len(f) for f in features)
    typer.echo(f"{'feature':<{width}}  " + "  ".join(f"{n:>14}" for n in names))
    for feature in features:
        typer.echo(f"{feature:<{width}}  " + "  ".join(f"{presets[n].get(feature, float('nan')):>14.6g}"
                                                       for n in names))


def demo_cmd(out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for the demo outputs (created when "
                                                                      "missing; files of the same names in it are "
                                                                      "replaced)."),
             steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE,
             models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Remove lung2's tumour, and grow a tumour with lung2's texture in lung1; writes volumes, montage, report."""
    from ..demo import OUT_NAMES, run_demo, summary_lines
    from ..outputs import Destination, check_destinations, suffix_of
    with user_errors(), cancel_on_ctrl_c() as cancel:
        check_destinations([], [Destination(out / name, f"--out {out / name}", (suffix_of(name),))
                                for name in OUT_NAMES.values()])
        with progress_bar() as progress:
            report = run_in_background(
                lambda: run_demo(out, steps=steps, seed=seed, worker=not in_process,
                                 model_dir=str(models) if models else None, device=device.value,
                                 progress=progress, cancel=cancel), cancel)
    for line in summary_lines(report):
        typer.echo(line)
