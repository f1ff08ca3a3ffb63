"""Bad input to every tumour command, in-process and with --worker: exit code 2, one clear message, no new file
anywhere (hidden staging folders included) and every input unchanged by checksum.

One case per line in CASES: (what is wrong, the operation, the arguments that make it wrong, the message). A
case's arguments replace the operation's valid base request (BASE), option by option. Placeholders in braces name
files made once by the ``data`` fixture and copied into each case's own folder, so a case that would overwrite an
input overwrites only its copy. The sample CT is lung1 at half the in-plane resolution (256², 1.14 mm) to keep
reading fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.demo import choose_site
from radsynth.geometry import lps_to_ras
from radsynth.sample_data import sample_path
from radsynth.volume import read_volume, write_volume

MASKED = ("remove", "synthesize", "move", "resize", "retexture")
ALL = ("place",) + MASKED
MODES = ("--in-process", "--worker")

#: a valid request per operation; cases change it option by option (None removes an option)
BASE = {
    "remove": {"--image": "{ct}", "--mask": "{tumour}"},
    "synthesize": {"--image": "{ct}", "--mask": "{site}", "--preset": "lung2-tumor"},
    "place": {"--image": "{ct}", "--point-ras": "{site_ras}", "--preset": "lung2-tumor", "--volume-ml": "1"},
    "move": {"--image": "{ct}", "--mask": "{tumour}", "--shift-ras": "0,-5,0"},
    "resize": {"--image": "{ct}", "--mask": "{tumour}", "--scale": "1.2"},
    "retexture": {"--image": "{ct}", "--mask": "{tumour}", "--preset": "lung1-tumor"},
}
#: the option each operation reads its region from (for the cases that swap that file)
REGION = {"remove": "--mask", "synthesize": "--mask", "move": "--mask", "resize": "--mask", "retexture": "--mask",
          "place": "--painted"}
TEXTURED = ("synthesize", "place", "retexture")


def _each(ops, args, message):
    return [(op, args, message) for op in ops]


# kind, [(operation, changed arguments, message)]
KINDS = {
    # -- outputs that are inputs, or each other -------------------------------------------------------------------
    "out is the image": _each(ALL, {"--out": "{ct}"}, "is the same file as the input --image"),
    "out is the region": [(op, {"--out": "{tumour}", REGION[op]: "{tumour}", "--point-ras": None},
                           f"the input {REGION[op]}") for op in ALL],
    "out hard-links the image": _each(ALL, {"--out": "{ct_hardlink}"}, "is a hard link to the input --image"),
    "out symlinks the image": _each(ALL, {"--out": "{ct_symlink}"}, "is a link to the input --image"),
    "out-mask is out": _each(ALL, {"--out-mask": "{out}"}, "--out-mask and --out name the same file"),
    "report is the image": _each(ALL, {"--report": "{ct}"}, "Write --report as .json (got ct.nrrd)"),
    "report is the feature file": _each(TEXTURED, {"--preset": None, "--features": "{features}",
                                                   "--report": "{features}"}, "the input --features"),
    "out is the texture source": _each(TEXTURED, {"--preset": None, "--texture-from": "{ct},{source_tumour}",
                                                  "--out-mask": "{source_tumour}"}, "the input --texture-from"),
    "out-mask is the organ": [("place", {"--organ": "{organ}", "--out-mask": "{organ}"}, "the input --organ")],
    "out is an avoided tumour": [("move", {"--avoid": "{site}", "--out": "{site}"}, "the input --avoid")],
    # -- destinations that cannot be written ----------------------------------------------------------------------
    "out not NRRD": _each(ALL, {"--out": "{tmp}/result.nii.gz"}, "only NRRD keeps the header field"),
    "out is a folder": _each(ALL, {"--out": "{folder}"}, "is a folder"),
    "out under a file": _each(ALL, {"--out": "{ct}/result.nrrd"}, "is a file, not a folder"),
    # -- what the numbers mean -------------------------------------------------------------------------------------
    "NaN voxels in the tumour": _each(ALL, {"--image": "{nan_ct}"}, "voxel(s) that are not numbers (NaN"),
    "all voxels NaN": _each(("remove", "place"), {"--image": "{all_nan_ct}"}, "not numbers (NaN or infinite), all"),
    "not a CT (MRI)": _each(("remove", "place"), {"--image": "{brain}"}, "does not look like a CT"),
    "image not found": _each(("remove",), {"--image": "{tmp}/nope.nrrd"}, "File or folder not found"),
    "empty DICOM folder": _each(("remove", "place"), {"--image": "{empty_dir}"}, "is empty: there is no DICOM"),
    "mask is an image": [(op, {REGION[op]: "{ct}", "--point-ras": None}, "looks like an image, not a label")
                         for op in ALL],
    "probability-map mask": [(op, {REGION[op]: "{probability}", "--point-ras": None}, "fractional values")
                             for op in ALL],
    "organ is an image": [("place", {"--organ": "{ct}"}, "--organ (ct.nrrd): The mask holds negative values")],
    "avoided tumour empty": [("move", {"--avoid": "{empty}"}, "--avoid (empty.nrrd): The mask is empty")],
    "misspelled feature": _each(TEXTURED, {"--preset": None, "--features": "{misspelled}"},
                                "'firstorder_Meen' (did you mean firstorder_Mean?)"),
    "feature file not JSON": _each(("synthesize",), {"--preset": None, "--features": "{ct}"}, "is not valid JSON"),
    "NaN feature value": _each(("retexture",), {"--preset": None, "--features": "{nan_features}"},
                               "not finite numbers"),
    "texture source NaN": _each(("synthesize",), {"--preset": None, "--texture-from": "{nan_ct},{tumour}"},
                                "not numbers (NaN"),
    # -- where a tumour cannot be ----------------------------------------------------------------------------------
    "region in the air": [(op, {"--mask": "{air}"}, "in the air outside the patient's body")
                          for op in ("synthesize",)]
    + [("place", {"--point-ras": None, "--painted": "{air}"}, "in the air outside the patient's body")],
    "point in the air": [("place", {"--point-ras": "{air_ras}"}, "is in the air outside the patient's body")],
    "point outside the organ": [("place", {"--organ": "{organ}", "--point-ras": "{outside_organ_ras}"},
                                 "is outside the organ you named (--organ)")],
    "painted outside the organ": [("place", {"--point-ras": None, "--painted": "{site}", "--organ": "{organ_apart}"},
                                   "outside the organ you named (--organ)")],
    "moved off the image": [("move", {"--shift-ras": "400,0,0"}, "beyond the edge of the image")],
    "moved into the air": [("move", {"--shift-ras": None, "--to-ras": "{air_ras}"}, "The moved tumour lies")],
    # -- ranges, enforced by the options themselves -----------------------------------------------------------------
    "seed -1": _each(ALL, {"--seed": "-1"}, "Invalid value for '--seed'"),
    "steps 1": _each(ALL, {"--steps": "1"}, "Invalid value for '--steps'"),
    "steps 1001": _each(("remove", "place"), {"--steps": "1001"}, "Invalid value for '--steps'"),
    "eta 1.5": _each(("remove", "move"), {"--eta": "1.5"}, "Invalid value for '--eta'"),
    "guidance 11": _each(TEXTURED, {"--guidance": "11"}, "Invalid value for '--guidance'"),
    "guidance NaN": _each(("synthesize",), {"--guidance": "nan"}, "Invalid value for '--guidance'"),
    "margin -1": _each(("remove", "synthesize"), {"--margin": "-1"}, "Invalid value for '--margin'"),
    "volume 0": [("place", {"--volume-ml": "0"}, "Invalid value for '--volume-ml'"),
                 ("resize", {"--scale": None, "--volume-ml": "0"}, "Invalid value for '--volume-ml'")],
    "scale 0": _each(("resize",), {"--scale": "0"}, "Invalid value for '--scale'"),
    # -- options that exclude each other ----------------------------------------------------------------------------
    "point and painted": [("place", {"--painted": "{site}"}, "Give either --point-ras or --painted (not both)")],
    "to and shift": [("move", {"--to-ras": "0,0,0"}, "Give either --to-ras or --shift-ras (not both)")],
    "volume and scale": [("resize", {"--volume-ml": "3"}, "Give either --volume-ml or --scale (not both)")],
    "two texture sources": _each(TEXTURED, {"--features": "{features}"}, "Give exactly one texture source"),
}
CASES = [(kind, op, args, message) for kind, rows in KINDS.items() for op, args, message in rows]


# -- inputs -------------------------------------------------------------------------------------------------------
def _half_resolution(image: sitk.Image, interpolator) -> sitk.Image:
    size = [image.GetSize()[0] // 2, image.GetSize()[1] // 2, image.GetSize()[2]]
    spacing = [image.GetSpacing()[0] * 2, image.GetSpacing()[1] * 2, image.GetSpacing()[2]]
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
                         image.GetDirection(), 0, image.GetPixelID())


def _ras(point_lps) -> str:
    return ",".join(f"{v:.2f}" for v in lps_to_ras(point_lps))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("inputs")
    ct_image = _half_resolution(sitk.ReadImage(str(sample_path("lung1", "image"))), sitk.sitkLinear)
    label = _half_resolution(sitk.ReadImage(str(sample_path("lung1", "label"))), sitk.sitkNearestNeighbor)
    sitk.WriteImage(ct_image, str(folder / "ct.nrrd"), True)
    sitk.WriteImage(label, str(folder / "tumour.nrrd"), True)
    ct, tumour = read_volume(folder / "ct.nrrd"), read_volume(folder / "tumour.nrrd")
    site = choose_site(ct, tumour)
    write_volume(site.mask, folder / "site.nrrd")
    inside = tumour.array > 0
    nan_ct = ct.array.astype(np.float32)
    nan_ct[np.argwhere(inside)[0][0], :, :][inside[np.argwhere(inside)[0][0]]] = np.nan
    write_volume(ct.with_array(nan_ct), folder / "nan_ct.nrrd")
    write_volume(ct.with_array(np.full(ct.shape, np.nan, np.float32)), folder / "all_nan_ct.nrrd")
    # a region in the air around the patient: the air voxel farthest from the body, well inside the image
    from scipy import ndimage
    from radsynth.anatomy import body_mask
    body = body_mask(ct)
    away = ndimage.distance_transform_edt(~body)
    border = np.ones(ct.shape, bool)
    border[1:-1, 30:-30, 30:-30] = False
    away[border] = 0
    away[: ct.shape[0] // 4] = away[-ct.shape[0] // 4:] = 0
    k, j, i = np.unravel_index(int(np.argmax(away)), ct.shape)
    assert away[k, j, i] > 20, "no air far from the body"
    air = np.zeros(ct.shape, np.uint8)
    air[k - 1:k + 2, j - 4:j + 5, i - 4:i + 5] = 1
    write_volume(ct.label_like(air), folder / "air.nrrd")
    prob = site.mask.array.astype(np.float32) * 0.6
    write_volume(ct.with_array(prob), folder / "probability.nrrd")
    write_volume(ct.label_like(np.zeros(ct.shape, np.uint8)), folder / "empty.nrrd")
    # an "organ": a box around the site; a second box elsewhere in the body that does not hold it
    organ = np.zeros(ct.shape, np.uint8)
    centre = np.round(np.argwhere(site.mask.array > 0).mean(0)).astype(int)
    organ[max(centre[0] - 3, 0):centre[0] + 4, centre[1] - 25:centre[1] + 26, centre[2] - 25:centre[2] + 26] = 1
    write_volume(ct.label_like(organ), folder / "organ.nrrd")
    apart = np.zeros(ct.shape, np.uint8)
    apart[centre[0] - 2:centre[0] + 3, 120:140, 118:138] = 1
    apart &= ~organ.astype(bool)
    write_volume(ct.label_like(apart), folder / "organ_apart.nrrd")
    outside_organ = centre + np.array([0, 0, 40 if centre[2] < 128 else -40])   # in the body, beside the box
    (folder / "features.json").write_text(json.dumps({"firstorder_Mean": 20.0}))
    (folder / "misspelled.json").write_text(json.dumps({"firstorder_Meen": 20.0, "glcm_Contrast": 3.0}))
    (folder / "nan_features.json").write_text('{"firstorder_Mean": NaN}')
    (folder / "empty_dir").mkdir()
    (folder / "folder.nrrd").mkdir()
    shutil.copy(folder / "tumour.nrrd", folder / "source_tumour.nrrd")
    shutil.copy(sample_path("brain1", "image"), folder / "brain.nrrd")
    return {"folder": str(folder), "site_ras": _ras(site.center_lps),
            "air_ras": _ras(ct.index_to_physical(np.array([[k, j, i]]))[0]),
            "outside_organ_ras": _ras(ct.index_to_physical(outside_organ[None])[0])}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``, hidden ones included: files with their checksum, folders and links by name."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            out[rel] = ("link" if path.is_symlink() else "dir" if path.is_dir() else _sha256(path))
    return out


def _prepare(data: dict, work: Path, op: str, change: dict) -> list[str]:
    """The argument list of a case, its input files copied into ``work`` (links made there too)."""
    args = {**BASE[op], **change, "--steps": change.get("--steps", "2")}
    if "--out" not in change:
        args["--out"] = "{out}"
    names = {"out": str(work / "result.nrrd"), "out_json": str(work / "result.json"), "tmp": str(work),
             **{k: v for k, v in data.items() if k != "folder"}}
    source = Path(data["folder"])
    text = " ".join(str(v) for v in args.values() if v is not None)
    for entry in source.iterdir():
        key = entry.name.split(".")[0]
        if "{" + key + "}" in text or "{" + key + "_" in text:
            if entry.is_dir():
                (work / entry.name).mkdir()
            else:
                shutil.copy(entry, work / entry.name)
        names[key] = str(work / entry.name)
    if "{ct_hardlink}" in text:
        os.link(work / "ct.nrrd", work / "ct_hardlink.nrrd")
    if "{ct_symlink}" in text:
        os.symlink(work / "ct.nrrd", work / "ct_symlink.nrrd")
    names["ct_hardlink"], names["ct_symlink"] = str(work / "ct_hardlink.nrrd"), str(work / "ct_symlink.nrrd")
    argv = ["tumor", op]
    for flag, value in args.items():
        if value is not None:
            argv += [flag, value.format(**names)]
    return argv


def _plain(text: str) -> str:
    """Output without rich's box drawing and line wrapping, for message matching."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind, op, change, message", CASES, ids=[f"{k}-{op}" for k, op, _, _ in CASES])
