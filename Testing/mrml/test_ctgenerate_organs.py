"""CTGenerate "Choose organs" and live growth on real MRML (slicer-core) and the real lung1 CT, through the real
pipeline: the segmentation (lung1's automatic map as segments) becomes the map, an unticked organ is replaced, an
unknown organ is refused by name with the scene unchanged, Cancel keeps a partial labelled result, variants go in
a folder, and while a run goes on the growing volume appears in one node updated in place (organs with a tiny
test-made organ model; slices with the bundled demo model), removed when the result arrives."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

slicer = pytest.importorskip("slicer")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "CTGenerate"))

from CTGenerateLib.logic import LIVE_ATTRIBUTE, PARTIAL_ATTRIBUTE, CTGenerateLogic, CTGenerateParameters  # noqa: E402
from CTGenerateLib.organs import OrganParameters, OrgansLogic  # noqa: E402
from RadSynthLib.workers import EngineRunner  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.errors import UnknownLabelError  # noqa: E402
from radsynth.models import save_model  # noqa: E402
from radsynth.nets.score_unet import ScoreUNet  # noqa: E402
from radsynth.pipelines.inpaint import labels  # noqa: E402
from radsynth.pipelines.inpaint.auto_map import auto_map  # noqa: E402
from radsynth.sample_data import sample_path  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY, Volume, read_volume  # noqa: E402

START = 20
SEGMENTS = [(labels.BODY, "Body", (0.9, 0.7, 0.6)), (labels.LEFT_LUNG, "Left lung", (0.2, 0.5, 0.9)),
            (labels.RIGHT_LUNG, "Right lung", (0.2, 0.9, 0.5)), (labels.TRACHEA, "Trachea", (0.9, 0.9, 0.2))]


@pytest.fixture(scope="module")
def ct() -> Volume:
    """lung1, every 4th pixel in-plane (2.3 mm, 128^2): the real CT, small enough for a quick test."""
    full = read_volume(sample_path("lung1", "image"))
    sx, sy, sz = full.spacing
    return Volume(np.ascontiguousarray(full.array[:, ::4, ::4]), full.origin, (4 * sx, 4 * sy, sz), full.direction)


@pytest.fixture(scope="module")
def organ_map(ct) -> Volume:
    return auto_map(ct).map


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """An untrained organ-score model folder (K=2, the basic classes, 32^2 at 12 mm): the workflow, not quality."""
    torch.manual_seed(0)
    arch = {"slices": 2, "channels": [8, 8], "attention_levels": [False, False], "num_head_channels": 8,
            "norm_num_groups": 8, "condition_channels": 2 * len(labels.BASIC)}
    net = ScoreUNet(arch, 0.001, 68.0)
    folder = tmp_path_factory.mktemp("models") / "tiny-organ-score"
    save_model(folder, net, {"name": "tiny-organ-score", "kind": "organ-score", "version": "0", "architecture": arch,
                             "sde": {"type": "ve", "sigma_min": 0.001, "sigma_max": 68.0},
                             "window": [-1024.0, 3071.0], "classes": list(labels.BASIC),
                             "grid": {"size": 32, "spacing_mm": 12.0, "slice_spacing_mm": 5.0}})
    return str(folder)


@pytest.fixture(scope="module")
def logic() -> OrgansLogic:
    return OrgansLogic(EngineRunner())       # in process; models load once


def volumes(scene) -> int:
    return scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")


def setup(scene, ct, organ_map, extra=()):
    node = mrml.volume_to_node(ct, scene, "lung1")
    seg = mrml.label_map_to_segmentation_node(organ_map, scene, "lung1 map", SEGMENTS + list(extra), node)
    return node, seg


def params(node, seg, model, **kw):
    base = dict(segmentation=seg, reference_volume=node, start=START, slices=3, steps=3, icnet=False,
                model_dir=model)
    return OrganParameters(**{**base, **kw})


def test_organs_follow_the_segmentation_and_unticked_organs_are_replaced(scene, ct, organ_map, tiny_model, logic):
    node, seg = setup(scene, ct, organ_map)
    request = logic.prepare(params(node, seg, tiny_model, keep=["Body", "Left lung", "Trachea"]))
    assert np.array_equal(request.organ_map.array, organ_map.array)      # segments → the same label map
    result = logic.execute(request)
    assert result[0].settings["keep"] == ["body", "left lung", "trachea"]
    assert "right lung" in result[0].settings["replaced_voxels_model_grid"]
    out = logic.apply(request, result, scene)
    grown = out["volume"]
    assert volumes(scene) == 2 and not out["partial"]
    assert grown.GetImageData().GetDimensions() == (128, 128, 3)
    assert grown.GetSpacing() == pytest.approx(node.GetSpacing())
    np.testing.assert_allclose(grown.GetOrigin(), ct.index_to_physical(np.array([[START, 0, 0]], float))[0]
                               * np.array([-1, -1, 1]), atol=1e-4)       # LPS → RAS
    assert grown.GetAttribute(SYNTHETIC_KEY) == "1" and grown.GetName().endswith("synthetic")


def test_unknown_organs_are_refused_by_name_and_nothing_changes(scene, ct, organ_map, tiny_model, logic):
    liver = organ_map.with_array(np.where(organ_map.array == labels.BODY, 9, 0).astype(np.uint8))
    node, seg = setup(scene, ct, organ_map)
    mrml.label_map_to_segmentation_node(liver, scene, "other", [(9, "Liver", (0.6, 0.2, 0.2))], node)
    other = scene.GetNodesByName("other").GetItemAsObject(0)
    before = (volumes(scene), scene.GetNumberOfNodes())
    with pytest.raises(UnknownLabelError, match="'Liver'"):
        logic.prepare(params(node, other, tiny_model))
    with pytest.raises(UnknownLabelError, match="'spleen'"):
        logic.prepare(params(node, seg, tiny_model, keep=["Body", "spleen"]))
    assert (volumes(scene), scene.GetNumberOfNodes()) == before


def test_cancel_keeps_a_partial_labelled_result_and_variants_go_in_a_folder(scene, ct, organ_map, tiny_model,
                                                                            logic):
    from radsynth.progress import CancelToken

    node, seg = setup(scene, ct, organ_map)
    request = logic.prepare(params(node, seg, tiny_model, slices=4, variants=2, live=False))
    token = CancelToken()

    def progress(fraction, stage):
        if stage.startswith("variant 2/2: slice 3/"):
            token.cancel()

    result = logic.execute(request, progress, token)
    out = logic.apply(request, result, scene)
    first, second = out["volumes"]
    assert out["partial"] and "partial" not in first.GetName() and "partial" in second.GetName()
    assert second.GetAttribute(PARTIAL_ATTRIBUTE) == "2/4"
    assert first.GetImageData().GetDimensions()[2] == 4 and second.GetImageData().GetDimensions()[2] == 2
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = sh.GetItemParent(sh.GetItemByDataNode(first))
    assert sh.GetItemName(parent) == "lung1 map organs" and parent == sh.GetItemParent(sh.GetItemByDataNode(second))


#: CTGenerate.py's live-view timer (the module imports Qt, so it is not imported here)
LIVE_MS = 400


def watch_live(logic, request, scene, run_engine):
    """Run the engine on a thread (each sampler step slowed a little) and poll the live view as the panel's timer
    does; returns the slice counts the growing node showed, its modified events, and the engine's result."""
    out, seen, events = [], [], []

    def slow(_fraction, _stage):
        time.sleep(0.1)

    thread = threading.Thread(target=lambda: out.append(run_engine(request, slow)))
    thread.start()
    node = None
    while thread.is_alive():
        node = logic.update_live(request, scene)
        if node is not None:
            if not events:
                node.AddObserver("ModifiedEvent", lambda *a: events.append(1))
            dims = node.GetImageData().GetDimensions()[2]
            if not seen or seen[-1] != dims:
                seen.append(dims)
        time.sleep(LIVE_MS / 1000)      # the panel's timer interval: polling 40x faster crashed VTK once (abort)
    thread.join()
    return seen, events, node, out[0]


