"""``radsynth models list|verify|add``: which models are installed or known, are they intact, add your own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .. import models
from ..errors import ModelError, RadSynthError
from .common import EXIT_ERROR, fail, user_errors

models_app = typer.Typer(help="List, verify and add models (bundled demo models, your own, published ones).",
                         no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the rows as JSON instead of a table.")


def _size(n: Optional[int]) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB"


def _seconds(s: Optional[float]) -> str:
    return "–" if s is None else f"{s:.3g} s"


@models_app.command("list")
def list_cmd(as_json: bool = JSON) -> None:
    """Installed models (bundled and in the user model directory), then catalogued models you can get."""
    with user_errors():
        rows = models.listing()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    # a pipe gets the full width rather than rich's 80 columns
    out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"RadSynth models (user directory: {models.user_models_dir()})")
    for column in ("name", "kind", "version", "licence", "size", "sha256", "demo", "CPU forward", "GPU forward",
                   "where"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["kind"], r["version"] or "–", r["licence"] or "unknown", _size(r["size_bytes"]),
                      (r["sha256"] or "–")[:12], "demo" if r["demo"] else "no", _seconds(r["cpu_s"]),
                      _seconds(r["gpu_s"]), r["installed"] or "not installed")
    out.print(table)
    notes = sorted({r["timing_note"] for r in rows if r["installed"] and r["gpu_s"] is None and r["timing_note"]})
    for note in notes:
        out.print(f"GPU forward –: {note}.")
    for r in rows:
        if not r["installed"]:
            out.print(f"{r['name']} is not installed: get it from {r['source']}, then 'radsynth models add'.")


def _targets(target: Optional[str]) -> list[tuple[str, Path]]:
    if target is None:
        return [(folder.name, folder) for _, folder in models.model_folders()]
    path = Path(target)
    if path.is_dir():
        return [(str(path), path)]
    hits = [(f"{m.name} {m.version}", m.folder) for m in models.installed() if m.name == target]
    if not hits:
        raise ModelError(models.missing_message(target) if not path.exists() else f"{target} is not a folder.")
    return hits


@models_app.command("verify")
def verify_cmd(target: Optional[str] = typer.Argument(
        None, help="A model name or folder (default: every installed model).")) -> None:
    """Check each model's sha256, build its network from the card and load the weights strictly.

    Exit code 2 when any model is corrupt, incomplete or does not match its architecture."""
    with user_errors():
        targets = _targets(target)
    if not targets:
        raise fail(RadSynthError("No models installed."))
    failed = 0
    for label, folder in targets:
        try:
            card = models.read_card(folder)
            models.load(card["kind"], folder, "cpu")
        except RadSynthError as exc:
            failed += 1
            typer.secho(f"FAILED {label}: {exc}", fg="red", err=True)
            continue
        typer.echo(f"ok     {card['name']} {card['version']} ({card['kind']}), sha256 {card['sha256'][:12]}, "
                   f"weights load into the card's architecture")
    if failed:
        typer.secho(f"{failed} of {len(targets)} model(s) failed verification.", fg="red", err=True)
        raise typer.Exit(EXIT_ERROR)


@models_app.command("add")
def add_cmd(folder: Path = typer.Argument(..., help="Model folder with weights.safetensors and card.json."),
            trust: bool = typer.Option(False, "--trust", help="The card has no sha256: record the sha256 of these "
                                       "weights as they are now (only for weights you trained or converted).")
            ) -> None:
    """Add a model you trained or downloaded: it is checked, built on the CPU and copied into the user model
    directory ($RADSYNTH_MODELS, else ~/.local/share/radsynth/models), where 'list' and the modules find it."""
    with user_errors():
        added = models.add(folder, trust=trust)
    typer.echo(f"added {added.name} {added.version} ({added.card['kind']}) to {added.folder}")
    if not added.card.get("licence"):
        typer.secho("Warning: its card names no licence; add a 'licence' field before sharing it.", fg="yellow",
                    err=True)
