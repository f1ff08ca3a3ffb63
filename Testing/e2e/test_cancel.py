"""Ctrl-C at every stage of a ``radsynth`` run: the process exits within about a second, prints no traceback and
writes nothing (no result, no hidden staging folder, no scratch folder, no worker left running).

Each case runs the console script in a subprocess (``radsynth.console.main``, as the installed ``radsynth`` does)
with one function of that stage made to stall (a 60 s sleep: a long call nobody can interrupt), sends SIGINT once
the stage is reached and times the exit. Sampling stalls nowhere: it is cancelled between real sampler steps.
With --worker, loading and sampling happen in the worker process: it is started through a wrapper interpreter
that applies the same stall there and records its pid, so the test can check that it is gone too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from radsynth.sample_data import sample_path

#: Ctrl-C to process exit; the aim is 1 s, the margin is for a machine shared by several test runs
EXIT_WITHIN_S = 1.5

STALL = textwrap.dedent('''
    """Make one stage of a radsynth run stall (host or worker side), announcing it in a marker file."""
    import os, sys, time

    STAGE, MARKER = os.environ["RADSYNTH_TEST_STALL"], os.environ["RADSYNTH_TEST_MARKER"]


    def announce(where):
        with open(MARKER + "." + where, "w") as fh:
            fh.write(str(os.getpid()))


    def stalling(fn, where, stall=True):
        def wrapper(*args, **kwargs):
            announce(where)
            if stall:
                time.sleep(60)
            return fn(*args, **kwargs)
        return wrapper


    def patch(side):
        if STAGE == "starting":   # the interrupt lands while the console script imports the CLI
            announce(side)
            return
        import radsynth.cli.common as common, radsynth.models as models, radsynth.radiomics as radiomics
        if side == "worker":
            announce("worker-started")
        if STAGE == "loading":
            models.load = stalling(models.load, side)
        if side == "host":
            if STAGE == "reading":
                common.read_volume = stalling(common.read_volume, side)
            elif STAGE == "radiomics":
                radiomics.texture_features = stalling(radiomics.texture_features, side)
            elif STAGE == "writing":
                common.write_volume = stalling(common.write_volume, side)
        if STAGE == "sampling" and (side == "worker" or "--worker" not in sys.argv):
            import radsynth.pipelines.tumor as tumor
            tumor.sample_bridge = stalling(tumor.sample_bridge, side, stall=False)
''')

HOST = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import stall
    stall.patch("host")
    sys.executable = os.environ["RADSYNTH_TEST_WORKER_PYTHON"]   # the worker starts through the wrapper
    from radsynth.console import main
    main()
''')

WORKER = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import stall
    stall.patch("worker")
    from radsynth.worker.server import main
    main()
''')


@pytest.fixture(scope="module")
def hooks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hooks")
    (folder / "stall.py").write_text(STALL)
    (folder / "host.py").write_text(HOST)
    (folder / "worker.py").write_text(WORKER)
    wrapper = folder / "python"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {folder / 'worker.py'}\n")   # ignores "-m radsynth.worker"
    wrapper.chmod(0o755)
    return folder


def _read(stream, chunks: list) -> None:
    for chunk in iter(lambda: stream.read1(4096), b""):
        chunks.append(chunk)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie child of the killed host is gone for every purpose that matters here
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def _command(stage: str, out: Path) -> list[str]:
    image, label = sample_path("lung2", "image"), sample_path("lung2", "label")
    steps = "200" if stage == "sampling" else "2"
    if stage == "radiomics":
        return ["tumor", "synthesize", "--image", str(sample_path("lung1", "image")), "--mask",
                str(sample_path("lung1", "label")), "--texture-from", f"{image},{label}", "--out", str(out),
                "--steps", steps]
    return ["tumor", "remove", "--image", str(image), "--mask", str(label), "--out", str(out), "--out-mask",
            str(out.with_name("mask.nrrd")), "--report", str(out.with_name("r.json")), "--steps", steps,
            "--removal", "bridge"]      # the stages hooked here are the bridge's (sampling = its sampler loop)


CASES = [("starting", "--in-process"), ("reading", "--in-process"), ("radiomics", "--in-process"),
         ("loading", "--in-process"), ("sampling", "--in-process"), ("writing", "--in-process"),
         ("loading", "--worker"), ("sampling", "--worker"), ("writing", "--worker")]


@pytest.mark.parametrize("stage, mode", CASES)
def test_ctrl_c_at_every_stage(tmp_path, hooks, stage, mode):
    out_dir, scratch = tmp_path / "out", tmp_path / "scratch"
    out_dir.mkdir()
    scratch.mkdir()
    marker = tmp_path / "marker"
    side = "worker" if mode == "--worker" and stage in ("loading", "sampling") else "host"
    env = dict(os.environ, RADSYNTH_TEST_STALL=stage, RADSYNTH_TEST_MARKER=str(marker), TMPDIR=str(scratch),
               RADSYNTH_TEST_WORKER_PYTHON=str(hooks / "python"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(hooks / "host.py"), *_command(stage, out_dir / "out.nrrd"), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read, args=(proc.stderr, chunks), daemon=True)
    reader.start()
    reached = Path(f"{marker}.{side}")
    try:
        deadline = time.monotonic() + 240
        while not reached.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reached.exists(), b"".join(chunks)[-3000:].decode("utf-8", "replace")
        # a few sampler steps in, or well inside the stall (importing the CLI takes seconds)
        time.sleep(0.3 if stage == "sampling" else 0.1)
        assert proc.poll() is None, "the run ended before Ctrl-C"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    stderr = b"".join(chunks).decode("utf-8", "replace")
    print(f"\n{stage} {mode}: Ctrl-C to exit {took:.2f} s")
    assert code == 2, stderr
    assert "Cancelled by the user; nothing was changed." in stderr and "Traceback" not in stderr, stderr
    assert took < EXIT_WITHIN_S, f"{took:.2f} s"
    assert list(out_dir.iterdir()) == []          # no result, no hidden staging folder
    started = Path(f"{marker}.worker-started")
    if started.exists():                          # the worker is gone within a moment, and its scratch with it
        pid = int(started.read_text())
        deadline = time.monotonic() + 2
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the worker outlived the cancelled run"
    assert list(scratch.iterdir()) == []