def test_organ_volume_grows_in_the_views_while_it_is_generated(scene, ct, organ_map, tiny_model, logic):
    node, seg = setup(scene, ct, organ_map)
    request = logic.prepare(params(node, seg, tiny_model, slices=4, steps=6))
    seen, events, live, result = watch_live(logic, request, scene, lambda r, p: logic.execute(r, p))
    assert seen[:1] == [1] and len(seen) >= 3 and seen == sorted(seen)      # one node, growing slice by slice
    assert events and live.GetAttribute(LIVE_ATTRIBUTE) == "1" and live.GetAttribute(SYNTHETIC_KEY) == "1"
    out = logic.apply(request, result, scene)
    assert live.GetScene() is None and volumes(scene) == 2                  # the growing node gave way
    assert out["volume"].GetImageData().GetDimensions()[2] == 4


def test_slices_grow_in_the_views_while_they_are_generated(scene, ct):
    slices_logic = CTGenerateLogic(EngineRunner())
    node = mrml.volume_to_node(ct, scene, "lung1")
    request = slices_logic.prepare(CTGenerateParameters(input_volume=node, seed_slice=START, slices=3, steps=6))
    seen, events, live, result = watch_live(slices_logic, request, scene,
                                            lambda r, p: slices_logic.execute(r, p))
    assert seen[0] == 2 and len(seen) >= 2 and seen == sorted(seen)          # the seed and the first new slice
    assert events
    slices_logic.apply(request, result, scene)
    assert live.GetScene() is None and volumes(scene) == 2
