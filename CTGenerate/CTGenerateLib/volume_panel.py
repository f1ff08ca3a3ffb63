"""CTGenerate's "Whole volume" section: widgets made here (not in the .ui, so it stays independent of the slice
section), the job run by ``RadSynthLib.widgets.JobPanel`` (progress with ETA, Cancel), the work by the Qt-free
:mod:`CTGenerateLib.volume_logic`. Ranges, defaults and tooltips come from the ``generate volume`` declaration;
size, spacing and steps start at the chosen model's card."""

import ctk
import qt
import slicer
from slicer.i18n import tr as _

from radsynth.pipelines.generate.volume_ops import VOLUME
from RadSynthLib.widgets import JobPanel

from . import volume_logic as core

MODULE = "CTGenerate"


def _tip(name: str) -> str:
    opt = VOLUME.option(name)
    return "\n".join(t for t in (opt.describe(), opt.reason) if t)


class WholeVolumeSection:
    """Builds the section into ``layout`` (the module panel's) and runs it."""

    def __init__(self, layout, logic=None):
        self.logic = logic or core.VolumeLogic()
        box = ctk.ctkCollapsibleButton()
        box.text = _("Whole volume")
        box.collapsed = True
        layout.addWidget(box)
        form = qt.QFormLayout(box)

        self.modelCombo = qt.QComboBox()
        self.modelCombo.toolTip = _tip("model")
        form.addRow(_("Model:"), self.modelCombo)
        self.sizeSpins = [self._spin(8, 1024, 8) for _i in range(3)]
        self.spacingSpins = [self._double(0.1, 10.0) for _i in range(3)]
        form.addRow(_("Size (voxels):"), self._row(self.sizeSpins, _tip("size")))
        form.addRow(_("Spacing (mm):"), self._row(self.spacingSpins, _tip("spacing")))
        self.fovLabel = qt.QLabel()
        form.addRow(_("Field of view:"), self.fovLabel)
        self.regionEdit = qt.QLineEdit()
        self.regionEdit.placeholderText = _("none (e.g. chest or chest,abdomen)")
        self.regionEdit.toolTip = _tip("body_region")
        form.addRow(_("Body region:"), self.regionEdit)
        opt = VOLUME.option("steps")
        self.stepsSpin = self._spin(int(opt.min), int(opt.max), 1)
        self.stepsSpin.toolTip = _tip("steps")
        form.addRow(_("Steps:"), self.stepsSpin)
        self.samplerCombo = qt.QComboBox()
        self.samplerCombo.addItems(["(model's)", *VOLUME.option("sampler").choices])
        self.samplerCombo.toolTip = _tip("sampler")
        form.addRow(_("Sampler:"), self.samplerCombo)
        self.seedSpin = self._spin(0, 2 ** 31 - 1, 1)
        self.seedSpin.value = VOLUME.option("seed").default
        self.seedSpin.toolTip = _tip("seed")
        form.addRow(_("Seed:"), self.seedSpin)
        self.variantsSpin = self._spin(1, core.MAX_VARIANTS, 1)
        self.variantsSpin.toolTip = _("Volumes to generate, with seeds seed, seed+1, ...")
        form.addRow(_("Variants:"), self.variantsSpin)
        self.segmentationSelector = slicer.qMRMLNodeComboBox()
        self.segmentationSelector.nodeTypes = ["vtkMRMLSegmentationNode"]
        self.segmentationSelector.noneEnabled = True
        self.segmentationSelector.addEnabled = False
        self.segmentationSelector.removeEnabled = False
        self.segmentationSelector.setMRMLScene(slicer.mrmlScene)
        self.segmentationSelector.setCurrentNode(None)
        self.segmentationSelector.toolTip = _("Follow an organ segmentation (e.g. TotalSegmentator's): its segments "
                                              "are mapped by name onto the model's labels.")
        form.addRow(_("Follow segmentation:"), self.segmentationSelector)
        buttons = qt.QHBoxLayout()
        self.generateButton = qt.QPushButton(_("Generate"))
        self.cancelButton = qt.QPushButton(_("Cancel"))
        buttons.addWidget(self.generateButton)
        buttons.addWidget(self.cancelButton)
        form.addRow(buttons)
        self.progressBar = qt.QProgressBar()
        self.progressBar.maximum = 1000
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        form.addRow(self.progressBar)
        form.addRow(self.statusLabel)
        self.job = JobPanel(MODULE, self.progressBar, self.statusLabel, onChanged=self._updateButtons)

        for w in (*self.sizeSpins, *self.spacingSpins):
            w.valueChanged.connect(self._updateFov)
        self.modelCombo.currentIndexChanged.connect(self._modelChanged)
        self.generateButton.clicked.connect(self.onGenerate)
        self.cancelButton.clicked.connect(self.job.cancel)
        self.refreshModels()
        self._updateButtons()

    @staticmethod
    def _spin(lo, hi, step):
        w = qt.QSpinBox()
        w.minimum, w.maximum, w.singleStep = lo, hi, step
        return w

    @staticmethod
    def _double(lo, hi):
        w = qt.QDoubleSpinBox()
        w.minimum, w.maximum, w.decimals, w.singleStep = lo, hi, 2, 0.25
        return w

    @staticmethod
    def _row(widgets, tip):
        row = qt.QWidget()
        h = qt.QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        for w in widgets:
            w.toolTip = tip
            h.addWidget(w)
        return row

    def refreshModels(self):
        self.modelCombo.clear()
        self.modelCombo.addItems(core.available_models() or [core.DEMO_MODEL])

    def _modelChanged(self, *args):
        """Size, spacing and steps start at the chosen model's card (what it supports)."""
        try:
            card = core.model_card(self.modelCombo.currentText or None)
        except Exception as exc:  # noqa: BLE001 - a broken card is shown, not raised in a Qt slot
            self.statusLabel.text = str(exc)
            return
        grid = card.get("grid", {})
        for spin, v in zip(self.sizeSpins, grid.get("default_size") or ()):
            spin.value = int(v)
        for spin, v in zip(self.spacingSpins, grid.get("default_spacing_mm") or ()):
            spin.value = float(v)
        self.stepsSpin.value = int(card.get("sampling", {}).get("default_steps") or 20)
        self.statusLabel.text = card.get("warning") or card.get("title", "")
        self._updateFov()

    def _updateFov(self, *args):
        fov = [s.value * p.value for s, p in zip(self.sizeSpins, self.spacingSpins)]
        self.fovLabel.text = " × ".join(f"{v:.0f}" for v in fov) + " mm"

    def _updateButtons(self):
        busy = self.job.busy if hasattr(self, "job") else False
        self.generateButton.enabled = not busy
        self.cancelButton.enabled = busy

    def parameters(self):
        sampler = self.samplerCombo.currentText
        return core.VolumeParameters(
            model=self.modelCombo.currentText or None, size=tuple(int(s.value) for s in self.sizeSpins),
            spacing=tuple(float(s.value) for s in self.spacingSpins), body_region=self.regionEdit.text or None,
            steps=int(self.stepsSpin.value), sampler=None if sampler.startswith("(") else sampler,
            seed=int(self.seedSpin.value), variants=int(self.variantsSpin.value),
            segmentation=self.segmentationSelector.currentNode())

    def onGenerate(self):
        with slicer.util.tryWithErrorDisplay(_("CTGenerate could not start."), waitCursor=True):
            request = self.logic.prepare(self.parameters())
            self.job.start(self.logic, request, done=self.showResult)

    def showResult(self, nodes):
        node = nodes["volume"]
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        self.statusLabel.text = "\n".join([_("Done: {name}").format(name=node.GetName()), *nodes["warnings"]])

    def cleanup(self):
        self.job.cleanup()
