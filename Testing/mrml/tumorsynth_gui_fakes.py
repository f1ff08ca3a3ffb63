"""Just enough of the Slicer application around the slicer-core wheel to run the TumorSynth widget's Python.

Real here: MRML (the scene, nodes, observers), the module's and RadSynthLib's code, the .ui file's widget names
(``childWidgetVariables`` has exactly the widgets the Designer file declares, so a typo in the panel fails).
Fake: Qt widgets (plain attributes and signals that can be emitted), QTimer (ticked by the test), and a small
``parameterNodeWrapper`` that keeps typed values per parameter node and enforces ``WithinRange`` / ``Choice`` as
Slicer's does. This is no stand-in for the self-test inside Slicer; it checks the wiring between widgets, typed
parameters, logic and job.
"""

from __future__ import annotations

import types
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import slicer


class Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            slot(*args[:_accepted(slot, len(args))])


def _accepted(slot, given: int) -> int:
    """PythonQt passes a slot only as many of the signal's arguments as the slot takes."""
    import inspect

    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return given
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return given
    return min(given, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params))


class Widget:
    """A Qt widget as the panel code uses it: properties are attributes, signals are :class:`Signal`."""

    SIGNALS = ("clicked", "toggled", "valueChanged", "currentNodeChanged", "currentSegmentChanged",
               "currentIndexChanged", "currentPathChanged", "timeout")

    def __init__(self, name="", cls=""):
        self.name, self.cls = name, cls
        self.value, self.minimum, self.maximum, self.decimals, self.singleStep = 0, 0, 99, 2, 1
        self.checked, self.enabled, self.visible, self.collapsed = False, True, True, False
        self.text = self.toolTip = self.currentText = self.currentPath = ""
        self.items: list[str] = []
        self.placeMultipleMarkups = 0
        self._node, self._segment = None, ""
        for signal in self.SIGNALS:
            setattr(self, signal, Signal())

    # node and segment selectors
    def currentNode(self):
        return self._node

    def setCurrentNode(self, node):
        self._node = node

    @property
    def currentNodeID(self):
        return self._node.GetID() if self._node is not None else None

    def currentSegmentID(self):
        return self._segment

    def setCurrentSegmentID(self, segment_id):
        self._segment = segment_id or ""

    def select(self, node, segment_id=None):
        """What a user's choice in the combo box does: set it and emit the change."""
        self._node = node
        self.currentNodeChanged.emit(node)
        if segment_id is not None:
            self._segment = segment_id
            self.currentSegmentChanged.emit(segment_id)

    # combo boxes
    def addItems(self, items):
        self.items += list(items)
        if not self.currentText and self.items:
            self.currentText = self.items[0]

    @property
    def count(self):
        return len(self.items)

    def itemText(self, index):
        return self.items[index]

    def blockSignals(self, block):
        return False

    def setMRMLScene(self, scene):
        pass


class UI(types.SimpleNamespace):
    """``slicer.util.childWidgetVariables``: one attribute per named widget of the .ui file, nothing else."""


def load_ui(path):
    root = ET.parse(path).getroot()
    widgets = {w.get("name"): Widget(w.get("name"), w.get("class")) for w in root.iter("widget")}
    top = Widget("TumorSynth", "qMRMLWidget")
    top.children = widgets
    return top


class QTimer:
    instances: list = []

    def __init__(self):
        self.timeout, self.active, self.single, self.interval = Signal(), False, False, 0
        QTimer.instances.append(self)

    def setInterval(self, ms):
        self.interval = ms

    def setSingleShot(self, single):
        self.single = single

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    @staticmethod
    def singleShot(ms, slot):
        slot()

    @classmethod
    def tick(cls):
        """One timer round: every active timer fires once."""
        for timer in list(cls.instances):
            if timer.active:
                if timer.single:
                    timer.active = False
                timer.timeout.emit()


# -- parameterNodeWrapper ------------------------------------------------------------------------------------------
class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Choice:
    def __init__(self, choices):
        self.choices = choices

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


_VALUES: dict[str, dict] = {}


def parameterNodeWrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    defaults = {name: getattr(cls, name, None) for name in hints}

    def __init__(self, node):
        object.__setattr__(self, "parameterNode", node)
        values = _VALUES.setdefault(node.GetID(), {})
        for name, default in defaults.items():
            values.setdefault(name, default)

    def __getattr__(self, name):
        if name not in hints:
            raise AttributeError(name)
        return _VALUES[self.parameterNode.GetID()][name]

    def __setattr__(self, name, value):
        if name not in hints:
            raise AttributeError(f"{cls.__name__} has no parameter {name!r}")
        hint = hints[name]
        base, extras = (typing.get_args(hint)[0], typing.get_args(hint)[1:]) if typing.get_args(hint) else (hint, ())
        if value is not None and not isinstance(value, base) and not (base is float and isinstance(value, int)):
            raise TypeError(f"{name} must be {base.__name__}, got {value!r}")
        for validator in extras:
            validator.validate(value)
        _VALUES[self.parameterNode.GetID()][name] = value
        self.parameterNode.Modified()

    namespace = dict(__init__=__init__, __getattr__=__getattr__, __setattr__=__setattr__,
                     StartModify=lambda self: self.parameterNode.StartModify(),
                     EndModify=lambda self, was: self.parameterNode.EndModify(was),
                     AddObserver=lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(
                         event, callback, priority),
                     RemoveObserver=lambda self, tag: self.parameterNode.RemoveObserver(tag),
                     hints=hints)
    return type(cls.__name__, (), namespace)


# -- ScriptedLoadableModule and friends ----------------------------------------------------------------------------
class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        pass

    def getParameterNode(self):
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode("TumorSynth", "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag("TumorSynth")
            node.SetName("TumorSynth")
            scene.AddNode(node)
        return node


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent or types.SimpleNamespace(isEntered=True)
        self.resources = Path(__file__).resolve().parents[2] / "TumorSynth" / "Resources"

    def setup(self):
        self.layout = types.SimpleNamespace(addWidget=lambda w: None)

    def resourcePath(self, relative):
        return str(self.resources / relative)


class ScriptedLoadableModuleTest:
    pass


class VTKObservationMixin:
    def __init__(self):
        self.Observations = []

    def addObserver(self, obj, event, method, group="none", priority=0.0):
        self.Observations.append((obj, event, method, obj.AddObserver(event, method, priority)))

    def removeObserver(self, obj, event, method):
        for o in list(self.Observations):
            if o[0] is obj and o[1] == event and o[2] == method:
                obj.RemoveObserver(o[3])
                self.Observations.remove(o)

    def removeObservers(self, method=None):
        for obj, _event, _method, tag in self.Observations:
            obj.RemoveObserver(tag)
        self.Observations = []


class Util(types.ModuleType):
    def __init__(self):
        super().__init__("slicer.util")
        self.errors: list[str] = []
        self.VTKObservationMixin = VTKObservationMixin

    def loadUI(self, path):
        return load_ui(path)

    @staticmethod
    def childWidgetVariables(top):
        return UI(**top.children)

    def errorDisplay(self, text, **kwargs):
        self.errors.append(str(text))

    @staticmethod
    def confirmOkCancelDisplay(text, **kwargs):
        return True

    @staticmethod
    def setSliceViewerLayers(**kwargs):
        pass


def install(monkeypatch, scene):
    """Put the fakes where TumorSynth.py imports them from, for one test (monkeypatch undoes it)."""
    util = Util()
    modules = {
        "qt": types.SimpleNamespace(QTimer=QTimer),
        "ctk": types.SimpleNamespace(),
        "slicer.util": util,
        "slicer.i18n": types.SimpleNamespace(tr=lambda text: text, translate=lambda context, text: text),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(parameterNodeWrapper=parameterNodeWrapper,
                                                             WithinRange=WithinRange, Choice=Choice),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=ScriptedLoadableModule, ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleTest=ScriptedLoadableModuleTest),
    }
    for name, module in modules.items():
        monkeypatch.setitem(__import__("sys").modules, name, module)
    monkeypatch.setattr(slicer, "util", util, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(connect=lambda *a: None), raising=False)
    monkeypatch.setattr(slicer, "qSlicerMarkupsPlaceWidget",
                        types.SimpleNamespace(ForcePlaceSingleMarkup=1), raising=False)
    QTimer.instances = []
    _VALUES.clear()
    return util
