"""A reader study folder as readers and front ends see it: ``study.json`` plus the blinded case files.

Nothing in this file may reveal which case is real: the answer key lives elsewhere (see :mod:`.key`) and is only
opened by the analysis. ``Study.open`` refuses a folder that is incomplete or whose case files were replaced.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any, Optional, Union

from ..checksums import sha256_file
from .errors import StudyError
from .questions import check_questions

FORMAT = "radsynth-reader-study/1"
STUDY_FILE = "study.json"
CASES_DIR = "cases"
CASE_SUFFIX = ".nrrd"
RESPONSES_FILE = "responses.sqlite"
_CASE_ID = re.compile(r"^[0-9a-f]{16}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def study_digest(document: dict[str, Any]) -> str:
    """sha256 of study.json's content without ``key_sha256``, in canonical JSON: the key records it, so a study
    whose orders, cases or questions were edited after building no longer matches its key."""
    body = {k: v for k, v in document.items() if k != "key_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Study:
    """An opened study folder (read-only). Build one with :func:`radsynth.reader.build.build_study`."""

    def __init__(self, folder: Path, document: dict[str, Any]) -> None:
        self.folder = folder
        self._doc = document
        self.study_id: str = document["study_id"]
        self.created: str = document["created"]
        self.seed: int = document["seed"]
        self.cases: list[str] = list(document["cases"])
        self._case_set = frozenset(self.cases)
        self.readers: list[dict[str, str]] = [dict(r) for r in document["readers"]]
        self.questions: list[dict[str, Any]] = copy.deepcopy(document["questions"])
        self.presets: list[dict[str, Any]] = copy.deepcopy(document["presets"])
        self.time_limit_s: Optional[int] = document.get("time_limit_s")
        self.allow_changes: bool = bool(document.get("allow_changes", True))
        self.no_going_back: bool = bool(document.get("no_going_back", False))
        self.key_sha256: str = document["key_sha256"]
        self._orders = {r: list(o) for r, o in document["orders"].items()}
        self._view = document.get("view") or {}
        self._files = document.get("files") or {}

    # -- opening --------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: Union[str, Path]) -> "Study":
        folder = Path(folder)
        path = folder / STUDY_FILE
        if not folder.is_dir():
            raise StudyError(f"Study folder not found: {folder}")
        if not path.is_file():
            raise StudyError(f"{folder} is not a reader study: it has no {STUDY_FILE}. "
                             "Build one with 'radsynth reader build'.")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StudyError(f"{path} cannot be read as JSON ({exc}); the study folder is damaged.") from exc
        _check_document(document)
        study = cls(folder, document)
        study._check_files()
        return study

    def _check_files(self) -> None:
        for case_id in self.cases:
            path = self.case_path(case_id)
            if not path.is_file():
                raise StudyError(f"Case file {CASES_DIR}/{path.name} is missing from the study folder {self.folder}.")
            expected = self._files.get(case_id, {}).get("bytes")
            if expected is not None and path.stat().st_size != expected:
                raise StudyError(f"Case file {CASES_DIR}/{path.name} was changed after the study was built "
                                 "(its size differs from study.json); the study folder was tampered with.")

    def verify(self) -> None:
        """Check every case file against the sha256 recorded at build time (reads every file: seconds)."""
        for case_id in self.cases:
            expected = self._files.get(case_id, {}).get("sha256")
            if expected is None:
                raise StudyError(f"study.json records no checksum for case {case_id}; it was not built by RadSynth.")
            if sha256_file(self.case_path(case_id)) != expected:
                raise StudyError(f"Case file {CASES_DIR}/{case_id}{CASE_SUFFIX} was changed after the study was "
                                 "built (checksum mismatch); the study folder was tampered with.")

    # -- what readers and front ends use ---------------------------------------------------------------------------
    @property
    def reader_ids(self) -> list[str]:
        return [r["reader_id"] for r in self.readers]

    def reader_for_token(self, token: str) -> str:
        for reader in self.readers:
            # constant-time comparison: response timing must not reveal how much of a token was right
            if isinstance(token, str) and hmac.compare_digest(reader["token"].encode(), token.encode()):
                return reader["reader_id"]
        raise StudyError("This reader link or token does not belong to this study. Ask the study organiser for "
                         "your personal link.")

    def order(self, reader_id: str) -> list[str]:
        if reader_id not in self._orders:
            raise StudyError(f"Reader {reader_id!r} is not part of this study (readers: {', '.join(self.reader_ids)}).")
        return list(self._orders[reader_id])

    def case_path(self, case_id: str) -> Path:
        if case_id not in self._case_set:
            raise StudyError(f"Case {case_id!r} is not part of this study.")
        return self.folder / CASES_DIR / f"{case_id}{CASE_SUFFIX}"

    def slice_range(self, case_id: str) -> Optional[tuple[int, int]]:
        """(first, last) axial slice index to show, 0-based and both included, or None for all slices."""
        self.case_path(case_id)  # refuses unknown cases
        rng = (self._view.get(case_id) or {}).get("slice_range")
        return (int(rng[0]), int(rng[1])) if rng else None

    def question(self, question_id: str) -> dict[str, Any]:
        for q in self.questions:
            if q["id"] == question_id:
                return q
        raise StudyError(f"This study does not ask {question_id!r}.")

    def digest(self) -> str:
        return study_digest(self._doc)

    @property
    def document(self) -> dict[str, Any]:
        return copy.deepcopy(self._doc)



def _check_document(doc: Any) -> None:
    def bad(what: str) -> StudyError:
        return StudyError(f"study.json is not a valid RadSynth reader study: {what}.")

    if not isinstance(doc, dict):
        raise bad("it is not a JSON object")
    if doc.get("format") != FORMAT:
        raise bad(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
    for field, kind in (("study_id", str), ("created", str), ("seed", int), ("cases", list), ("readers", list),
                        ("orders", dict), ("questions", list), ("presets", list), ("key_sha256", str)):
        if not isinstance(doc.get(field), kind):
            raise bad(f"'{field}' is missing or not a {kind.__name__}")
    if not _HEX32.match(doc["study_id"]):
        raise bad("'study_id' is not 32 hex digits")
    cases = doc["cases"]
    if not cases or cases != sorted(set(cases)) or not all(isinstance(c, str) and _CASE_ID.match(c) for c in cases):
        raise bad("'cases' must be sorted, unique 16-hex-digit case ids")
    ids = [r.get("reader_id") if isinstance(r, dict) else None for r in doc["readers"]]
    tokens = [r.get("token") if isinstance(r, dict) else None for r in doc["readers"]]
    if not ids or len(set(ids)) != len(ids) or not all(isinstance(t, str) and _HEX32.match(t) for t in tokens):
        raise bad("'readers' need unique ids and 32-hex-digit tokens")
    if set(doc["orders"]) != set(ids):
        raise bad("'orders' must have one order per reader")
    for reader, order in doc["orders"].items():
        if not isinstance(order, list) or sorted(order) != cases:
            raise bad(f"the order of {reader} is not a permutation of the cases")
    check_questions(doc["questions"])
    presets = doc["presets"]
    if not presets or not all(isinstance(p, dict) and isinstance(p.get("name"), str)
                              and isinstance(p.get("window"), (int, float)) and p["window"] > 0
                              and isinstance(p.get("level"), (int, float)) for p in presets):
        raise bad("'presets' need a name, a window > 0 and a level each")
    limit = doc.get("time_limit_s")
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise bad("'time_limit_s' must be a positive whole number of seconds or null")
    view = doc.get("view") or {}
    if not isinstance(view, dict) or not set(view) <= set(cases):
        raise bad("'view' may only name cases of the study")
    for case_id, entry in view.items():
        rng = (entry or {}).get("slice_range") if isinstance(entry, dict) else "bad"
        if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, int) for v in rng)
                                    and 0 <= rng[0] <= rng[1]):
            raise bad(f"the slice range of case {case_id} must be [first, last] with 0 <= first <= last")
    if not re.match(r"^[0-9a-f]{64}$", doc["key_sha256"]):
        raise bad("'key_sha256' is not a sha256 hex digest")
