"""What every ``radsynth`` command shares: options read from the operation registry, the progress bar, Ctrl-C,
one way to fail, and the body of every command that runs a registered operation.

Every failure prints one red line on stderr, exits with code 2 and leaves no output file behind: destinations are
checked before any work (``radsynth.outputs``), the work runs in a background thread while the main thread answers
Ctrl-C, and results are staged beside their destinations and moved into place only when all of them were written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from ..errors import CancelledError, InvalidMaskError, ModelError, RadSynthError
from ..outputs import JSON_SUFFIXES, NRRD_SUFFIXES, Destination, check_destinations, discard_all, stage
from ..pipelines import registry
from ..progress import CancelToken, ProgressFn
from ..volume import Volume, check_ct, labels_note, mask_labels, mask_on_grid, read_volume, write_volume

err = Console(stderr=True)
EXIT_ERROR = 2
NRRD_REASON = "only NRRD keeps the header field that marks the volume as synthetic."
CANCELLED = "Cancelled by the user; nothing was changed."
#: after Ctrl-C a run gets this long to stop by itself (the next sampler step) before the command exits without it
CANCEL_GRACE_S = 0.6
T = TypeVar("T")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _enforce(opt: registry.Option) -> Callable[[Any], Any]:
    """The declared check as a typer callback: the option itself refuses NaN, infinity and values out of range
    (click's range check lets NaN through)."""
    def callback(value: Any) -> Any:
        try:
            return opt.check(value) if value is not None else None
        except RadSynthError as exc:
            raise typer.BadParameter(str(exc)) from None
    return callback


def option_flag(opt: registry.Option, *flags: str, **overrides: Any) -> Any:
    """A typer option whose default, range and help come from a declared option (``overrides`` win)."""
    kwargs: dict[str, Any] = {"help": opt.describe(), "show_default": False}   # describe() says the default
    if opt.kind in ("int", "float"):
        kwargs.update(min=opt.min, max=opt.max, callback=_enforce(opt))
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
IMAGE = typer.Option(..., "--image", help="CT volume in HU: NRRD, NIfTI or a DICOM series folder; never changed.")
OUT = typer.Option(..., "--out", help="Result volume (.nrrd); its header marks it as synthetic. Must not be an "
                                      "input; written only if the whole run succeeds.")
OUT_MASK = typer.Option(None, "--out-mask", help="Also write the region that was changed, as a label volume "
                                                 "(.nrrd); default: not written.")
REPORT = typer.Option(None, "--report", help="Also write a JSON report (.json: features, timings, model cards, "
                                             "versions); default: not written.")
DEVICE = typer.Option(Device.auto, "--device", help="Where to run: auto picks CUDA when available.")
MODELS = typer.Option(None, "--models", help="Model folder (default: the bundled demo models).")
IN_PROCESS = typer.Option(True, "--in-process/--worker",
                          help="Run here (default) or in the background worker process, as Slicer does.")

_abort = threading.Event()        # a second Ctrl-C: stop waiting for the run at once
_abandoned = threading.Event()    # a cancelled run was left to finish in its thread; the process must not wait
_cancelled = threading.Event()    # the user pressed Ctrl-C during a run


def abandoned() -> bool:
    """Whether a run was cancelled, or is still unwinding in a background thread: the console script then exits
    at once (unloading torch and the rest at interpreter exit took 1.5 s after a cancel)."""
    return _abandoned.is_set() or _cancelled.is_set()


@contextlib.contextmanager
def cancel_on_ctrl_c() -> Iterator[CancelToken]:
    """First Ctrl-C cancels (the run stops within a step, or is left behind after CANCEL_GRACE_S); a second one
    stops waiting at once. Either way nothing is written and no traceback is printed."""
    token = CancelToken()
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handler(signum, frame):
        if token.cancelled:
            _abort.set()
            return
        token.cancel()
        _cancelled.set()
        err.print("[yellow]Cancelling… (press Ctrl-C again to stop at once)[/yellow]")

    _abort.clear()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


def run_in_background(work: Callable[[], T], cancel: CancelToken) -> T:
    """``work()`` in a daemon thread while this (main) thread stays free to answer Ctrl-C: a cancel returns within
    CANCEL_GRACE_S whatever the work is doing (importing torch, loading a model, inside a long C call)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:   # handed to the main thread, which decides what the user sees
            box["error"] = exc

    thread = threading.Thread(target=target, name="radsynth-run", daemon=True)
    thread.start()
    since: Optional[float] = None
    while thread.is_alive():
        thread.join(0.05)
        if cancel.cancelled and since is None:
            since = time.monotonic()
        if since is not None and thread.is_alive() and (_abort.is_set() or time.monotonic() - since > CANCEL_GRACE_S):
            _abandoned.set()
            discard_all()     # whatever it staged goes; it writes nothing after this
            raise CancelledError(CANCELLED)
    if cancel.cancelled:      # whatever the run ended with (staged files too), the user asked it to stop
        discard_all()
        raise CancelledError(CANCELLED)
    if "error" in box:
        raise box["error"]
    return box["value"]


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
    """A RadSynthError inside (OutputError for I/O, CancelledError for Ctrl-C included) becomes one red line and
    exit code 2."""
    try:
        yield
    except RadSynthError as exc:
        raise fail(exc) from None


def read_mask(path: Path, image: Volume, option: str, notes: list[str]) -> Volume:
    """A label volume given as ``option``, on ``image``'s grid; several labels are said in ``notes``."""
    try:
        volume = read_volume(path)
        note = labels_note(mask_labels(volume), f"{option} ({Path(path).name})")
        on_grid = mask_on_grid(volume, image)
    except RadSynthError as exc:
        raise type(exc)(f"{option} ({Path(path).name}): {exc}") from None
    if note:
        notes.append(note)
    return on_grid


def read_label_map(path: Path, option: str) -> Volume:
    """A label map given as ``option`` with its values as they are (a semantic map's labels mean structures; the
    run function resamples it and names values it does not know); refuses what is not a 3D label volume."""
    try:
        volume = read_volume(path)
        if volume.array.ndim != 3:
            raise InvalidMaskError("A label map must be a 3D label volume.")
        mask_labels(volume, "The label map")
    except RadSynthError as exc:
        raise type(exc)(f"{option} ({Path(path).name}): {exc}") from None
    return volume


def read_volume_for(path: Path, option: str) -> Volume:
    try:
        return read_volume(path)
    except RadSynthError as exc:
        raise type(exc)(f"{option} ({Path(path).name}): {exc}") from None


def read_inputs(image_path: Path, mask_path: Optional[Path], notes: Optional[list[str]] = None,
                mask_option: str = "--mask") -> tuple[Volume, Optional[Volume]]:
    image = read_volume(image_path)
    check_ct(image)
    return image, read_mask(mask_path, image, mask_option, notes if notes is not None else []) if mask_path else None


@dataclasses.dataclass
class Inputs:
    """What a command read, and what it has to say about it (warnings printed and kept in the report)."""
    image: Volume
    mask: Optional[Volume]
    progress: ProgressFn
    notes: list[str] = dataclasses.field(default_factory=list)
    _site: Any = None

    def read_mask(self, path: Path, option: str) -> Volume:
        if self.image is None:   # an operation without an input image gets label volumes as they are
            return read_volume_for(path, option)
        return read_mask(path, self.image, option, self.notes)

    @property
    def site(self):
        """The image as a place for a tumour (its body mask computed once, on first use)."""
        if self._site is None:
            from ..placement import Site
            self.progress(0.0, "finding the body")
            self._site = Site(self.image)
        return self._site


#: options_fn(inputs) -> (the operation's options for the Runner, what the report records about them)
OptionsFn = Callable[[Inputs], tuple[dict, dict]]


def run_operation(op: str, image_path: Path, mask_path: Optional[Path], out: Path, out_mask: Optional[Path],
                  report: Optional[Path], device: Device, models: Optional[Path], in_process: bool,
                  options_fn: Optional[OptionsFn] = None, inputs: Optional[dict] = None,
                  input_paths: Optional[dict[str, Any]] = None) -> None:
    """Body of every command that runs a registered operation: check every destination, read, run (here or in
    the worker), stage every output beside its destination, then move them all into place.

    ``input_paths``: the other files the command reads ({option: path or paths}); no output may be one of them."""
    from ..report import operation_report, software_versions
    from ..worker import Runner, WorkerClient
    with user_errors(), cancel_on_ctrl_c() as cancel:
        check_destinations(
            {"--image": image_path, "--mask": mask_path, **(input_paths or {})},
            {"--out": Destination(out, "--out", NRRD_SUFFIXES, NRRD_REASON),
             "--out-mask": Destination(out_mask, "--out-mask", NRRD_SUFFIXES, NRRD_REASON) if out_mask else None,
             "--report": Destination(report, "--report", JSON_SUFFIXES) if report else None})
        if models is not None and not Path(models).is_dir():
            # said before any work: an operation that does not load the model --models replaces would ignore it
            raise ModelError(f"Model folder not found: {models}")
        with progress_bar() as progress:
            def work():
                client = None if in_process else WorkerClient(cancel_grace_s=CANCEL_GRACE_S / 2)
                with Runner(worker=not in_process, device=device.value, model_dir=str(models) if models else None,
                            client=client) as runner:
                    try:
                        progress(0.0, "reading inputs")
                        notes: list[str] = []
                        image, mask = read_inputs(image_path, mask_path, notes) if image_path else (None, None)
                        given = Inputs(image, mask, progress, notes)
                        options, info = options_fn(given) if options_fn else ({}, {})
                        cancel.check()
                        result = runner(op, image, mask, progress=progress, cancel=cancel, **options)
                    finally:
                        if client is not None:
                            client.close()
                cancel.check()   # a Ctrl-C that landed after the last step still means "do not write"
                result.warnings[:0] = given.notes
                progress(1.0, "writing")
                writers = {out: lambda path: write_volume(result.volume, path)}
                if out_mask and result.mask is not None:
                    writers[out_mask] = lambda path: write_volume(result.mask, path)
                if report:
                    from ..report import write_json
                    doc = {"software": software_versions(),
                           **operation_report(op, result, {**({"image": str(image_path)} if image_path else {}),
                                                           **({"mask": str(mask_path)} if mask_path else {}),
                                                           **(inputs or {}), **info},
                                              {"volume": str(out), "mask": str(out_mask) if out_mask else None},
                                              "in-process" if in_process else "worker")}
                    writers[report] = lambda path: write_json(doc, path)
                return result, stage(writers, cancel)

            result, staged = run_in_background(work, cancel)
        staged.commit()   # on this thread, after everything succeeded: renames, all or none
    for message in result.warnings:
        warn(message)
    # a label map (inpaint auto-map) is not a synthetic image and is not marked
    typer.echo(f"wrote {out}" + (" (marked synthetic)" if result.volume.is_synthetic else ""))
    for extra_path in (out_mask if result.mask is not None else None, report):
        if extra_path:
            typer.echo(f"wrote {extra_path}")
