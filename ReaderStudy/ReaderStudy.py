"""ReaderStudy: read a blinded reader study (visual Turing test) in 3D Slicer, one reader at a time.

The panel wires widgets to ``ReaderStudyLib.logic.ReaderSession``, which loads one case at a time into the scene
under a neutral name ("Case 3 of 20"), records every answer at once in the study's database and resumes where the
reader stopped. Build the study and analyse it with ``radsynth reader build`` / ``radsynth reader analyse``.
"""

import importlib.util
import os
import sys

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
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
from RadSynthLib import about  # noqa: E402
from ReaderStudyLib.logic import ReaderSession  # noqa: E402

SETTINGS_KEY = "ReaderStudy/LastStudyFolder"


class ReaderStudy(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ReaderStudy")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = about.CONTRIBUTORS
        self.parent.helpText = about.help_text("ReaderStudy")
        self.parent.acknowledgementText = about.acknowledgement("ReaderStudy")


class ReaderStudyLogic(ScriptedLoadableModuleLogic):
    """The Slicer-side logic: opens a Qt-free ReaderSession on the application's scene."""

    def open(self, folder, token, scene=None):
        return ReaderSession(folder, token, scene if scene is not None else slicer.mrmlScene)


class ReaderStudyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.session = None
        self.scaleBoxes = {}

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ReaderStudy.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ReaderStudyLogic()
        self.ui.studyPathLineEdit.currentPath = qt.QSettings().value(SETTINGS_KEY, "")
        self.ui.openButton.clicked.connect(self.onOpen)
        self.ui.saveNextButton.clicked.connect(self.onSaveNext)
        self.ui.previousButton.clicked.connect(self.onPrevious)
        self.ui.presetComboBox.currentIndexChanged.connect(self.onPreset)
        self._timer = qt.QTimer()
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._updateTime)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)

    def cleanup(self):
        self._timer.stop()
        self._closeSession()
        self.removeObservers()

    def onSceneStartClose(self, caller, event):
        self._closeSession()

    # -- opening ------------------------------------------------------------------------------------------------
    def onOpen(self):
        self._closeSession()
        folder = self.ui.studyPathLineEdit.currentPath
        try:
            self.session = self.logic.open(folder, self.ui.tokenLineEdit.text)
        except RadSynthError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="ReaderStudy")
            return
        qt.QSettings().setValue(SETTINGS_KEY, folder)
        self.ui.tokenLineEdit.text = ""  # the token is personal: do not leave it in the panel
        self._buildQuestions()
        self.ui.presetComboBox.blockSignals(True)
        self.ui.presetComboBox.clear()
        self.ui.presetComboBox.addItems([p["name"] for p in self.session.study.presets])
        self.ui.presetComboBox.blockSignals(False)
        self.ui.readingCollapsibleButton.enabled = True
        self.ui.readingCollapsibleButton.collapsed = False
        self._show(self.session.show())

    def _buildQuestions(self):
        layout = self.ui.likertWidget.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.scaleBoxes = {}
        questions = self.session.study.questions
        for q in questions:
            if q["kind"] == "scale" and q["id"] != "confidence":
                box = qt.QSpinBox()
                box.minimum, box.maximum = q["min"] - 1, q["max"]
                box.specialValueText = "–"
                box.toolTip = q.get("text", q["id"])
                label = qt.QLabel(q["id"].replace("_", " ").capitalize() + ":")
                label.toolTip = box.toolTip
                layout.addRow(label, box)
                self.scaleBoxes[q["id"]] = box
        has_comment = any(q["kind"] == "text" for q in questions)
        self.ui.commentLabel.visible = self.ui.commentTextEdit.visible = has_comment

    # -- reading ------------------------------------------------------------------------------------------------
    def _show(self, node):
        s = self.session
        self.ui.caseLabel.text = s.title
        self._fillAnswer(s.answer())
        self.ui.previousButton.enabled = s.can_go_back
        self.ui.previousButton.visible = not s.study.no_going_back
        self.ui.saveNextButton.enabled = not s.done
        self.ui.answerWidget.enabled = self.ui.likertWidget.enabled = not s.done
        if node is None:
            self.ui.statusLabel.text = "All cases are read. Thank you!"
            self._timer.stop()
            self.ui.timeLabel.text = ""
            return
        self.ui.presetComboBox.blockSignals(True)
        self.ui.presetComboBox.currentIndex = 0
        self.ui.presetComboBox.blockSignals(False)
        slicer.util.setSliceViewerLayers(background=node, foreground=None, label=None, fit=True)
        rng = s.slice_range()
        if rng is not None:
            self._centreAxial(node, (rng[0] + rng[1]) / 2.0)
            self.ui.statusLabel.text = f"Read axial slices {rng[0] + 1} to {rng[1] + 1}."
        else:
            self.ui.statusLabel.text = ""
        self._updateTime()
        if s.study.time_limit_s:
            self._timer.start()

    def _centreAxial(self, node, k):
        import vtk
        m = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(m)
        offset = m.MultiplyPoint([0, 0, k, 1])[2]
        slicer.app.layoutManager().sliceWidget("Red").sliceLogic().SetSliceOffset(offset)

    def _fillAnswer(self, answer):
        answer = answer or {}
        for button, value in ((self.ui.realRadioButton, "real"), (self.ui.syntheticRadioButton, "synthetic")):
            button.autoExclusive = False
            button.checked = answer.get("label") == value
            button.autoExclusive = True
        self.ui.confidenceSpinBox.value = answer.get("confidence", 0)
        for qid, box in self.scaleBoxes.items():
            box.value = answer.get(qid, box.minimum)
        self.ui.commentTextEdit.plainText = answer.get("comment", "")

    def _answers(self):
        answers = {}
        if self.ui.realRadioButton.checked:
            answers["label"] = "real"
        elif self.ui.syntheticRadioButton.checked:
            answers["label"] = "synthetic"
        if self.ui.confidenceSpinBox.value > 0:
            answers["confidence"] = self.ui.confidenceSpinBox.value
        for qid, box in self.scaleBoxes.items():
            if box.value > box.minimum:
                answers[qid] = box.value
        if self.ui.commentTextEdit.visible and self.ui.commentTextEdit.plainText.strip():
            answers["comment"] = self.ui.commentTextEdit.plainText.strip()
        return answers

    def onSaveNext(self):
        if self.session is None:
            return
        try:
            if self._answers() != self.session.answer():
                self.session.record(self._answers())
            self._show(self.session.next())
        except RadSynthError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="ReaderStudy")

    def onPrevious(self):
        if self.session is None:
            return
        try:
            self._show(self.session.previous())
        except RadSynthError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="ReaderStudy")

    def onPreset(self, index):
        if self.session is not None and index >= 0:
            self.session.apply_preset(index)

    def _updateTime(self):
        left = self.session.time_left() if self.session is not None else None
        if left is None:
            self.ui.timeLabel.text = ""
        elif left > 0:
            self.ui.timeLabel.text = f"Time left: {left:.0f} s"
        else:
            self.ui.timeLabel.text = "Time is up: please answer now."

    def _closeSession(self):
        if self.session is not None:
            self.session.close()
            self.session = None
        if hasattr(self, "ui"):
            self.ui.readingCollapsibleButton.enabled = False
            self.ui.caseLabel.text = "–"


class ReaderStudyTest(ScriptedLoadableModuleTest):
    """Build a small study, read two cases as R1, restart, resume (as Testing/mrml/test_readerstudy_logic.py)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_read_and_resume()

    def test_read_and_resume(self):
        import tempfile
        from pathlib import Path

        from radsynth.reader.build import build_study
        from radsynth.reader.samples import toy_inputs

        folder = Path(tempfile.mkdtemp())
        study = build_study(toy_inputs(folder / "inputs", 2, 2), folder / "study", readers=1).study
        token = study.readers[0]["token"]
        logic = ReaderStudyLogic()
        session = logic.open(study.folder, token)
        node = session.show()
        self.assertEqual(node.GetName(), "Case 1 of 4")
        for _ in range(2):
            session.record({"label": "real", "confidence": 3})
            node = session.next()
        self.assertEqual(node.GetName(), "Case 3 of 4")
        session.close()
        resumed = logic.open(study.folder, token)
        self.assertEqual(resumed.show().GetName(), "Case 3 of 4")
        resumed.close()
        self.delayDisplay("Test passed")
