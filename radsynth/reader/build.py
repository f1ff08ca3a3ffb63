"""Build a blinded reader study from real and synthetic volumes.

Everything is written into a hidden partial folder beside ``out`` and moved into place at the end, so a failure
(unreadable input, a real case that carries the synthetic mark, no room on disk) leaves nothing behind.
Cases are written in case-id order, which is random with respect to the labels, so neither file creation order,
inode numbers nor change times group real and synthetic cases; modification times are then set to one instant.
"""

from __future__ import annotations

import dataclasses
import hmac
import hashlib
import json
import os
import secrets
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..checksums import sha256_file
from ..outputs import Destination, check_destinations
from ..progress import ProgressFn, no_progress
from ..volume import PROVENANCE_KEY, read_volume
from . import blind
from .errors import StudyError
from .key import KEY_FORMAT, key_bytes, sha256_bytes
from .questions import REAL, SYNTHETIC, make_questions
from .study import CASE_SUFFIX, CASES_DIR, FORMAT, STUDY_FILE, Study, study_digest

PathLike = Union[str, Path]
DEFAULT_PRESETS = ({"name": "Lung", "window": 1500, "level": -600},
                   {"name": "Mediastinum", "window": 400, "level": 40})


@dataclasses.dataclass
class CaseInput:
    path: Path
    label: str                                  # "real" | "synthetic"
    group: dict[str, Any] = dataclasses.field(default_factory=dict)   # extra groups for the analysis


@dataclasses.dataclass
class BuildResult:
    study: Study
    key_path: Path
    warnings: list[str]


def parse_preset(text: str) -> dict[str, Any]:
    """'NAME:W:L' (e.g. Lung:1500:-600) → preset dict."""
    parts = text.rsplit(":", 2)
    try:
        name, window, level = parts[0].strip(), float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise StudyError(f"Preset {text!r}: write it as NAME:WINDOW:LEVEL, e.g. Lung:1500:-600.") from None
    if not name or window <= 0:
        raise StudyError(f"Preset {text!r}: the name must not be empty and the window must be > 0.")
    as_num = (lambda v: int(v) if float(v).is_integer() else v)
    return {"name": name, "window": as_num(window), "level": as_num(level)}


def parse_range(text: str, what: str) -> tuple[int, int]:
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        raise StudyError(f"{what} {text!r}: write FIRST:LAST with whole numbers, e.g. 10:40.") from None
    if first < 0 or last < first:
        raise StudyError(f"{what} {text!r}: need 0 <= FIRST <= LAST (indices start at 0, both ends included).")
    return first, last


def parse_roi(text: str) -> blind.Box:
    """'I0:I1,J0:J1,K0:K1' voxel ranges as Slicer's IJK shows them, both ends included."""
    parts = text.split(",")
    if len(parts) != 3:
        raise StudyError(f"Region {text!r}: write I0:I1,J0:J1,K0:K1 (voxel indices, both ends included).")
    return tuple(parse_range(p, "Region") for p in parts)  # type: ignore[return-value]


