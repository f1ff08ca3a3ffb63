"""Helpers shared by the TumorSynth operations and slider tests (fixtures: conftest.py): constants, a ball mask,
markups points, and the checks every operation's output must pass."""

from __future__ import annotations

import numpy as np
import slicer
from scipy import ndimage
from TumorSynthLib.operations import OperationParameters

from radsynth import mrml
from radsynth.volume import SYNTHETIC_KEY, Volume

STEPS = 4
UNTOUCHED_MM = 10.0      # beyond this distance from old ∪ new tumour every voxel must be bit-identical
NODULE_MM = 7.5
PRESET = "lung1-tumor"


def spacing(vol: Volume) -> np.ndarray:
    return np.asarray(vol.spacing)[::-1]


def ball(vol: Volume, centre_kji, radii_mm) -> np.ndarray:
    kji = np.indices(vol.shape, sparse=True)
    d = sum((((kji[a] - centre_kji[a]) * spacing(vol)[a]) / radii_mm[a]) ** 2 for a in range(3))
    return (d <= 1.0).astype(np.uint8)


def markups(scene, vol: Volume, kji):
    import vtk

    lps = vol.index_to_physical(np.asarray(kji, float)[None])[0]
    node = slicer.vtkMRMLMarkupsFiducialNode()
    scene.AddNode(node)
    node.AddControlPoint(vtk.vtkVector3d(-lps[0], -lps[1], lps[2]))  # markups live in RAS
    return node, lps


def array(node) -> np.ndarray:
    return mrml.volume_from_node(node).array


def mask_of(out: dict) -> Volume:
    return mrml.segment_to_mask(out["segmentation"], out["segment_id"], out["volume"])


def ml(mask: Volume) -> float:
    return float(mask.array.sum() * np.prod(mask.spacing) / 1000.0)


def check(scene, node, before, out, word: str, changed: np.ndarray) -> np.ndarray:
    """Names, synthetic mark, same grid, input untouched, nothing changed away from ``changed``."""
    assert out["volume"].GetName() == f"lung1 - {word} - synthetic"
    assert out["volume"].GetAttribute(SYNTHETIC_KEY) == "1"
    assert out["segmentation"].GetName().startswith(f"lung1 - {word}")
    assert out["volume"].GetScene() is scene and out["volume"] is not node
    result = mrml.volume_from_node(out["volume"])
    assert result.same_grid(mrml.volume_from_node(node), tol=1e-9)
    assert np.array_equal(array(node), before), "the input volume must not change"
    far = ndimage.distance_transform_edt(changed == 0, sampling=spacing(result)) > UNTOUCHED_MM
    assert np.array_equal(result.array[far], before[far]), "voxels away from the tumour must be bit-identical"
    assert np.any(result.array[changed > 0] != before[changed > 0])
    return result.array


def op_params(node, **kw) -> OperationParameters:
    kw = {"preset": PRESET, "steps": STEPS, "seed": 1, **kw}
    return OperationParameters(input_volume=node, **kw)

