"""Operation registry: typed options enforce their ranges, declarations are the single source of defaults."""

import pytest
import torch

from radsynth.errors import InvalidOptionError, RadSynthError
from radsynth.pipelines import registry
from radsynth.pipelines.registry import Operation, Option
from radsynth.samplers.guidance import classifier_free


def test_option_ranges_and_types():
    steps = Option("steps", "int", None, min=2, max=100)
    assert steps.check(20) == 20 and steps.check("7") == 7 and steps.check(None) is None
    for bad, message in ((1, "between 2 and 100"), (101, "between 2 and 100"), (2.5, "whole number"),
                         ("x", "a number"), (float("nan"), "finite"), (True, "a number")):
        with pytest.raises(InvalidOptionError, match=message):
            steps.check(bad)
    mode = Option("shape_mode", "choice", "a", choices=("a", "b"))
    with pytest.raises(InvalidOptionError, match="choose one of a, b"):
        mode.check("c")
    point = Option("point_lps", "point")
    assert point.check([1, 2, 3]) == (1.0, 2.0, 3.0)
    with pytest.raises(InvalidOptionError, match="three"):
        point.check([1, 2])
    with pytest.raises(ValueError):   # a declaration whose default breaks its own range is a bug
        Option("guidance", "float", 20.0, max=10.0)


def test_describe_says_unit_range_and_default():
    text = Option("margin_mm", "float", 1.5, "Rim around the mask", unit="mm", min=0, max=10).describe()
    assert text == "Rim around the mask; range 0–10 mm; default 1.5."


def test_tumour_operations_are_declared_once():
    names = {op.name for op in registry.operations("tumor")}
    assert names == {"remove", "synthesize", "retexture", "place", "move", "resize"}
    synth = registry.get("synthesize")
    assert synth.option("guidance").default == 3.0 and synth.option("guidance").reason
    assert registry.get("place").volume_options == ("painted", "organ") and not registry.get("place").needs_mask
    assert registry.get("move").volume_options == ("others",)
    assert synth.check({"seed": 3, "steps": None}) == {"seed": 3, "guidance": 3.0, "margin_mm": 1.5}
    with pytest.raises(InvalidOptionError, match="does not take colour"):
        synth.check({"colour": 1})
    with pytest.raises(InvalidOptionError, match="seed must be between 0"):
        synth.check({"seed": -1})
    with pytest.raises(InvalidOptionError, match="Unknown operation 'explode'; known: .*synthesize"):
        registry.get("explode")


def test_the_pipelines_use_the_declared_defaults():
    from radsynth.pipelines import tumor
    assert tumor.DEFAULT_GUIDANCE == registry.get("synthesize").option("guidance").default
    assert tumor.MARGIN_MM == {"remove": registry.get("remove").option("margin_mm").default,
                               "synthesize": registry.get("synthesize").option("margin_mm").default}


def test_duplicate_names_are_refused():
    op = Operation("toy-dup", "toy", "x", run=lambda ctx, image, mask: None)
    registry.register(op)
    try:
        with pytest.raises(RadSynthError, match="Two operations"):
            registry.register(Operation("toy-dup", "other", "y", run=lambda ctx, image, mask: None))
    finally:
        registry.unregister("toy-dup")


def test_classifier_free_guidance_wrapper():
    calls = []

    def model(x, t, null):
        calls.append(len(x))
        # conditional prediction 2x, null prediction x: guidance s gives x + s·x
        return torch.where(null[:, None], x, 2 * x)

    x = torch.ones(3, 4)
    assert torch.equal(classifier_free(model, 1.0)(x, 5), 2 * x) and calls == [3]   # one evaluation
    assert torch.equal(classifier_free(model, 3.0)(x, 5), 4 * x) and calls[-1] == 6  # one batch of both
    assert torch.equal(classifier_free(model, 0.0)(x, 5), x)
    assert torch.equal(classifier_free(model, 3.0, conditional=False)(x, 5), x) and calls[-1] == 3
    with pytest.raises(ValueError):
        classifier_free(model, -1.0)
