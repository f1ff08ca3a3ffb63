"""radsynth.outputs: destinations checked before any work, and all-or-nothing writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from radsynth import outputs
from radsynth.errors import CancelledError, OutputError
from radsynth.outputs import Destination, check_destinations, stage, write_all
from radsynth.progress import CancelToken
from radsynth.volume import Volume, read_volume, write_volume


def _tree(root) -> dict[str, bytes]:
    """Every file and folder under ``root`` (hidden ones included) with its content."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            found[os.path.relpath(os.path.join(folder, d), root) + "/"] = b""
        for f in files:
            path = os.path.join(folder, f)
            found[os.path.relpath(path, root)] = open(path, "rb").read()
    return found


@pytest.fixture
def place(tmp_path):
    (tmp_path / "ct.nrrd").write_bytes(b"input CT")
    (tmp_path / "mask.nrrd").write_bytes(b"input mask")
    return tmp_path


def _volume(value: int = 0, metadata=None) -> Volume:
    return Volume(np.full((3, 4, 5), value, np.int16), (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1),
                  dict(metadata or {}))


@pytest.mark.parametrize("name, message", [
    ("ct.nrrd", "is the same file as the input --image"),
    ("sub/../ct.nrrd", "is the same file as the input --image"),
    ("mask.nrrd", "the input --mask"),
])
def test_an_output_that_is_an_input_is_refused(place, name, message):
    (place / "sub").mkdir()
    before = _tree(place)
    with pytest.raises(OutputError, match=message):
        check_destinations({"--image": place / "ct.nrrd", "--mask": place / "mask.nrrd"}, {"--out": place / name})
    assert _tree(place) == before


def test_links_to_an_input_are_refused(place):
    os.symlink(place / "ct.nrrd", place / "soft.nrrd")
    os.link(place / "ct.nrrd", place / "hard.nrrd")
    with pytest.raises(OutputError, match="is a link to the input --image"):
        check_destinations({"--image": place / "ct.nrrd"}, {"--out": place / "soft.nrrd"})
    with pytest.raises(OutputError, match="is a hard link to the input --image"):
        check_destinations({"--image": place / "ct.nrrd"}, {"--out": place / "hard.nrrd"})
    # an input given through a link is the same file too
    with pytest.raises(OutputError, match="hard link"):
        check_destinations({"--image": place / "hard.nrrd"}, {"--out": place / "ct.nrrd"})


def test_outputs_may_not_alias_each_other_or_their_companions(place):
    with pytest.raises(OutputError, match="--out-mask and --out name the same file"):
        check_destinations([], {"--out": place / "a.nrrd", "--out-mask": place / "a.nrrd"})
    # a NIfTI result writes a provenance sidecar beside it; a report of that name would replace it
    with pytest.raises(OutputError, match="name the same file"):
        check_destinations([], {"--out": place / "a.nii.gz", "--report": place / "a.nii.gz.radsynth.json"})
    # a detached NRRD header writes its data beside it: that file may not be an input either
    (place / "b.raw.gz").write_bytes(b"input data")
    with pytest.raises(OutputError, match="b.raw.gz written beside it"):
        check_destinations({"--image": place / "b.raw.gz"}, {"--out": place / "b.nhdr"})


def test_names_and_places_that_cannot_be_written(place):
    nrrd_only = Destination(place / "out.nii.gz", "--out", (".nrrd",), "only NRRD keeps the synthetic mark.")
    with pytest.raises(OutputError, match=r"Write --out as .nrrd \(got out.nii.gz\): only NRRD"):
        check_destinations([], [nrrd_only])
    (place / "folder.nrrd").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_destinations([], {"--out": place / "folder.nrrd"})
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_destinations([], {"--out": place / "mask.nrrd" / "out.nrrd"})


def test_a_missing_folder_is_fine_and_not_created(place):
    before = _tree(place)
    assert [d.path for d in check_destinations([], {"--out": place / "new" / "deeper" / "o.nrrd"})] == \
        [place / "new" / "deeper" / "o.nrrd"]
    assert _tree(place) == before


