"""TumorSynth: remove a tumour or synthesize tumour texture in a CT, as a new volume marked synthetic.

The panel wires widgets to a typed parameter node (``parameterNodeWrapper``, parameters declared in
``TumorSynthLib/defaults.py``, engine defaults from the operations' declarations) and runs the Qt-free
``TumorSynthLib`` logic as a ``RadSynthLib`` background job: prepare (main thread), execute (background thread, in
the worker process when Slicer's Python launcher is found), apply (main thread, from a QTimer poll).
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

# From a source checkout the engine and the shared library sit next to this module's folder; an installed
# extension has them on sys.path.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if any(importlib.util.find_spec(name) is None for name in ("radsynth", "RadSynthLib")) \
        and os.path.isdir(os.path.join(_SOURCE_ROOT, "RadSynthLib")):
    sys.path.insert(0, _SOURCE_ROOT)

from radsynth.errors import RadSynthError  # noqa: E402
from RadSynthLib import about, dependencies, dicom_plugin, parameters, sample_data, workers  # noqa: E402
from RadSynthLib.widgets import JobPanel, ModuleWidgetMixin  # noqa: E402
from TumorSynthLib import defaults  # noqa: E402
from TumorSynthLib import logic as core  # noqa: E402
from TumorSynthLib import panel as ops_panel  # noqa: E402

MODULE = core.MODULE

#: typed parameters; names, defaults and ranges come from TumorSynthLib/defaults.py (the engine's declarations)
TumorSynthParameterNode = parameters.wrapper_class(
    "TumorSynthParameterNode", defaults.PARAMETERS, wrap=parameterNodeWrapper, node_type=lambda n: getattr(slicer, n),
    within_range=WithinRange, choice=Choice, module=__name__)


class TumorSynth(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("TumorSynth")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = about.CONTRIBUTORS
        self.parent.helpText = about.help_text("TumorSynth")
        self.parent.acknowledgementText = about.acknowledgement("TumorSynth")
        # the sample chest CTs in the SampleData module (the self-test loads them from there)
        slicer.app.connect("startupCompleted()", sample_data.register)
        # synthetic volumes exported from the DICOM module say so (Synthetic Data YES, DERIVED)
        slicer.app.connect("startupCompleted()", dicom_plugin.register)


def ensure_dependencies():
    """Install what the engine needs on first use, asking first; False if the user declined or must act first."""
    return dependencies.ensure(MODULE, tr=_)


class TumorSynthLogic(ScriptedLoadableModuleLogic, core.TumorSynthLogic):
    """The Qt-free logic plus Slicer's (typed) parameter node."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        core.TumorSynthLogic.__init__(self, runner)

    def getParameterNode(self):
        return TumorSynthParameterNode(super().getParameterNode())


class TumorSynthWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self.job = self.panel = None
        self._updating = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TumorSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        # one background worker shared by the RadSynth modules; released in cleanup
        self.logic = TumorSynthLogic(workers.acquire(MODULE))
        from radsynth.radiomics import list_presets
        self.ui.presetComboBox.addItems(list_presets())
        self._showDeclarations()

        self.job = JobPanel(MODULE, self.ui.progressBar, self.ui.statusLabel, onChanged=self._updateButtons)
        for combo in (self.ui.inputVolumeSelector, self.ui.textureVolumeSelector):
            combo.currentNodeChanged.connect(self.updateParameterNodeFromGUI)
        for selector in (self.ui.segmentSelector, self.ui.textureSegmentSelector):
            selector.currentNodeChanged.connect(self.updateParameterNodeFromGUI)
            selector.currentSegmentChanged.connect(self.updateParameterNodeFromGUI)
        for button in (self.ui.removeRadioButton, self.ui.synthesizeRadioButton, self.ui.texturePresetRadioButton,
                       self.ui.textureSegmentRadioButton):
            button.toggled.connect(self.updateParameterNodeFromGUI)
        self.ui.presetComboBox.currentIndexChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.stepsSpinBox.valueChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.seedSpinBox.valueChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.guidanceSliderWidget.valueChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.modelDirPathLineEdit.currentPathChanged.connect(self.updateParameterNodeFromGUI)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.cancelButton.clicked.connect(self.job.cancel)
        self.panel = ops_panel.OperationsPanel(self, ensure_dependencies)
        self.observeScene()
        self.initializeParameterNode()

    def _showDeclarations(self):
        """Ranges and tooltips of the engine options from their declarations (the .ui agrees, tested)."""
        ui = self.ui
        for widget, name in ((ui.stepsSpinBox, "steps"), (ui.seedSpinBox, "seed"),
                             (ui.guidanceSliderWidget, "guidance")):
            p = defaults.param(name)
            widget.minimum, widget.maximum = p.minimum, p.maximum
            reason = p.option.reason if p.option is not None else ""
            widget.toolTip = "\n".join(t for t in (widget.toolTip, p.help, reason) if t)

    def cleanup(self):
        self.job.cleanup()
        self.panel.cleanup()
        self.removeObservers()
        workers.release(MODULE)  # the last RadSynth module to go stops the worker process and frees its models




    # -- parameter node -----------------------------------------------------------------------------------------
    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if p.inputVolume is None:
            p.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not p.preset and self.ui.presetComboBox.count:
            p.preset = self.ui.presetComboBox.itemText(0)  # the combo box shows its first entry
        self.panel.resetTexture(onlyIfUnset=True)

    def updateGUIFromParameterNode(self, caller=None, event=None):
        p = self._parameterNode
        if p is None or self._updating:
            return
        self._updating = True
        try:
            ui = self.ui
            ui.inputVolumeSelector.setCurrentNode(p.inputVolume)
            ui.segmentSelector.setCurrentNode(p.segmentation)
            ui.segmentSelector.setCurrentSegmentID(p.segmentID)
            ui.textureVolumeSelector.setCurrentNode(p.textureVolume)
            ui.textureSegmentSelector.setCurrentNode(p.textureSegmentation)
            ui.textureSegmentSelector.setCurrentSegmentID(p.textureSegmentID)
            synthesize = p.operation == defaults.SYNTHESIZE
            ui.synthesizeRadioButton.checked, ui.removeRadioButton.checked = synthesize, not synthesize
            from_segment = p.textureSource == defaults.TEXTURE_SEGMENT
            ui.textureSegmentRadioButton.checked, ui.texturePresetRadioButton.checked = from_segment, not from_segment
            if p.preset:
                ui.presetComboBox.currentText = p.preset
            ui.stepsSpinBox.value = p.steps
            ui.seedSpinBox.value = p.seed
            ui.guidanceSliderWidget.value = p.guidance
            ui.modelDirPathLineEdit.currentPath = p.modelDir
            ui.textureCollapsibleButton.enabled = synthesize
            ui.guidanceSliderWidget.enabled = synthesize
            for w in (ui.presetComboBox, ui.presetLabel):
                w.visible = not from_segment
            for w in (ui.textureVolumeSelector, ui.textureVolumeLabel, ui.textureSegmentSelector,
                      ui.textureSegmentLabel):
                w.visible = from_segment
            self.panel.updateGUI(p)
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
            p.segmentation = ui.segmentSelector.currentNode()
            p.segmentID = ui.segmentSelector.currentSegmentID() or ""
            p.textureVolume = ui.textureVolumeSelector.currentNode()
            p.textureSegmentation = ui.textureSegmentSelector.currentNode()
            p.textureSegmentID = ui.textureSegmentSelector.currentSegmentID() or ""
            p.operation = defaults.SYNTHESIZE if ui.synthesizeRadioButton.checked else defaults.REMOVE
            p.textureSource = (defaults.TEXTURE_SEGMENT if ui.textureSegmentRadioButton.checked
                               else defaults.TEXTURE_PRESET)
            p.preset = ui.presetComboBox.currentText
            p.steps = int(ui.stepsSpinBox.value)
            p.seed = int(ui.seedSpinBox.value)
            p.guidance = float(ui.guidanceSliderWidget.value)
            p.modelDir = ui.modelDirPathLineEdit.currentPath
            self.panel.updateParameterNode(p)
        finally:
            p.EndModify(wasModified)

    def parameters(self):
        p = self._parameterNode
        return core.TumorSynthParameters(
            operation=p.operation, input_volume=p.inputVolume, segmentation=p.segmentation,
            segment_id=p.segmentID, texture_source=p.textureSource, texture_segmentation=p.textureSegmentation,
            texture_segment_id=p.textureSegmentID, texture_volume=p.textureVolume, preset=p.preset,
            steps=defaults.steps_value(p.steps), seed=p.seed, guidance=p.guidance, model_dir=p.modelDir or None)

    def _updateButtons(self):
        p, running = self._parameterNode, self.busy()
        ready = p is not None and p.inputVolume is not None and bool(p.segmentID)
        self.ui.applyButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        self.panel.updateButtons(running)

    # -- running ------------------------------------------------------------------------------------------------
    def busy(self):
        return self.job is not None and self.job.busy

    def onApply(self):
        if self.busy() or not ensure_dependencies():
            return
        try:
            request = self.logic.prepare(self.parameters())
        except RadSynthError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle=MODULE)
            return
        self.startJob(self.logic, request, self._showSynthesis)

    def startJob(self, logic, request, done):
        """Run ``logic.execute`` in the background; on success ``logic.apply`` adds the nodes, then ``done(nodes)``."""
        self.job.start(logic, request, done)

    def _showSynthesis(self, nodes):
        slicer.util.setSliceViewerLayers(background=nodes["volume"], fit=False)
        self.ui.statusLabel.text = _("Added '{name}' (marked synthetic).").format(name=nodes["volume"].GetName())


