"""The TumorSynth panel's defaults are the engine's: every parameter default and every .ui widget value and range
that an operation also declares (radsynth.pipelines.tumor_ops) must agree with the declaration.

The panel once synthesized at guidance 1.0 while the CLI and the engine used 3.0; these tests fail on any such
difference, in the parameter declarations (TumorSynthLib/defaults.py), in the Designer file, or in widget code that
writes its own numbers into the parameter node.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "TumorSynth")]

from RadSynthLib import parameters  # noqa: E402
from TumorSynthLib import defaults  # noqa: E402

from radsynth.pipelines import registry, tumor_ops  # noqa: E402

UI = ROOT / "TumorSynth" / "Resources" / "UI" / "TumorSynth.ui"
WIDGET_CODE = [ROOT / "TumorSynth" / "TumorSynth.py", ROOT / "TumorSynth" / "TumorSynthLib" / "panel.py"]
COMMON = {o.name: o for o in tumor_ops.COMMON}
#: panel parameter -> the engine declaration it must equal (explicit, so dropping the link fails too)
MIRRORED = {"guidance": tumor_ops.GUIDANCE, "steps": COMMON["steps"], "seed": COMMON["seed"],
            **{o.name: o for o in tumor_ops.SHAPE_OPTIONS}}
#: .ui widget -> (panel parameter, the widget's special "unset" value or None)
UI_WIDGETS = {"guidanceSliderWidget": "guidance", "stepsSpinBox": "steps", "seedSpinBox": "seed",
              "volumeSpinBox": "volume_ml", "sphericitySlider": "shape_Sphericity",
              "elongationSlider": "shape_Elongation", "flatnessSlider": "shape_Flatness"}
#: what Qt uses when the .ui sets nothing (QSpinBox / QDoubleSpinBox / ctkSliderWidget)
QT_DEFAULTS = {"minimum": 0.0, "maximum": 99.0, "value": 0.0}


# -- the checks, as functions, so that a test can show they catch a difference ---------------------------------------
def parameter_mismatches(params) -> list[str]:
    found = []
    by_name = {p.name: p for p in params}
    for name, option in MIRRORED.items():
        p = by_name.get(name)
        if p is None:
            found.append(f"{name}: not a panel parameter")
            continue
        if p.option is not option:
            found.append(f"{name}: not built from the engine's declaration")
        default = option.default if option.default is not None else p.unset
        if option.default is None and (p.unset is None or p.unset >= option.min):
            found.append(f"{name}: its 'unset' value {p.unset} is a valid engine value")
        if p.default != default:
            found.append(f"{name}: panel default {p.default!r} != engine default {option.default!r}")
        low = p.unset if option.default is None else option.min
        if (p.minimum, p.maximum) != (low, option.max):
            found.append(f"{name}: panel range {p.minimum}..{p.maximum} != engine {option.min}..{option.max}")
        if p.engine_value(p.default) != option.default:
            found.append(f"{name}: the panel's default reaches the engine as {p.engine_value(p.default)!r}")
    return found


def _number(widget: ET.Element, prop: str):
    node = widget.find(f"property[@name='{prop}']")
    if node is None:
        return None
    value = node.find("double")
    value = value if value is not None else node.find("number")
    return float(value.text)


def ui_mismatches(root: ET.Element) -> list[str]:
    widgets = {w.get("name"): w for w in root.iter("widget")}
    found = []
    for widget_name, param_name in UI_WIDGETS.items():
        widget, option = widgets[widget_name], MIRRORED[param_name]
        # an option without a default ("unset": the model card's) shows a special value just below its minimum
        unset = option.min - 1 if option.default is None else None
        expected = {"minimum": option.min if unset is None else unset, "maximum": option.max,
                    "value": option.default if unset is None else unset}
        for prop, want in expected.items():
            have = _number(widget, prop)
            have = QT_DEFAULTS[prop] if have is None else have
            if not math.isclose(have, float(want), rel_tol=0, abs_tol=1e-9):
                found.append(f"{widget_name}.{prop} = {have:g} in the .ui, the engine says {want:g}")
    steps = widgets["stepsSpinBox"].find("property[@name='specialValueText']/string")
    if steps is None or not steps.text:
        found.append("stepsSpinBox: no special value text for 'model default'")
    variants = widgets["variantsSpinBox"]
    if (_number(variants, "minimum"), _number(variants, "maximum")) != (1.0, float(defaults.MAX_VARIANTS)):
        found.append("variantsSpinBox: range differs from 1..MAX_VARIANTS")
    return found


# -- parameter declarations -------------------------------------------------------------------------------------------
def test_panel_parameters_mirror_the_engine_declarations():
    assert parameter_mismatches(defaults.PARAMETERS) == []


def test_guidance_is_the_engines():
    """The bug this file exists for: the panel wrote 1.0 where the engine declares 3.0."""
    assert defaults.param("guidance").default == tumor_ops.GUIDANCE.default == 3.0


def test_the_check_catches_a_panel_default_reverted_to_1():
    reverted = tuple(dataclasses.replace(p, default=1.0) if p.name == "guidance" else p
                     for p in defaults.PARAMETERS)
    assert any("guidance: panel default 1.0 != engine default 3.0" in m for m in parameter_mismatches(reverted))
    narrowed = tuple(dataclasses.replace(p, maximum=6.0) if p.name == "guidance" else p
                     for p in defaults.PARAMETERS)
    assert any("guidance: panel range" in m for m in parameter_mismatches(narrowed))
    copied = tuple(dataclasses.replace(p, option=registry.Option("guidance", "float", 3.0, min=0.0, max=10.0))
                   if p.name == "guidance" else p for p in defaults.PARAMETERS)
    assert any("not built from" in m for m in parameter_mismatches(copied))


def test_every_mirrored_option_is_a_declared_option_of_a_tumour_operation():
    declared = {id(o) for op in registry.operations("tumor") for o in op.options} | \
        {id(o) for o in tumor_ops.SHAPE_OPTIONS}
    for p in defaults.PARAMETERS:
        if p.option is not None:
            assert id(p.option) in declared, p.name


def test_unset_steps_reach_the_engine_as_none():
    assert defaults.steps_value(defaults.STEPS_UNSET) is None
    assert defaults.steps_value(int(COMMON["steps"].min)) == COMMON["steps"].min
    assert defaults.STEPS_UNSET < COMMON["steps"].min


def test_logic_defaults_are_the_engines():
    from TumorSynthLib.logic import Request, TumorSynthParameters
    from TumorSynthLib.operations import VARIANT_ETA, OperationParameters

    for cls in (TumorSynthParameters, OperationParameters):
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        assert fields["guidance"] == tumor_ops.GUIDANCE.default
        assert fields["seed"] == COMMON["seed"].default
        assert fields["steps"] is None and COMMON["steps"].default is None
    assert {f.name: f.default for f in dataclasses.fields(Request)}["guidance"] == tumor_ops.GUIDANCE.default
    eta = COMMON["eta"]
    assert VARIANT_ETA == eta.max and eta.min <= VARIANT_ETA <= eta.max


def test_shape_sliders_are_the_engines_shape_options():
    from TumorSynthLib import sliders

    assert [(s.feature, s.minimum, s.maximum, s.start) for s in sliders.SHAPE_SLIDERS] == \
        [(o.name, o.min, o.max, o.default) for o in tumor_ops.SHAPE_OPTIONS]
    assert sliders.DEFAULT_VOLUME_ML == tumor_ops.SHAPE_OPTIONS[0].default
    lo, hi = tumor_ops.SHAPE_OPTIONS[0].min, tumor_ops.SHAPE_OPTIONS[0].max
    assert sliders.volume_from_position(0) == pytest.approx(lo)
    assert sliders.volume_from_position(sliders.VOLUME_STEPS) == pytest.approx(hi)


# -- the Designer file ------------------------------------------------------------------------------------------------
def test_ui_widgets_show_the_engine_defaults_and_ranges():
    assert ui_mismatches(ET.parse(UI).getroot()) == []


def test_the_ui_check_catches_guidance_1_and_a_narrower_range():
    text = UI.read_text(encoding="utf-8")
    start = text.index('name="guidanceSliderWidget"')
    block_end = text.index("</widget>", start)
    block = text[start:block_end]
    for old, new, expect in (("<double>3.0</double>", "<double>1.0</double>", "guidanceSliderWidget.value = 1"),
                             ("<double>10.0</double>", "<double>6.0</double>", "guidanceSliderWidget.maximum = 6")):
        assert old in block
        mutated = text[:start] + block.replace(old, new) + text[block_end:]
        assert any(m.startswith(expect) for m in ui_mismatches(ET.fromstring(mutated))), expect


# -- the widget code ----------------------------------------------------------------------------------------------------
def _parameter_names() -> set[str]:
    return {p.name for p in defaults.PARAMETERS}


def literal_writes(source: str) -> list[str]:
    """Writes of a literal number or string into a parameter-node attribute, and string-keyed parameter calls."""
    names, found = _parameter_names(), []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Attribute) and target.attr in names
                        and isinstance(node.value, ast.Constant) and not isinstance(node.value.value, bool)
                        and node.value.value is not None):
                    found.append(f"line {node.lineno}: {target.attr} = {node.value.value!r}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("SetParameter", "GetParameter"):
            found.append(f"line {node.lineno}: {node.func.attr}(...)")
    return found


@pytest.mark.parametrize("path", WIDGET_CODE, ids=lambda p: p.name)
def test_widget_code_writes_no_defaults_of_its_own(path):
    assert literal_writes(path.read_text(encoding="utf-8")) == []


def test_the_code_check_catches_the_old_guidance_default():
    old = 'def setDefaultParameters(self, p):\n    p.SetParameter("Guidance", "1.0")\n'
    assert literal_writes(old) == ["line 2: SetParameter(...)"]
    assert literal_writes("self._parameterNode.guidance = 1.0\n") == ["line 1: guidance = 1.0"]


def test_widget_builds_its_parameter_node_from_the_declarations():
    tree = ast.parse(WIDGET_CODE[0].read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "wrapper_class"]
    assert len(calls) == 1
    args = [ast.unparse(a) for a in calls[0].args] + [f"{k.arg}={ast.unparse(k.value)}" for k in calls[0].keywords]
    assert "defaults.PARAMETERS" in args and "wrap=parameterNodeWrapper" in args
    assert "within_range=WithinRange" in args
    # and no hand-written wrapper class beside it
    decorated = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                 and any(ast.unparse(d).startswith("parameterNodeWrapper") for d in n.decorator_list)]
    assert decorated == []


def test_wrapper_class_carries_the_defaults_and_ranges():
    """What parameterNodeWrapper receives: class attributes = defaults, WithinRange = declared ranges."""
    import typing

    class WithinRange:
        def __init__(self, low, high):
            self.range = (low, high)

    class Choice:
        def __init__(self, choices):
            self.choices = tuple(choices)

    node_classes = {}

    def node_type(name):   # stands in for getattr(slicer, name)
        return node_classes.setdefault(name, type(name, (), {}))

    cls = parameters.wrapper_class("Probe", defaults.PARAMETERS, wrap=lambda c: c, node_type=node_type,
                                   within_range=WithinRange, choice=Choice)
    hints = typing.get_type_hints(cls, include_extras=True)
    assert cls.guidance == tumor_ops.GUIDANCE.default
    extras = {name: typing.get_args(hint)[1:] for name, hint in hints.items() if typing.get_args(hint)}
    assert extras["guidance"][0].range == (tumor_ops.GUIDANCE.min, tumor_ops.GUIDANCE.max)
    assert extras["steps"][0].range == (defaults.STEPS_UNSET, COMMON["steps"].max)
    assert extras["operation"][0].choices == (defaults.REMOVE, defaults.SYNTHESIZE)
    for option in tumor_ops.SHAPE_OPTIONS:
        assert getattr(cls, option.name) == option.default
        assert extras[option.name][0].range == (option.min, option.max)
    assert hints["inputVolume"] is node_classes["vtkMRMLScalarVolumeNode"]
    assert not hasattr(cls, "inputVolume")   # node references default to None in the wrapper
