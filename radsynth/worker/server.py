"""The worker process: a stdin reader thread (so that a cancel arrives mid-run) and a main loop doing the work."""

from __future__ import annotations

import io
import json
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, Optional

from ..errors import InvalidImageError, RadSynthError, WorkerError
from ..outputs import VOLUME_SUFFIXES, Destination, check_destinations, write_all
from ..progress import CancelToken
from ..volume import read_volume
from ..pipelines import registry
from .protocol import eta_seconds, write_scratch
from .runner import Runner

#: request parameters that say where files are and which models to use, not how to run the operation
_TRANSPORT = ("image", "mask", "out", "out_mask", "model_dir", "device")


class _Server:
    def __init__(self, events: io.TextIOBase) -> None:
        self._events = events
        self._write_lock = threading.Lock()
        self._tokens: dict[str, CancelToken] = {}
        self._requests: queue.Queue = queue.Queue()
        self._runner: Optional[Runner] = None           # in-process runner holding the loaded models
        self._busy: Optional[str] = None

    def emit(self, **event: Any) -> None:
        line = json.dumps(event, default=str)
        with self._write_lock:
            self._events.write(line + "\n")
            self._events.flush()

    # The reader runs beside the work so that a cancel arrives while a request is running.
    def read_loop(self, stdin: io.TextIOBase) -> None:
        for line in stdin:
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
                rid, op = msg.get("id"), msg["op"]
            except (ValueError, KeyError, AttributeError) as exc:
                self.emit(id=None, event="error", type="WorkerError", message=f"Malformed request: {exc}")
                continue
            if op == "cancel":
                token = self._tokens.get(rid)
                if token is not None:
                    token.cancel()
            elif op == "ping":
                # Answered here, not queued: a ping tells the host the process is alive even while it is busy.
                self.emit(id=rid, event="result", out=None, out_mask=None,
                          report={"pong": True, "pid": os.getpid(), "busy": self._busy,
                                  "models_loaded": self._runner is not None and self._runner.models_loaded})
            elif op == "shutdown":
                self._stop_all()
                self._requests.put((rid, op, {}))
                return
            else:
                self._tokens[rid] = CancelToken()
                self._requests.put((rid, op, msg.get("params") or {}))
        self._stop_all()   # stdin closed: the host is gone, nobody is waiting for results
        self._requests.put(None)

    def _stop_all(self) -> None:
        for token in list(self._tokens.values()):
            token.cancel()

    def serve(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            rid, op, params = item
            if op == "shutdown":
                self.emit(id=rid, event="result", report={"shutdown": True}, out=None, out_mask=None)
                return
            token = self._tokens[rid]
            self._busy = rid
            try:
                self._run(rid, op, params, token)
            except Exception as exc:  # one failed request must not end the worker
                if not isinstance(exc, RadSynthError):
                    traceback.print_exc(file=sys.stderr)
                self.emit(id=rid, event="error", type=type(exc).__name__, message=str(exc))
            finally:
                self._busy = None
                self._tokens.pop(rid, None)

    def _run(self, rid: str, op: str, params: dict, token: CancelToken) -> None:
        if _warming is not None:
            _warming.join()
        operation = registry.get(op)   # an unknown operation is refused before any file is read
        volume_options = operation.volume_options
        missing = [k for k in (("image", "out") if operation.needs_image else ("out",)) if not params.get(k)]
        if missing:
            raise WorkerError(f"The request lacks the parameter(s) {', '.join(missing)}.")
        token.check()
        started = time.perf_counter()
        last = {"t": 0.0, "stage": None}

        def progress(fraction: float, stage: str) -> None:
            token.check()
            now = time.perf_counter()
            # ~10 events/s is plenty for a progress bar and keeps the pipe quiet during fast steps.
            if stage != last["stage"] or now - last["t"] >= 0.1 or fraction >= 1.0:
                last.update(t=now, stage=stage)
                self.emit(id=rid, event="progress", fraction=float(fraction), stage=stage,
                          eta_s=eta_seconds(now - started, fraction))

        volumes = {key: params.get(key) for key in ("image", "mask", *volume_options)}
        for path in _labelled_paths(volumes):
            if not os.path.exists(path):
                raise InvalidImageError(f"File or folder not found: {path}")
        # the host names the files; none may be one it sent (or each other): checked before any work
        check_destinations(volumes, {key: Destination(params[key], key, VOLUME_SUFFIXES)
                                     for key in ("out", "out_mask") if params.get(key)})
        key = (params.get("model_dir"), params.get("device"))
        if self._runner is None or (self._runner.model_dir, self._runner.device) != key:
            self._runner = None   # free the old set before loading another
            self._runner = Runner(False, *key)
        cached = self._runner.models_loaded
        progress(0.0, "reading inputs")
        image = read_volume(params["image"]) if params.get("image") else None
        token.check()
        mask = read_volume(params["mask"]) if params.get("mask") else None
        options = {k: v for k, v in params.items() if k not in _TRANSPORT}
        for key in volume_options:
            token.check()
            if isinstance(options.get(key), list):
                options[key] = [read_volume(p) for p in options[key]]
            elif options.get(key):
                options[key] = read_volume(options[key])
        result = self._runner(op, image, mask, progress=progress, cancel=token, **options)
        token.check()
        out_mask = params.get("out_mask") if result.mask is not None else None
        progress(1.0, "writing")
        # both files or neither: the host never reads a result from a half-written pair
        write_all({params["out"]: lambda path: write_scratch(result.volume, path),
                   **({out_mask: lambda path: write_scratch(result.mask, path)} if out_mask else {})}, token)
        report = result.report()
        report["worker"] = {"pid": os.getpid(), "models_cached": cached, "model_load_s": self._runner.load_s}
        self.emit(id=rid, event="result", report=report, out=params["out"], out_mask=out_mask)


def _labelled_paths(volumes: dict) -> list[str]:
    return [p for v in volumes.values() if v for p in (v if isinstance(v, list) else [v])]


#: the start-up import thread; a request waits for it, since two threads importing the same modules (MONAI's)
#: at once can fail with Python's import-lock _DeadlockError
_warming: Optional[threading.Thread] = None


def _warm_up() -> None:
    try:
        from ..pipelines import tumor  # noqa: F401
    except Exception:   # the first request imports it again and reports the error where someone sees it
        pass


def main() -> None:
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    # Anything printed (by us, by libraries, by C code) now lands on stderr, so stdout carries events only.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = _Server(events)
    # Importing torch and the pipeline takes seconds; do it while the host is still preparing its first request.
    global _warming
    _warming = threading.Thread(target=_warm_up, daemon=True, name="radsynth-warm-up")
    _warming.start()
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    threading.Thread(target=server.read_loop, args=(stdin,), daemon=True, name="radsynth-stdin").start()
    server.serve()
