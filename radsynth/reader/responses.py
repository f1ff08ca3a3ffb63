"""Readers' answers in an embedded SQLite database in the study folder, append-only.

One row per answer (reader, case, answers as JSON, shown_at, answered_at, recorded_at); a changed answer is a new
row, and triggers make UPDATE and DELETE fail, so nothing is ever overwritten. Every call opens its own connection
(safe across threads and processes), the database runs in WAL mode with synchronous=FULL, and each answer is its own
committed transaction: killing the reader mid-study loses at most the answer not yet sent.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from .errors import StudyError
from .questions import validate_answers
from .study import RESPONSES_FILE, Study

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
  id INTEGER PRIMARY KEY AUTOINCREMENT, reader_id TEXT NOT NULL, case_id TEXT NOT NULL, answers TEXT NOT NULL,
  shown_at REAL NOT NULL, answered_at REAL NOT NULL, recorded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shown (
  id INTEGER PRIMARY KEY AUTOINCREMENT, reader_id TEXT NOT NULL, case_id TEXT NOT NULL, at REAL NOT NULL,
  recorded_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS answers_by_reader ON answers (reader_id, case_id);
CREATE INDEX IF NOT EXISTS shown_by_reader ON shown (reader_id, case_id);
CREATE TRIGGER IF NOT EXISTS answers_keep_1 BEFORE UPDATE ON answers BEGIN SELECT RAISE(ABORT, 'append-only'); END;
CREATE TRIGGER IF NOT EXISTS answers_keep_2 BEFORE DELETE ON answers BEGIN SELECT RAISE(ABORT, 'append-only'); END;
CREATE TRIGGER IF NOT EXISTS shown_keep_1 BEFORE UPDATE ON shown BEGIN SELECT RAISE(ABORT, 'append-only'); END;
CREATE TRIGGER IF NOT EXISTS shown_keep_2 BEFORE DELETE ON shown BEGIN SELECT RAISE(ABORT, 'append-only'); END;
"""
BUSY_TIMEOUT_S = 30.0


