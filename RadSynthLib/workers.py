"""Where a panel's engine calls run, and how long the worker behind them lives.

:class:`EngineRunner` runs any registered operation with ``radsynth.worker.Runner`` (models loaded once and kept),
in this process or in the background worker process. Inside Slicer the worker is started with Slicer's
``PythonSlicer`` launcher, so the models and the sampler's memory live outside the application and a crash there
cannot take the scene with it.

:func:`acquire` / :func:`release` give each module panel its runner: by default one worker shared by every
RadSynth module (one process, one set of loaded models); a module that needs its own passes ``shared=False``.
The worker closes when the last module using it releases it (the widget's ``cleanup``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from radsynth.errors import RadSynthError
from radsynth.pipelines import registry
from radsynth.progress import CancelToken, ProgressFn


def python_launcher() -> Optional[str]:
    """Slicer's ``PythonSlicer`` when running inside Slicer, else None (here the worker would be this Python)."""
    import sys

    from radsynth.sample_data import python_executable

    try:
        python = python_executable()
    except RadSynthError:
        return None
    return python if python != sys.executable else None


class EngineRunner:
    """Runs an :class:`~RadSynthLib.jobs.EngineRequest` for any registered operation with ``radsynth.worker.Runner``.

    Engine options are built from the operation's declaration: of the request's :meth:`option_values`, those the
    operation declares (``registry.get(op).option_names``) and that are set. One ``Runner`` per model folder keeps
    its models loaded between runs (loading takes seconds); choosing another folder drops the old models first,
    since a model set can hold hundreds of MB.
    """

    def __init__(self, worker: bool = False, device: Optional[str] = None, client: Any = None,
                 own_client: bool = False) -> None:
        self.worker, self.device, self.client, self.own_client = worker, device, client, own_client
        self._runner = None
        self._model_dir: Optional[str] = None
        self._lock = threading.Lock()

    @staticmethod
    def engine_options(request: Any) -> dict[str, Any]:
        names = registry.get(request.operation).option_names
        return {k: v for k, v in request.option_values().items() if k in names and v is not None}

    def _runner_for(self, model_dir: Optional[str]):
        from radsynth.worker import Runner  # no torch here: the pipeline is imported where it runs

        with self._lock:
            if self._runner is None or model_dir != self._model_dir:
                self._close_runner()
                self._runner = Runner(worker=self.worker, model_dir=model_dir, device=self.device,
                                      client=self.client)
                self._model_dir = model_dir
            return self._runner

    def __call__(self, request: Any, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None):
        runner = self._runner_for(request.model_dir)
        return runner(request.operation, request.image, request.mask, progress=progress, cancel=cancel,
                      **self.engine_options(request))

    @property
    def pid(self) -> Optional[int]:
        """The worker process id while one runs (None in process)."""
        return getattr(self.client, "pid", None)

    def _close_runner(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def close(self) -> None:
        """Drop the loaded models; stop the worker process when this runner started it."""
        self._close_runner()
        if self.own_client and self.client is not None:
            self.client.close()


def default_engine() -> EngineRunner:
    """The background worker when Slicer's Python launcher is found (models stay loaded, GUI unaffected), else in
    this process (tests, scripts, PythonSlicer itself)."""
    python = python_launcher()
    if python is None:
        return EngineRunner()
    from radsynth.worker import WorkerClient
    return EngineRunner(worker=True, client=WorkerClient(python=python), own_client=True)


class Workers:
    """Engine runners by module: one shared by all modules that ask for it, or one of their own."""

    def __init__(self, factory: Callable[[], EngineRunner] = default_engine) -> None:
        self.factory = factory
        self._shared: Optional[EngineRunner] = None
        self._shared_users: set[str] = set()
        self._own: dict[str, EngineRunner] = {}
        self._lock = threading.Lock()

    def acquire(self, module: str, shared: bool = True) -> EngineRunner:
        with self._lock:
            if not shared:
                if module not in self._own:
                    self._own[module] = self.factory()
                return self._own[module]
            if self._shared is None:
                self._shared = self.factory()
            self._shared_users.add(module)
            return self._shared

    def release(self, module: str) -> None:
        """The module is done (its widget's cleanup): close its own runner, and the shared one if it was the last."""
        with self._lock:
            own = self._own.pop(module, None)
            shared = None
            if module in self._shared_users:
                self._shared_users.discard(module)
                if not self._shared_users:
                    shared, self._shared = self._shared, None
        for runner in (own, shared):
            if runner is not None:
                runner.close()

    def users(self) -> set[str]:
        return set(self._shared_users) | set(self._own)


_WORKERS = Workers()


def acquire(module: str, shared: bool = True) -> EngineRunner:
    return _WORKERS.acquire(module, shared)


def release(module: str) -> None:
    _WORKERS.release(module)
