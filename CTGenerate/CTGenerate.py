"""CTGenerate: generate CT with diffusion models — grow a CT volume slice by slice from a seed slice (ASCII with
IC-Net calibration), or generate one that follows a segmentation's organs ("Choose organs"), as new volumes marked
synthetic. While a run goes on, the growing volume is shown in the views (one "growing" node, updated in place
from a timer on the main thread; ``CTGenerateLib.logic.CTGenerateLogic.update_live``).

The panel wires widgets to a typed parameter node (parameters in ``CTGenerateLib/defaults.py``, engine defaults
from the ``generate slices`` declaration) and runs the Qt-free ``CTGenerateLib`` logic as a ``RadSynthLib``
background job: prepare (main thread), execute (background thread, in the worker process when Slicer's Python
launcher is found), apply (main thread, from a QTimer poll). Cancel keeps the slices done, labelled partial.
"""

import importlib.util
import os
import sys

import qt

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
from CTGenerateLib import defaults  # noqa: E402
from CTGenerateLib import logic as core  # noqa: E402
from CTGenerateLib import organs as organs_core  # noqa: E402
from CTGenerateLib import volume_panel  # noqa: E402

MODULE = core.MODULE

CTGenerateParameterNode = parameters.wrapper_class(
    "CTGenerateParameterNode", defaults.PARAMETERS, wrap=parameterNodeWrapper, node_type=lambda n: getattr(slicer, n),
    within_range=WithinRange, choice=Choice, module=__name__)


