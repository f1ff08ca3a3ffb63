"""Where results go: every destination is checked before any work, and either all of them are written or none.

``check_destinations(inputs, outputs)`` refuses, before anything runs, a destination that

- is an input or another destination: the same real path (symbolic links resolved) or the same file through a
  hard link (same device and inode), including the files a writer puts beside it (detached NRRD data, sidecars);
- has an extension that cannot be written, or not one of those the caller allows;
- is a folder, is a read-only file, or lies in a folder that cannot be written (tried, not guessed from mode bits).

``stage(writers)`` writes each file into a hidden folder (``.radsynth-partial-*``) beside its destination;
``Staged.commit()`` moves them all into place only then, restoring what was there if a move fails, and
``Staged.discard()`` removes them. ``write_all`` does both. On any failure or cancel nothing new remains and
existing files are as they were. Every I/O failure becomes one ``OutputError`` with one plain message: OSError and
SimpleITK's RuntimeError are caught here, once.

The CLI, the worker (its out paths) and the Slicer library's file export all call these; the Slicer side calls
``check_destinations(inputs, outputs)`` before it saves anything.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from .errors import OutputError
from .provenance import SIDECAR_SUFFIX

PathLike = Union[str, "os.PathLike[str]"]
NRRD_SUFFIXES = (".nrrd", ".nhdr")
VOLUME_SUFFIXES = (*NRRD_SUFFIXES, ".nii", ".nii.gz", ".mha", ".mhd")
JSON_SUFFIXES = (".json",)
STAGING_PREFIX = ".radsynth-partial-"
Writer = Callable[[Path], Any]


@dataclasses.dataclass(frozen=True)
class Destination:
    """One file to write: its path, how the user named it (``--out``), the suffixes allowed and why."""
    path: Path
    label: str = ""
    suffixes: tuple[str, ...] = (*VOLUME_SUFFIXES, *JSON_SUFFIXES)
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.label or str(self.path)


def suffix_of(path: PathLike) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def companions(path: PathLike) -> list[Path]:
    """Files a writer puts beside ``path``: detached NRRD / MetaImage data, the provenance sidecar of other formats."""
    path = Path(path)
    suffix = suffix_of(path)
    stem = path.name[: len(path.name) - len(suffix)]
    out = []
    if suffix == ".nhdr":
        out += [path.with_name(stem + ".raw.gz"), path.with_name(stem + ".raw")]
    elif suffix == ".mhd":
        out += [path.with_name(stem + ".zraw"), path.with_name(stem + ".raw")]
    if suffix in VOLUME_SUFFIXES and suffix not in NRRD_SUFFIXES:
        out.append(path.with_name(path.name + SIDECAR_SUFFIX))
    return out


# -- checks -------------------------------------------------------------------------------------------------------
def _identity(path: Path) -> tuple[str, Optional[tuple[int, int]]]:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return real, None
    return real, (st.st_dev, st.st_ino)


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def _labelled(paths: Union[Mapping[str, Any], Iterable[Any], None]) -> list[tuple[str, Path]]:
    if paths is None:
        return []
    items = paths.items() if isinstance(paths, Mapping) else ((None, p) for p in paths)
    out = []
    for label, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        out += [(label or str(v), Path(v)) for v in values if v is not None and str(v) != ""]
    return out


def _destinations(outputs: Union[Mapping[str, Any], Iterable[Any]]) -> list[Destination]:
    if isinstance(outputs, Mapping):
        items = list(outputs.items())
    else:
        items = [(None, o) for o in outputs]
    out = []
    for label, value in items:
        if value is None:
            continue
        if isinstance(value, Destination):
            out.append(value if value.label or not label else dataclasses.replace(value, label=label))
        elif str(value) != "":
            out.append(Destination(Path(value), label or ""))
    return out


def _check_name(d: Destination) -> None:
    suffix = suffix_of(d.path)
    if suffix not in d.suffixes:
        allowed = " or ".join(d.suffixes)
        why = f": {d.reason}" if d.reason else "."
        raise OutputError(f"Write {d.name} as {allowed} (got {d.path.name}){why}")


def _existing_folder(path: Path) -> Path:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_place(d: Destination, probed: dict[str, Optional[str]]) -> None:
    path = d.path
    try:
        if path.is_dir():
            raise OutputError(f"{d.name} ({path}) is a folder; give a file name, e.g. {path / 'result.nrrd'}.")
        if path.exists() and not os.access(path, os.W_OK):
            raise OutputError(f"{d.name} ({path}) exists and is read-only; RadSynth does not replace it. Remove it "
                              "or choose another name.")
        folder = _existing_folder(Path(os.path.realpath(path)))
        if not folder.is_dir():
            raise OutputError(f"{d.name} ({path}) cannot be written: {folder} is a file, not a folder.")
    except OSError as exc:
        raise OutputError(f"{d.name} ({path}) cannot be written: {_reason(exc)}.") from None
    key = str(folder)
    if key not in probed:   # try it: mode bits, ACLs, read-only mounts and root's overrides all answer here
        try:
            os.rmdir(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
            probed[key] = None
        except OSError as exc:
            probed[key] = _reason(exc)
    if probed[key] is not None:
        raise OutputError(f"Cannot write {d.name} ({path}): the folder {folder} is not writable ({probed[key]}). "
                          "Choose a folder you can write to.")


def _alias_message(d: Destination, path: Path, label: str, other: Path, ident: tuple, other_ident: tuple) -> str:
    own = "" if path == d.path else f" (the file {path.name} written beside it)"
    if ident[0] == other_ident[0]:
        how = "is the same file as" if os.path.abspath(path) == os.path.abspath(other) else "is a link to"
    else:
        how = "is a hard link to"
    return (f"{d.name} ({d.path}){own} {how} the input {label} ({other}): RadSynth never overwrites an input. "
            "Choose another name for the result.")


def check_destinations(inputs: Union[Mapping[str, Any], Iterable[Any], None],
                       outputs: Union[Mapping[str, Any], Iterable[Any]]) -> list[Destination]:
    """Refuse (OutputError) any destination that aliases an input or another destination, has an extension that is
    not allowed, or cannot be written. ``inputs``/``outputs`` map labels (``--image``, ``--out``) to paths, or are
    plain iterables of paths; None entries are skipped; an output may be a :class:`Destination`. Nothing is
    created or changed. Returns the destinations checked."""
    # an input that does not exist cannot be overwritten; reading it fails with its own, clearer message
    ins = [(label, path, ident) for label, path in _labelled(inputs) for ident in [_identity(path)]
           if ident[1] is not None]
    outs = _destinations(outputs)
    probed: dict[str, Optional[str]] = {}
    for d in outs:
        _check_name(d)
        _check_place(d, probed)
    seen: list[tuple[str, Path, tuple]] = []
    for d in outs:
        for path in (d.path, *companions(d.path)):
            ident = _identity(path)
            for label, other, other_ident in ins:
                if _same(ident, other_ident):
                    raise OutputError(_alias_message(d, path, label, other, ident, other_ident))
            for label, other, other_ident in seen:
                if _same(ident, other_ident):
                    raise OutputError(f"{d.name} and {label} name the same file ({path}); give each output its "
                                      "own name.")
            seen.append((d.name, path, ident))
    return outs


# -- all-or-nothing writing ---------------------------------------------------------------------------------------
def _reason(exc: BaseException) -> str:
    """The useful end of an OSError or of SimpleITK's multi-line RuntimeError."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


