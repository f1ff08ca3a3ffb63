"""What every ``radsynth`` command shares: options read from the operation registry, the progress bar, Ctrl-C,
one way to fail, and the body of every command that runs a registered operation.

Every failure prints one red line on stderr, exits with code 2 and leaves no output file behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from ..errors import RadSynthError
from ..pipelines import registry
from ..progress import CancelToken, ProgressFn
from ..volume import Volume, check_ct, mask_on_grid, read_volume, write_volume

err = Console(stderr=True)
EXIT_ERROR = 2
NRRD_SUFFIXES = (".nrrd", ".nhdr")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def option_flag(opt: registry.Option, *flags: str, **overrides: Any) -> Any:
    """A typer option whose default, range and help come from a declared option (``overrides`` win)."""
    kwargs: dict[str, Any] = {"help": opt.describe(), "show_default": False}   # describe() says the default
    if opt.kind in ("int", "float"):
        kwargs.update(min=opt.min, max=opt.max)
    kwargs.update(overrides)
    default = kwargs.pop("default", opt.default)
    return typer.Option(default, *(flags or ("--" + opt.name.replace("_", "-"),)), **kwargs)


def declared(op: str, name: str, *flags: str, **overrides: Any) -> Any:
    """``option_flag`` for the option ``name`` of the registered operation ``op``."""
    return option_flag(registry.get(op).option(name), *flags, **overrides)


def parse_ras(text: str, what: str) -> tuple[float, float, float]:
    """A point or shift typed as R,A,S millimetres (as Slicer shows them), in the engine's LPS."""
    from ..geometry import ras_to_lps
    try:
        r, a, s = (float(v) for v in text.split(","))
    except ValueError:
        raise RadSynthError(f"{what} must be three numbers in mm separated by commas, e.g. 12.5,-40,100.") from None
    return ras_to_lps((r, a, s))


# Options of every command that runs an operation (typer reads them from the signature, so they are defaults).
IMAGE = typer.Option(..., "--image", help="CT volume: NRRD, NIfTI or a DICOM series folder.")
OUT = typer.Option(..., "--out", help="Result volume (.nrrd); its header marks it as synthetic.")
OUT_MASK = typer.Option(None, "--out-mask", help="Also write the region that was changed, as a label volume.")
REPORT = typer.Option(None, "--report", help="Write a JSON report (features, timings, model cards, versions).")
DEVICE = typer.Option(Device.auto, "--device", help="Where to run: auto picks CUDA when available.")
MODELS = typer.Option(None, "--models", help="Model folder (default: the bundled demo models).")
IN_PROCESS = typer.Option(True, "--in-process/--worker",
                          help="Run here (default) or in the background worker process, as Slicer does.")


@contextlib.contextmanager
def cancel_on_ctrl_c() -> Iterator[CancelToken]:
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
def progress_bar() -> Iterator[ProgressFn]:
    """A rich bar on stderr showing the stage and an ETA extrapolated from elapsed time and fraction done."""
    from ..worker.protocol import eta_seconds
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


def fail(exc: BaseException) -> typer.Exit:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    # soft_wrap: one message, one line, however narrow the terminal (or a pipe's default 80 columns)
    err.print(f"[bold red]Error:[/bold red] [red]{escape(lines[0])}[/red]", highlight=False, soft_wrap=True)
    for line in lines[1:]:   # a worker crash carries the worker's last messages; they help a bug report
        err.print(escape(line), style="dim", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


def warn(message: str) -> None:
    err.print(f"[yellow]Warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """A RadSynthError inside becomes one red line and exit code 2."""
    try:
        yield
    except RadSynthError as exc:
        raise fail(exc) from None


def read_inputs(image_path: Path, mask_path: Optional[Path]) -> tuple[Volume, Optional[Volume]]:
    image = read_volume(image_path)
    check_ct(image)
    return image, mask_on_grid(read_volume(mask_path), image) if mask_path else None


#: options_fn(image, mask) -> (the operation's options for the Runner, what the report records about them)
OptionsFn = Callable[[Volume, Optional[Volume]], tuple[dict, dict]]


def run_operation(op: str, image_path: Path, mask_path: Optional[Path], out: Path, out_mask: Optional[Path],
                  report: Optional[Path], device: Device, models: Optional[Path], in_process: bool,
                  options_fn: Optional[OptionsFn] = None, inputs: Optional[dict] = None) -> None:
    """Body of every command that runs a registered operation: read, run (here or in the worker), then write
    everything at the end."""
    from ..report import operation_report, software_versions, write_json
    from ..worker import Runner
    try:
        if out.suffix.lower() not in NRRD_SUFFIXES:
            raise RadSynthError(f"Write the result as .nrrd (got {out.name}): only NRRD keeps the header field "
                                "that marks the volume as synthetic.")
        # Ctrl-C stays a cancel until the end: a write is never cut in half.
        with cancel_on_ctrl_c() as cancel:
            with progress_bar() as progress, Runner(worker=not in_process, device=device.value,
                                                    model_dir=str(models) if models else None) as runner:
                image, mask = read_inputs(image_path, mask_path)
                progress(0.0, "preparing")
                options, info = options_fn(image, mask) if options_fn else ({}, {})
                result = runner(op, image, mask, progress=progress, cancel=cancel, **options)
            cancel.check()   # a Ctrl-C that landed after the last step still means "do not write"
            write_volume(result.volume, out)
            if out_mask and result.mask is not None:
                write_volume(result.mask, out_mask)
            if report:
                inputs = {"image": str(image_path), **({"mask": str(mask_path)} if mask_path else {}),
                          **(inputs or {}), **info}
                outputs = {"volume": str(out), "mask": str(out_mask) if out_mask else None}
                write_json({"software": software_versions(),
                            **operation_report(op, result, inputs, outputs,
                                               "in-process" if in_process else "worker")}, report)
    except RadSynthError as exc:
        raise fail(exc) from None
    except OSError as exc:   # e.g. an output folder that cannot be written
        raise fail(RadSynthError(f"Could not write the result: {exc}")) from None
    for message in result.warnings:
        warn(message)
    typer.echo(f"wrote {out} (marked synthetic)")
    for extra_path in (out_mask if result.mask is not None else None, report):
        if extra_path:
            typer.echo(f"wrote {extra_path}")
