"""DiffusionInpaint: draw a region with the Segment Editor and let a diffusion model fill it (healthy tissue or a new
texture for the same anatomy), or build a semantic map from the CT, edit its nodule and render CT for it (SDM).

The panel wires widgets to a typed parameter node (parameters in ``DiffusionInpaintLib/defaults.py``, engine
defaults from the ``fill`` / ``render-map`` / ``auto-map`` declarations) and runs the Qt-free
``DiffusionInpaintLib`` logic as a ``RadSynthLib`` background job: prepare (main thread), execute (background
thread, in the worker process when Slicer's Python launcher is found), apply (main thread, from a QTimer poll).
Cancel adds nothing.
"""

import importlib.util
import os
import sys

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# From a source checkout the engine and the shared library sit next to this module's folder.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if any(importlib.util.find_spec(name) is None for name in ("radsynth", "RadSynthLib")) \
        and os.path.isdir(os.path.join(_SOURCE_ROOT, "RadSynthLib")):
    sys.path.insert(0, _SOURCE_ROOT)

from RadSynthLib import about, dependencies, dicom_plugin, parameters, sample_data, workers  # noqa: E402
from RadSynthLib.widgets import JobPanel, ModuleWidgetMixin  # noqa: E402
from DiffusionInpaintLib import defaults  # noqa: E402
from DiffusionInpaintLib import logic as core  # noqa: E402

MODULE = core.MODULE
HEALTHY, REGENERATE = core.FILL.option("mode").choices

DiffusionInpaintParameterNode = parameters.wrapper_class(
    "DiffusionInpaintParameterNode", defaults.PARAMETERS, wrap=parameterNodeWrapper,
    node_type=lambda n: getattr(slicer, n), within_range=WithinRange, choice=Choice, module=__name__)


