"""The CTGenerate panel (read without Slicer): every widget the Python names exists in the .ui with the class the
code expects, and the .ui's ranges and choices agree with the ``generate slices`` declaration and the panel's
parameters, so the panel offers exactly what the engine takes."""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "CTGenerate")]

from CTGenerateLib import defaults  # noqa: E402

from radsynth.pipelines.generate.slices_ops import SLICES  # noqa: E402

UI = ET.parse(ROOT / "CTGenerate" / "Resources" / "UI" / "CTGenerate.ui").getroot()
WIDGETS = {w.get("name"): w for w in UI.iter("widget")}
SOURCE = (ROOT / "CTGenerate" / "CTGenerate.py").read_text(encoding="utf-8")


def prop(widget, name):
    for p in widget.findall("property"):
        if p.get("name") == name:
            return next(iter(p)).text
    return None


def test_every_widget_the_code_uses_is_in_the_ui():
    used = set(re.findall(r"self\.ui\.(\w+)", SOURCE))
    tree = ast.parse(SOURCE)
    bindings = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "_BINDINGS")
    bound = {t.elts[0].value for t in bindings.value.elts}
    used |= bound
    missing = sorted(used - set(WIDGETS))
    assert not missing, f"CTGenerate.ui lacks {missing}"
    params = {t.elts[1].value for t in bindings.value.elts}
    assert params <= {p.name for p in defaults.PARAMETERS}


@pytest.mark.parametrize("widget, param", [("seedSliceSpinBox", "seedSlice"), ("slicesSpinBox", "slices"),
                                           ("kSpinBox", "k"), ("stepsSpinBox", "steps"), ("seedSpinBox", "seed"),
                                           ("organStartSpinBox", "organStart"), ("organSlicesSpinBox", "organSlices"),
                                           ("organSeedSpinBox", "organSeed"), ("variantsSpinBox", "variants")])
def test_spin_box_ranges_follow_the_declaration(widget, param):
    w, p = WIDGETS[widget], defaults.param(param)
    assert int(prop(w, "minimum")) == p.minimum and int(prop(w, "maximum")) == p.maximum
    if p.unset is not None:   # the special value (shown as text) is the "unset: the engine decides" sentinel
        assert int(prop(w, "minimum")) == p.unset and prop(w, "specialValueText")
    value = prop(w, "value")
    assert int(value if value is not None else prop(w, "minimum")) == p.default


@pytest.mark.parametrize("widget, option", [("directionComboBox", "direction"), ("samplerComboBox", "sampler")])
def test_combo_boxes_offer_the_declared_choices_default_first(widget, option):
    items = [item.find("property/string").text for item in WIDGETS[widget].findall("item")]
    opt = SLICES.option(option)
    assert items == list(opt.choices) and items[0] == opt.default


def test_check_boxes_start_at_the_declared_defaults():
    assert (prop(WIDGETS["icnetCheckBox"], "checked") == "true") == (SLICES.option("icnet").default == "on")
    assert defaults.param("icnet").default is True


def test_guidance_box_follows_the_organs_declaration():
    from radsynth.pipelines.generate.slices_ops import ORGANS

    w, opt = WIDGETS["guidanceSpinBox"], ORGANS.option("guidance")
    assert float(prop(w, "minimum")) == opt.min and float(prop(w, "maximum")) == opt.max
    assert float(prop(w, "value")) == opt.default == defaults.param("guidance").default