class ResponseStore:
    def __init__(self, study: Study) -> None:
        self.study = study
        self.path: Path = study.folder / RESPONSES_FILE
        self._orders = {r: study.order(r) for r in study.reader_ids}
        self._index = {r: {c: i for i, c in enumerate(o)} for r, o in self._orders.items()}
        if self.path.exists():
            with self._connect(write=False) as db:
                self._check_owner(db)

    # -- connections ----------------------------------------------------------------------------------------------
    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StudyError(f"Cannot open the answers database {self.path}: {exc}") from exc
        try:
            if write:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            yield db
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"The answers database {self.path} could not be used: {exc}") from exc
        finally:
            db.close()

    def _check_owner(self, db: sqlite3.Connection) -> None:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'study_id'").fetchone()
        except sqlite3.OperationalError:
            return  # created by another process that has not committed its schema yet
        if row is not None and row[0] != self.study.study_id:
            raise StudyError(f"{self.path} holds answers of another study ({row[0]}); it does not belong in "
                             f"{self.study.folder}.")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the checks before an insert see every answer committed by anyone else."""
        with self._connect(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.strip().split(";\n"):
                    db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('study_id', ?), ('schema', ?)",
                           (self.study.study_id, SCHEMA_VERSION))
                self._check_owner(db)
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- writing --------------------------------------------------------------------------------------------------
    def record(self, reader_id: str, case_id: str, answers: dict, shown_at: float, answered_at: float) -> int:
        """Append one answer; returns its row id. Refuses (StudyError) an answer that does not fit the questions,
        a second answer when the study does not allow changes, and going back when the study forbids it."""
        index = self._case_index(reader_id, case_id)
        clean = validate_answers(self.study.questions, answers)
        shown_at, answered_at = _time(shown_at, "shown_at"), _time(answered_at, "answered_at")
        if answered_at < shown_at:
            raise StudyError("An answer cannot be given before its case was shown (answered_at < shown_at).")
        with self._write() as db:
            if not self.study.allow_changes and db.execute(
                    "SELECT 1 FROM answers WHERE reader_id = ? AND case_id = ? LIMIT 1", (reader_id, case_id)
            ).fetchone():
                raise StudyError(f"Case {index + 1} was already answered and this study does not allow changing "
                                 "an answer.")
            if self.study.no_going_back and self._moved_past(db, reader_id, index):
                raise StudyError(f"Case {index + 1} lies behind you and this study does not allow going back.")
            cursor = db.execute(
                "INSERT INTO answers (reader_id, case_id, answers, shown_at, answered_at, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (reader_id, case_id, json.dumps(clean, sort_keys=True), shown_at, answered_at, time.time()))
            return int(cursor.lastrowid)

    def mark_shown(self, reader_id: str, case_id: str, at: float) -> None:
        """Record that a case was put on screen (resume, no-going-back and the reading-time audit use it)."""
        index = self._case_index(reader_id, case_id)
        at = _time(at, "at")
        with self._write() as db:
            if self.study.no_going_back and self._moved_past(db, reader_id, index):
                raise StudyError(f"Case {index + 1} lies behind you and this study does not allow going back.")
            db.execute("INSERT INTO shown (reader_id, case_id, at, recorded_at) VALUES (?, ?, ?, ?)",
                       (reader_id, case_id, at, time.time()))

    def _moved_past(self, db: sqlite3.Connection, reader_id: str, index: int) -> bool:
        later = set(self._orders[reader_id][index + 1:])
        seen = {c for (c,) in db.execute("SELECT case_id FROM answers WHERE reader_id = ? UNION "
                                         "SELECT case_id FROM shown WHERE reader_id = ?", (reader_id, reader_id))}
        return bool(later & seen)

    # -- reading --------------------------------------------------------------------------------------------------
    def latest(self, reader_id: str) -> dict[str, dict[str, Any]]:
        """The latest answer (the answers dict) per case this reader answered."""
        self.study.order(reader_id)
        return {row["case_id"]: row["answers"] for row in self.rows(reader_id)}

    def position(self, reader_id: str) -> int:
        """Index in the reader's order of the first unanswered case (len(order) when every case is answered)."""
        answered = set(self.latest(reader_id))
        order = self._orders[reader_id]
        return next((i for i, c in enumerate(order) if c not in answered), len(order))

    def rows(self, reader_id: Optional[str] = None) -> list[dict[str, Any]]:
        """Every answer row in the order recorded (optionally of one reader)."""
        found = self._select("SELECT id, reader_id, case_id, answers, shown_at, answered_at, recorded_at FROM answers",
                             reader_id)
        return [{"id": r[0], "reader_id": r[1], "case_id": r[2], "answers": json.loads(r[3]), "shown_at": r[4],
                 "answered_at": r[5], "recorded_at": r[6]} for r in found]

    def shown(self, reader_id: Optional[str] = None) -> list[dict[str, Any]]:
        found = self._select("SELECT reader_id, case_id, at FROM shown", reader_id)
        return [{"reader_id": r[0], "case_id": r[1], "at": r[2]} for r in found]

    def _select(self, sql: str, reader_id: Optional[str]) -> list[tuple]:
        """Rows of ``sql`` (optionally of one reader) in the order written; none before the first answer."""
        if not self.path.exists():
            return []
        args: tuple = ()
        if reader_id is not None:
            sql, args = sql + " WHERE reader_id = ?", (reader_id,)
        with self._connect(write=False) as db:
            try:
                return db.execute(sql + " ORDER BY id", args).fetchall()
            except sqlite3.OperationalError:
                return []  # the schema is not committed yet: no answers

    def _case_index(self, reader_id: str, case_id: str) -> int:
        self.study.order(reader_id)  # refuses unknown readers
        index = self._index[reader_id].get(case_id)
        if index is None:
            raise StudyError(f"Case {case_id!r} is not one of reader {reader_id}'s cases.")
        return index


def _time(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise StudyError(f"'{name}' must be a time in seconds since the epoch (got {value!r}).")
    return float(value)
