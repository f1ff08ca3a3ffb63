"""Static checks of the TumorSynth Slicer module and the shared RadSynthLib: they compile, their logic stays Qt-free,
their resources are valid, CMake lists every file.

The widget itself needs the Slicer application and is exercised by ``TumorSynthTest`` inside Slicer.
"""

from __future__ import annotations

import ast
import py_compile
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "TumorSynth"
LIB = MODULE / "TumorSynthLib"
LOGIC = LIB / "logic.py"
SHARED = ROOT / "RadSynthLib"
#: Qt-free: importable with the slicer-core wheel, run by the CLI and tests
QT_FREE = [LOGIC, LIB / "operations.py", LIB / "sliders.py", LIB / "defaults.py",
           *(SHARED / f"{name}.py" for name in ("__init__", "jobs", "workers", "inputs", "results", "parameters",
                                               "dependencies", "sample_data", "about"))]
WIDGET = MODULE / "TumorSynth.py"
#: the panel's Qt code: the module widget, the sections it delegates to, the shared job widget
PANEL = [WIDGET, LIB / "panel.py", SHARED / "widgets.py"]
UI = MODULE / "Resources" / "UI" / "TumorSynth.ui"
GUI_ONLY = ("qt", "ctk", "slicer.util", "slicer.ScriptedLoadableModule", "PythonQt")


@pytest.mark.parametrize("path", [*PANEL, *QT_FREE, LIB / "__init__.py"], ids=lambda p: p.name)
def test_module_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("path", QT_FREE, ids=lambda p: p.name)
def test_logic_is_qt_free_and_scene_free(path):
    tree = _module_level(ast.parse(path.read_text(encoding="utf-8")))
    bad = [n for n in _imports(tree) if any(n == g or n.startswith(g + ".") for g in GUI_ONLY)]
    assert not bad, f"{path.name} imports GUI modules: {bad}"
    # never the application's global scene or GUI helpers
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
             and n.value.id == "slicer"}
    assert not attrs & {"mrmlScene", "app", "util", "modules"}, attrs
    imported = {n.split(".")[0] for n in _imports(tree)}
    assert not imported & {"SampleData", "PyTorchUtils"}
    if path.parent == LIB:
        # a module's logic reaches MRML only through radsynth.mrml and RadSynthLib
        assert "slicer" not in imported
    else:
        # the shared library may use MRML classes of the slicer-core wheel (the subject hierarchy) and the
        # translation function when Slicer is there, nothing else of the application
        slicer_names = {n for n in _imports(tree) if n.split(".")[0] == "slicer"}
        assert slicer_names <= {"slicer", "slicer.vtkMRMLSubjectHierarchyNode",
                                "slicer.vtkMRMLSubjectHierarchyConstants", "slicer.i18n", "slicer.i18n.tr"}, \
            slicer_names


#: functions that run only inside the Slicer application, named so; their imports are checked by the Slicer tests
SLICER_ONLY = {"ensure", "_install_torch", "_install", "register", "load"}


def _module_level(tree: ast.Module) -> ast.Module:
    """The file without its Slicer-only functions (dependencies.ensure, sample_data.register, ...)."""
    body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name in SLICER_ONLY)]
    return ast.Module(body=body, type_ignores=[])


def test_the_checker_catches_a_qt_import():
    tree = ast.parse("import os\nfrom slicer.util import errorDisplay\nimport qt\n")
    found = [n for n in _imports(tree) if any(n == g or n.startswith(g + ".") for g in GUI_ONLY)]
    assert "qt" in found and "slicer.util" in found


def test_widget_declares_module_metadata():
    tree = ast.parse(WIDGET.read_text(encoding="utf-8"))
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"TumorSynth", "TumorSynthWidget", "TumorSynthLogic", "TumorSynthTest"} <= classes
    text = WIDGET.read_text(encoding="utf-8")
    assert 'translate("qSlicerAbstractCoreModule", "Image Synthesis")' in text
    # dependencies the Slicer way, from the shared library: torch from the PyTorch extension, the rest pip_ensure
    assert "dependencies.ensure(" in text
    shared = (SHARED / "dependencies.py").read_text(encoding="utf-8")
    assert "PyTorchUtils.PyTorchUtilsLogic()" in shared and "installTorch(askConfirmation=True" in shared
    assert '"slicer.packaging"' in shared and "pip_ensure" in shared


def test_widget_strings_are_translatable():
    """User-facing texts of the panel code go through _() (slicer.i18n.tr), as Slicer's templates do."""
    for path in PANEL:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.ImportFrom) and n.module == "slicer.i18n" for n in ast.walk(tree)), path.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "text"
                                                     for t in node.targets)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                assert node.value.value == "", f"{path.name}:{node.lineno}: untranslated label text"


