"""The ``radsynth`` command line on the real sample chest CTs with the bundled demo models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.demo import OUT_NAMES, choose_site
from radsynth.radiomics import load_preset, texture_features
from radsynth.sample_data import sample_path
from radsynth.volume import SYNTHETIC_KEY, read_volume, write_volume

MODELS = os.environ.get("RADSYNTH_TEST_MODELS")   # None: the bundled demo models
FAST = "4"                                         # sampler steps


def radsynth(*args: str):
    extra = ["--models", MODELS] if MODELS and args[0] != "presets" else []
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(scope="module")
def lung2() -> tuple[Path, Path]:
    return sample_path("lung2", "image"), sample_path("lung2", "label")


@pytest.fixture(scope="module")
def lung1_site(tmp_path_factory) -> tuple[Path, Path]:
    """lung1 and a tumour-free site in its lung, chosen the way the demo does."""
    image = read_volume(sample_path("lung1", "image"))
    site = choose_site(image, read_volume(sample_path("lung1", "label")))
    path = tmp_path_factory.mktemp("site") / "site.nrrd"
    write_volume(site.mask, path)
    return sample_path("lung1", "image"), path


def _far_from(mask: np.ndarray, spacing_ijk, mm: float) -> np.ndarray:
    return ndimage.distance_transform_edt(mask == 0, sampling=np.asarray(spacing_ijk)[::-1]) > mm


def test_remove_writes_marked_int16_nrrd(tmp_path, lung2):
    image_path, label_path = lung2
    out, out_mask, report = tmp_path / "removed.nrrd", tmp_path / "region.nrrd", tmp_path / "r.json"
    result = radsynth("tumor", "remove", "--image", str(image_path), "--mask", str(label_path), "--out", str(out),
                      "--out-mask", str(out_mask), "--report", str(report), "--steps", FAST)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout

    written = sitk.ReadImage(str(out))
    assert written.GetMetaData(SYNTHETIC_KEY) == "1"
    assert written.GetPixelID() == sitk.sitkInt16
    original = sitk.ReadImage(str(image_path))
    for attr in ("GetSize", "GetOrigin", "GetSpacing", "GetDirection"):
        assert getattr(written, attr)() == pytest.approx(getattr(original, attr)())
    before, after = sitk.GetArrayFromImage(original), sitk.GetArrayFromImage(written)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    far = _far_from(label, original.GetSpacing(), 10.0)
    assert np.array_equal(after[far], before[far])                       # bit-identical away from the tumour
    assert not np.array_equal(after[label > 0], before[label > 0])       # and changed where it was

    doc = json.loads(report.read_text())
    assert doc["operation"] == "remove" and doc["steps"] == int(FAST) and doc["software"]["radsynth"]
    assert doc["result"]["timings_s"]["fill"] > 0 and doc["result"]["models"]
    assert doc["result"]["settings"]["removal"] == "inpaint"      # the default since ADR 0012
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out_mask))) > 0, label > 0)


def test_synthesize_with_preset(tmp_path, lung1_site):
    image_path, site = lung1_site
    out, report = tmp_path / "tumour.nrrd", tmp_path / "r.json"
    result = radsynth("tumor", "synthesize", "--image", str(image_path), "--mask", str(site),
                      "--preset", "lung2-tumor", "--out", str(out), "--report", str(report), "--steps", FAST)
    assert result.exit_code == 0, result.output
    assert sitk.ReadImage(str(out)).GetMetaData(SYNTHETIC_KEY) == "1"
    rows = json.loads(report.read_text())["result"]["tables"]["features"]
    preset = load_preset("lung2-tumor")
    assert rows and all(r["target"] == pytest.approx(preset[r["name"]]) for r in rows)
    assert all(np.isfinite(r["achieved"]) for r in rows)


def test_synthesize_texture_from_a_tumour(tmp_path, lung1_site, lung2):
    image_path, site = lung1_site
    out, report = tmp_path / "tumour.nrrd", tmp_path / "r.json"
    result = radsynth("tumor", "synthesize", "--image", str(image_path), "--mask", str(site),
                      "--texture-from", f"{lung2[0]},{lung2[1]}", "--guidance", "1.5",
                      "--out", str(out), "--report", str(report), "--steps", FAST)
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())
    expected = texture_features(read_volume(lung2[0]), read_volume(lung2[1]))
    assert all(r["target"] == pytest.approx(expected[r["name"]]) for r in doc["result"]["tables"]["features"])
    assert doc["inputs"]["texture_from"] == [str(lung2[0]), str(lung2[1])] and doc["guidance"] == 1.5


def test_synthesize_with_a_slider_value_in_the_worker(tmp_path, lung1_site):
    """--set moves one feature; the engine carries correlated features along and keeps the rest (worker path)."""
    image_path, site = lung1_site
    out, report = tmp_path / "tumour.nrrd", tmp_path / "r.json"
    result = radsynth("tumor", "synthesize", "--image", str(image_path), "--mask", str(site), "--preset",
                      "lung2-tumor", "--set", "firstorder_Mean=90", "--out", str(out), "--report", str(report),
                      "--steps", FAST, "--worker")
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())["result"]
    target = {r["name"]: r["target"] for r in doc["tables"]["features"]}
    preset = load_preset("lung2-tumor")
    assert target["firstorder_Mean"] == 90.0 and preset["firstorder_Mean"] < 60.0
    # the median rises with the mean in any CT training set; a plain override would have left it at the preset's
    assert target["firstorder_Median"] > preset["firstorder_Median"] + 10.0
    assert doc["settings"]["texture_overrides"] == {"firstorder_Mean": 90.0}
    assert "conditional mean" in doc["settings"]["texture_fill"]
    assert doc["settings"]["texture_outside_training"] == {} and "Warning" not in result.output
    assert doc["settings"]["texture_unfollowed"] == {}, "the mean slider is one the demo model follows"


def test_a_slider_the_model_does_not_follow_is_flagged(tmp_path, lung1_site):
    from radsynth.models import read_card
    from radsynth.pipelines.loading import texture_folder
    from radsynth.pipelines.texture_fill import unfollowed

    expected = unfollowed(read_card(texture_folder(MODELS)), ["firstorder_Entropy"])   # as the card records it
    output, settings = _synthesize_setting(tmp_path, lung1_site, "firstorder_Entropy=4.0")
    assert settings["texture_unfollowed"].keys() == expected.keys()
    assert ("does not follow firstorder_Entropy" in output) == bool(expected)


def _synthesize_setting(tmp_path, lung1_site, setting: str) -> tuple[str, dict]:
    """(CLI output, report settings) of a synthesis from the lung2 preset with one ``--set``."""
    image_path, site = lung1_site
    out, report = tmp_path / "tumour.nrrd", tmp_path / "r.json"
    result = radsynth("tumor", "synthesize", "--image", str(image_path), "--mask", str(site), "--preset",
                      "lung2-tumor", "--set", setting, "--out", str(out), "--report", str(report), "--steps", FAST)
    assert result.exit_code == 0, result.output
    return result.output, json.loads(report.read_text())["result"]["settings"]


def test_a_request_beyond_the_training_tumours_is_flagged(tmp_path, lung1_site):
    output, settings = _synthesize_setting(tmp_path, lung1_site, "glcm_Contrast=5000")
    assert "glcm_Contrast = 5000 is outside the tumours this model was trained on" in output
    value, low, high = settings["texture_outside_training"]["glcm_Contrast"]
    assert value == 5000.0 and low < high < 5000.0


@pytest.mark.parametrize("value, message", [("firstorder_Mean", "FEATURE=NUMBER"), ("glcm_Nope=1", "not a texture")])
def test_a_bad_slider_value_exits_2_and_writes_nothing(tmp_path, lung1_site, value, message):
    image_path, site = lung1_site
    out = tmp_path / "never.nrrd"
    result = radsynth("tumor", "synthesize", "--image", str(image_path), "--mask", str(site), "--preset",
                      "lung2-tumor", "--set", value, "--out", str(out), "--steps", FAST)
    assert result.exit_code == 2 and message in result.output and not out.exists()


def test_nifti_input_and_mask_on_another_grid(tmp_path, lung2):
    """NIfTI in; the mask comes at 1.5 mm isotropic and is resampled onto the CT grid instead of refused."""
    image = sitk.ReadImage(str(lung2[0]))
    label = sitk.ReadImage(str(lung2[1]))
    coarse = sitk.Resample(label, [int(round(n * s / 1.5)) for n, s in zip(label.GetSize(), label.GetSpacing())],
                           sitk.Transform(), sitk.sitkNearestNeighbor, label.GetOrigin(), (1.5, 1.5, 1.5),
                           label.GetDirection(), 0, sitk.sitkUInt8)
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(coarse, str(tmp_path / "tumour.nii.gz"))
    out = tmp_path / "out.nrrd"
    result = radsynth("tumor", "remove", "--image", str(tmp_path / "ct.nii.gz"),
                      "--mask", str(tmp_path / "tumour.nii.gz"), "--out", str(out), "--steps", FAST)
    assert result.exit_code == 0, result.output
    written = read_volume(out)
    assert written.is_synthetic and written.same_grid(read_volume(tmp_path / "ct.nii.gz"))


def _bad_inputs(tmp: Path):
    lung2_image, lung2_label = sample_path("lung2", "image"), sample_path("lung2", "label")
    label = read_volume(lung2_label)
    write_volume(label.with_array(np.zeros_like(label.array)), tmp / "empty.nrrd")
    sitk.WriteImage(sitk.ReadImage(str(lung2_image))[:, :, 30], str(tmp / "slice.nrrd"))
    remove = ["tumor", "remove", "--steps", FAST]
    return {
        "empty mask": (remove + ["--image", str(lung2_image), "--mask", str(tmp / "empty.nrrd")], "empty"),
        "2D image": (remove + ["--image", str(tmp / "slice.nrrd"), "--mask", str(lung2_label)], "3D"),
        "MRI": (remove + ["--image", str(sample_path("brain1", "image")), "--mask",
                          str(sample_path("brain1", "label"))], "does not look like a CT"),
        "missing models": (remove + ["--image", str(lung2_image), "--mask", str(lung2_label),
                                     "--models", str(tmp / "no-such-models")], "Model folder not found"),
        "not NRRD out": (remove + ["--image", str(lung2_image), "--mask", str(lung2_label)], ".nrrd"),
        "no texture": (["tumor", "synthesize", "--image", str(lung2_image), "--mask", str(lung2_label)],
                       "exactly one texture source"),
        "unknown preset": (["tumor", "synthesize", "--image", str(lung2_image), "--mask", str(lung2_label),
                            "--preset", "no-such-preset"], "Unknown texture preset"),
    }


@pytest.mark.parametrize("case", ["empty mask", "2D image", "MRI", "missing models", "not NRRD out", "no texture",
                                  "unknown preset"])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, case):
    args, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / ("out.nii.gz" if case == "not NRRD out" else "out.nrrd")
    if case == "missing models":   # this case names its own model folder
        result = CliRunner().invoke(app, [*args, "--out", str(out)])
    else:
        result = radsynth(*args, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1          # one line
    assert not out.exists() and not list(tmp_path.glob("out*"))


def _read_stream(stream, chunks: list) -> None:
    for chunk in iter(lambda: stream.read1(4096), b""):
        chunks.append(chunk)


@pytest.mark.parametrize("mode", ["--in-process", "--worker"])
def test_ctrl_c_cancels_and_writes_nothing(tmp_path, lung2, mode):
    out = tmp_path / "out.nrrd"
    entry_point = Path(sys.executable).with_name("radsynth")   # the installed console script
    cmd = [str(entry_point), "tumor", "remove", "--image", str(lung2[0]), "--mask",
           str(lung2[1]), "--out", str(out), "--steps", "200", mode] + (["--models", MODELS] if MODELS else [])
    # TTY_COMPATIBLE makes rich draw its live bar into the pipe, so the test can wait for the sampling stage.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, TTY_COMPATIBLE="1", COLUMNS="200"))
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_stream, args=(proc.stderr, chunks), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while b"sample" not in b"".join(chunks) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"sample" in b"".join(chunks), b"".join(chunks)[-2000:]
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        print(f"\n{mode}: Ctrl-C to exit {time.monotonic() - sent:.2f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    stderr = b"".join(chunks).decode("utf-8", "replace")
    assert code == 2 and "Cancelled" in stderr and "Traceback" not in stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_worker_mode_matches_in_process(tmp_path, lung2):
    outs = {}
    for mode in ("--in-process", "--worker"):
        outs[mode] = tmp_path / f"{mode.strip('-')}.nrrd"
        result = radsynth("tumor", "remove", "--image", str(lung2[0]), "--mask", str(lung2[1]),
                          "--out", str(outs[mode]), "--steps", FAST, "--seed", "3", mode)
        assert result.exit_code == 0, result.output
    a, b = (read_volume(p) for p in outs.values())
    assert b.is_synthetic and a.same_grid(b)
    assert np.abs(a.array.astype(int) - b.array.astype(int)).max() <= 1   # same seed, same result (±1 HU rounding)


@pytest.mark.parametrize("mode", ["--in-process", "--worker"])
def test_demo_writes_everything(tmp_path, mode):
    out = tmp_path / "demo"
    result = radsynth("demo", "--out", str(out), "--steps", FAST, mode)
    assert result.exit_code == 0, result.output
    for name in OUT_NAMES.values():
        assert (out / name).is_file(), name
    report = json.loads((out / OUT_NAMES["report"]).read_text())
    remove, synth = report["operations"]
    assert (remove["operation"], synth["operation"]) == ("remove", "synthesize")
    assert synth["site"]["inside_lung_fraction"] > 0.9 and synth["feature_match"]["features"] > 0
    assert report["software"]["torch"] and synth["result"]["models"] and synth["result"]["timings_s"]
    assert synth["mode"] == mode.strip("-") and set(synth["result"]["model_cards"]) == set(synth["result"]["models"])
    for key in ("removed", "synthesized"):
        assert read_volume(out / OUT_NAMES[key]).is_synthetic
    assert sitk.ReadImage(str(out / OUT_NAMES["montage"])).GetSize()[0] >= 1000
    assert "texture match" in result.stdout and str(out / OUT_NAMES["montage"]) in result.stdout
