"""ReaderStudy logic: one reader reads a blinded study in an MRML scene; no Qt, no ``slicer.mrmlScene``.

The case on screen is one scalar volume node named "Case 3 of 20": no case id, file name, source path or label
reaches the scene (no storage node, no attributes; the case files carry no metadata). Answers go straight to the
study's append-only database, so a crash or a restart loses at most the answer being typed, and opening the study
again shows the first unanswered case. The next case is read in a background thread while the reader looks at the
current one, so that Next only has to build the node.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional, Union

from radsynth import mrml
from radsynth.reader.errors import StudyError
from radsynth.reader.responses import ResponseStore
from radsynth.reader.study import Study
from radsynth.volume import Volume, read_volume


class ReaderSession:
    """``ReaderSession(folder, token, scene)``: the reader whose personal token this is, at their resume position."""

    def __init__(self, folder: Union[str, Path], token: str, scene, clock: Callable[[], float] = time.time,
                 prefetch: bool = True) -> None:
        self.study = Study.open(folder)
        self.reader_id = self.study.reader_for_token((token or "").strip())
        self.store = ResponseStore(self.study)
        self.order = self.study.order(self.reader_id)
        self.scene = scene
        self.clock = clock
        self.index = self.store.position(self.reader_id)
        self.node = None
        self.shown_at: Optional[float] = None        # when the current case was put on screen
        self.first_shown_at: Optional[float] = None  # ... for the first time (the time limit counts from here)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reader-prefetch") if prefetch else None
        self._cache: dict[str, Future] = {}
        self._lock = threading.Lock()

    # -- where the reader is ----------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def done(self) -> bool:
        return self.index >= self.total

    @property
    def title(self) -> str:
        return "All cases read" if self.done else f"Case {self.index + 1} of {self.total}"

    @property
    def case_id(self) -> str:
        if self.done:
            raise StudyError("Every case has been read; there is no current case.")
        return self.order[self.index]

    @property
    def can_go_back(self) -> bool:
        return self.index > 0 and not self.study.no_going_back

    def answer(self) -> Optional[dict[str, Any]]:
        """The reader's latest answer to the current case (to fill in the panel), or None."""
        return None if self.done else self.store.latest(self.reader_id).get(self.case_id)

    def time_left(self) -> Optional[float]:
        """Seconds left for the current case, counted from its first showing (also before a restart), as the web
        reader counts them; None without a time limit. Answers after the limit are still saved (the analysis
        counts them as over the limit)."""
        if self.study.time_limit_s is None or self.first_shown_at is None:
            return None
        return self.study.time_limit_s - (self.clock() - self.first_shown_at)

    # -- showing ----------------------------------------------------------------------------------------------------
    def show(self):
        """Put the current case into the scene (replacing the previous one) with the first preset; returns the
        node, or None when every case has been read."""
        self._remove_node()
        if self.done:
            return None
        volume = self._volume(self.case_id)
        node = mrml.volume_to_node(volume, self.scene, self.title)
        for name in list(node.GetAttributeNames() or ()):
            node.RemoveAttribute(name)
        self.node = node
        self.apply_preset(0)
        self.shown_at = self.clock()
        earlier = [row["at"] for row in self.store.shown(self.reader_id) if row["case_id"] == self.case_id]
        self.first_shown_at = min([*earlier, self.shown_at])
        self.store.mark_shown(self.reader_id, self.case_id, self.shown_at)
        self._prefetch(self.index + 1)
        return node

    def apply_preset(self, index: int) -> None:
        if self.node is None:
            return
        presets = self.study.presets
        if not 0 <= index < len(presets):
            raise StudyError(f"This study has {len(presets)} window/level presets.")
        display = self.node.GetDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(float(presets[index]["window"]), float(presets[index]["level"]))

    def slice_range(self) -> Optional[tuple[int, int]]:
        return None if self.done else self.study.slice_range(self.case_id)

    # -- answering and moving -----------------------------------------------------------------------------------------
    def record(self, answers: dict[str, Any]) -> int:
        if self.done or self.shown_at is None:
            raise StudyError("Show a case before answering.")
        return self.store.record(self.reader_id, self.case_id, answers, self.shown_at, max(self.clock(),
                                                                                          self.shown_at))

    def next(self):
        """Move to the next case once the current one is answered; returns its node (None after the last)."""
        if self.done:
            return None
        if self.answer() is None:
            raise StudyError(f"Answer {self.title.lower()} before moving on.")
        self.index += 1
        return self.show()

    def previous(self):
        if self.study.no_going_back:
            raise StudyError("This study does not allow going back to an earlier case.")
        if self.index == 0:
            raise StudyError("This is the first case.")
        self.index -= 1
        return self.show()

    def close(self) -> None:
        self._remove_node()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._cache.clear()

    # -- internals ----------------------------------------------------------------------------------------------------
    def _remove_node(self) -> None:
        if self.node is not None:
            mrml.remove_nodes(self.scene, [self.node])
            self.node = None
            self.shown_at = self.first_shown_at = None

    def _volume(self, case_id: str) -> Volume:
        with self._lock:
            future = self._cache.pop(case_id, None)
        if future is not None:
            try:
                return future.result()
            except Exception:  # a failed prefetch is retried here, where its error reaches the reader
                pass
        return read_volume(self.study.case_path(case_id))

    def _prefetch(self, index: int) -> None:
        if self._pool is None or index >= self.total:
            return
        case_id = self.order[index]
        with self._lock:
            # keep only the case that comes next: memory stays at two volumes
            self._cache = {c: f for c, f in self._cache.items() if c == case_id}
            if case_id not in self._cache:
                self._cache[case_id] = self._pool.submit(read_volume, self.study.case_path(case_id))