_live: set["Staged"] = set()
_live_lock = threading.Lock()


class Staged:
    """Files written beside their destinations in hidden staging folders, not yet in place."""

    def __init__(self) -> None:
        self._staging: dict[Path, Path] = {}      # real destination folder -> its staging folder
        self._created: list[Path] = []            # folders made for destinations that did not exist
        self._targets: list[Path] = []            # real destination paths, in writing order
        self.abandoned = False
        with _live_lock:
            _live.add(self)

    def slot(self, destination: PathLike) -> Path:
        """Where to write ``destination`` now: same name, in the staging folder beside it."""
        if self.abandoned:
            raise OutputError("The write was abandoned.")
        real = Path(os.path.realpath(destination))
        folder = real.parent
        if folder not in self._staging:
            missing = []
            probe = folder
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            for path in reversed(missing):
                path.mkdir()
                self._created.append(path)
            self._staging[folder] = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        self._targets.append(real)
        return self._staging[folder] / real.name

    def _moves(self) -> list[tuple[Optional[Path], Path]]:
        """(staged file or None = remove a stale one, destination), data files before their headers."""
        moves: list[tuple[Optional[Path], Path]] = []
        for target in self._targets:
            staging = self._staging[target.parent]
            for extra in companions(target):
                staged = staging / extra.name
                if staged.exists():
                    moves.append((staged, extra))
                elif extra.name.endswith(SIDECAR_SUFFIX) and os.path.lexists(extra):
                    moves.append((None, extra))   # a sidecar left by an earlier file must not mark this one
            moves.append((staging / target.name, target))
        return moves

    def commit(self) -> list[Path]:
        """Move every staged file into place; if one move fails, put back what was there and raise OutputError."""
        done: list[tuple[Path, Optional[Path], bool]] = []
        try:
            for staged, target in self._moves():
                backup = None
                if os.path.lexists(target):
                    backup = self._staging[target.parent] / (".previous-" + target.name)
                    os.replace(target, backup)
                done.append((target, backup, staged is not None))
                if staged is not None:
                    os.replace(staged, target)
        except OSError as exc:
            for target, backup, placed in reversed(done):
                try:
                    if placed and os.path.lexists(target):
                        os.unlink(target)
                    if backup is not None:
                        os.replace(backup, target)
                except OSError:
                    pass
            self.discard(remove_created=True)
            raise OutputError(f"Could not put the results in place: {_reason(exc)}; nothing was changed.") from None
        self.discard(remove_created=False)
        return list(self._targets)

    def discard(self, remove_created: bool = True) -> None:
        """Remove the staging folders (and the folders made for the destinations): nothing new remains."""
        self.abandoned = True
        self._drop(remove_created)
        with _live_lock:
            _live.discard(self)

    def _drop(self, remove_created: bool) -> None:
        # idempotent, and the staging paths are kept: a cancelled run's thread may still be writing into one
        for staging in self._staging.values():
            shutil.rmtree(staging, ignore_errors=True)
        if remove_created:
            for folder in reversed(self._created):
                try:
                    folder.rmdir()
                except OSError:
                    pass


