"""``radsynth sample-data | presets | demo``: the sample chest CTs, the texture presets and the demo job."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DEVICE, IN_PROCESS, MODELS, Device, cancel_on_ctrl_c, progress_bar, user_errors
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


def presets_cmd() -> None:
    """List the named texture presets for ``tumor synthesize --preset``."""
    from ..radiomics import list_presets
    for name in list_presets():
        typer.echo(name)


def demo_cmd(out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for the demo outputs."),
             steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE,
             models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Remove lung2's tumour, and grow a tumour with lung2's texture in lung1; writes volumes, montage, report."""
    from ..demo import run_demo, summary_lines
    with user_errors(), cancel_on_ctrl_c() as cancel, progress_bar() as progress:
        report = run_demo(out, steps=steps, seed=seed, worker=not in_process,
                          model_dir=str(models) if models else None, device=device.value,
                          progress=progress, cancel=cancel)
    for line in summary_lines(report):
        typer.echo(line)
