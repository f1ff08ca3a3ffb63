"""``radsynth`` command line: tumour removal and synthesis on CT, sample data, presets and the demo.

Runs in this process by default (no start-up cost, and Ctrl-C still cancels cleanly within one sampler step);
``--worker`` runs the work in the background worker process instead, the way the Slicer module does.
Every failure prints one red line on stderr, exits with code 2 and leaves no output file behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .errors import RadSynthError
from .progress import CancelToken, ProgressFn
from .volume import Volume, check_ct, mask_on_grid, read_volume, write_volume
from .worker.protocol import DEFAULT_GUIDANCE

app = typer.Typer(help="RadSynth: diffusion-based tumour synthesis on CT (Slicer-free engine).",
                  no_args_is_help=True, add_completion=False)
tumor_app = typer.Typer(help="Remove a tumour, or synthesize one with a chosen texture.", no_args_is_help=True)
app.add_typer(tumor_app, name="tumor")

err = Console(stderr=True)
EXIT_ERROR = 2
NRRD_SUFFIXES = (".nrrd", ".nhdr")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# -- shared plumbing ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _cancel_on_ctrl_c() -> Iterator[CancelToken]:
    """First Ctrl-C cancels cooperatively (the run stops within a step and writes nothing); a second one aborts."""
    token = CancelToken()
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handler(signum, frame):
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        err.print("[yellow]Cancelling… (press Ctrl-C again to abort at once)[/yellow]")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _progress_bar() -> Iterator[ProgressFn]:
    """A rich bar on stderr showing the stage and an ETA extrapolated from elapsed time and fraction done."""
    from .worker import eta_seconds
    columns = (TextColumn("{task.fields[stage]:<28}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
               TextColumn("ETA {task.fields[eta]}"))
    # transient: the bar disappears when done, so an error is the only line left on stderr
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("radsynth", total=1.0, stage="starting", eta="–")
        started = time.perf_counter()

        def progress(fraction: float, stage: str) -> None:
            eta = eta_seconds(time.perf_counter() - started, fraction)
            bar.update(task, completed=min(max(fraction, 0.0), 1.0), stage=stage,
                       eta="–" if eta is None else f"{eta:.0f} s")

        yield progress


def _fail(exc: BaseException) -> typer.Exit:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    # soft_wrap: one message, one line, however narrow the terminal (or a pipe's default 80 columns)
    err.print(f"[bold red]Error:[/bold red] [red]{escape(lines[0])}[/red]", highlight=False, soft_wrap=True)
    for line in lines[1:]:   # a worker crash carries the worker's last messages; they help a bug report
        err.print(escape(line), style="dim", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


def _read_inputs(image_path: Path, mask_path: Optional[Path]) -> tuple[Volume, Optional[Volume]]:
    image = read_volume(image_path)
    check_ct(image)
    return image, mask_on_grid(read_volume(mask_path), image) if mask_path else None


#: options_fn(image, mask) -> (the operation's options for TumorRunner, what the report records about them)
OptionsFn = Callable[[Volume, Optional[Volume]], tuple[dict, dict]]


def run_operation(op: str, image_path: Path, mask_path: Optional[Path], out: Path, out_mask: Optional[Path],
                  report: Optional[Path], steps: Optional[int], seed: int, device: Device, models: Optional[Path],
                  in_process: bool, options_fn: Optional[OptionsFn] = None, inputs: Optional[dict] = None) -> None:
    """Body of every ``tumor`` command: read, run (here or in the worker), then write everything at the end."""
    from .demo import operation_report, software_versions, write_json
    from .pipelines.texture_fill import texture_warnings
    from .worker import TumorRunner
    try:
        if out.suffix.lower() not in NRRD_SUFFIXES:
            raise RadSynthError(f"Write the result as .nrrd (got {out.name}): only NRRD keeps the header field "
                                "that marks the volume as synthetic.")
        # Ctrl-C stays a cancel until the end: a write is never cut in half.
        with _cancel_on_ctrl_c() as cancel:
            with _progress_bar() as progress, TumorRunner(worker=not in_process, device=device.value,
                                                           model_dir=str(models) if models else None) as runner:
                image, mask = _read_inputs(image_path, mask_path)
                progress(0.0, "preparing")
                options, info = options_fn(image, mask) if options_fn else ({}, {})
                result = runner(op, image, mask, steps=steps, seed=seed, progress=progress, cancel=cancel, **options)
            cancel.check()   # a Ctrl-C that landed after the last step still means "do not write"
            write_volume(result.volume, out)
            if out_mask:
                write_volume(result.mask, out_mask)
            if report:
                inputs = {"image": str(image_path), **({"mask": str(mask_path)} if mask_path else {}),
                          **(inputs or {}), **info}
                outputs = {"volume": str(out), "mask": str(out_mask) if out_mask else None}
                extra = {"guidance": options["guidance"]} if "guidance" in options else {}
                write_json({"software": software_versions(),
                            **operation_report(op, result, inputs, outputs, steps, seed,
                                               "in-process" if in_process else "worker", model_cards=runner.cards,
                                               **extra)}, report)
    except RadSynthError as exc:
        raise _fail(exc) from None
    except OSError as exc:   # e.g. an output folder that cannot be written
        raise _fail(RadSynthError(f"Could not write the result: {exc}")) from None
    for message in texture_warnings(result.settings):
        err.print(f"[yellow]Warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)
    typer.echo(f"wrote {out} (marked synthetic)")
    for extra_path in (out_mask, report):
        if extra_path:
            typer.echo(f"wrote {extra_path}")


# Options shared by the tumour commands (typer reads them from the signature, so they are repeated as defaults).
IMAGE = typer.Option(..., "--image", help="CT volume: NRRD, NIfTI or a DICOM series folder.")
OUT = typer.Option(..., "--out", help="Result volume (.nrrd); its header marks it as synthetic.")
OUT_MASK = typer.Option(None, "--out-mask", help="Also write the region that was changed, as a label volume.")
REPORT = typer.Option(None, "--report", help="Write a JSON report (features, timings, model cards, versions).")
STEPS = typer.Option(None, "--steps", min=1, help="Sampler steps (default: the model's).")
SEED = typer.Option(0, "--seed", help="Random seed; the same seed and inputs give the same result.")
DEVICE = typer.Option(Device.auto, "--device", help="Where to run: auto picks CUDA when available.")
MODELS = typer.Option(None, "--models", help="Model folder (default: the bundled demo models).")
IN_PROCESS = typer.Option(True, "--in-process/--worker",
                          help="Run here (default) or in the background worker process, as Slicer does.")
TEXTURE_FROM = typer.Option(None, "--texture-from", metavar="IMAGE,MASK", help="Copy an existing tumour's texture.")
FEATURES = typer.Option(None, "--features", help="JSON file of target texture features.")
PRESET = typer.Option(None, "--preset", help="Named texture preset (see `radsynth presets`).")
GUIDANCE = typer.Option(DEFAULT_GUIDANCE, "--guidance", min=0.0,
                        help="Texture strength (classifier-free guidance): 0 = no tumour (healthy-tissue output), "
                             "1 = conditional, >1 stronger; the demo model needs about 3 to follow the request.")
SET = typer.Option(None, "--set", metavar="FEATURE=VALUE",
                   help="Set one texture feature of the source (repeatable), as the panel's sliders do, e.g. "
                        "--set firstorder_Mean=60; correlated features follow it.")


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


@tumor_app.command("remove")
def tumor_remove(image: Path = IMAGE,
                 mask: Path = typer.Option(..., "--mask", help="Tumour mask (label volume, any grid)."),
                 out: Path = OUT, out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
                 steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE,
                 models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Replace the tumour under MASK with plausible healthy tissue."""
    run_operation("remove", image, mask, out, out_mask, report, steps, seed, device, models, in_process)


