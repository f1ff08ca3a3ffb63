"""The DiffusionInpaint panel (read without Slicer): its parameters mirror the ``fill`` / ``render-map`` /
``auto-map`` declarations, every widget the Python names exists in the .ui, and the .ui's values, ranges and
choices agree with those declarations, so the panel fills and renders with the CLI's settings. Each check is a
function, and a test shows it catches a changed default."""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DiffusionInpaint")]

from DiffusionInpaintLib import defaults  # noqa: E402
from DiffusionInpaintLib.logic import FillParameters, MapParameters, RenderParameters  # noqa: E402

from radsynth.pipelines.inpaint import AUTO_MAP, FILL, RENDER_MAP  # noqa: E402

UI_PATH = ROOT / "DiffusionInpaint" / "Resources" / "UI" / "DiffusionInpaint.ui"
UI = ET.parse(UI_PATH).getroot()
SOURCE = (ROOT / "DiffusionInpaint" / "DiffusionInpaint.py").read_text(encoding="utf-8")
#: panel parameter -> the declaration it must equal (explicit, so dropping the link fails too)
MIRRORED = {"mode": FILL.option("mode"), "strength": FILL.option("strength"), "steps": FILL.option("steps"),
            "seed": FILL.option("seed"), "marginMm": FILL.option("margin_mm"), "featherMm": FILL.option("feather_mm"),
            "noduleLabel": AUTO_MAP.option("nodule_label"), "guidance": RENDER_MAP.option("guidance"),
            "renderSteps": RENDER_MAP.option("steps"), "renderSeed": RENDER_MAP.option("seed")}
#: numeric widget -> panel parameter
NUMBERS = {"strengthSliderWidget": "strength", "stepsSpinBox": "steps", "seedSpinBox": "seed",
           "variantsSpinBox": "variants", "marginSpinBox": "marginMm", "featherSpinBox": "featherMm",
           "guidanceSliderWidget": "guidance", "renderStepsSpinBox": "renderSteps", "renderSeedSpinBox": "renderSeed"}
QT_DEFAULTS = {"minimum": 0.0, "maximum": 99.0, "value": 0.0}


def parameter_mismatches(params) -> list[str]:
    found, by_name = [], {p.name: p for p in params}
    for name, option in MIRRORED.items():
        p = by_name.get(name)
        if p is None:
            found.append(f"{name}: not a panel parameter")
            continue
        if p.option is not option:
            found.append(f"{name}: not built from the engine's declaration")
        expected = option.default if option.default is not None else p.unset
        if p.default != expected:
            found.append(f"{name}: panel default {p.default!r} != engine default {option.default!r}")
        if option.min is not None and (p.minimum, p.maximum) != ((p.unset if option.default is None else option.min),
                                                                option.max):
            found.append(f"{name}: panel range {p.minimum}..{p.maximum} != engine {option.min}..{option.max}")
        if p.engine_value(p.default) != option.default:
            found.append(f"{name}: the panel's default reaches the engine as {p.engine_value(p.default)!r}")
        if option.default is None and (p.unset is None or p.unset >= option.min):
            found.append(f"{name}: its 'unset' value {p.unset} is a valid engine value")
    return found


def _number(widget: ET.Element, prop: str):
    node = widget.find(f"property[@name='{prop}']")
    if node is None:
        return None
    value = node.find("double")
    return float((value if value is not None else node.find("number")).text)


def ui_mismatches(root: ET.Element) -> list[str]:
    widgets = {w.get("name"): w for w in root.iter("widget")}
    found = []
    for widget_name, name in NUMBERS.items():
        p = defaults.param(name)
        for prop, want in (("minimum", p.minimum), ("maximum", p.maximum), ("value", p.default)):
            have = _number(widgets[widget_name], prop)
            have = QT_DEFAULTS[prop] if have is None else have
            if abs(have - float(want)) > 1e-9:
                found.append(f"{widget_name}.{prop} = {have:g} in the .ui, the panel parameter says {want:g}")
        if p.unset is not None:
            text = widgets[widget_name].find("property[@name='specialValueText']/string")
            if text is None or not text.text:
                found.append(f"{widget_name}: no special value text for the unset value")
    items = [i.find("property/string").text for i in widgets["noduleLabelComboBox"].findall("item")]
    if items != list(AUTO_MAP.option("nodule_label").choices):
        found.append(f"noduleLabelComboBox offers {items}")
    healthy = widgets["healthyRadioButton"].find("property[@name='checked']/bool")
    if (healthy is not None and healthy.text == "true") != (FILL.option("mode").default == "healthy"):
        found.append("the checked mode radio button is not the declared default")
    return found


def test_panel_parameters_mirror_the_declarations():
    assert parameter_mismatches(defaults.PARAMETERS) == []


def test_the_check_catches_a_changed_default_and_range():
    changed = tuple(dataclasses.replace(p, default=3.0) if p.name == "guidance" else p for p in defaults.PARAMETERS)
    assert any(m.startswith("guidance: panel default 3.0") for m in parameter_mismatches(changed))
    narrowed = tuple(dataclasses.replace(p, maximum=5.0) if p.name == "marginMm" else p for p in defaults.PARAMETERS)
    assert any(m.startswith("marginMm: panel range") for m in parameter_mismatches(narrowed))


def test_ui_shows_the_declared_values_ranges_and_choices():
    assert ui_mismatches(UI) == []


def test_the_ui_check_catches_guidance_1():
    text = UI_PATH.read_text(encoding="utf-8")
    start = text.index('name="guidanceSliderWidget"')
    end = text.index("</widget>", start)
    block = text[start:end]
    assert '<property name="value"><double>1.5</double>' in block
    mutated = text[:start] + block.replace('<property name="value"><double>1.5</double>',
                                           '<property name="value"><double>1.0</double>') + text[end:]
    assert any(m.startswith("guidanceSliderWidget.value = 1 ") for m in ui_mismatches(ET.fromstring(mutated)))


def test_every_widget_the_code_uses_is_in_the_ui():
    names = {w.get("name") for w in UI.iter("widget")}
    used = set(re.findall(r"ui\.(\w+)", SOURCE))
    tree = ast.parse(SOURCE)
    for table in ("_BINDINGS", "_SEGMENTS"):
        node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == table)
        used |= {t.elts[0].value for t in node.value.elts}
        assert {t.elts[1].value for t in node.value.elts} <= {p.name for p in defaults.PARAMETERS}
    assert sorted(used - names) == []


def test_logic_defaults_are_the_engines():
    for cls, op in ((FillParameters, FILL), (RenderParameters, RENDER_MAP), (MapParameters, AUTO_MAP)):
        for field in dataclasses.fields(cls):
            if field.name in op.option_names:
                assert field.default == op.option(field.name).default, (cls.__name__, field.name)


def test_widget_builds_its_parameter_node_from_the_declarations_and_writes_no_defaults():
    tree = ast.parse(SOURCE)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "wrapper_class"]
    assert len(calls) == 1 and "defaults.PARAMETERS" in [ast.unparse(a) for a in calls[0].args]
    names = {p.name for p in defaults.PARAMETERS}
    literal = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Assign)
               and isinstance(n.value, ast.Constant) and not isinstance(n.value.value, bool)
               and n.value.value is not None
               and any(isinstance(t, ast.Attribute) and t.attr in names for t in n.targets)]
    assert literal == []


@pytest.mark.parametrize("name", ["steps", "renderSteps"])
def test_unset_steps_reach_the_engine_as_none(name):
    p = defaults.param(name)
    assert p.engine_value(defaults.STEPS_UNSET) is None and p.engine_value(2) == 2