class CTGenerate(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CTGenerate")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = about.CONTRIBUTORS
        self.parent.helpText = about.help_text("CTGenerate")
        self.parent.acknowledgementText = about.acknowledgement("CTGenerate")
        slicer.app.connect("startupCompleted()", sample_data.register)
        # synthetic volumes exported from the DICOM module say so (Synthetic Data YES, DERIVED)
        slicer.app.connect("startupCompleted()", dicom_plugin.register)


def ensure_dependencies():
    return dependencies.ensure(MODULE, tr=_)


class CTGenerateLogic(ScriptedLoadableModuleLogic, core.CTGenerateLogic):
    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        core.CTGenerateLogic.__init__(self, runner)

    def getParameterNode(self):
        return CTGenerateParameterNode(super().getParameterNode())


# widget name -> (parameter, Qt property)
_BINDINGS = (("seedFromRedViewCheckBox", "seedFromRedView", "checked"), ("seedSliceSpinBox", "seedSlice", "value"),
             ("directionComboBox", "direction", "currentText"), ("slicesSpinBox", "slices", "value"),
             ("kSpinBox", "k", "value"), ("icnetCheckBox", "icnet", "checked"),
             ("samplerComboBox", "sampler", "currentText"), ("stepsSpinBox", "steps", "value"),
             ("seedSpinBox", "seed", "value"), ("modelDirPathLineEdit", "modelDir", "currentPath"),
             ("organStartSpinBox", "organStart", "value"), ("organSlicesSpinBox", "organSlices", "value"),
             ("guidanceSpinBox", "guidance", "value"), ("organSeedSpinBox", "organSeed", "value"),
             ("variantsSpinBox", "variants", "value"))
#: how often the growing volume is refreshed in the views while a run goes on
LIVE_MS = 400


class CTGenerateWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self.job = None
        self.organsLogic = self._request = self._runLogic = None
        self._updating = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CTGenerate.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CTGenerateLogic(workers.acquire(MODULE))
        self.organsLogic = organs_core.OrgansLogic(self.logic.runner)
        self.liveTimer = qt.QTimer()
        self.liveTimer.setInterval(LIVE_MS)
        self.liveTimer.timeout.connect(self._showGrowing)
        for widget, name, _prop in _BINDINGS:   # tooltips: help, range and the reason for the default
            p = defaults.param(name)
            w = getattr(self.ui, widget)
            reason = p.option.reason if p.option is not None else ""
            w.toolTip = "\n".join(t for t in (w.toolTip, p.help, reason) if t)
        self.job = JobPanel(MODULE, self.ui.progressBar, self.ui.statusLabel, onChanged=self._jobChanged)
        self.ui.inputVolumeSelector.currentNodeChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.segmentationSelector.currentNodeChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.segmentationSelector.currentNodeChanged.connect(self._fillOrgans)
        for w in ("seedFromRedViewCheckBox", "icnetCheckBox"):
            getattr(self.ui, w).toggled.connect(self.updateParameterNodeFromGUI)
        for w in ("seedSliceSpinBox", "slicesSpinBox", "kSpinBox", "stepsSpinBox", "seedSpinBox", "organStartSpinBox",
                  "organSlicesSpinBox", "guidanceSpinBox", "organSeedSpinBox", "variantsSpinBox"):
            getattr(self.ui, w).valueChanged.connect(self.updateParameterNodeFromGUI)
        for w in ("directionComboBox", "samplerComboBox"):
            getattr(self.ui, w).currentIndexChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.modelDirPathLineEdit.currentPathChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.organsApplyButton.clicked.connect(self.onGenerateOrgans)
        self.ui.cancelButton.clicked.connect(self.job.cancel)
        self.observeScene()
        self.initializeParameterNode()
        # "Whole volume" (latent diffusion): its own widgets and logic, sharing this module's engine runner
        self.wholeVolume = volume_panel.WholeVolumeSection(
            self.layout, volume_panel.core.VolumeLogic(self.logic.runner))

    def cleanup(self):
        self.liveTimer.stop()
        self.job.cleanup()
        self.wholeVolume.cleanup()
        self.removeObservers()
        workers.release(MODULE)

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
            self.ui.inputVolumeSelector.setCurrentNode(p.inputVolume)
            self.ui.segmentationSelector.setCurrentNode(p.segmentation)
            for widget, name, prop in _BINDINGS:
                setattr(getattr(self.ui, widget), prop, getattr(p, name))
            self.ui.seedSliceSpinBox.enabled = not p.seedFromRedView
            self._updateButtons()
        finally:
            self._updating = False

    def updateParameterNodeFromGUI(self, *args):
        p = self._parameterNode
        if p is None or self._updating:
            return
        wasModified = p.StartModify()
        try:
            p.inputVolume = self.ui.inputVolumeSelector.currentNode()
            p.segmentation = self.ui.segmentationSelector.currentNode()
            for widget, name, prop in _BINDINGS:
                setattr(p, name, getattr(getattr(self.ui, widget), prop))
        finally:
            p.EndModify(wasModified)

    def _updateButtons(self):
        p = self._parameterNode
        busy = self.job is not None and self.job.busy
        self.ui.applyButton.enabled = p is not None and p.inputVolume is not None and not busy
        self.ui.organsApplyButton.enabled = p is not None and p.segmentation is not None and not busy
        self.ui.cancelButton.enabled = busy

    def parameters(self):
        """The panel's choices as the logic's parameters (the red view's slice when so chosen)."""
        p = self._parameterNode
        seed = defaults.param("seedSlice").engine_value(p.seedSlice)
        if p.seedFromRedView and p.inputVolume is not None:
            red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
            seed = core.seed_slice_from_slice_node(p.inputVolume, red)
        return core.CTGenerateParameters(
            input_volume=p.inputVolume, seed_slice=seed, direction=p.direction, slices=p.slices,
            k=defaults.param("k").engine_value(p.k), icnet=p.icnet, sampler=p.sampler,
            steps=defaults.param("steps").engine_value(p.steps), seed=p.seed, model_dir=p.modelDir or None)

    def _fillOrgans(self, *args):
        """One checkable row per segment of the chosen segmentation, all ticked."""
        self.ui.organsListWidget.clear()
        seg = self.ui.segmentationSelector.currentNode()
        for _sid, name in (organs_core.segment_names(seg) if seg is not None else []):
            item = qt.QListWidgetItem(name)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked)
            self.ui.organsListWidget.addItem(item)

    def organParameters(self):
        p = self._parameterNode
        items = [self.ui.organsListWidget.item(i) for i in range(self.ui.organsListWidget.count)]
        keep = [item.text() for item in items if item.checkState() == qt.Qt.Checked]
        return organs_core.OrganParameters(
            segmentation=p.segmentation, reference_volume=p.inputVolume,
            keep=None if len(keep) == len(items) else keep,
            start=defaults.param("organStart").engine_value(p.organStart), slices=p.organSlices,
            guidance=p.guidance, icnet=p.icnet, sampler=p.sampler,
            steps=defaults.param("steps").engine_value(p.steps), seed=p.organSeed, variants=p.variants,
            model_dir=p.modelDir or None)

    def _start(self, logic, params):
        if not ensure_dependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("CTGenerate could not start."), waitCursor=True):
            request = logic.prepare(params)
            self._request, self._runLogic = request, logic
            self.job.start(logic, request, done=self.showResult)
            self.liveTimer.start()

    def onApply(self):
        self._start(self.logic, self.parameters())

    def onGenerateOrgans(self):
        self._start(self.organsLogic, self.organParameters())

    def _showGrowing(self):
        """Main thread, while the job runs: the volume grown so far, in one node shown in the views."""
        if self._request is None or not self.job.busy:
            return
        shown = self._request.live_node_id
        node = self._runLogic.update_live(self._request, slicer.mrmlScene)
        if node is not None and not shown:
            slicer.util.setSliceViewerLayers(background=node, fit=True)

    def _jobChanged(self):
        if not self.job.busy and self._request is not None:
            self.liveTimer.stop()
            self._runLogic.end_live(self._request, slicer.mrmlScene)   # cancelled or failed: no growing node left
            self._request = self._runLogic = None
        self._updateButtons()

    def showResult(self, nodes):
        node = nodes["volume"]
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        if nodes.get("partial"):
            self.ui.statusLabel.text = _("Cancelled: the slices generated so far were added, labelled partial.")
        else:
            self.ui.statusLabel.text = _("Done: {name}").format(name=node.GetName())


class CTGenerateTest(ScriptedLoadableModuleTest):
    """Grows two slices up from the lung1 sample CT (SampleData) with the demo model and checks the geometry."""

    def runTest(self):
        slicer.mrmlScene.Clear()
        self.test_grow_from_seed()

    def test_grow_from_seed(self):
        sample_data.register()
        node, _tumor = sample_data.load("lung1")
        logic = CTGenerateLogic()
        nodes = logic.run(core.CTGenerateParameters(input_volume=node, seed_slice=20, slices=2, steps=4))
        out = nodes["volume"]
        self.assertEqual(out.GetImageData().GetDimensions()[2], 3)
        self.assertEqual(out.GetSpacing(), node.GetSpacing())
