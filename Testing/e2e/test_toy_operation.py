"""The proof that the spine is generic: a toy operation declared in a plugin module runs in-process, through the
worker and through the CLI, without any code in the runner, the worker protocol or the CLI knowing it."""

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radsynth.pipelines import registry
from radsynth.sample_data import sample_path
from radsynth.volume import read_volume
from radsynth.worker import Runner, WorkerClient

PLUGIN = textwrap.dedent('''
    """A toy module: mirror the HU inside the mask about a level (no model)."""
    import numpy as np
    from radsynth.pipelines.registry import Operation, Option, register
    from radsynth.result import Result

    def run(ctx, image, mask, level=0.0, note=None, clip=True):
        if ctx.progress:
            ctx.progress(0.5, "inverting")
        inside = mask.array > 0
        array = image.array.astype(np.float32)
        out = image.with_array(np.where(inside, 2 * level - array, array).astype(image.array.dtype))
        out.mark_synthetic("toy invert")
        return Result("invert", out, image.label_like(inside), settings={"level": level, "note": note, "clip": clip})

    register(Operation("invert", "toy", "Mirror the intensities inside the mask about a level.", run,
                       (Option("level", "float", -500.0, "Mirror level", unit="HU", min=-1024, max=3071),
                        Option("note", "str", None, "Free text kept in the report"),
                        Option("clip", "bool", True, "Keep the result within the int16 range"))))
''')


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "toy_invert.py").write_text(PLUGIN)
    sys.path.insert(0, str(folder))
    importlib.import_module("toy_invert")
    yield folder
    registry.unregister("invert")
    sys.path.remove(str(folder))
    sys.modules.pop("toy_invert", None)


@pytest.fixture(scope="module")
def lung1():
    image = read_volume(sample_path("lung1", "image"))
    label = read_volume(sample_path("lung1", "label"))
    return image, label


def expected(image, label, level):
    inside = label.array > 0
    return np.where(inside, 2 * level - image.array.astype(np.float32), image.array).astype(image.array.dtype)


def test_in_process(plugin, lung1):
    image, label = lung1
    with Runner() as runner:
        result = runner("invert", image, label, level=-400.0)
    assert result.volume.is_synthetic and np.array_equal(result.volume.array, expected(image, label, -400.0))
    assert result.settings["level"] == -400.0 and result.model_cards == {}
    with pytest.raises(Exception, match="between -1024 and 3071"):
        Runner()("invert", image, label, level=5000)


def test_in_the_worker(plugin, lung1, monkeypatch):
    image, label = lung1
    monkeypatch.setenv("RADSYNTH_PLUGINS", "toy_invert")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]))
    with WorkerClient() as client, Runner(worker=True, client=client) as runner:
        result = runner("invert", image, label, note="via worker")
        assert result.extra["worker"]["pid"] == client.pid
    assert np.array_equal(result.volume.array, expected(image, label, -500.0))   # the declared default
    assert result.settings["note"] == "via worker" and np.array_equal(result.mask.array > 0, label.array > 0)


def test_through_the_cli(plugin, tmp_path):
    env = dict(os.environ, RADSYNTH_PLUGINS="toy_invert", COLUMNS="200",
               PYTHONPATH=os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]))
    cli = [sys.executable, "-m", "radsynth"]
    help_text = subprocess.run(cli + ["toy", "invert", "--help"], env=env, capture_output=True, text=True,
                               check=True).stdout
    assert "--level" in help_text and "default -500" in help_text and "--no-clip" in help_text
    out = tmp_path / "inverted.nrrd"
    done = subprocess.run(cli + ["toy", "invert", "--image", str(sample_path("lung1", "image")), "--mask",
                                 str(sample_path("lung1", "label")), "--level", "-300", "--no-clip", "--report",
                                 str(tmp_path / "r.json"), "--out", str(out)],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    image, label = read_volume(sample_path("lung1", "image")), read_volume(sample_path("lung1", "label"))
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["result"]["settings"]["clip"] is False
    written = sitk.ReadImage(str(out))
    assert written.GetMetaData("RadSynth.Synthetic") == "1"
    assert np.array_equal(sitk.GetArrayFromImage(written), expected(image, label, -300.0))
    refused = subprocess.run(cli + ["toy", "invert", "--image", str(sample_path("lung1", "image")), "--mask",
                                    str(sample_path("lung1", "label")), "--level", "9999", "--out",
                                    str(tmp_path / "no.nrrd")], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and not (tmp_path / "no.nrrd").exists()
