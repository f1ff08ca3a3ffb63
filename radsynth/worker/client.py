"""Host side: ``WorkerClient`` drives one worker process; ``run_in_worker`` sends Volumes and gets Volumes back."""

from __future__ import annotations

import atexit
import collections
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from ..errors import CancelledError, RadSynthError, WorkerError
from ..progress import CancelToken, ProgressFn
from ..result import Result
from ..volume import Volume, read_volume
from ..pipelines import registry
from .protocol import error_from_event, write_scratch

_EOF = object()   # end-of-stream marker on the event queue: the worker's stdout closed


class WorkerClient:
    """Blocking client for one worker process, started on first use and restarted after a crash.

    ``python`` defaults to this interpreter; inside Slicer pass the PythonSlicer launcher, since there
    ``sys.executable`` is the Slicer application itself.
    """

    #: after a cancel the worker gets this long to stop at its next step; then it is killed (a model load or a long
    #: C call cannot be interrupted), so a cancel takes effect within a second wherever the worker is
    CANCEL_GRACE_S = 0.5

    def __init__(self, python: Optional[str] = None, cancel_grace_s: float = CANCEL_GRACE_S,
                 stderr_lines: int = 40) -> None:
        self.python = python or sys.executable
        self.cancel_grace_s = cancel_grace_s
        self._proc: Optional[subprocess.Popen] = None
        self._events: queue.Queue = queue.Queue()
        self._stderr: collections.deque = collections.deque(maxlen=stderr_lines)
        self._stderr_thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # -- process ----------------------------------------------------------------------------------------------
    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])   # the folder holding this radsynth: the child imports it
        env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        # Own process group: Ctrl-C in a terminal must reach the host (which cancels), not kill the worker.
        group = ({"start_new_session": True} if os.name == "posix"
                 else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP})
        try:
            proc = subprocess.Popen([self.python, "-m", "radsynth.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **group)
        except OSError as exc:
            raise WorkerError(f"Could not start the background worker with {self.python}: {exc.strerror or exc}."
                              ) from None
        self._events = queue.Queue()
        self._stderr.clear()
        threading.Thread(target=self._pump_events, args=(proc.stdout, self._events), daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._pump_stderr, args=(proc.stderr,), daemon=True)
        self._stderr_thread.start()
        self._proc = proc
        return proc

    @staticmethod
    def _pump_events(stream, events: queue.Queue) -> None:
        for raw in stream:
            try:
                events.put(json.loads(raw))
            except ValueError:
                continue   # not ours; the worker keeps stdout clean, so this is only a safety net
        events.put(_EOF)

    def _pump_stderr(self, stream) -> None:
        for raw in stream:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def _send(self, msg: dict) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(msg) + "\n").encode("utf-8"))
        self._proc.stdin.flush()

    def _died(self) -> WorkerError:
        proc, self._proc = self._proc, None
        rc = None
        if proc is not None:
            try:
                rc = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:   # stdout closed but the process lingers: finish it
                proc.kill()
                rc = proc.wait(timeout=5)
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)
        how = f"was killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with code {rc}"
        tail = "\n".join(self._stderr) or "(no output)"
        return WorkerError(f"The background worker stopped unexpectedly: it {how}. It will be restarted on "
                           f"the next request. Its last messages:\n{tail}")

    def kill(self) -> None:
        """Stop the worker at once (it is restarted on the next request); a request in progress fails."""
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    # -- requests ---------------------------------------------------------------------------------------------
    def run(self, op: str, params: Optional[dict] = None, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelToken] = None) -> dict:
        """Send one request and block until its result event, which is returned; errors are raised."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            rid = uuid.uuid4().hex
            try:
                self._send({"id": rid, "op": op, "params": params or {}})
            except OSError:
                raise self._died() from None
            try:
                return self._wait(rid, progress, cancel)
            except RadSynthError:
                raise                  # the request is over: it failed, was cancelled, or the worker died
            except BaseException:      # Ctrl-C, or the caller's progress callback raised: the worker runs on
                self._abandon(rid)
                raise

    def _wait(self, rid: str, progress: Optional[ProgressFn], cancel: Optional[CancelToken]) -> dict:
        cancel_sent: Optional[float] = None
        while True:
            if cancel is not None and cancel.cancelled and cancel_sent is None:
                cancel_sent = time.monotonic()
                try:
                    self._send({"op": "cancel", "id": rid})
                except OSError:
                    raise self._died() from None
            if cancel_sent is not None and time.monotonic() - cancel_sent > self.cancel_grace_s:
                # Stuck in a step that cannot be interrupted (e.g. loading models): the user comes first.
                self._kill()
                raise CancelledError("Cancelled by the user; nothing was changed.")
            try:
                event = self._events.get(timeout=0.02)
            except queue.Empty:
                continue
            if event is _EOF:
                raise self._died()
            if event.get("id") != rid:
                continue
            kind = event.get("event")
            if kind == "progress" and progress is not None and cancel_sent is None:
                progress(float(event["fraction"]), str(event["stage"]))
            elif kind == "result":
                return event
            elif kind == "error":
                raise error_from_event(event)

    def _abandon(self, rid: str) -> None:
        """Cancel a request the host gave up on and wait for its end, so the next one starts on a quiet worker."""
        token = CancelToken()
        token.cancel()
        try:
            self._wait(rid, None, token)
        except (RadSynthError, KeyboardInterrupt):
            pass

    def ping(self) -> dict:
        return self.run("ping")["report"]

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            try:
                if proc.poll() is None:
                    self._send({"id": "shutdown", "op": "shutdown"})
                    proc.stdin.close()
                proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
            self._proc = None

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- convenience: Volumes in, Volumes out ---------------------------------------------------------------------------
def result_from_event(op: str, event: dict) -> Result:
    """The worker's reply as a Result; its report carries the model cards the worker used."""
    report = dict(event["report"], operation=event["report"].get("operation", op))
    mask = read_volume(event["out_mask"], single_slice=True) if event.get("out_mask") else None
    return Result.from_report(report, read_volume(event["out"], single_slice=True), mask)


