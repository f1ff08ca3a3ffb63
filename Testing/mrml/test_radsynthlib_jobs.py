"""RadSynthLib.jobs: a background job over prepare / execute / apply, polled as a panel's timer polls it, on real
MRML (slicer-core). A cancelled, failed or discarded job adds nothing; a finished one is applied on the polling
thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from RadSynthLib import results  # noqa: E402
from RadSynthLib.jobs import (CANCELLED, DONE, FAILED, IDLE, RUNNING, BackgroundRun,  # noqa: E402
                              JobController)

from radsynth import mrml  # noqa: E402
from radsynth.errors import InvalidMaskError, RadSynthError  # noqa: E402
from radsynth.volume import Volume  # noqa: E402


class FakeLogic:
    """A module logic in miniature: execute reports progress step by step and checks cancel; apply adds a node."""

    def __init__(self, steps=5, fail=None, fail_apply=False, gate=None):
        self.steps, self.fail, self.fail_apply, self.gate = steps, fail, fail_apply, gate
        self.applied_on = None

    def execute(self, request, progress, cancel):
        for k in range(self.steps):
            if self.gate is not None:
                self.gate.wait(5)
            cancel.check()
            progress(k / self.steps, "sample")
            time.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        return request * 2

    def apply(self, request, result, scene):
        self.applied_on = threading.current_thread()
        if self.fail_apply:
            raise InvalidMaskError("The result mask is empty; nothing was added.")
        image = Volume(np.full((2, 3, 4), result, np.int16), (0, 0, 0), (1, 1, 1), tuple(np.eye(3).ravel()))
        return {"volume": mrml.volume_to_node(image, scene, "result")}


def _finish(jobs, scene, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        status = jobs.poll(scene)
        if status.finished or time.monotonic() > deadline:
            return status
        time.sleep(0.005)


def test_a_finished_job_is_applied_on_the_polling_thread_then_shown(scene):
    jobs, logic, shown = JobController("Test"), FakeLogic(), []
    jobs.start(logic, 21, shown.append)
    assert jobs.busy
    first = jobs.poll(scene)
    assert first.state == RUNNING and not first.finished
    status = _finish(jobs, scene)
    assert status.state == DONE and status.fraction == 1.0
    assert logic.applied_on is threading.current_thread()
    assert shown == [status.nodes] and status.nodes["volume"].GetScene() is scene
    assert mrml.volume_from_node(status.nodes["volume"]).array.max() == 42
    assert not jobs.busy and jobs.poll(scene).state == IDLE


def test_progress_is_reported_while_running(scene):
    jobs = JobController()
    jobs.start(FakeLogic(steps=20), 1)
    seen = []
    while True:
        status = jobs.poll(scene)
        seen.append(status)
        if status.finished:
            break
        time.sleep(0.002)
    running = [s for s in seen if s.state == RUNNING]
    assert seen[-1].state == DONE and running
    assert any(0.0 < s.fraction < 1.0 and s.stage == "sample" for s in running)
    fractions = [s.fraction for s in running]
    assert fractions == sorted(fractions)


def test_cancel_while_running_adds_nothing(scene):
    gate = threading.Event()
    jobs, logic = JobController(), FakeLogic(steps=1000, gate=gate)
    before = scene.GetNumberOfNodes()
    jobs.start(logic, 1)
    assert jobs.cancel()
    status = jobs.poll(scene)
    assert status.state in (RUNNING, CANCELLED) and (status.finished or status.cancelling)
    gate.set()
    status = _finish(jobs, scene)
    assert status.state == CANCELLED and logic.applied_on is None
    assert scene.GetNumberOfNodes() == before
    assert not jobs.cancel(), "nothing left to cancel"


def test_a_job_whose_scene_closed_is_thrown_away(scene):
    jobs, logic = JobController(), FakeLogic(steps=2)
    before = scene.GetNumberOfNodes()
    jobs.start(logic, 1)
    jobs.discard()
    assert jobs.wait(10)
    assert jobs.poll(scene).state == CANCELLED and logic.applied_on is None
    assert scene.GetNumberOfNodes() == before


@pytest.mark.parametrize("error, expected", [(RadSynthError("The mask is empty."), True),
                                             (ValueError("bug"), False)])
def test_a_failed_job_adds_nothing_and_says_why(scene, error, expected):
    jobs, logic = JobController(), FakeLogic(fail=error)
    before = scene.GetNumberOfNodes()
    jobs.start(logic, 1)
    status = _finish(jobs, scene)
    assert status.state == FAILED and status.error is error and status.expected is expected
    assert logic.applied_on is None and scene.GetNumberOfNodes() == before


def test_a_failing_apply_is_reported_and_done_not_called(scene):
    jobs, shown = JobController(), []
    before = scene.GetNumberOfNodes()
    jobs.start(FakeLogic(fail_apply=True), 1, shown.append)
    status = _finish(jobs, scene)
    assert status.state == FAILED and isinstance(status.error, InvalidMaskError) and status.expected
    assert shown == [] and scene.GetNumberOfNodes() == before


def test_one_job_at_a_time():
    gate = threading.Event()
    jobs = JobController()
    jobs.start(FakeLogic(gate=gate), 1)
    with pytest.raises(RadSynthError, match="in progress"):
        jobs.start(FakeLogic(), 1)
    gate.set()
    jobs.cancel()
    assert jobs.wait(10)


def test_background_run_keeps_the_error_for_the_main_thread():
    run = BackgroundRun(FakeLogic(fail=RadSynthError("no")), 1).start()
    assert run.wait(10) and isinstance(run.error, RadSynthError) and run.result is None


def test_subject_hierarchy_is_unchanged_by_a_cancelled_tumorsynth_job(scene, small_ct):
    """The real TumorSynth logic, cancelled before its engine call: neither nodes nor hierarchy items appear."""
    from TumorSynthLib.logic import REMOVE, TumorSynthLogic, TumorSynthParameters

    node, seg, sid = small_ct
    logic = TumorSynthLogic(runner=lambda request, progress, cancel: time.sleep(0.2) or cancel.check())
    request = logic.prepare(TumorSynthParameters(operation=REMOVE, input_volume=node, segmentation=seg,
                                                 segment_id=sid))
    before = scene.GetNumberOfNodes(), results.subject_hierarchy(scene).GetNumberOfItems()
    jobs = JobController("TumorSynth")
    jobs.start(logic, request)
    jobs.cancel()
    assert _finish(jobs, scene).state == CANCELLED
    assert (scene.GetNumberOfNodes(), results.subject_hierarchy(scene).GetNumberOfItems()) == before
