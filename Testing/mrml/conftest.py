"""Shared MRML fixtures (real MRML from the slicer-core wheel); for the operations and slider tests also lung1, two
points deep in its aerated lung, a nodule at the first, and one operations logic per module (models load once)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import slicer
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "TumorSynth")]   # RadSynthLib and TumorSynthLib, as Slicer finds them

from operations_support import NODULE_MM, ball, spacing  # noqa: E402
from TumorSynthLib.operations import OperationsLogic  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.sample_data import sample_path  # noqa: E402
from radsynth.volume import Volume, read_volume  # noqa: E402


@pytest.fixture
def scene():
    """A scene as Slicer sets it up: the segmentations logic registers the representation converters."""
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    yield scene
    logic.SetMRMLScene(None)


@pytest.fixture(scope="module")
def lung1() -> tuple[Volume, Volume]:
    return read_volume(sample_path("lung1", "image")), read_volume(sample_path("lung1", "label"))


@pytest.fixture(scope="module")
def points(lung1) -> tuple[tuple, tuple]:
    """Two voxels (k, j, i) deep inside lung, > 40 mm from the real tumour and > 30 mm from each other."""
    ct, label = lung1
    air = ct.array < -500
    parts, n = ndimage.label(air)
    border = set(np.unique(np.concatenate([parts[:, [0, -1], :].ravel(), parts[:, :, [0, -1]].ravel()])).tolist())
    sizes = ndimage.sum(air, parts, range(1, n + 1))
    lung = np.isin(parts, [i + 1 for i in np.argsort(sizes)[::-1][:4] if i + 1 not in border])
    depth = ndimage.distance_transform_edt(lung, sampling=spacing(ct))
    depth[ndimage.distance_transform_edt(label.array == 0, sampling=spacing(ct)) <= 40] = 0
    first = np.unravel_index(np.argmax(depth), ct.shape)
    away = np.zeros(ct.shape, bool)
    away[first] = True
    depth[ndimage.distance_transform_edt(~away, sampling=spacing(ct)) <= 30] = 0
    second = np.unravel_index(np.argmax(depth), ct.shape)
    assert depth[second] > 14, "the second point must leave room for the nodule"
    return tuple(int(v) for v in first), tuple(int(v) for v in second)


@pytest.fixture(scope="module")
def logic() -> OperationsLogic:
    """One logic for the module, so the models load once, as they do in the panel."""
    return OperationsLogic()


@pytest.fixture
def loaded(scene, lung1, points):
    """lung1 in the scene with one segmentation holding 'nodule' (a 15 mm ball at the first point)."""
    ct, _ = lung1
    node = mrml.volume_to_node(ct, scene, "lung1")
    nodule = ball(ct, points[0], (NODULE_MM,) * 3)
    seg = mrml.mask_to_segmentation_node(ct.with_array(nodule), scene, "lung1 segmentation", "nodule", node)
    return node, seg, seg.GetSegmentation().GetNthSegmentID(0), nodule


@pytest.fixture
def small_ct(scene):
    """A small random CT-like volume ('chest', 0.7×0.7×5 mm) with one segmentation holding a 'tumour' box."""
    rng = np.random.default_rng(3)
    image = Volume(rng.integers(-900, 60, (8, 24, 24)).astype(np.int16), (0, 0, 0), (0.7, 0.7, 5.0),
                   tuple(np.eye(3).ravel()))
    node = mrml.volume_to_node(image, scene, "chest")
    mask = np.zeros(image.shape, np.uint8)
    mask[3:5, 8:14, 8:14] = 1
    seg = mrml.mask_to_segmentation_node(image.with_array(mask), scene, "seg", "tumour", node)
    return node, seg, seg.GetSegmentation().GetNthSegmentID(0)
