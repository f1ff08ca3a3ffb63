"""CTGenerate logic on real MRML (slicer-core) and the real lung1 chest CT, through the real pipeline and the bundled
demo slice model (few steps): the grown volume node's geometry, name and synthetic mark; the red view's slice as
the seed; bad input refused before any work with the scene unchanged; Cancel keeps the slices done, labelled
partial; a cancel before the first slice adds nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "CTGenerate"))

from CTGenerateLib.logic import (PARTIAL_ATTRIBUTE, CTGenerateLogic, CTGenerateParameters,  # noqa: E402
                                 seed_slice_from_slice_node)
from RadSynthLib.jobs import BackgroundRun  # noqa: E402
from RadSynthLib.workers import EngineRunner  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.errors import CancelledError, InvalidImageError, InvalidOptionError  # noqa: E402
from radsynth.geometry import rotation  # noqa: E402
from radsynth.progress import CancelToken  # noqa: E402
from radsynth.sample_data import sample_path  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY, Volume, read_volume  # noqa: E402

SEED = 20
STEPS = 4


@pytest.fixture(scope="module")
def ct() -> Volume:
    return read_volume(sample_path("lung1", "image"))


@pytest.fixture(scope="module")
def logic() -> CTGenerateLogic:
    return CTGenerateLogic(EngineRunner())   # in process; the demo model loads once


def volumes(scene) -> int:
    return scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")


def ras_of_slice(node, k: int) -> np.ndarray:
    m = slicer.vtkMatrix4x4() if hasattr(slicer, "vtkMatrix4x4") else __import__("vtk").vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array(m.MultiplyPoint((0, 0, k, 1))[:3])


def test_grows_a_new_synthetic_node_with_the_seed_geometry(scene, ct, logic):
    node = mrml.volume_to_node(ct, scene, "lung1")
    out = logic.run(CTGenerateParameters(input_volume=node, seed_slice=SEED, direction="both", slices=2,
                                         steps=STEPS))
    grown = out["volume"]
    assert volumes(scene) == 2 and not out["partial"]
    assert grown.GetImageData().GetDimensions() == (512, 512, 3)
    assert grown.GetSpacing() == pytest.approx(node.GetSpacing())
    # one slice below the seed: the output's slice 1 lies where the input's seed slice lies
    np.testing.assert_allclose(ras_of_slice(grown, 1), ras_of_slice(node, SEED), atol=1e-6)
    assert grown.GetAttribute(SYNTHETIC_KEY) == "1" and grown.GetName().endswith("synthetic")
    seed_back = mrml.volume_from_node(grown).array[1]
    np.testing.assert_array_equal(seed_back, ct.array[SEED])


def test_red_view_slice_is_the_seed(scene, ct):
    node = mrml.volume_to_node(ct, scene, "lung1")
    red = slicer.vtkMRMLSliceNode()
    matrix = red.GetSliceToRAS()
    for r, v in enumerate(ras_of_slice(node, 17)):
        matrix.SetElement(r, 3, v + (0.3 if r == 2 else 0.0))   # a little off the slice centre still picks it
    assert seed_slice_from_slice_node(node, red) == 17


def test_bad_input_is_refused_before_any_work(scene, ct, logic):
    node = mrml.volume_to_node(ct, scene, "lung1")
    with pytest.raises(InvalidOptionError, match=r"outside 'lung1', which has slices 0\.\.47"):
        logic.prepare(CTGenerateParameters(input_volume=node, seed_slice=48))
    with pytest.raises(InvalidOptionError, match="unconditional"):
        logic.prepare(CTGenerateParameters(input_volume=node, seed_slice=None, direction="down"))
    with pytest.raises(InvalidOptionError, match="slices"):
        logic.prepare(CTGenerateParameters(input_volume=node, seed_slice=5, slices=0))
    coronal = Volume(ct.array[:, ::8, ::8].copy(), ct.origin, (4.56, 4.56, 5.0), tuple(rotation((1, 0, 0), 90).ravel()))
    sideways = mrml.volume_to_node(coronal, scene, "coronal")
    with pytest.raises(InvalidImageError, match="not axial"):
        logic.prepare(CTGenerateParameters(input_volume=sideways, seed_slice=5))
    with pytest.raises(InvalidImageError):
        logic.prepare(CTGenerateParameters(input_volume=None, seed_slice=5))
    assert volumes(scene) == 2


def test_cancel_keeps_the_slices_done_labelled_partial(scene, ct, logic):
    node = mrml.volume_to_node(ct, scene, "lung1")
    request = logic.prepare(CTGenerateParameters(input_volume=node, seed_slice=SEED, slices=4, steps=STEPS))
    token = CancelToken()

    def progress(fraction, stage):
        if stage.startswith("slice 3/"):
            token.cancel()

    result = logic.execute(request, progress, token)
    nodes = logic.apply(request, result, scene)
    assert nodes["partial"] and "partial" in nodes["volume"].GetName()
    assert nodes["volume"].GetAttribute(PARTIAL_ATTRIBUTE) == "2/4"
    assert nodes["volume"].GetImageData().GetDimensions()[2] == 3     # the seed and two new slices


def test_cancel_before_the_first_slice_adds_nothing(scene, ct, logic):
    node = mrml.volume_to_node(ct, scene, "lung1")
    request = logic.prepare(CTGenerateParameters(input_volume=node, seed_slice=SEED, slices=2, steps=STEPS))
    job = BackgroundRun(logic, request)
    job.cancel.cancel()
    job.start().wait(120)
    assert isinstance(job.error, CancelledError) and job.result is None
    assert volumes(scene) == 1


def test_unconditional_takes_the_grid_only(scene, ct, logic):
    node = mrml.volume_to_node(ct, scene, "lung1")
    out = logic.run(CTGenerateParameters(input_volume=node, seed_slice=None, slices=2, steps=STEPS))
    grown = out["volume"]
    assert grown.GetImageData().GetDimensions() == (512, 512, 2)
    np.testing.assert_allclose(grown.GetOrigin(), node.GetOrigin(), atol=1e-6)