class DiffusionInpaint(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DiffusionInpaint")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = about.CONTRIBUTORS
        self.parent.helpText = about.help_text("DiffusionInpaint")
        self.parent.acknowledgementText = about.acknowledgement("DiffusionInpaint")
        slicer.app.connect("startupCompleted()", sample_data.register)
        # synthetic volumes exported from the DICOM module say so (Synthetic Data YES, DERIVED)
        slicer.app.connect("startupCompleted()", dicom_plugin.register)


def ensure_dependencies():
    return dependencies.ensure(MODULE, tr=_)


class DiffusionInpaintLogic(ScriptedLoadableModuleLogic, core.DiffusionInpaintLogic):
    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        core.DiffusionInpaintLogic.__init__(self, runner)

    def getParameterNode(self):
        return DiffusionInpaintParameterNode(super().getParameterNode())


# widget name -> (parameter, Qt property); the mode radio buttons and the segment selectors are bound by hand
_BINDINGS = (("strengthSliderWidget", "strength", "value"), ("stepsSpinBox", "steps", "value"),
             ("seedSpinBox", "seed", "value"), ("variantsSpinBox", "variants", "value"),
             ("marginSpinBox", "marginMm", "value"), ("featherSpinBox", "featherMm", "value"),
             ("modelDirPathLineEdit", "modelDir", "currentPath"),
             ("noduleLabelComboBox", "noduleLabel", "currentText"),
             ("guidanceSliderWidget", "guidance", "value"), ("renderStepsSpinBox", "renderSteps", "value"),
             ("renderSeedSpinBox", "renderSeed", "value"), ("sdmModelDirPathLineEdit", "sdmModelDir", "currentPath"))
#: segment selector widget -> (segmentation parameter, segment-ID parameter)
_SEGMENTS = (("segmentSelector", "segmentation", "segmentID"),
             ("noduleSegmentSelector", "noduleSegmentation", "noduleSegmentID"))


class DiffusionInpaintWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self.job = None
        self._updating = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DiffusionInpaint.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        # one background worker shared by the RadSynth modules; released in cleanup
        self.logic = DiffusionInpaintLogic(workers.acquire(MODULE))
        for widget, name, _prop in _BINDINGS:   # ranges and tooltips: help, range and the reason for the default
            p = defaults.param(name)
            w = getattr(self.ui, widget)
            if p.minimum is not None and hasattr(w, "minimum"):
                w.minimum, w.maximum = p.minimum, p.maximum
            reason = p.option.reason if p.option is not None else ""
            w.toolTip = "\n".join(t for t in (w.toolTip, p.help, reason) if t)
        self.job = JobPanel(MODULE, self.ui.progressBar, self.ui.statusLabel, onChanged=self._updateButtons)
        for combo in (self.ui.inputVolumeSelector, self.ui.mapSegmentationSelector):
            combo.currentNodeChanged.connect(self.updateParameterNodeFromGUI)
        for selector, _node, _segment in _SEGMENTS:
            getattr(self.ui, selector).currentNodeChanged.connect(self.updateParameterNodeFromGUI)
            getattr(self.ui, selector).currentSegmentChanged.connect(self.updateParameterNodeFromGUI)
        for button in (self.ui.healthyRadioButton, self.ui.regenerateRadioButton):
            button.toggled.connect(self.updateParameterNodeFromGUI)
        for w in ("strengthSliderWidget", "guidanceSliderWidget", "stepsSpinBox", "seedSpinBox", "variantsSpinBox",
                  "marginSpinBox", "featherSpinBox", "renderStepsSpinBox", "renderSeedSpinBox"):
            getattr(self.ui, w).valueChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.noduleLabelComboBox.currentIndexChanged.connect(self.updateParameterNodeFromGUI)
        for w in ("modelDirPathLineEdit", "sdmModelDirPathLineEdit"):
            getattr(self.ui, w).currentPathChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.fillButton.clicked.connect(self.onFill)
        self.ui.buildMapButton.clicked.connect(self.onBuildMap)
        self.ui.renderButton.clicked.connect(self.onRender)
        self.ui.cancelButton.clicked.connect(self.job.cancel)
        self.observeScene()
        self.initializeParameterNode()

    def cleanup(self):
        self.job.cleanup()
        self.removeObservers()
        workers.release(MODULE)  # the last RadSynth module to go stops the worker process and frees its models

    # -- parameter node -----------------------------------------------------------------------------------------
    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if self._parameterNode.inputVolume is None:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def updateGUIFromParameterNode(self, caller=None, event=None):
        p = self._parameterNode
        if p is None or self._updating:
            return
        self._updating = True
        try:
            ui = self.ui
            ui.inputVolumeSelector.setCurrentNode(p.inputVolume)
            ui.mapSegmentationSelector.setCurrentNode(p.mapSegmentation)
            for selector, node, segment in _SEGMENTS:
                getattr(ui, selector).setCurrentNode(getattr(p, node))
                getattr(ui, selector).setCurrentSegmentID(getattr(p, segment))
            ui.healthyRadioButton.checked = p.mode == HEALTHY
            ui.regenerateRadioButton.checked = p.mode == REGENERATE
            for widget, name, prop in _BINDINGS:
                setattr(getattr(ui, widget), prop, getattr(p, name))
            ui.strengthSliderWidget.enabled = p.mode == REGENERATE
            self._updateButtons()
        finally:
            self._updating = False

    def updateParameterNodeFromGUI(self, *args):
        p = self._parameterNode
        if p is None or self._updating:
            return
        ui = self.ui
        wasModified = p.StartModify()
        try:
            p.inputVolume = ui.inputVolumeSelector.currentNode()
            p.mapSegmentation = ui.mapSegmentationSelector.currentNode()
            for selector, node, segment in _SEGMENTS:
                setattr(p, node, getattr(ui, selector).currentNode())
                setattr(p, segment, getattr(ui, selector).currentSegmentID() or "")
            p.mode = REGENERATE if ui.regenerateRadioButton.checked else HEALTHY
            for widget, name, prop in _BINDINGS:
                setattr(p, name, getattr(getattr(ui, widget), prop))
        finally:
            p.EndModify(wasModified)

    def _updateButtons(self):
        p, busy = self._parameterNode, self.busy()
        ct = p is not None and p.inputVolume is not None
        self.ui.fillButton.enabled = ct and bool(p.segmentID) and not busy
        self.ui.buildMapButton.enabled = ct and not busy
        self.ui.renderButton.enabled = ct and p.mapSegmentation is not None and not busy
        self.ui.cancelButton.enabled = busy

    # -- the panel's choices as the logic's parameters ----------------------------------------------------------
    def fillParameters(self):
        p = self._parameterNode
        return core.FillParameters(
            input_volume=p.inputVolume, segmentation=p.segmentation, segment_id=p.segmentID, mode=p.mode,
            strength=p.strength, steps=defaults.param("steps").engine_value(int(p.steps)), seed=int(p.seed),
            variants=int(p.variants), margin_mm=p.marginMm, feather_mm=p.featherMm, model_dir=p.modelDir or None)

    def mapParameters(self):
        p = self._parameterNode
        return core.MapParameters(input_volume=p.inputVolume, nodule_segmentation=p.noduleSegmentation,
                                  nodule_segment_id=p.noduleSegmentID, nodule_label=p.noduleLabel)

    def renderParameters(self):
        p = self._parameterNode
        return core.RenderParameters(
            input_volume=p.inputVolume, map_segmentation=p.mapSegmentation, guidance=p.guidance,
            steps=defaults.param("renderSteps").engine_value(int(p.renderSteps)), seed=int(p.renderSeed),
            margin_mm=p.marginMm, feather_mm=p.featherMm, model_dir=p.sdmModelDir or None)

    # -- running ------------------------------------------------------------------------------------------------
    def busy(self):
        return self.job is not None and self.job.busy

    def _start(self, prepare, parameters, done):
        if self.busy() or not ensure_dependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("DiffusionInpaint could not start."), waitCursor=True):
            batch = prepare(parameters)
            self.job.start(self.logic, batch, done=done)

    def onFill(self):
        self._start(self.logic.prepare_fill, self.fillParameters(), self._showVolumes)

    def onRender(self):
        self._start(self.logic.prepare_render, self.renderParameters(), self._showVolumes)

    def onBuildMap(self):
        self._start(self.logic.prepare_map, self.mapParameters(), self._showMap)

    def _say(self, text, warnings):
        self.ui.statusLabel.text = "\n".join([text, *warnings])

    def _showVolumes(self, added):
        first = added[0]["volume"]
        slicer.util.setSliceViewerLayers(background=first, fit=False)
        names = ", ".join(nodes["volume"].GetName() for nodes in added)
        self._say(_("Added {names} (marked synthetic).").format(names=names), added[0]["warnings"])

    def _showMap(self, added):
        seg = added[0]["segmentation"]
        self._parameterNode.mapSegmentation = seg
        self._say(_("Added '{name}': paint, erase or enlarge a nodule in the Segment Editor, then Render CT.")
                  .format(name=seg.GetName()), added[0]["warnings"])


class DiffusionInpaintTest(ScriptedLoadableModuleTest):
    """Builds the semantic map of the lung1 sample CT (SampleData, checksums checked) and checks its segments, as in
    Testing/mrml/test_diffusioninpaint_logic.py (which also fills and renders with test-made models)."""

    def runTest(self):
        slicer.mrmlScene.Clear()
        self.test_build_map()

    def test_build_map(self):
        sample_data.register()
        node, _tumor = sample_data.load("lung1")
        logic = DiffusionInpaintLogic()
        seg = logic.build_map(core.MapParameters(input_volume=node))["segmentation"]
        names = [seg.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(seg.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(names, [name for _value, name, _color in core.MAP_SEGMENTS])
        self.delayDisplay("Test passed")