def test_ui_is_valid_designer_xml_with_the_panel_widgets():
    root = ET.parse(UI).getroot()
    assert root.tag == "ui"
    widgets = {w.get("name"): w for w in root.iter("widget")}
    sections = {w.find("property[@name='text']/string").text
                for w in widgets.values() if w.get("class") == "ctkCollapsibleButton"}
    assert sections == {"Inputs", "Operation", "Texture", "Place", "Shape", "Texture sliders", "Operations",
                        "Variants", "Advanced", "Run"}
    expected = {"inputVolumeSelector": "qMRMLNodeComboBox", "segmentSelector": "qMRMLSegmentSelectorWidget",
                "textureSegmentSelector": "qMRMLSegmentSelectorWidget", "presetComboBox": "QComboBox",
                "removeRadioButton": "QRadioButton", "synthesizeRadioButton": "QRadioButton",
                "stepsSpinBox": "QSpinBox", "seedSpinBox": "QSpinBox", "guidanceSliderWidget": "ctkSliderWidget",
                "progressBar": "QProgressBar", "applyButton": "QPushButton", "cancelButton": "QPushButton",
                "statusLabel": "QLabel", "pointSelector": "qMRMLNodeComboBox",
                "pointPlaceWidget": "qSlicerMarkupsPlaceWidget", "paintedSegmentSelector": "qMRMLSegmentSelectorWidget",
                "organSegmentSelector": "qMRMLSegmentSelectorWidget", "volumeSlider": "QSlider",
                "volumeSpinBox": "QDoubleSpinBox", "sphericitySlider": "ctkSliderWidget",
                "elongationSlider": "ctkSliderWidget", "flatnessSlider": "ctkSliderWidget",
                "meanSlider": "ctkSliderWidget", "heterogeneitySlider": "ctkSliderWidget",
                "contrastSlider": "ctkSliderWidget", "placeButton": "QPushButton", "removeTumorButton": "QPushButton",
                "moveButton": "QPushButton", "resizeButton": "QPushButton", "retextureButton": "QPushButton",
                "variantsSpinBox": "QSpinBox"}
    for name, cls in expected.items():
        assert name in widgets and widgets[name].get("class") == cls, name
    types = [s.text for s in widgets["inputVolumeSelector"].find("property[@name='nodeTypes']").iter("string")]
    assert types == ["vtkMRMLScalarVolumeNode"]
    types = [s.text for s in widgets["pointSelector"].find("property[@name='nodeTypes']").iter("string")]
    assert types == ["vtkMRMLMarkupsFiducialNode"]
    # radio buttons are exclusive per parent widget: the painted-shape choice needs its own
    assert _parent(root, "insideRadioButton") == _parent(root, "aroundRadioButton") \
        != _parent(root, "placeAtPointRadioButton") == _parent(root, "placePaintedRadioButton")
    declared = {c.find("class").text for c in root.iter("customwidget")}
    used = {w.get("class") for w in widgets.values() if not w.get("class").startswith("Q")}
    assert used <= declared
    # every widget the panel code touches exists in the .ui
    touched = {name for path in PANEL for name in re.findall(r"\bui\.(\w+)", path.read_text(encoding="utf-8"))}
    assert "placeButton" in touched and touched <= set(widgets), touched - set(widgets)
    # every widget that needs the scene gets it from the panel
    scened = {c.find("receiver").text for c in root.iter("connection")}
    assert {n for n, w in widgets.items() if w.get("class").startswith("qMRML") and n != "TumorSynth"} <= scened


def _parent(root, name: str) -> str:
    """The name of the closest enclosing widget of widget ``name``."""
    def walk(node, owner):
        for child in node:
            if child.tag == "widget" and child.get("name") == name:
                return owner
            found = walk(child, child.get("name") if child.tag == "widget" else owner)
            if found:
                return found
        return None
    return walk(root, None)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_icons_and_cmake_list_every_file():
    for icon in (ROOT / "Resources" / "Icons" / "RadSynth.png", MODULE / "Resources" / "Icons" / "TumorSynth.png"):
        assert _png_size(icon) == (128, 128)
        assert icon.stat().st_size < 64_000
    cmake = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8").replace("${MODULE_NAME}", "TumorSynth")
    python = sorted(str(p.relative_to(MODULE)) for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts)
    for rel in (*python, "Resources/UI/TumorSynth.ui", "Resources/Icons/TumorSynth.png"):
        assert rel in cmake and (MODULE / rel).is_file(), rel
    shared = (SHARED / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\)", shared, re.S).group(1).split()
    assert sorted(listed) == sorted(p.name for p in SHARED.glob("*.py")), "RadSynthLib/CMakeLists.txt"
    assert "WITH_SUBDIR" in shared and "pyproject.toml" in shared
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for needle in ("project(RadSynth)", "find_package(Slicer", "include(${Slicer_USE_FILE})",
                   "add_subdirectory(TumorSynth)", "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR",
                   "include(${Slicer_EXTENSION_CPACK})"):
        assert needle in top, needle
    assert top.index("add_subdirectory(RadSynthLib)") < top.index("add_subdirectory(TumorSynth)")
