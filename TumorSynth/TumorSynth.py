"""TumorSynth: remove a tumour or synthesize tumour texture in a CT, as a new volume marked synthetic.

The panel only wires widgets to a parameter node and runs ``TumorSynthLib.logic`` in three phases: prepare (main
thread), execute (background thread, optionally in the worker process), apply (main thread, via a QTimer poll).
"""

import importlib.util
import logging
import os
import shutil
import sys

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# From a source checkout the engine sits next to this module's folder; an installed extension has it on sys.path.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("radsynth") is None and os.path.isdir(os.path.join(_SOURCE_ROOT, "radsynth")):
    sys.path.insert(0, _SOURCE_ROOT)

from radsynth.errors import CancelledError, RadSynthError  # noqa: E402
from TumorSynthLib import logic as core  # noqa: E402
from TumorSynthLib import panel as ops_panel  # noqa: E402

#: import name -> pip requirement, for what Slicer's Python lacks; torch comes from the PyTorch extension
PIP_REQUIREMENTS = {"monai": "monai==1.6.1", "radiomics": "pyradiomics-bhklab>=3.1.4",
                    "safetensors": "safetensors>=0.4", "einops": "einops>=0.7"}


class TumorSynth(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "TumorSynth"
        self.parent.categories = ["Synthesis"]
        self.parent.dependencies = []
        self.parent.contributors = ["RadSynth contributors"]
        self.parent.helpText = (
            "Remove a tumour (fill it with healthy-looking tissue) or synthesize tumour tissue inside a segment, "
            "with the radiomics texture of another tumour or of a preset, using diffusion models. Place a new "
            "tumour at a clicked point or in a painted region, with shape and texture sliders; move, resize or "
            "re-texture a tumour; generate several variants. Each run adds new nodes and selects them as the "
            "inputs of the next, so you can iterate.<br>"
            "Inputs are never modified. Every output volume is <b>marked synthetic</b>: its name ends in "
            "\" - synthetic\", it carries the node attribute <code>RadSynth.Synthetic=1</code>, and the mark is "
            "written into saved NRRD headers. The bundled models are demo models, for trying the software only.")
        self.parent.acknowledgementText = "Built on MONAI, pyradiomics, SimpleITK and PyTorch."


class TumorSynthLogic(ScriptedLoadableModuleLogic, core.TumorSynthLogic):
    """The Qt-free logic plus Slicer's parameter-node helpers."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        core.TumorSynthLogic.__init__(self, runner)

    def setDefaultParameters(self, parameterNode):
        from radsynth.radiomics import list_presets
        # the preset combo box shows its first entry, so the parameter must say so too
        defaults = {"Operation": core.SYNTHESIZE, "TextureSource": core.TEXTURE_PRESET, "Steps": "0",
                    "Seed": "0", "Guidance": "1.0", "Preset": (list_presets() or [""])[0], **ops_panel.DEFAULTS}
        for key, value in defaults.items():
            if not parameterNode.GetParameter(key):
                parameterNode.SetParameter(key, value)


def _default_runner():
    """The background worker when Slicer's Python launcher is found (models stay loaded, GUI unaffected)."""
    python = shutil.which("PythonSlicer") or shutil.which("PythonSlicer", path=os.path.dirname(sys.executable))
    if not python:
        return core.EngineRunner()
    from radsynth.worker import WorkerClient
    return core.EngineRunner(worker=True, client=WorkerClient(python=python))


def ensure_dependencies():
    """Install what the engine needs on first use, asking first; returns False if the user declined."""
    if importlib.util.find_spec("torch") is None:
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay("TumorSynth needs PyTorch. Install the 'PyTorch' extension from the "
                                     "Extensions Manager, restart Slicer, and try again.")
            return False
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
            return False
    missing = [req for name, req in PIP_REQUIREMENTS.items() if importlib.util.find_spec(name) is None]
    if missing:
        if not slicer.util.confirmOkCancelDisplay(
                "TumorSynth needs these Python packages, which will be downloaded and installed now:\n"
                + "\n".join(missing), "Install dependencies"):
            return False
        with slicer.util.WaitCursor():
            slicer.util.pip_install(missing)
    return True


class TumorSynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._job = self.panel = None
        self._jobLogic = self._jobDone = None
        self._updating = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TumorSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TumorSynthLogic(_default_runner())
        from radsynth.radiomics import list_presets
        self.ui.presetComboBox.addItems(list_presets())

        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._poll)
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
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.panel = ops_panel.OperationsPanel(self, ensure_dependencies)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.onCancel()
        self._timer.stop()
        self.panel.cleanup()
        self.removeObservers()
        if hasattr(self.logic.runner, "close"):
            self.logic.runner.close()  # stops the worker process and frees its models

    def enter(self):
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event):
        if self._job is not None:
            self._job.discard = True  # its nodes would land in a scene the user just closed
            self._job.cancel.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node -----------------------------------------------------------------------------------------
    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.GetNodeReference("InputVolume"):
            volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volume:
                self._parameterNode.SetNodeReferenceID("InputVolume", volume.GetID())
        self.panel.resetTexture(onlyIfUnset=True)

    def setParameterNode(self, node):
        if node is not None:
            self.logic.setDefaultParameters(node)
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        p = self._parameterNode
        if p is None or self._updating:
            return
        self._updating = True
        try:
            ui = self.ui
            ui.inputVolumeSelector.setCurrentNode(p.GetNodeReference("InputVolume"))
            ui.segmentSelector.setCurrentNode(p.GetNodeReference("Segmentation"))
            ui.segmentSelector.setCurrentSegmentID(p.GetParameter("SegmentID"))
            ui.textureVolumeSelector.setCurrentNode(p.GetNodeReference("TextureVolume"))
            ui.textureSegmentSelector.setCurrentNode(p.GetNodeReference("TextureSegmentation"))
            ui.textureSegmentSelector.setCurrentSegmentID(p.GetParameter("TextureSegmentID"))
            synthesize = p.GetParameter("Operation") == core.SYNTHESIZE
            ui.synthesizeRadioButton.checked, ui.removeRadioButton.checked = synthesize, not synthesize
            from_segment = p.GetParameter("TextureSource") == core.TEXTURE_SEGMENT
            ui.textureSegmentRadioButton.checked, ui.texturePresetRadioButton.checked = from_segment, not from_segment
            if p.GetParameter("Preset"):
                ui.presetComboBox.currentText = p.GetParameter("Preset")
            ui.stepsSpinBox.value = int(p.GetParameter("Steps") or 0)
            ui.seedSpinBox.value = int(p.GetParameter("Seed") or 0)
            ui.guidanceSliderWidget.value = float(p.GetParameter("Guidance") or core.DEFAULT_GUIDANCE)
            ui.modelDirPathLineEdit.currentPath = p.GetParameter("ModelDir")
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
        p.SetNodeReferenceID("InputVolume", ui.inputVolumeSelector.currentNodeID)
        p.SetNodeReferenceID("Segmentation", ui.segmentSelector.currentNodeID())
        p.SetParameter("SegmentID", ui.segmentSelector.currentSegmentID() or "")
        p.SetNodeReferenceID("TextureVolume", ui.textureVolumeSelector.currentNodeID)
        p.SetNodeReferenceID("TextureSegmentation", ui.textureSegmentSelector.currentNodeID())
        p.SetParameter("TextureSegmentID", ui.textureSegmentSelector.currentSegmentID() or "")
        p.SetParameter("Operation", core.SYNTHESIZE if ui.synthesizeRadioButton.checked else core.REMOVE)
        p.SetParameter("TextureSource",
                       core.TEXTURE_SEGMENT if ui.textureSegmentRadioButton.checked else core.TEXTURE_PRESET)
        p.SetParameter("Preset", ui.presetComboBox.currentText)
        p.SetParameter("Steps", str(ui.stepsSpinBox.value))
        p.SetParameter("Seed", str(ui.seedSpinBox.value))
        p.SetParameter("Guidance", str(ui.guidanceSliderWidget.value))
        p.SetParameter("ModelDir", ui.modelDirPathLineEdit.currentPath)
        self.panel.updateParameterNode(p)
        p.EndModify(wasModified)

    def parameters(self):
        p = self._parameterNode
        return core.TumorSynthParameters(
            operation=p.GetParameter("Operation"), input_volume=p.GetNodeReference("InputVolume"),
            segmentation=p.GetNodeReference("Segmentation"), segment_id=p.GetParameter("SegmentID"),
            texture_source=p.GetParameter("TextureSource"),
            texture_segmentation=p.GetNodeReference("TextureSegmentation"),
            texture_segment_id=p.GetParameter("TextureSegmentID"),
            texture_volume=p.GetNodeReference("TextureVolume"), preset=p.GetParameter("Preset"),
            steps=int(p.GetParameter("Steps") or 0) or None, seed=int(p.GetParameter("Seed") or 0),
            guidance=float(p.GetParameter("Guidance") or core.DEFAULT_GUIDANCE),
            model_dir=p.GetParameter("ModelDir") or None)

    def _updateButtons(self):
        p, running = self._parameterNode, self._job is not None
        ready = (p is not None and p.GetNodeReference("InputVolume") is not None
                 and bool(p.GetParameter("SegmentID")))
        self.ui.applyButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        self.panel.updateButtons(running)

    # -- running ------------------------------------------------------------------------------------------------
    def busy(self):
        return self._job is not None

    def onApply(self):
        if self._job is not None or not ensure_dependencies():
            return
        try:
            request = self.logic.prepare(self.parameters())
        except RadSynthError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="TumorSynth")
            return
        self.startJob(self.logic, request, self._showSynthesis)

    def startJob(self, logic, request, done):
        """Run ``logic.execute`` in the background; on success ``logic.apply`` adds the nodes, then ``done(nodes)``."""
        self._job, self._jobLogic, self._jobDone = core.BackgroundRun(logic, request), logic, done
        self._job.start()
        self.ui.progressBar.value = 0
        self._timer.start()
        self._updateButtons()

    def onCancel(self):
        if self._job is not None:
            self._job.cancel.cancel()
            self.ui.statusLabel.text = "Cancelling…"

    def _poll(self):
        job = self._job
        if job is None:
            self._timer.stop()
            return
        self.ui.progressBar.value = int(1000 * min(max(job.fraction, 0.0), 1.0))
        if not job.cancel.cancelled:
            self.ui.statusLabel.text = f"{job.stage} ({100 * job.fraction:.0f}%)"
        if job.running:
            return
        self._timer.stop()
        self._job = None
        self._updateButtons()
        self._finish(job)

    def _finish(self, job):
        if isinstance(job.error, CancelledError) or job.discard:
            self.ui.statusLabel.text = "Cancelled; nothing was changed."
            return
        if job.error is not None:
            if not isinstance(job.error, RadSynthError):
                logging.error("TumorSynth failed", exc_info=job.error)
            self.ui.statusLabel.text = "Failed; nothing was changed."
            slicer.util.errorDisplay(str(job.error), windowTitle="TumorSynth")
            return
        try:
            nodes = self._jobLogic.apply(job.request, job.result, slicer.mrmlScene)
        except RadSynthError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="TumorSynth")
            return
        self.ui.progressBar.value = 1000
        self._jobDone(nodes)

    def _showSynthesis(self, nodes):
        slicer.util.setSliceViewerLayers(background=nodes["volume"], fit=False)
        self.ui.statusLabel.text = f"Added '{nodes['volume'].GetName()}' (marked synthetic)."


