"""What a reader may see and do, independent of HTTP: the rules of the study applied to one reader at a time.

A reader is known by their token only, and addresses cases by their position in their own order (0, 1, 2, ...):
case ids never leave the server, so nothing a reader receives names a case, and the same position of two readers
is (usually) a different case. Answers go through :class:`radsynth.reader.responses.ResponseStore`.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from ..reader.errors import StudyError
from ..reader.responses import ResponseStore
from ..reader.study import Study
from .cases import DEFAULT_SIZE, CaseCache, CaseImage, load_case

#: fields of a question a reader's page needs (the rest of study.json stays on the server)
_QUESTION_FIELDS = ("id", "kind", "choices", "min", "max", "text")
#: a case opens no faster than this: hides how long its file took to decode when it was not prefetched
DEFAULT_OPEN_FLOOR_S = 0.3


class Refused(StudyError):
    """A request the study's rules do not allow; ``status`` is the HTTP status the web reader answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ReaderSessions:
    """Every reader of one study; safe to call from many request threads at once."""

    def __init__(self, study: Study, size: int = DEFAULT_SIZE, cache_cases: int = 16,
                 open_floor_s: float = DEFAULT_OPEN_FLOOR_S) -> None:
        self.study = study
        self.store = ResponseStore(study)
        self.size = size
        self.open_floor_s = open_floor_s
        self.cache = CaseCache(self._load, capacity=cache_cases)
        self._orders = {r: study.order(r) for r in study.reader_ids}
        self._lock = threading.Lock()
        self._opened: dict[tuple[str, int], float] = {}      # (reader, position) -> when this server last showed it
        self._first_shown: dict[tuple[str, int], float] = {}  # ... -> first time ever shown (time limits)

    def warm(self) -> None:
        """Start loading every reader's resume case in the background (distinct cases, as many as the cache holds),
        so the first case of each reader opens as fast as the next ones."""
        wanted: list[str] = []
        for reader_id, order in self._orders.items():
            position = self.store.position(reader_id)
            if position < len(order) and order[position] not in wanted:
                wanted.append(order[position])
        for case_id in wanted[:self.cache.capacity]:
            self.cache.prefetch(case_id)

    def _load(self, case_id: str) -> CaseImage:
        return load_case(self.study.case_path(case_id), self.size, self.study.slice_range(case_id))

    # -- who is asking ---------------------------------------------------------------------------------------------
    def reader(self, token: str) -> str:
        try:
            return self.study.reader_for_token(token)
        except StudyError as exc:
            raise Refused(403, str(exc)) from None

    def total(self, reader_id: str) -> int:
        return len(self._orders[reader_id])

    # -- what the page asks for ------------------------------------------------------------------------------------
    def state(self, reader_id: str) -> dict[str, Any]:
        position = self.store.position(reader_id)
        if position < self.total(reader_id):
            self.cache.prefetch(self._orders[reader_id][position])
        return {
            "position": position, "total": self.total(reader_id),
            "questions": [{k: q[k] for k in _QUESTION_FIELDS if k in q} for q in self.study.questions],
            "presets": [{"name": p["name"], "window": p["window"], "level": p["level"]} for p in self.study.presets],
            "allow_changes": self.study.allow_changes, "no_going_back": self.study.no_going_back,
            "time_limit_s": self.study.time_limit_s, "size": self.size,
        }

    def open_case(self, reader_id: str, position: int) -> dict[str, Any]:
        started = time.monotonic()
        case_id = self._allowed(reader_id, position)
        image = self.cache.get(case_id)
        now = time.time()
        self.store.mark_shown(reader_id, case_id, now)
        key = (reader_id, position)
        with self._lock:
            self._opened[key] = now
        first = self._first_shown_at(reader_id, position, case_id, now)
        order = self._orders[reader_id]
        if position + 1 < len(order):
            self.cache.prefetch(order[position + 1])
        previous = self.store.latest(reader_id).get(case_id)
        answer = {
            "position": position, "total": len(order), "slices": image.n_slices, "size": image.size,
            "answers": previous, "editable": previous is None or self.study.allow_changes,
            "time_left_s": self._time_left(first, now),
        }
        wait = self.open_floor_s - (time.monotonic() - started)
        if wait > 0:
            time.sleep(wait)
        return answer

    def slice(self, reader_id: str, position: int, k: int) -> bytes:
        case_id = self._allowed(reader_id, position)
        with self._lock:
            opened = (reader_id, position) in self._opened
            first = self._first_shown.get((reader_id, position))
        if not opened:
            raise Refused(409, "Open this case before asking for its slices (reload the page).")
        if self._time_left(first, time.time()) == 0:
            raise Refused(410, "The time for this case is up; please answer.")
        image = self.cache.get(case_id)
        try:
            return image.slice_bytes(k)
        except IndexError:
            raise Refused(404, f"This case has slices 1 to {image.n_slices}.") from None

    def answer(self, reader_id: str, position: int, answers: Any) -> dict[str, Any]:
        case_id = self._allowed(reader_id, position)
        with self._lock:
            shown_at = self._opened.get((reader_id, position))
        if shown_at is None:
            raise Refused(409, "This case was not shown yet; open it before answering.")
        answered_at = max(time.time(), shown_at)
        try:
            self.store.record(reader_id, case_id, answers, shown_at, answered_at)
        except StudyError as exc:
            raise Refused(409, str(exc)) from None
        return {"position": self.store.position(reader_id), "total": self.total(reader_id)}

    # -- rules ------------------------------------------------------------------------------------------------------
    def _allowed(self, reader_id: str, position: int) -> str:
        """The case id at ``position`` when this reader may look at it now; otherwise Refused."""
        order = self._orders[reader_id]
        if not 0 <= position < len(order):
            raise Refused(404, f"There is no case {position + 1}: this reading list has {len(order)} cases.")
        current = self.store.position(reader_id)
        if position > current:
            raise Refused(409, f"Please answer case {current + 1} first.")
        if position < current and self.study.no_going_back:
            raise Refused(409, "This study does not allow going back to earlier cases.")
        return order[position]

    def _first_shown_at(self, reader_id: str, position: int, case_id: str, now: float) -> float:
        key = (reader_id, position)
        with self._lock:
            known = self._first_shown.get(key)
        if known is None:
            # a restarted server still counts the time from the first showing before the restart
            earlier = [row["at"] for row in self.store.shown(reader_id) if row["case_id"] == case_id]
            known = min(earlier, default=now)
        with self._lock:
            self._first_shown[key] = min(known, self._first_shown.get(key, known))
            return self._first_shown[key]

    def _time_left(self, first: Optional[float], now: float) -> Optional[int]:
        limit = self.study.time_limit_s
        if limit is None:
            return None
        if first is None:
            return int(limit)
        return max(0, int(round(limit - (now - first))))
