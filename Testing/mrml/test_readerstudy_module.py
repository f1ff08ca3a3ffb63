"""Static checks of the ReaderStudy Slicer module: it compiles, its logic stays Qt-free and scene-free, the panel
only touches widgets its .ui declares, and the icon and CMake lists are complete. The widget itself needs the
Slicer application and is exercised by ``ReaderStudyTest`` inside Slicer."""

from __future__ import annotations

import ast
import py_compile
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "ReaderStudy"
LOGIC = MODULE / "ReaderStudyLib" / "logic.py"
WIDGET = MODULE / "ReaderStudy.py"
UI = MODULE / "Resources" / "UI" / "ReaderStudy.ui"
GUI_ONLY = ("qt", "ctk", "slicer", "PythonQt")


@pytest.mark.parametrize("path", [WIDGET, LOGIC, LOGIC.with_name("__init__.py")], ids=lambda p: p.name)
def test_module_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_logic_is_qt_free_and_scene_free():
    tree = ast.parse(LOGIC.read_text(encoding="utf-8"))
    bad = [n for n in _imports(tree) if n.split(".")[0] in GUI_ONLY]
    assert not bad, bad
    assert not {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} & {"mrmlScene", "app", "util"}


def test_module_metadata_and_classes():
    tree = ast.parse(WIDGET.read_text(encoding="utf-8"))
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"ReaderStudy", "ReaderStudyWidget", "ReaderStudyLogic", "ReaderStudyTest"} <= classes
    assert '"Image Synthesis")]' in WIDGET.read_text(encoding="utf-8")   # category, wrapped for translation


def test_ui_declares_every_widget_the_panel_touches():
    root = ET.parse(UI).getroot()
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    touched = set(re.findall(r"\bui\.(\w+)", WIDGET.read_text(encoding="utf-8")))
    assert {"openButton", "saveNextButton", "caseLabel"} <= touched
    assert touched <= set(widgets), touched - set(widgets)
    assert widgets["tokenLineEdit"] == "QLineEdit" and widgets["studyPathLineEdit"] == "ctkPathLineEdit"
    echo = root.find(".//widget[@name='tokenLineEdit']/property[@name='echoMode']/enum").text
    assert echo == "QLineEdit::Password", "the reader token is not shown on screen"
    declared = {c.find("class").text for c in root.iter("customwidget")}
    assert {c for c in widgets.values() if not c.startswith("Q")} <= declared
    assert root.find(".//layout[@name='likertFormLayout']") is not None


def test_icon_and_cmake_lists():
    data = (MODULE / "Resources" / "Icons" / "ReaderStudy.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (128, 128)
    cmake = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8").replace("${MODULE_NAME}", "ReaderStudy")
    python = sorted(str(p.relative_to(MODULE)) for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts)
    for rel in (*python, "Resources/UI/ReaderStudy.ui", "Resources/Icons/ReaderStudy.png"):
        assert rel in cmake, rel
    assert "add_subdirectory(ReaderStudy)" in (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