def test_bad_input(tmp_path, data, kind, op, change, message, mode):
    work = tmp_path / "case"
    work.mkdir()
    argv = _prepare(data, work, op, change)
    before = _tree(work)
    result = CliRunner().invoke(app, [*argv, mode])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert message in _plain(result.output), result.output
    assert "Traceback" not in result.output
    if result.stderr.startswith("Error:"):          # our refusals are one line; typer's usage errors are a panel
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert _tree(work) == before                    # no new file, no changed input


def test_cases_cover_every_operation_and_kind():
    per_op = {op: {k for k, o, _, _ in CASES if o == op} for op in ALL}
    for kind in ("out is the image", "out is the region", "out-mask is out", "NaN voxels in the tumour",
                 "mask is an image", "seed -1", "steps 1", "out not NRRD"):
        assert all(kind in kinds for kinds in per_op.values()), kind
    assert len(CASES) * len(MODES) >= 200


# -- destinations a user cannot write (no root override) ---------------------------------------------------------
READ_ONLY = [
    ("remove", "--in-process", "--out"),
    ("synthesize", "--worker", "--out"),
    ("place", "--in-process", "--out-mask"),
    ("move", "--worker", "--out-mask"),
    ("resize", "--in-process", "--report"),
    ("retexture", "--worker", "--report"),
]


