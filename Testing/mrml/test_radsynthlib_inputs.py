"""RadSynthLib.inputs and RadSynthLib.parameters on real MRML (slicer-core): input nodes are refused with a clear
message before anything runs; option values are checked against the operation's declaration; panel parameters
mirror declarations."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from RadSynthLib import inputs, parameters  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.errors import InvalidImageError, InvalidMaskError, InvalidOptionError  # noqa: E402
from radsynth.pipelines import registry, tumor_ops  # noqa: E402
from radsynth.volume import Volume  # noqa: E402


def _ct(value=None) -> Volume:
    rng = np.random.default_rng(2)
    array = rng.integers(-900, 60, (4, 16, 16)).astype(np.int16) if value is None else \
        np.full((4, 16, 16), value, np.int16)
    return Volume(array, (0, 0, 0), (0.7, 0.7, 5.0), tuple(np.eye(3).ravel()))


def test_read_volume_returns_the_ct(scene):
    image = _ct()
    node = mrml.volume_to_node(image, scene, "ct")
    assert np.array_equal(inputs.read_volume(node).array, image.array)


def test_read_volume_refuses_what_is_not_a_ct_in_the_scene(scene):
    count = scene.GetNumberOfNodes()
    with pytest.raises(InvalidImageError, match="Select the CT volume"):
        inputs.read_volume(None)
    label = slicer.vtkMRMLLabelMapVolumeNode()
    label.SetName("labels")
    scene.AddNode(label)
    with pytest.raises(InvalidImageError, match="label map"):
        inputs.read_volume(label)
    outside = slicer.vtkMRMLScalarVolumeNode()
    outside.SetName("loose")
    with pytest.raises(InvalidImageError, match="not in the scene"):
        inputs.read_volume(outside)
    mri = mrml.volume_to_node(_ct(300), scene, "MRI")
    with pytest.raises(InvalidImageError, match="CT"):
        inputs.read_volume(mri)
    assert np.array_equal(inputs.read_volume(mri, ct=False).array, _ct(300).array)
    assert scene.GetNumberOfNodes() == count + 3   # the label map, the MRI and its display node: nothing else


def test_read_segment_refuses_no_selection(scene):
    image = _ct()
    node = mrml.volume_to_node(image, scene, "ct")
    with pytest.raises(InvalidMaskError, match="Select the tumour"):
        inputs.read_segment(None, "", node, "the tumour")
    mask = np.zeros(image.shape, np.uint8)
    mask[1:3, 4:8, 4:8] = 1
    seg = mrml.mask_to_segmentation_node(image.with_array(mask), scene, "seg", "tumour", node)
    got = inputs.read_segment(seg, seg.GetSegmentation().GetNthSegmentID(0), node, "the tumour")
    assert np.array_equal(got.array, mask)


def test_options_are_checked_against_the_declaration():
    declared = registry.get("synthesize").defaults()
    assert inputs.check_options("synthesize", {"guidance": 4, "steps": 10, "colour": "red"}) == \
        {**declared, "guidance": 4.0, "steps": 10}
    with pytest.raises(InvalidOptionError, match="guidance must be between 0 and 10"):
        inputs.check_options("synthesize", {"guidance": -1.0})
    with pytest.raises(InvalidOptionError, match="steps"):
        inputs.check_options("remove", {"steps": 1})
    # remove takes no guidance: a panel may offer it, it is not checked or sent
    assert "guidance" not in inputs.check_options("remove", {"guidance": -5.0})


def test_option_param_mirrors_the_declaration():
    p = parameters.option_param("guidance", tumor_ops.GUIDANCE)
    assert (p.default, p.minimum, p.maximum, p.option) == (3.0, 0.0, 10.0, tumor_ops.GUIDANCE)
    assert "default 3" in p.help and p.engine_value(p.default) == 3.0
    steps = registry.get("remove").option("steps")
    with pytest.raises(ValueError, match="unset"):
        parameters.option_param("steps", steps)
    p = parameters.option_param("steps", steps, unset=1)
    assert (p.default, p.minimum, p.maximum) == (1, 1, 1000) and p.engine_value(1) is None
    assert p.engine_value(20) == 20
    choice = parameters.option_param("shape", registry.get("place").option("shape_mode"))
    assert choice.type is str and choice.choices == tumor_ops.SHAPE_MODES