def build_study(cases: Sequence[CaseInput], out: PathLike, key_out: Optional[PathLike] = None, readers: int = 2,
                seed: Optional[int] = None, likert: Sequence[str] = (), comment: bool = True,
                presets: Optional[Sequence[dict[str, Any]]] = None, time_limit_s: Optional[int] = None,
                allow_changes: bool = True, no_going_back: bool = False, roi: Optional[blind.Box] = None,
                slices: Optional[tuple[int, int]] = None, progress: ProgressFn = no_progress) -> BuildResult:
    out = Path(out)
    key_path = Path(key_out) if key_out is not None else out.with_name(out.name + ".key.json")
    _check_request(cases, out, key_path, readers, time_limit_s)
    questions = make_questions(likert, comment)
    presets = list(presets) if presets else [dict(p) for p in DEFAULT_PRESETS]
    seed = secrets.randbelow(2 ** 31) if seed is None else int(seed)
    secret = secrets.token_bytes(32)
    # HMAC of source path + index: ids cannot be recomputed from the sources without the secret, which is dropped
    ids = [hmac.new(secret, f"{c.path.resolve()}\n{n}".encode(), hashlib.sha256).hexdigest()[:16]
           for n, c in enumerate(cases)]
    if len(set(ids)) != len(ids):
        raise StudyError("Two cases got the same id; build the study again.")  # 2^-64: never in practice
    by_id = dict(zip(ids, cases))
    order = sorted(ids)

    partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    warnings: list[str] = []
    try:
        (partial / CASES_DIR).mkdir(parents=True)
        truth, groups, sources, grids, view = {}, {}, {}, {}, {}
        for n, case_id in enumerate(order):
            progress(n / (len(order) + 1), "writing cases")
            case = by_id[case_id]
            volume = read_volume(case.path)
            marked = volume.is_synthetic
            if case.label == REAL and marked:
                raise StudyError(f"{case.path} is listed as real but carries the RadSynth synthetic mark "
                                 "(RadSynth.Synthetic=1). List it under --synthetic, or check the inputs.")
            if case.label == SYNTHETIC and not marked:
                warnings.append(f"{case.path} is listed as synthetic but has no RadSynth synthetic mark.")
            method = ("real" if case.label == REAL
                      else volume.metadata.get(PROVENANCE_KEY, "").split(";")[-1].strip() or "unknown")
            volume = blind.crop(volume, roi)
            array, clipped = blind.to_int16(volume.array)
            if clipped:
                warnings.append(f"{case.path}: {clipped} voxels lay outside the int16 range and were clipped.")
            volume = volume.with_array(array)
            volume.metadata = {}
            if slices is not None:
                if slices[1] >= volume.shape[0]:
                    raise StudyError(f"Slice range {slices[0]}:{slices[1]} does not fit {case.path}, which has "
                                     f"{volume.shape[0]} slices (indices start at 0).")
                view[case_id] = {"slice_range": [slices[0], slices[1]]}
            blind.write_case(volume, partial / CASES_DIR / f"{case_id}{CASE_SUFFIX}")
            truth[case_id], sources[case_id] = case.label, str(case.path.resolve())
            groups[case_id] = {"method": method, **case.group}
            grids.setdefault(case.label, set()).add(
                (volume.shape, tuple(round(float(s), 3) for s in volume.spacing)))
        progress(len(order) / (len(order) + 1), "equalizing files")
        if grids.get(REAL, set()).isdisjoint(grids.get(SYNTHETIC, set())):
            warnings.append("No real case has the grid (size and spacing) of a synthetic case: readers can tell them "
                            "apart by their dimensions. Resample or crop the inputs to common grids (or use --roi).")
        files = _equalize(partial / CASES_DIR, order)

        reader_list = [{"reader_id": f"R{i + 1}", "token": secrets.token_hex(16)} for i in range(readers)]
        created = datetime.now(timezone.utc).replace(microsecond=0)
        document: dict[str, Any] = {
            "format": FORMAT, "study_id": uuid.uuid4().hex, "created": created.isoformat().replace("+00:00", "Z"),
            "seed": seed, "cases": order, "readers": reader_list,
            # reader i (0-based) reads the sorted cases in the permutation of default_rng(seed + i)
            "orders": {r["reader_id"]: [order[j] for j in np.random.default_rng(seed + i).permutation(len(order))]
                       for i, r in enumerate(reader_list)},
            "questions": questions, "presets": presets, "view": view, "time_limit_s": time_limit_s,
            "allow_changes": bool(allow_changes), "no_going_back": bool(no_going_back), "files": files,
        }
        key = {"format": KEY_FORMAT, "study_id": document["study_id"], "study_sha256": study_digest(document),
               "truth": truth, "groups": groups, "sources": sources}
        sealed = key_bytes(key)
        document["key_sha256"] = sha256_bytes(sealed)
        (partial / STUDY_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        stamp = created.timestamp()
        for path in [*(partial / CASES_DIR).iterdir(), partial / CASES_DIR, partial / STUDY_FILE, partial]:
            os.utime(path, (stamp, stamp))
        key_tmp = key_path.with_name(f".{key_path.name}.partial")
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key_tmp.write_bytes(sealed)
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(partial, out)
        os.replace(key_tmp, key_path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if "key_tmp" in locals():
            key_tmp.unlink(missing_ok=True)
        raise
    progress(1.0, "done")
    return BuildResult(Study.open(out), key_path, warnings)


def _check_request(cases: Sequence[CaseInput], out: Path, key_path: Path, readers: int,
                   time_limit_s: Optional[int]) -> None:
    labels = [c.label for c in cases]
    if REAL not in labels or SYNTHETIC not in labels:
        raise StudyError("A reader study needs at least one real and one synthetic volume (--real and --synthetic).")
    if set(labels) - {REAL, SYNTHETIC}:
        raise StudyError(f"Case labels must be 'real' or 'synthetic', got {sorted(set(labels) - {REAL, SYNTHETIC})}.")
    seen: dict[Path, str] = {}
    for case in cases:
        if not case.path.exists():
            raise StudyError(f"Input volume not found: {case.path}")
        resolved = case.path.resolve()
        if resolved in seen:
            raise StudyError(f"{case.path} is listed twice (as {seen[resolved]} and as {case.label}).")
        seen[resolved] = case.label
    if not 1 <= readers <= 1000:
        raise StudyError(f"The number of readers must be between 1 and 1000 (got {readers}).")
    if time_limit_s is not None and time_limit_s <= 0:
        raise StudyError("The time limit must be a positive number of seconds.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StudyError(f"{out} already exists and is not an empty folder; choose a new study folder.")
    if key_path.resolve().is_relative_to(out.resolve()):
        raise StudyError(f"The answer key must be written outside the study folder (got {key_path}), or readers "
                         "could open it.")
    if key_path.exists():
        raise StudyError(f"{key_path} already exists; an answer key is never overwritten. Choose another --key-out.")
    # before any case is written: the key's folder must be writable (the study folder is made beside it)
    check_destinations([c.path for c in cases], [Destination(key_path, "--key-out", (".json",))])


def _equalize(cases_dir: Path, order: Sequence[str]) -> dict[str, dict[str, Any]]:
    paths = [cases_dir / f"{case_id}{CASE_SUFFIX}" for case_id in order]
    size = blind.common_size(paths)
    files = {}
    for case_id, path in zip(order, paths):
        blind.pad_to(path, size)
        files[case_id] = {"bytes": size, "sha256": sha256_file(path)}
    return files