@pytest.mark.parametrize("op, mode, option", READ_ONLY)
def test_a_read_only_destination_is_refused_before_any_work(tmp_path, data, op, mode, option):
    """The ``radsynth`` console script run without CAP_DAC_OVERRIDE: the read-only folder is refused up front,
    and the other, writable destinations get nothing either."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to drop root's file-permission override")
    work = tmp_path / "case"
    work.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    argv = _prepare(data, work, op, {})
    target = str(locked / ("r.json" if option == "--report" else "m.nrrd"))
    argv += ["--out-mask", target if option == "--out-mask" else str(work / "m.nrrd"),
             "--report", target if option == "--report" else str(work / "r.json")]
    if option == "--out":
        argv[argv.index("--out") + 1] = str(locked / "o.nrrd")
    os.chmod(locked, 0o555)
    before = _tree(tmp_path)
    caps = "-dac_override,-dac_read_search"
    cmd = [str(Path(sys.executable).with_name("radsynth")), *argv, mode]
    if os.geteuid() == 0:
        cmd = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"), timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"Cannot write {option}" in done.stderr and "is not writable (permission denied)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert _tree(tmp_path) == before


# -- what is accepted, and said -----------------------------------------------------------------------------------
def test_padding_below_air_is_not_mistaken_for_a_non_ct_and_labels_are_explained(tmp_path, data):
    """-3024 HU outside the circular field of view is a scanner convention, not a reason to refuse; a mask with two
    labels is used as one region, and the user is told so (output and report)."""
    ct = read_volume(Path(data["folder"]) / "ct.nrrd")
    k, j, i = np.indices(ct.shape)
    padded = ct.array.copy()
    padded[(j - 128) ** 2 + (i - 128) ** 2 > 126 ** 2] = -3024
    write_volume(ct.with_array(padded), tmp_path / "padded.nrrd")
    tumour = read_volume(Path(data["folder"]) / "tumour.nrrd")
    two = tumour.array.astype(np.uint8)
    two[: int(np.argwhere(two).mean(0)[0])] *= 2        # the upper half of the tumour as label 2
    write_volume(tumour.label_like(two), tmp_path / "two_labels.nrrd")
    report = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["tumor", "remove", "--image", str(tmp_path / "padded.nrrd"), "--mask",
                                      str(tmp_path / "two_labels.nrrd"), "--out", str(tmp_path / "out.nrrd"),
                                      "--steps", "2", "--seed", "5", "--report", str(report)])
    assert result.exit_code == 0, result.output
    said = "holds 2 labels (1, 2); RadSynth uses every non-zero voxel, all labels together, as one region"
    assert said in _plain(result.output)
    doc = json.loads(report.read_text())
    assert any(said in w for w in doc["result"]["warnings"])
    assert doc["steps"] == 2 and doc["seed"] == 5
    out = read_volume(tmp_path / "out.nrrd")
    assert out.is_synthetic and np.array_equal(out.array[padded == -3024], padded[padded == -3024])


def test_feature_values_beyond_the_training_tumours_are_said_and_two_step_reports_are_filled(tmp_path, data):
    from radsynth.radiomics import load_preset
    features = tmp_path / "far.json"
    features.write_text(json.dumps({**load_preset("lung2-tumor"), "glcm_Contrast": 5000.0}))
    work = tmp_path / "case"
    work.mkdir()
    argv = _prepare(data, work, "synthesize", {"--preset": None, "--features": str(features)})
    result = CliRunner().invoke(app, [*argv, "--report", str(work / "r.json")])
    assert result.exit_code == 0, result.output
    assert "far.json: glcm_Contrast = 5000 is outside the tumours this model was trained on" in _plain(result.output)
    argv = _prepare(data, work, "move", {"--out": str(work / "moved.nrrd"), "--seed": "3"})
    result = CliRunner().invoke(app, [*argv, "--report", str(work / "m.json"), "--worker"])
    assert result.exit_code == 0, result.output
    doc = json.loads((work / "m.json").read_text())
    assert (doc["steps"], doc["seed"]) == (2, 3) and doc["result"]["settings"]["synthesize"]["steps"] == 2


def test_a_failed_write_leaves_nothing(tmp_path, data, monkeypatch):
    """The disk fills while the mask is written: the volume already written beside it goes too."""
    import radsynth.cli.common as common
    real = common.write_volume

    def full_disk(volume, path):
        if "mask" in Path(path).name:
            raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute\nITK ERROR: NrrdImageIO: "
                               "Write: No space left on device")
        return real(volume, path)

    monkeypatch.setattr(common, "write_volume", full_disk)
    work = tmp_path / "case"
    work.mkdir()
    argv = _prepare(data, work, "remove", {})
    before = _tree(work)
    result = CliRunner().invoke(app, [*argv, "--out-mask", str(work / "out_mask.nrrd"), "--report",
                                      str(work / "r.json")])
    assert result.exit_code == 2, result.output
    assert "Could not write" in result.stderr and "No space left on device" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _tree(work) == before


# -- a CLI that explains itself -------------------------------------------------------------------------------------
def _commands(group=None, prefix=()):
    import typer.main
    group = group or typer.main.get_command(app)
    for name, command in getattr(group, "commands", {}).items():
        if hasattr(command, "commands"):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


def test_every_option_says_its_range_default_and_unit():
    ranged = 0
    for path, command in _commands():
        if path[0] not in ("tumor", "demo", "presets", "sample-data"):
            continue   # other groups are their owners' to check
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            where = f"radsynth {' '.join(path)} {param.opts[0]}"
            assert param.help, f"{where} has no help"
            if getattr(param, "min", None) is not None or getattr(param, "max", None) is not None:
                ranged += 1
                assert "range" in param.help and ("default" in param.help or "unset" in param.help), \
                    f"{where}: {param.help}"
    assert ranged > 30


def test_version_and_group_help():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"radsynth \d+\.\d+\.\d+\S*\n", result.output)
    help_text = CliRunner().invoke(app, ["tumor", "--help"]).output
    for name in ALL:
        assert name in help_text


def test_hints_name_commands_and_options_that_exist():
    """Every `radsynth ...` a message or help text suggests is a real command with real options."""
    root = Path(__file__).resolve().parents[2] / "radsynth"
    hints = set()
    for source in root.rglob("*.py"):
        for hint in re.findall(r"`radsynth ([a-z][a-z -]*?(?: --[a-z-]+)*)`", source.read_text(encoding="utf-8")):
            hints.add(hint.strip())
    assert "presets --show" in hints
    commands = {" ".join(p): c for p, c in _commands()}
    groups = {" ".join(p[:-1]) for p in commands} | {p[0] for p in commands}
    for hint in sorted(hints):
        words = hint.split()
        options = [w for w in words if w.startswith("--")]
        name = " ".join(w for w in words if not w.startswith("--"))
        assert name in commands or name in groups, f"`radsynth {hint}` names no command"
        if options:
            known = {o for p in commands[name].params for o in p.opts}
            assert set(options) <= known, f"`radsynth {hint}`: {set(options) - known} do not exist"
    result = CliRunner().invoke(app, ["presets", "--show"])
    assert result.exit_code == 0 and "firstorder_Mean" in result.output and "lung1-tumor" in result.output


def test_an_empty_dicom_folder_is_one_line_without_itk_warnings(tmp_path, capfd):
    from radsynth.errors import InvalidImageError
    (tmp_path / "dicom").mkdir()
    with pytest.raises(InvalidImageError, match="is empty"):
        read_volume(tmp_path / "dicom")
    (tmp_path / "dicom" / "notes.txt").write_text("not an image")
    with pytest.raises(InvalidImageError, match="not DICOM images"):
        read_volume(tmp_path / "dicom")
    assert "WARNING" not in capfd.readouterr().err   # ITK writes its warnings to fd 2 itself


@pytest.mark.parametrize("mode", MODES)
def test_the_demo_refuses_a_negative_seed(tmp_path, mode):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--seed", "-1", "--steps", "2", mode])
    assert result.exit_code == 2 and "Invalid value for '--seed'" in _plain(result.output)
    assert list(tmp_path.iterdir()) == []
