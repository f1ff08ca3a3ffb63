"""A module's work as a job in three phases, so that the panel never blocks and MRML is touched on the main thread.

1. ``logic.prepare(parameters)`` (main thread) reads the nodes into plain data (a *request*) and refuses bad input
   before anything slow starts;
2. ``logic.execute(request, progress, cancel)`` (any thread) runs the engine; it never sees a node;
3. ``logic.apply(request, result, scene)`` (main thread) adds the result as new nodes, all or none.

:class:`BackgroundRun` runs phase 2 on a thread; :class:`JobController` is what a panel holds: one job at a time,
polled from a timer (the only Qt part, in :mod:`RadSynthLib.widgets`), applied when it ends. Nothing here needs Qt.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Optional

from radsynth.errors import CancelledError, RadSynthError
from radsynth.progress import CancelToken
from radsynth.volume import Volume


@dataclasses.dataclass
class EngineRequest:
    """What ``execute`` needs for one engine call, as plain data: safe to hand to another thread or process.

    A module's request adds its own fields; :meth:`option_values` offers them to the engine by name, and the
    runner keeps those the operation declares (``registry.get(operation).option_names``).
    """
    operation: str
    image: Volume
    mask: Optional[Volume]
    input_name: str
    input_node_id: str
    model_dir: Optional[str] = None

    #: fields that are never engine options (the inputs and where the result goes)
    NOT_OPTIONS = ("operation", "image", "mask", "input_name", "input_node_id", "model_dir")

    def option_values(self) -> dict[str, Any]:
        """Candidate option values by name: every field except the inputs; subclasses add renamed ones."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.NOT_OPTIONS}


class BackgroundRun:
    """``logic.execute(request, progress, cancel)`` on a worker thread; the GUI polls ``fraction``/``stage``/
    ``running`` from a timer.

    Only plain data crosses the thread boundary, so MRML stays on the main thread: when ``running`` turns False,
    the caller passes ``result`` to ``apply`` (or shows ``error``).
    """

    def __init__(self, logic: Any, request: Any, name: str = "RadSynth") -> None:
        self.request, self.cancel = request, CancelToken()
        self.fraction, self.stage = 0.0, "starting"
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.discard = False  # set when the scene closed meanwhile: the result has nowhere to go
        self.started: Optional[float] = None
        self._thread = threading.Thread(target=self._run, args=(logic,), name=name, daemon=True)

    def start(self) -> "BackgroundRun":
        self.started = time.monotonic()
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> bool:
        self._thread.join(timeout)
        return not self.running

    def _progress(self, fraction: float, stage: str) -> None:
        self.fraction, self.stage = fraction, stage

    def _run(self, logic: Any) -> None:
        try:
            self.result = logic.execute(self.request, self._progress, self.cancel)
        except Exception as exc:  # noqa: BLE001 - reported on the main thread, which shows it to the user
            self.error = exc


IDLE, RUNNING, DONE, CANCELLED, FAILED = "idle", "running", "done", "cancelled", "failed"


@dataclasses.dataclass
class JobStatus:
    """What the panel shows after a poll. ``state``: idle (no job), running, done, cancelled or failed."""
    state: str
    fraction: float = 0.0
    stage: str = ""
    nodes: Any = None                          # what ``apply`` returned (done)
    error: Optional[BaseException] = None      # why it failed; a RadSynthError has a message for the user
    cancelling: bool = False                   # Cancel was pressed and the job has not stopped yet
    eta_s: Optional[float] = None              # seconds left, extrapolated from the time so far (running)

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @property
    def expected(self) -> bool:
        """A failure the user can act on (a RadSynthError), not a programming error to log with its traceback."""
        return self.error is None or isinstance(self.error, RadSynthError)


class JobController:
    """One background job at a time for a module panel: start, poll from a timer, cancel, discard.

    ``poll`` applies a finished job on the calling (main) thread and then calls its ``done(nodes)``; a job that
    failed, was cancelled, or whose scene closed meanwhile changes nothing.
    """

    def __init__(self, name: str = "RadSynth") -> None:
        self.name = name
        self.job: Optional[BackgroundRun] = None
        self._logic: Any = None
        self._done: Optional[Callable[[Any], None]] = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, logic: Any, request: Any, done: Optional[Callable[[Any], None]] = None) -> BackgroundRun:
        if self.job is not None:
            raise RadSynthError("Another run is still in progress; wait for it or cancel it first.")
        self.job, self._logic, self._done = BackgroundRun(logic, request, self.name), logic, done
        return self.job.start()

    def cancel(self) -> bool:
        """Ask the running job to stop (it stops within a sampler step); False when nothing runs."""
        if self.job is None:
            return False
        self.job.cancel.cancel()
        return True

    def discard(self) -> None:
        """The scene is closing: the running job's nodes would land in a scene the user just closed."""
        if self.job is not None:
            self.job.discard = True
            self.job.cancel.cancel()

    def poll(self, scene: Any) -> JobStatus:
        job = self.job
        if job is None:
            return JobStatus(IDLE)
        fraction = min(max(float(job.fraction), 0.0), 1.0)
        if job.running:
            from radsynth.worker.protocol import eta_seconds

            eta = eta_seconds(time.monotonic() - job.started, fraction) if job.started is not None else None
            return JobStatus(RUNNING, fraction, job.stage, cancelling=job.cancel.cancelled, eta_s=eta)
        self.job = None
        logic, done, self._logic, self._done = self._logic, self._done, None, None
        if job.discard or isinstance(job.error, CancelledError):
            return JobStatus(CANCELLED, fraction, job.stage)
        if job.error is not None:
            return JobStatus(FAILED, fraction, job.stage, error=job.error)
        try:
            nodes = logic.apply(job.request, job.result, scene)
        except Exception as exc:  # noqa: BLE001 - apply removes what it added; the panel shows why
            return JobStatus(FAILED, fraction, job.stage, error=exc)
        if done is not None:
            done(nodes)
        return JobStatus(DONE, 1.0, job.stage, nodes=nodes)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job's thread ends (scripts and tests; a panel polls instead)."""
        return self.job is None or self.job.wait(timeout)
