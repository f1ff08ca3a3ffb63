"""The DiffusionInpaint widget's Python, run on real MRML with faked Qt (tumorsynth_gui_fakes.py) and the real engine
with tiny test-made models on a lung1 crop: the typed parameter node starts from the declarations, the buttons
follow the inputs, Fill region / Build map / Render CT run as jobs the timer polls and applies, and a bad input
shows its message and changes nothing. The widget inside Slicer is exercised by DiffusionInpaintTest."""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "DiffusionInpaint"), str(ROOT / "Testing" / "e2e")]

import tumorsynth_gui_fakes as fakes  # noqa: E402
from inpaint_support import lung1_crop, tiny_models  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.pipelines.inpaint import FILL, RENDER_MAP  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY  # noqa: E402

MODULES = ("DiffusionInpaint", "RadSynthLib.widgets")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def widget(monkeypatch, scene):
    util = fakes.install(monkeypatch, scene)

    @contextlib.contextmanager
    def try_with_error_display(message, waitCursor=False):
        try:
            yield
        except Exception as exc:   # Slicer shows the message and the panel goes on
            util.errors.append(f"{message} {exc}")

    util.tryWithErrorDisplay = try_with_error_display
    for name in MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("DiffusionInpaint")
    monkeypatch.setattr(module, "ensure_dependencies", lambda: True)
    w = module.DiffusionInpaintWidget()
    w.resources = ROOT / "DiffusionInpaint" / "Resources"
    w.setup()
    yield w, util
    w.cleanup()
    for name in MODULES:
        sys.modules.pop(name, None)


def _run(w, ticks=5000):
    for _ in range(ticks):
        fakes.QTimer.tick()
        if not w.busy():
            return
        time.sleep(0.005)
    raise AssertionError("the job did not finish")


def test_parameter_node_starts_from_the_declarations(widget):
    w, util = widget
    p = w._parameterNode
    assert p.mode == FILL.option("mode").default and w.ui.healthyRadioButton.checked
    assert p.guidance == w.ui.guidanceSliderWidget.value == RENDER_MAP.option("guidance").default
    assert (w.ui.marginSpinBox.minimum, w.ui.marginSpinBox.maximum) == (0.0, 10.0)
    assert w.ui.stepsSpinBox.value == 1 and w.fillParameters().steps is None
    assert "doubles the network evaluations" in w.ui.guidanceSliderWidget.toolTip   # the declaration's reason
    assert not w.ui.fillButton.enabled and not w.ui.renderButton.enabled and not w.ui.cancelButton.enabled


def test_fill_build_map_and_render_through_the_panel(widget, scene, tiny):
    w, util = widget
    ct, tumour = lung1_crop()
    node = mrml.volume_to_node(ct, scene, "lung1")
    seg = mrml.mask_to_segmentation_node(tumour, scene, "seg", "tumor", node)
    w.ui.inputVolumeSelector.select(node)
    w.ui.segmentSelector.select(seg, seg.GetSegmentation().GetNthSegmentID(0))
    w.ui.modelDirPathLineEdit.currentPath = str(tiny["palette"])
    w.ui.modelDirPathLineEdit.currentPathChanged.emit(str(tiny["palette"]))
    for spin, value in ((w.ui.stepsSpinBox, 2), (w.ui.variantsSpinBox, 2), (w.ui.seedSpinBox, 5)):
        spin.value = value
        spin.valueChanged.emit(value)
    assert w.ui.fillButton.enabled
    w.ui.fillButton.clicked.emit(False)
    assert w.busy() and w.ui.cancelButton.enabled and not w.ui.fillButton.enabled
    _run(w)
    assert util.errors == []
    for k, seed in ((1, "5"), (2, "6")):
        out = scene.GetFirstNodeByName(f"lung1 - filled #{k} - synthetic")
        assert out is not None and out.GetAttribute(SYNTHETIC_KEY) == "1" and out.GetAttribute("RadSynth.Seed") == seed
    assert "marked synthetic" in w.ui.statusLabel.text and w.ui.progressBar.value == 1000

    w.ui.buildMapButton.clicked.emit(False)
    _run(w)
    assert util.errors == []
    built = scene.GetFirstNodeByName("lung1 - semantic map")
    assert built is not None and w._parameterNode.mapSegmentation is built and w.ui.renderButton.enabled
    # nothing painted yet: the render is refused with the reason, and nothing is added
    before = scene.GetNumberOfNodes()
    w.ui.sdmModelDirPathLineEdit.currentPath = str(tiny["sdm"])
    w.ui.sdmModelDirPathLineEdit.currentPathChanged.emit(str(tiny["sdm"]))
    w.ui.renderButton.clicked.emit(False)
    _run(w)
    assert any("no nodule" in e for e in util.errors) and scene.GetNumberOfNodes() == before


def test_regenerate_needs_the_strength_and_a_bad_segment_changes_nothing(widget, scene, tiny):
    w, util = widget
    ct, tumour = lung1_crop()
    node = mrml.volume_to_node(ct, scene, "lung1")
    seg = mrml.mask_to_segmentation_node(tumour, scene, "seg", "tumor", node)
    empty = seg.GetSegmentation().AddEmptySegment("", "empty")
    w.ui.inputVolumeSelector.select(node)
    w.ui.healthyRadioButton.checked, w.ui.regenerateRadioButton.checked = False, True
    w.ui.regenerateRadioButton.toggled.emit(True)
    assert w._parameterNode.mode == "regenerate" and w.ui.strengthSliderWidget.enabled
    assert w.fillParameters().mode == "regenerate" and w.fillParameters().strength == FILL.option("strength").default
    w.ui.segmentSelector.select(seg, empty)
    before = scene.GetNumberOfNodes()
    w.ui.fillButton.clicked.emit(False)
    assert not w.busy() and any("'empty' is empty" in e for e in util.errors)
    assert scene.GetNumberOfNodes() == before