@tumor_app.command("synthesize")
def tumor_synthesize(
        image: Path = IMAGE,
        mask: Path = typer.Option(..., "--mask", help="Where to grow the tumour (label volume, any grid)."),
        texture_from: Optional[str] = TEXTURE_FROM, features: Optional[Path] = FEATURES,
        preset: Optional[str] = PRESET, set_: Optional[list[str]] = SET,
        out: Path = OUT, out_mask: Optional[Path] = OUT_MASK, report: Optional[Path] = REPORT,
        guidance: float = GUIDANCE, steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE,
        models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Grow a tumour inside MASK whose texture features match a tumour, a feature file or a preset."""
    try:
        check_texture_source(texture_from, features, preset)
        overrides = parse_overrides(set_)
    except RadSynthError as exc:
        raise _fail(exc) from None

    def options(_image, _mask) -> tuple[dict, dict]:
        target, info = texture_target(texture_from, features, preset)
        return {"target": target, "overrides": overrides, "guidance": guidance}, info

    run_operation("synthesize", image, mask, out, out_mask, report, steps, seed, device, models, in_process,
                  options)


def check_texture_source(texture_from: Optional[str], features: Optional[Path], preset: Optional[str]) -> None:
    chosen = [name for name, value in (("--texture-from", texture_from), ("--features", features),
                                       ("--preset", preset)) if value]
    if len(chosen) != 1:
        raise RadSynthError("Give exactly one texture source: --texture-from IMAGE,MASK, --features FILE "
                            f"or --preset NAME (got {', '.join(chosen) or 'none'}).")


def texture_target(texture_from: Optional[str], features: Optional[Path], preset: Optional[str]) -> tuple[dict, dict]:
    """(target texture features, how they were chosen) from exactly one of the three texture sources."""
    from . import radiomics
    check_texture_source(texture_from, features, preset)
    if preset:
        return radiomics.load_preset(preset), {"texture_preset": preset}
    if features:
        return radiomics.load_features_json(features), {"texture_features_file": str(features)}
    parts = [p.strip() for p in texture_from.split(",")]
    if len(parts) != 2 or not all(parts):
        raise RadSynthError("--texture-from needs two paths separated by a comma: IMAGE,MASK.")
    src_image, src_mask = _read_inputs(Path(parts[0]), Path(parts[1]))
    return radiomics.texture_features(src_image, src_mask), {"texture_from": parts}


# -- utilities ----------------------------------------------------------------------------------------------------
@app.command("sample-data")
def sample_data_cmd() -> None:
    """Fetch the sample chest CTs (pyradiomics source distribution, via pip) and print where they are."""
    from .sample_data import fetch
    try:
        typer.echo(str(fetch()))
    except RadSynthError as exc:
        raise _fail(exc) from None


@app.command("presets")
def presets_cmd() -> None:
    """List the named texture presets for ``tumor synthesize --preset``."""
    from .radiomics import list_presets
    for name in list_presets():
        typer.echo(name)


@app.command("demo")
def demo_cmd(out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for the demo outputs."),
             steps: Optional[int] = STEPS, seed: int = SEED, device: Device = DEVICE,
             models: Optional[Path] = MODELS, in_process: bool = IN_PROCESS) -> None:
    """Remove lung2's tumour, and grow a tumour with lung2's texture in lung1; writes volumes, montage, report."""
    from .demo import run_demo, summary_lines
    try:
        with _cancel_on_ctrl_c() as cancel, _progress_bar() as progress:
            report = run_demo(out, steps=steps, seed=seed, worker=not in_process,
                              model_dir=str(models) if models else None, device=device.value,
                              progress=progress, cancel=cancel)
    except RadSynthError as exc:
        raise _fail(exc) from None
    for line in summary_lines(report):
        typer.echo(line)


from . import cli_ops  # noqa: E402,F401  (registers tumor place/move/resize/retexture)
from .evaluate.cli import evaluate_app  # noqa: E402

app.add_typer(evaluate_app, name="evaluate")

if __name__ == "__main__":
    app()