class TumorSynthTest(ScriptedLoadableModuleTest):
    """Remove, synthesize, move and resize on the lung1 sample CT (from SampleData, checksums checked), as in
    Testing/mrml/test_tumorsynth_*.py; results must land under the input's study."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_remove_and_synthesize()

    def _nodule(self, ct, label):
        """A 15 mm sphere deep in aerated lung, far from the labelled tumour."""
        import numpy as np
        from scipy import ndimage
        spacing = np.asarray(ct.spacing)[::-1]
        parts, n = ndimage.label(ct.array < -500)
        border = set(np.unique(np.concatenate([parts[:, [0, -1], :].ravel(), parts[:, :, [0, -1]].ravel()])))
        lung = np.isin(parts, [i for i in range(1, n + 1) if i not in border])
        depth = ndimage.distance_transform_edt(lung, sampling=spacing)
        far = ndimage.distance_transform_edt(label.array == 0, sampling=spacing) > 40
        centre = np.unravel_index(np.argmax(np.where(far, depth, 0)), ct.shape)
        kji = np.indices(ct.shape, sparse=True)
        return (sum(((kji[a] - centre[a]) * spacing[a]) ** 2 for a in range(3)) <= 7.5 ** 2).astype(np.uint8)

    def test_remove_and_synthesize(self):
        from radsynth import mrml
        from radsynth.volume import SYNTHETIC_KEY
        from RadSynthLib import results

        self.delayDisplay("Loading lung1 from SampleData")
        sample_data.register()
        node, tumor = sample_data.load("lung1")
        scene = slicer.mrmlScene
        ct = mrml.volume_from_node(node)
        label = mrml.segment_to_mask(tumor, tumor.GetSegmentation().GetNthSegmentID(0), node)
        sh = results.subject_hierarchy(scene)
        study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "lung1 patient"), "lung1 study")
        sh.SetItemParent(sh.GetItemByDataNode(node), study)
        seg = mrml.mask_to_segmentation_node(ct.with_array(self._nodule(ct, label)), scene, "nodule", "nodule", node)
        segment_id = seg.GetSegmentation().GetNthSegmentID(0)
        logic = TumorSynthLogic()
        for operation, seg_name in ((defaults.REMOVE, "lung1 - removed region"),
                                    (defaults.SYNTHESIZE, "lung1 - synthetic tumor")):
            self.delayDisplay(f"Running {operation}")
            out = logic.run(core.TumorSynthParameters(operation=operation, input_volume=node, segmentation=seg,
                                                      segment_id=segment_id, preset="lung1-tumor"))
            self.assertEqual(out["volume"].GetName(), "lung1 - synthetic")
            self.assertEqual(out["volume"].GetAttribute(SYNTHETIC_KEY), "1")
            self.assertEqual(out["segmentation"].GetName(), seg_name)
            self.assertEqual(results.study_item(scene, out["volume"]), study)
            self.assertTrue((mrml.volume_from_node(node).array == ct.array).all())
        self.assertGreater(out["table"].GetTable().GetNumberOfRows(), 0)
        self.delayDisplay("Moving the nodule 10 mm up, then resizing the moved one")
        from TumorSynthLib import operations as ops
        centre = ops.centroid_lps(mrml.segment_to_mask(seg, segment_id, node))
        point = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "target")
        point.AddControlPoint(-centre[0], -centre[1], centre[2] + 10.0)
        logic = ops.OperationsLogic()
        moved = logic.run(ops.OperationParameters(operation=ops.MOVE, input_volume=node, segmentation=seg,
                                                  segment_id=segment_id, point=point, steps=4))[0]
        resized = logic.run(ops.OperationParameters(
            operation=ops.RESIZE, input_volume=moved["volume"], segmentation=moved["segmentation"],
            segment_id=moved["segment_id"], shape={"volume_ml": 2.0}, steps=4))[0]
        self.assertEqual(resized["volume"].GetName(), "lung1 - moved - resized - synthetic")
        self.assertEqual(results.study_item(scene, resized["volume"]), study)
        self.delayDisplay("Test passed")
