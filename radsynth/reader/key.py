"""The sealed answer key: which case is real, its groups and its source file. Kept outside the study folder.

study.json records the sha256 of the key's bytes, and the key records the digest of study.json's content, so
neither can be edited after the study was built without the analysis refusing to run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Union

from .errors import AnswerKeyError
from .questions import LABELS
from .study import Study

KEY_FORMAT = "radsynth-reader-key/1"


@dataclasses.dataclass(frozen=True)
class AnswerKey:
    study_id: str
    truth: dict[str, str]                 # case_id -> "real" | "synthetic"
    groups: dict[str, dict[str, Any]]     # case_id -> {"method": ..., ...}
    sources: dict[str, str]               # case_id -> original path


def key_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_key(path: Union[str, Path, None], study: Study) -> AnswerKey:
    """Read and check the key against the study; AnswerKeyError says what is wrong."""
    if path is None:
        raise AnswerKeyError("The answer key is needed to analyse the study: pass --key KEY.json (written beside "
                             "the study folder when it was built).")
    path = Path(path)
    if not path.is_file():
        raise AnswerKeyError(f"Answer key not found: {path}")
    if path.resolve().is_relative_to(study.folder.resolve()):
        raise AnswerKeyError(f"The answer key {path} lies inside the study folder, where readers could see it. "
                             "Move it out of the folder before analysing; the readers' answers may be compromised.")
    data = path.read_bytes()
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnswerKeyError(f"{path} is not a readable answer key ({exc}).") from exc
    if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
        raise AnswerKeyError(f"{path} is not a RadSynth answer key (format {KEY_FORMAT!r} expected).")
    if doc.get("study_id") != study.study_id:
        raise AnswerKeyError(f"{path} is the key of another study (study {doc.get('study_id')}), not of "
                             f"{study.folder} (study {study.study_id}).")
    if sha256_bytes(data) != study.key_sha256:
        raise AnswerKeyError(f"{path} does not match the study: its sha256 differs from the one recorded in "
                             "study.json when the study was built, so the key was changed. Use the original key.")
    if doc.get("study_sha256") != study.digest():
        raise AnswerKeyError(f"study.json in {study.folder} was changed after the study was built (its content "
                             "no longer matches the digest sealed in the key); the analysis would not be valid.")
    truth, groups, sources = doc.get("truth"), doc.get("groups"), doc.get("sources")
    if not (isinstance(truth, dict) and set(truth) == set(study.cases) and set(truth.values()) <= set(LABELS)):
        raise AnswerKeyError(f"{path}: the key's truth does not cover exactly the study's cases.")
    return AnswerKey(study.study_id, dict(truth), dict(groups or {}), dict(sources or {}))