def stage(writers: Union[Mapping[PathLike, Writer], Iterable[tuple[PathLike, Writer]]],
          cancel: Any = None) -> Staged:
    """Run each ``writer(path)`` on a staging path beside its destination; a cancel (``cancel.check()``) is honoured
    between files. On any failure the staged files are removed and OutputError (or the CancelledError) raised."""
    items = list(writers.items()) if isinstance(writers, Mapping) else list(writers)
    staged = Staged()
    try:
        for destination, writer in items:
            if cancel is not None:
                cancel.check()
            try:
                path = staged.slot(destination)
                writer(path)
            except (OSError, RuntimeError) as exc:   # SimpleITK reports a failed write as RuntimeError
                raise OutputError(f"Could not write {destination}: {_reason(exc)}.") from None
            if not path.exists():
                raise OutputError(f"Could not write {destination}: the writer produced no file.")
        if cancel is not None:
            cancel.check()
    except BaseException:
        staged.discard()
        raise
    return staged


def write_all(writers: Union[Mapping[PathLike, Writer], Iterable[tuple[PathLike, Writer]]],
              cancel: Any = None) -> list[Path]:
    """All of ``writers`` written and in place, or none of them (see :func:`stage`)."""
    return stage(writers, cancel).commit()


def discard_all() -> None:
    """Drop every staging still open in this process (a cancelled run being abandoned; called again just before
    the process exits, for a file its thread created meanwhile)."""
    with _live_lock:
        live = list(_live)
    for staged in live:
        staged.abandoned = True
        staged._drop(remove_created=True)
