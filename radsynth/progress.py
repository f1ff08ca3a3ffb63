"""Progress reporting and cooperative cancellation shared by samplers, pipelines, worker, CLI and Slicer."""

from __future__ import annotations

import threading
from typing import Callable, Optional

from .errors import CancelledError

#: progress(fraction in [0, 1], stage name)
ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, stage: str) -> None:
    pass


class CancelToken:
    """Thread-safe flag; long loops call ``check()`` once per step so cancel takes effect within a step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise CancelledError("Cancelled by the user; nothing was changed.")


class StagedProgress:
    """Maps per-stage fractions onto one overall bar, with stage weights that reflect typical run time."""

    def __init__(self, progress: Optional[ProgressFn], weights: dict[str, float],
                 cancel: Optional[CancelToken] = None) -> None:
        self._progress = progress or no_progress
        total = sum(weights.values())
        self._start: dict[str, float] = {}
        self._width: dict[str, float] = {}
        acc = 0.0
        for name, w in weights.items():
            self._start[name] = acc / total
            self._width[name] = w / total
            acc += w
        self.cancel = cancel

    def __call__(self, stage: str, fraction: float = 0.0) -> None:
        if self.cancel is not None:
            self.cancel.check()
        f = self._start[stage] + self._width[stage] * min(max(fraction, 0.0), 1.0)
        self._progress(f, stage)

    def sub(self, stage: str) -> ProgressFn:
        """A progress function for one stage, to hand to a sampler."""
        return lambda fraction, _stage=None: self(stage, fraction)

    def done(self) -> None:
        self._progress(1.0, "done")


def span(progress: Optional[ProgressFn], lo: float, hi: float, prefix: str = "") -> Optional[ProgressFn]:
    """``progress`` for one part of a longer job: fractions mapped onto [lo, hi], stages prefixed (``prefix: …``)."""
    if progress is None:
        return None
    return lambda f, stage: progress(lo + (hi - lo) * f, f"{prefix}: {stage}" if prefix else stage)
