"""``radsynth generate slices`` on the real lung1 chest CT with the bundled demo slice model (few steps): the grown
volume has the seed's spacing, direction and position and the requested number of new slices, marked synthetic;
bad input exits with code 2 and writes nothing; Ctrl-C stops the run and writes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.geometry import rotation
from radsynth.models import bundled
from radsynth.sample_data import sample_path
from radsynth.volume import SYNTHETIC_KEY, Volume, read_volume, write_volume

FAST = "4"
SEED = 20


def radsynth(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def ct() -> Volume:
    return read_volume(sample_path("lung1", "image"))


@pytest.mark.parametrize("mode", ["--in-process", "--worker"])
def test_seeded_growth_has_the_seed_geometry(tmp_path, ct, mode):
    out, report = tmp_path / "grown.nrrd", tmp_path / "report.json"
    r = radsynth("generate", "slices", "--image", str(sample_path("lung1")), "--seed-slice", str(SEED),
                 "--direction", "down", "--slices", "3", "--steps", FAST, "--out", str(out), "--report", str(report),
                 mode)
    assert r.exit_code == 0, r.output
    img = sitk.ReadImage(str(out))
    assert img.GetMetaData(SYNTHETIC_KEY) == "1"
    grown = read_volume(out)
    assert grown.shape == (4, 512, 512)
    assert grown.spacing == pytest.approx(ct.spacing) and grown.direction == pytest.approx(ct.direction)
    # three new slices below: the seed is the output's last slice, at its own place
    np.testing.assert_allclose(grown.index_to_physical(np.array([[3, 0, 0]])),
                               ct.index_to_physical(np.array([[SEED, 0, 0]])), atol=1e-4)
    np.testing.assert_array_equal(grown.array[3], ct.array[SEED])
    # the new slices are CT-like: air outside the body, tissue inside
    assert grown.array[:3, :5, :5].mean() < -900 and grown.array[:3, 200:300, 200:300].max() > -500
    settings = json.loads(report.read_text())["result"]["settings"]
    assert settings["slices_generated"] == 3 and settings["partial"] is False


def test_unconditional_volume_on_the_image_grid(tmp_path, ct):
    out = tmp_path / "uncond.nrrd"
    r = radsynth("generate", "slices", "--image", str(sample_path("lung1")), "--slices", "2", "--steps", FAST,
                 "--icnet", "off", "--out", str(out))
    assert r.exit_code == 0, r.output
    v = read_volume(out)
    assert v.shape == (2, 512, 512) and v.origin == pytest.approx(ct.origin) and v.is_synthetic


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, ct):
    d = tmp_path_factory.mktemp("bad")
    coronal = Volume(ct.array[:, ::8, ::8].copy(), ct.origin, (4.56, 4.56, 5.0), tuple(rotation((1, 0, 0), 90).ravel()))
    write_volume(coronal, d / "coronal.nrrd")
    sitk.WriteImage(sitk.GetImageFromArray(ct.array[SEED]), str(d / "flat.nrrd"))
    windowed = d / "windowed-model"
    shutil.copytree(bundled("demo-slice-score"), windowed)
    card = json.loads((windowed / "card.json").read_text())
    card["window"] = [-150, 150]                   # the weights' checksum still matches: only the card changed
    (windowed / "card.json").write_text(json.dumps(card))
    return d


@pytest.mark.parametrize("case, args, message", [
    ("seed outside", ["--seed-slice", "48"], "outside the volume"),
    ("other K", ["--seed-slice", "20", "--k", "3"], "K=2"),
    ("unconditional down", ["--direction", "down"], "unconditional"),
    ("non-axial", ["--seed-slice", "2", "@coronal.nrrd"], "not axial"),
    ("2D", ["--seed-slice", "0", "@flat.nrrd"], "3D"),
    ("another HU range", ["--seed-slice", "20", "--models", "@windowed-model"], "-150..150 HU"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, bad_files, case, args, message):
    image = str(sample_path("lung1"))
    flags = []
    for a in args:
        if a.startswith("@") and a.endswith(".nrrd"):
            image = str(bad_files / a[1:])
        elif a.startswith("@"):
            flags.append(str(bad_files / a[1:]))
        else:
            flags.append(a)
    out = tmp_path / "out.nrrd"
    r = radsynth("generate", "slices", "--image", image, *flags, "--slices", "2", "--steps", FAST, "--out", str(out))
    assert r.exit_code == 2, (case, r.output)
    assert message in " ".join(r.output.split()), (case, r.output)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_and_writes_nothing(tmp_path):
    out = tmp_path / "grown.nrrd"
    exe = Path(sys.executable).parent / "radsynth"
    proc = subprocess.Popen([str(exe), "generate", "slices", "--image", str(sample_path("lung1")), "--seed-slice",
                             str(SEED), "--slices", "300", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    time.sleep(8)
    assert proc.poll() is None, proc.communicate()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 3.0
    assert proc.returncode != 0 and b"Traceback" not in err
    assert list(tmp_path.iterdir()) == []