_shared: Optional[WorkerClient] = None


def shared_client() -> WorkerClient:
    """One worker per host process, so models stay loaded between requests; closed at exit."""
    global _shared
    if _shared is None:
        _shared = WorkerClient()
        atexit.register(_shared.close)
    return _shared


def run_in_worker(op: str, image: Volume, mask: Optional[Volume] = None, *, model_dir: Optional[str] = None,
                  device: Optional[str] = None, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelToken] = None, client: Optional[WorkerClient] = None,
                  **options: Any) -> Result:
    """Run one operation in the worker (``options`` as for ``Runner``); the scratch folder is removed whatever
    happens."""
    client = client or shared_client()
    tmp = Path(tempfile.mkdtemp(prefix="radsynth-"))
    try:
        params: dict[str, Any] = {"image": str(tmp / "image.nrrd") if image is not None else None,
                                  "out": str(tmp / "out.nrrd"),
                                  "out_mask": str(tmp / "out_mask.nrrd"),
                                  "model_dir": str(model_dir) if model_dir else None, "device": device}
        if image is not None:
            write_scratch(image, params["image"])
        volumes = {"mask": mask, **{k: options.pop(k) for k in registry.get(op).volume_options if k in options}}
        for key, value in volumes.items():
            if isinstance(value, (list, tuple)):
                params[key] = [str(tmp / f"{key}{i}.nrrd") for i in range(len(value))]
                for vol, path in zip(value, params[key]):
                    write_scratch(vol, path)
            elif value is not None:
                params[key] = str(tmp / f"{key}.nrrd")
                write_scratch(value, params[key])
        params.update(_plain(options))
        return result_from_event(op, client.run(op, params, progress=progress, cancel=cancel))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    return value.item() if hasattr(value, "item") else float(value)
