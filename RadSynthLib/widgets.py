"""The thin Qt part every RadSynth panel shares: a background job's progress bar, status line and Cancel.

The work is :class:`RadSynthLib.jobs.JobController` (Qt-free, tested); this class only polls it from a QTimer, so
the GUI never blocks, and shows what it says. A module panel plugs in with::

    self.job = JobPanel("TumorSynth", self.ui.progressBar, self.ui.statusLabel, onChanged=self.updateButtons)
    self.ui.cancelButton.clicked.connect(self.job.cancel)
    self.job.start(logic, logic.prepare(parameters), done=self.showResult)
"""

import logging

import qt
import slicer
from slicer.i18n import tr as _

from .jobs import CANCELLED, FAILED, JobController

POLL_MS = 100


class JobPanel:
    def __init__(self, title, progressBar, statusLabel, onChanged=None):
        self.title, self.progressBar, self.statusLabel = title, progressBar, statusLabel
        self.onChanged = onChanged
        self.jobs = JobController(title)
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    @property
    def busy(self):
        return self.jobs.busy

    def start(self, logic, request, done=None):
        """Run ``logic.execute(request)`` in the background; when it ends, ``logic.apply`` adds the nodes on the
        main thread and ``done(nodes)`` shows them."""
        self.jobs.start(logic, request, done)
        self.progressBar.value = 0
        self.timer.start()
        self._changed()

    def cancel(self, *args):
        if self.jobs.cancel():
            self.statusLabel.text = _("Cancelling…")

    def discard(self):
        """The scene is closing: stop the job and throw its result away."""
        self.jobs.discard()

    def poll(self):
        status = self.jobs.poll(slicer.mrmlScene)
        self.progressBar.value = int(1000 * status.fraction)
        if not status.finished:
            if not status.cancelling:
                eta = "" if status.eta_s is None else _(", about {s:.0f} s left").format(s=status.eta_s)
                self.statusLabel.text = f"{status.stage} ({100 * status.fraction:.0f}%{eta})"
            return
        self.timer.stop()
        if status.state == CANCELLED:
            self.statusLabel.text = _("Cancelled; nothing was changed.")
        elif status.state == FAILED:
            if not status.expected:
                logging.error("%s failed", self.title, exc_info=status.error)
            self.statusLabel.text = _("Failed; nothing was changed.")
            slicer.util.errorDisplay(str(status.error), windowTitle=self.title)
        self._changed()

    def _changed(self):
        if self.onChanged is not None:
            self.onChanged()

    def cleanup(self):
        self.cancel()
        self.timer.stop()


class ModuleWidgetMixin:
    """The scene and parameter-node plumbing every RadSynth module widget shares (Slicer's template writes it in
    each module): observe the parameter node, re-initialise on enter and after a scene close, and drop a running
    job's result when its scene closes. The widget provides ``job`` (a JobPanel), ``initializeParameterNode`` and
    ``updateGUIFromParameterNode``; it lists this mixin before ScriptedLoadableModuleWidget and VTKObservationMixin.
    """

    def observeScene(self):
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def enter(self):
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event):
        self.job.discard()  # its nodes would land in a scene the user just closed
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def setParameterNode(self, node):
        import vtk
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()
