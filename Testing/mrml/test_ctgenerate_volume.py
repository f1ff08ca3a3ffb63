"""CTGenerate "Whole volume" logic on real MRML (slicer-core) with a test-made volume-ldm model (random weights,
radsynth.train.volume's card): a new synthetic node with the model's geometry, unguided and following a
segmentation (placed over it, segments mapped by name); variants in a folder; bad input refused before any work
with the scene unchanged; Cancel adds nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "CTGenerate"))

from CTGenerateLib.volume_logic import VolumeLogic, VolumeParameters  # noqa: E402
from RadSynthLib.workers import EngineRunner  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.errors import CancelledError, InvalidMaskError, InvalidOptionError  # noqa: E402
from radsynth.progress import CancelToken  # noqa: E402
from radsynth.train.volume import untrained_model  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY, Volume  # noqa: E402

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("models") / "tiny-volume-ldm"
    untrained_model(folder, name="tiny-volume-ldm")
    return str(folder)


@pytest.fixture(scope="module")
def logic() -> VolumeLogic:
    return VolumeLogic(EngineRunner())     # in process


def _segmentation(scene, names=("body", "lung_upper_lobe_left", "lung_upper_lobe_right", "liver")):
    """A segmentation node: body ellipse, two lungs, a liver, 5 mm voxels, centred at LPS (30, -10, 60)."""
    k, j, i = np.mgrid[0:36, 0:56, 0:56]
    a = np.zeros((36, 56, 56), np.uint8)
    a[((i - 28) / 24) ** 2 + ((j - 28) / 17) ** 2 < 1] = 1
    a[(((i - 38) / 7) ** 2 + ((j - 26) / 9) ** 2 < 1) & (k > 16)] = 2
    a[(((i - 18) / 7) ** 2 + ((j - 26) / 9) ** 2 < 1) & (k > 16)] = 3
    a[(((i - 20) / 8) ** 2 + ((j - 30) / 8) ** 2 < 1) & (k < 12)] = 4
    label = Volume(a, (30 - 137.5, -10 - 137.5, 60 - 87.5), (5.0, 5.0, 5.0), IDENTITY)
    ref = mrml.volume_to_node(label.with_array(a.astype(np.int16)), scene, "reference")
    segments = [(v + 1, n, (0.5, 0.5, 0.5)) for v, n in enumerate(names)]
    node = mrml.label_map_to_segmentation_node(label, scene, "organs", segments, ref)
    return node, label


def _count(scene) -> int:
    return scene.GetNumberOfNodes()


def test_generates_a_synthetic_node_with_the_models_grid(scene, model, logic):
    out = logic.run(VolumeParameters(model=model, steps=2, seed=1), scene)
    node = out["volume"]
    assert node.GetAttribute(SYNTHETIC_KEY) == "1" and "synthetic" in node.GetName()
    assert node.GetImageData().GetDimensions() == (32, 32, 32)
    assert node.GetSpacing() == (8.0, 8.0, 8.0)
    v = mrml.volume_from_node(node)
    assert np.allclose(v.index_to_physical(np.array([[15.5, 15.5, 15.5]]))[0], 0.0, atol=1e-6)
    assert v.array.min() >= -1000 and v.array.max() <= 1000


def test_follows_a_segmentation_placed_over_it(scene, model, logic):
    seg, label = _segmentation(scene)
    before = _count(scene)
    out = logic.run(VolumeParameters(model=model, steps=2, seed=1, segmentation=seg), scene)
    assert _count(scene) > before
    v = mrml.volume_from_node(out["volume"])
    box = np.argwhere(label.array > 0)
    expected = label.index_to_physical(((box.min(0) + box.max(0)) / 2.0)[None])[0]
    assert np.allclose(v.index_to_physical(np.array([[15.5, 15.5, 15.5]]))[0], expected, atol=2.5)
    assert any("liver count as body" in w for w in out["warnings"])
    unguided = logic.run(VolumeParameters(model=model, steps=2, seed=1), scene)
    assert not np.array_equal(mrml.volume_from_node(unguided["volume"]).array, v.array)


def test_variants_go_in_one_folder_with_their_seeds(scene, model, logic):
    out = logic.run(VolumeParameters(model=model, steps=2, seed=5, variants=2), scene)
    nodes = out["volumes"]
    assert len(nodes) == 2 and "seed 5" in nodes[0].GetName() and "seed 6" in nodes[1].GetName()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parents = {sh.GetItemParent(sh.GetItemByDataNode(n)) for n in nodes}
    assert len(parents) == 1 and sh.GetItemName(parents.pop()).endswith("volumes - synthetic")
    a, b = (mrml.volume_from_node(n).array for n in nodes)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("change, error, says", [
    ({"size": (64, 64, 64)}, InvalidOptionError, "not one this model supports"),
    ({"spacing": (2.0, 2.0, 2.0)}, InvalidOptionError, "spacing along x"),
    ({"sampler": "ddpm"}, InvalidOptionError, "trained with rflow"),
    ({"variants": 0}, InvalidOptionError, "variants"),
    ({"model": "no-such-model"}, Exception, "not installed"),
    ({"segmentation": "no body"}, InvalidMaskError, "needs a body segment"),
])
def test_bad_input_leaves_the_scene_unchanged(scene, model, logic, change, error, says):
    params = VolumeParameters(model=model, steps=2)
    if change.get("segmentation") == "no body":
        change = {"segmentation": _segmentation(scene, names=("lung_left", "lung_right", "liver", "heart"))[0]}
    for key, value in change.items():
        setattr(params, key, value)
    before = _count(scene)
    with pytest.raises(error, match=says):
        logic.run(params, scene)
    assert _count(scene) == before


def test_cancel_adds_nothing(scene, model, logic):
    token = CancelToken()
    request = logic.prepare(VolumeParameters(model=model, steps=6, variants=2))

    def progress(fraction, stage):
        if fraction > 0.2:
            token.cancel()

    before = _count(scene)
    with pytest.raises(CancelledError):
        logic.execute(request, progress, token)
    assert _count(scene) == before
