"""The TumorSynth widget's Python, run on real MRML with faked Qt (tumorsynth_gui_fakes.py): its typed parameter node
starts from the engine's defaults, user choices reach the logic, Apply runs a job that the timer polls and applies,
and Cancel or a bad input changes nothing. The widget inside Slicer is exercised by TumorSynthTest."""

from __future__ import annotations

import importlib
import sys
import time

import pytest

slicer = pytest.importorskip("slicer")

import tumorsynth_gui_fakes as fakes  # noqa: E402

from radsynth.pipelines import tumor_ops  # noqa: E402
from radsynth.result import Result  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY  # noqa: E402


@pytest.fixture
def module(monkeypatch, scene):
    util = fakes.install(monkeypatch, scene)
    for name in ("TumorSynth", "TumorSynthLib.panel", "RadSynthLib.widgets"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("TumorSynth")
    yield module, util
    for name in ("TumorSynth", "TumorSynthLib.panel", "RadSynthLib.widgets"):
        sys.modules.pop(name, None)


class Runner:
    """Stands in for the engine: records each request and returns the input, brighter inside the mask."""

    def __init__(self, block=False):
        self.requests, self.block = [], block

    def __call__(self, request, progress, cancel):
        self.requests.append(request)
        progress(0.5, "sample")
        if self.block:
            while not cancel.cancelled:
                pass
            cancel.check()
        out = request.image.array.copy()
        mask = request.mask if request.mask is not None else request.image.label_like(out > 0)
        out[mask.array > 0] += 50
        return Result(request.operation, request.image.with_array(out), mask)

    def close(self):
        pass


@pytest.fixture
def widget(module):
    mod, util = module
    w = mod.TumorSynthWidget()
    w.setup()
    runner = Runner()
    w.logic.runner = w.panel.logic.runner = runner
    yield w, util, runner
    w.cleanup()


def _run(w, timeout_ticks=2000):
    for _ in range(timeout_ticks):
        fakes.QTimer.tick()
        if not w.busy():
            return
        time.sleep(0.002)
    raise AssertionError("the job did not finish")


def test_parameter_node_starts_from_the_engine_defaults(widget):
    w, util, runner = widget
    p = w._parameterNode
    assert p.guidance == tumor_ops.GUIDANCE.default == 3.0
    assert w.ui.guidanceSliderWidget.value == 3.0
    assert (w.ui.guidanceSliderWidget.minimum, w.ui.guidanceSliderWidget.maximum) == (0.0, 10.0)
    assert w.ui.stepsSpinBox.value == w.ui.stepsSpinBox.minimum == 1 and w.parameters().steps is None
    assert p.seed == 0 and p.operation == "synthesize" and p.preset == w.ui.presetComboBox.items[0]
    for option in tumor_ops.SHAPE_OPTIONS:
        assert getattr(p, option.name) == option.default
    assert w.ui.volumeSpinBox.value == tumor_ops.SHAPE_OPTIONS[0].default
    assert "doubles the network evaluations" in w.ui.guidanceSliderWidget.toolTip  # the declaration's reason
    params = w.parameters()
    assert params.guidance == 3.0 and params.seed == 0


def test_apply_synthesizes_with_the_panel_settings_and_adds_marked_nodes(widget, small_ct, scene):
    w, util, runner = widget
    node, seg, sid = small_ct
    w.ui.inputVolumeSelector.select(node)
    w.ui.segmentSelector.select(seg, sid)
    assert w._parameterNode.inputVolume is node and w._parameterNode.segmentID == sid
    assert w.ui.applyButton.enabled
    w.ui.seedSpinBox.value = 7
    w.ui.seedSpinBox.valueChanged.emit(7)
    w.ui.applyButton.clicked.emit(False)
    assert w.busy() and w.ui.cancelButton.enabled and not w.ui.applyButton.enabled
    _run(w)
    [request] = runner.requests
    assert request.operation == "synthesize" and request.guidance == 3.0 and request.seed == 7
    assert request.steps is None and request.target, "the preset's features"
    out = scene.GetFirstNodeByName("chest - synthetic")
    assert out is not None and out.GetAttribute(SYNTHETIC_KEY) == "1"
    assert "Added 'chest - synthetic'" in w.ui.statusLabel.text and w.ui.progressBar.value == 1000
    assert util.errors == [] and w.ui.applyButton.enabled


def test_remove_and_an_operation_button(widget, small_ct, scene):
    w, util, runner = widget
    node, seg, sid = small_ct
    w.ui.inputVolumeSelector.select(node)
    w.ui.segmentSelector.select(seg, sid)
    w.ui.synthesizeRadioButton.checked, w.ui.removeRadioButton.checked = False, True
    w.ui.removeRadioButton.toggled.emit(True)
    assert w._parameterNode.operation == "remove"
    w.ui.applyButton.clicked.emit(False)
    _run(w)
    assert runner.requests[-1].operation == "remove"
    assert scene.GetFirstNodeByName("chest - removed region") is not None
    # the Operations section's Remove: the operations logic, then the result becomes the next input
    w.ui.variantsSpinBox.value = 2
    w.ui.variantsSpinBox.valueChanged.emit(2)
    w.ui.removeTumorButton.clicked.emit(False)
    _run(w)
    assert [r.seed for r in runner.requests[-2:]] == [0, 1] and runner.requests[-1].eta == 1.0
    first = scene.GetFirstNodeByName("chest - removed #1 - synthetic")
    assert first is not None and w._parameterNode.inputVolume is first
    assert util.errors == []


def test_bad_input_is_shown_and_changes_nothing(widget, small_ct, scene):
    w, util, runner = widget
    node, seg, sid = small_ct
    w.ui.inputVolumeSelector.select(node)
    w.ui.segmentSelector.select(seg, "no-such-segment")
    count = scene.GetNumberOfNodes()
    w.ui.applyButton.clicked.emit(False)
    assert not w.busy() and len(util.errors) == 1 and "not found" in util.errors[0]
    assert scene.GetNumberOfNodes() == count and runner.requests == []


def test_cancel_changes_nothing(widget, small_ct, scene):
    w, util, runner = widget
    node, seg, sid = small_ct
    runner.block = True
    w.ui.inputVolumeSelector.select(node)
    w.ui.segmentSelector.select(seg, sid)
    count = scene.GetNumberOfNodes()
    w.ui.applyButton.clicked.emit(False)
    fakes.QTimer.tick()
    w.ui.cancelButton.clicked.emit(False)
    assert w.ui.statusLabel.text == "Cancelling…"
    _run(w)
    assert w.ui.statusLabel.text == "Cancelled; nothing was changed." and util.errors == []
    assert scene.GetNumberOfNodes() == count


def test_the_parameter_node_refuses_what_the_declaration_refuses(widget):
    w, util, runner = widget
    with pytest.raises(ValueError):
        w._parameterNode.guidance = 11.0
    with pytest.raises(ValueError):
        w._parameterNode.steps = 1001
    with pytest.raises(ValueError):
        w._parameterNode.operation = "paint"