class TumorSynthTest(ScriptedLoadableModuleTest):
    """Remove, synthesize, move and resize on the lung1 sample CT, as in Testing/mrml/test_tumorsynth_*.py."""

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
        from radsynth.sample_data import sample_path
        from radsynth.volume import SYNTHETIC_KEY, read_volume

        self.delayDisplay("Loading lung1")
        ct, label = read_volume(sample_path("lung1", "image")), read_volume(sample_path("lung1", "label"))
        scene = slicer.mrmlScene
        node = mrml.volume_to_node(ct, scene, "lung1")
        seg = mrml.mask_to_segmentation_node(ct.with_array(self._nodule(ct, label)), scene, "nodule", "nodule", node)
        segment_id = seg.GetSegmentation().GetNthSegmentID(0)
        logic = TumorSynthLogic()
        for operation, seg_name in ((core.REMOVE, "lung1 - removed region"),
                                    (core.SYNTHESIZE, "lung1 - synthetic tumor")):
            self.delayDisplay(f"Running {operation}")
            out = logic.run(core.TumorSynthParameters(operation=operation, input_volume=node, segmentation=seg,
                                                      segment_id=segment_id, preset="lung1-tumor"))
            self.assertEqual(out["volume"].GetName(), "lung1 - synthetic")
            self.assertEqual(out["volume"].GetAttribute(SYNTHETIC_KEY), "1")
            self.assertEqual(out["segmentation"].GetName(), seg_name)
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
        self.delayDisplay("Test passed")
