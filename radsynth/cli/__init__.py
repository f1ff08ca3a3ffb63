"""``radsynth`` command line: one group per module (a file each), plus models, sample data, presets and the demo.

Every command that runs an operation reads its options from the operation registry; operations without a
hand-written command get one made from their declaration (``operations.py``).
"""

from __future__ import annotations

import importlib
from typing import Optional

import typer

from .. import __version__
from ..pipelines import registry
from . import misc, operations
from .evaluate import evaluate_app
from .tumor import HANDWRITTEN, tumor_app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"radsynth {__version__}")
        raise typer.Exit()


app = typer.Typer(help="RadSynth: diffusion-based synthesis of CT images (Slicer-free engine). Every output is "
                       "marked synthetic.", no_args_is_help=True, add_completion=False)


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")) -> None:
    """RadSynth: diffusion-based synthesis of CT images."""


app.add_typer(tumor_app, name="tumor")
app.add_typer(evaluate_app, name="evaluate")
# Groups written by other modules' files, mounted when present.
for _module, _attr, _name in (("models", "models_app", "models"), ("reader", "reader_app", "reader")):
    try:
        app.add_typer(getattr(importlib.import_module(f"{__name__}.{_module}"), _attr), name=_name)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{_module}":
            raise
misc.register(app)
registry.load_declarations()
operations.register(app, {"tumor": tumor_app}, set(HANDWRITTEN))

__all__ = ["app"]
