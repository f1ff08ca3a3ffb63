"""The worker dies at each stage of a request (loading models, reading the inputs, sampling, writing the result):
the host says so in one clear line, exits with code 2 and leaves nothing behind (no result, no scratch folder).
And the worker itself refuses out paths that are its inputs or each other before any work.

The worker is started through a wrapper interpreter that makes the stage's function SIGKILL its own process, so
the death happens exactly there; the host is the ``radsynth`` CLI (``--worker``), run in this process.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from radsynth.cli import app
from radsynth.errors import OutputError
from radsynth.sample_data import sample_path
from radsynth.worker import WorkerClient, write_scratch
from radsynth.volume import Volume

FAULT = textwrap.dedent('''
    import os, signal, sys
    STAGE = sys.argv[1]

    def dying(fn):
        def wrapper(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        return wrapper

    import radsynth.models as models
    import radsynth.worker.server as server
    if STAGE == "loading":
        models.load = dying(models.load)
    elif STAGE == "reading":
        server.read_volume = dying(server.read_volume)
    elif STAGE == "sampling":
        import radsynth.pipelines.tumor as tumor
        tumor.sample_bridge = dying(tumor.sample_bridge)
    elif STAGE == "writing":
        server.write_scratch = dying(server.write_scratch)
    server.main()
''')


def _wrapper(folder, stage: str):
    (folder / "fault.py").write_text(FAULT)
    wrapper = folder / f"python-{stage}"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {folder / 'fault.py'} {stage}\n")  # drops "-m radsynth.worker"
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.parametrize("stage", ["loading", "reading", "sampling", "writing"])
def test_the_worker_dies_during_a_stage(tmp_path, monkeypatch, stage):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(sys, "executable", str(_wrapper(tmp_path, stage)))   # WorkerClient starts sys.executable
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    image, label = sample_path("lung1", "image"), sample_path("lung1", "label")
    result = CliRunner().invoke(app, ["tumor", "remove", "--image", str(image), "--mask", str(label), "--out",
                                      str(out / "o.nrrd"), "--out-mask", str(out / "m.nrrd"), "--report",
                                      str(out / "r.json"), "--steps", "2", "--removal", "bridge",
                                      "--worker"])
    assert result.exit_code == 2, result.output
    first = result.stderr.strip().splitlines()[0]
    assert first == ("Error: The background worker stopped unexpectedly: it was killed by signal 9. It will be "
                     "restarted on the next request. Its last messages:"), result.stderr
    assert "Traceback" not in result.stderr
    assert list(out.iterdir()) == [] and list(scratch.iterdir()) == []


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_the_worker_refuses_out_paths_that_alias_its_inputs(tmp_path):
    image = Volume(np.full((4, 8, 8), -1000, np.int16), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    mask = image.label_like(np.ones(image.shape, np.uint8))
    write_scratch(image, tmp_path / "image.nrrd")
    write_scratch(mask, tmp_path / "mask.nrrd")
    before = {p.name: _sha(p) for p in tmp_path.iterdir()}
    cases = [({"out": "image.nrrd"}, r"out \(.*image.nrrd\) is the same file as the input image"),
             ({"out": "o.nrrd", "out_mask": "mask.nrrd"}, "out_mask .* the input mask"),
             ({"out": "o.nrrd", "out_mask": "o.nrrd"}, "out_mask and out name the same file")]
    with WorkerClient() as client:
        for paths, message in cases:
            params = {"image": str(tmp_path / "image.nrrd"), "mask": str(tmp_path / "mask.nrrd"), "steps": 2,
                      **{k: str(tmp_path / v) for k, v in paths.items()}}
            with pytest.raises(OutputError, match=message):
                client.run("remove", params)
        assert client.ping()["pong"]          # a refused request leaves the worker serving
    assert {p.name: _sha(p) for p in tmp_path.iterdir()} == before