def _without_root_override(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run Python ``code`` without CAP_DAC_OVERRIDE (setpriv), the way a user meets files they cannot write."""
    cmd = [sys.executable, "-c", code, *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is needed to drop root's file-permission override")
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True)


CHECK = ("import sys; from radsynth.outputs import check_destinations; from radsynth.errors import OutputError\n"
         "try:\n    check_destinations([], {'--out': sys.argv[1]})\nexcept OutputError as e:\n"
         "    print(e); sys.exit(3)\n")


def test_a_read_only_folder_or_file_is_refused_without_root_override(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    done = _without_root_override(CHECK, str(folder / "sub" / "out.nrrd"))
    assert done.returncode == 3, done.stderr
    assert "is not writable" in done.stdout and "ermission denied" in done.stdout
    assert os.listdir(folder) == []
    (tmp_path / "locked.nrrd").write_bytes(b"old")
    os.chmod(tmp_path / "locked.nrrd", 0o444)
    done = _without_root_override(CHECK, str(tmp_path / "locked.nrrd"))
    assert done.returncode == 3 and "exists and is read-only" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "locked.nrrd").read_bytes() == b"old"


def test_write_all_puts_every_file_in_place_and_leaves_no_temporaries(place):
    os.link(place / "ct.nrrd", place / "other-name-of-ct.nrrd")
    (place / "old.nrrd").write_bytes(b"old result")
    written = write_all({place / "old.nrrd": lambda p: write_volume(_volume(7), p),
                         place / "new" / "mask.nrrd": lambda p: write_volume(_volume(1), p),
                         place / "r.json": lambda p: p.write_text(json.dumps({"ok": True}))})
    assert written == [place / "old.nrrd", place / "new" / "mask.nrrd", place / "r.json"]
    assert read_volume(place / "old.nrrd").array.max() == 7 and read_volume(place / "new/mask.nrrd").array.max() == 1
    assert json.loads((place / "r.json").read_text()) == {"ok": True}
    assert not [p for p in _tree(place) if outputs.STAGING_PREFIX in p or "partial" in p]
    assert (place / "other-name-of-ct.nrrd").read_bytes() == b"input CT"   # replaced by rename, not rewritten


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: ...\n"
                                                  "ITK ERROR: NrrdImageIO: couldn't fopen: Permission denied")])
def test_a_failed_write_leaves_nothing_new_and_old_files_as_they_were(place, failure):
    (place / "old.nrrd").write_bytes(b"old result")
    before = _tree(place)

    def broken(path):
        path.write_bytes(b"half")
        raise failure

    with pytest.raises(OutputError) as caught:
        write_all([(place / "old.nrrd", lambda p: write_volume(_volume(7), p)),
                   (place / "made" / "for" / "mask.nrrd", broken)])
    assert "Could not write" in str(caught.value)
    assert ("no space left on device" in str(caught.value)) or ("Permission denied" in str(caught.value))
    assert _tree(place) == before          # the made/for folders went too


def test_a_failed_move_puts_back_what_was_there(place, monkeypatch):
    (place / "a.nrrd").write_bytes(b"old a")
    before = _tree(place)
    staged = stage({place / "a.nrrd": lambda p: p.write_bytes(b"new a"), place / "b.nrrd": lambda p: p.write_bytes(b"b")})
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("b.nrrd"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(OutputError, match="input/output error; nothing was changed"):
        staged.commit()
    monkeypatch.undo()
    assert _tree(place) == before


def test_a_cancel_between_files_writes_nothing(place):
    before = _tree(place)
    token = CancelToken()

    def first(path):
        path.write_bytes(b"1")
        token.cancel()

    with pytest.raises(CancelledError):
        write_all({place / "one.nrrd": first, place / "two.nrrd": lambda p: p.write_bytes(b"2")}, token)
    assert _tree(place) == before


def test_discard_all_drops_open_stagings(place):
    before = _tree(place)
    staged = stage({place / "x.nrrd": lambda p: p.write_bytes(b"x")})
    assert _tree(place) != before
    outputs.discard_all()
    assert _tree(place) == before and staged.abandoned
    with pytest.raises(OutputError):
        staged.slot(place / "y.nrrd")


def test_detached_headers_and_sidecars_move_with_their_file(place):
    write_all({place / "d.nhdr": lambda p: sitk.WriteImage(sitk.Image(3, 4, 5, sitk.sitkInt16), str(p), True)})
    assert (place / "d.raw.gz").is_file() and sitk.ReadImage(str(place / "d.nhdr")).GetSize() == (3, 4, 5)
    marked = _volume(5).mark_synthetic("test")
    write_all({place / "s.nii.gz": lambda p: write_volume(marked, p)})
    assert (place / "s.nii.gz.radsynth.json").is_file() and read_volume(place / "s.nii.gz").is_synthetic
    # a real image written over it later must not keep the old synthetic mark
    write_all({place / "s.nii.gz": lambda p: write_volume(_volume(0), p)})
    assert not (place / "s.nii.gz.radsynth.json").exists() and not read_volume(place / "s.nii.gz").is_synthetic
