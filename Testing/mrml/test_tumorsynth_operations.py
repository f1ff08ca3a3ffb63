"""TumorSynth operations (place, remove, move, resize, re-texture, variants) on real MRML (slicer-core), the real
lung1 chest CT and the bundled demo models, through the real pipelines (fixtures: conftest.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "TumorSynth"))

from RadSynthLib.jobs import BackgroundRun  # noqa: E402
from RadSynthLib.workers import EngineRunner  # noqa: E402
from TumorSynthLib.operations import (MOVE, PLACE, REMOVE, RESIZE, RETEXTURE, SHAPE_AROUND,  # noqa: E402
                                      SHAPE_INSIDE, SHAPE_PAINTED, TEXTURE_SLIDER_FEATURES, VARIANT_ETA,
                                      OperationsLogic, centroid_lps)

from operations_support import PRESET, array, ball, check, markups, mask_of, ml, op_params  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.errors import CancelledError, InvalidMaskError, RadSynthError  # noqa: E402
from radsynth.progress import CancelToken  # noqa: E402
from radsynth.volume import PROVENANCE_KEY  # noqa: E402


# -- place --------------------------------------------------------------------------------------------------------
def test_place_at_a_point(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, _seg, _sid, _ = loaded
    before = array(node).copy()
    point, lps = markups(scene, ct, points[1])
    shape = {"volume_ml": 3.0, "shape_Sphericity": 0.85, "shape_Elongation": 0.8, "shape_Flatness": 0.7}
    overrides = {"firstorder_Mean": 20.0}
    [out] = logic.run(op_params(node, operation=PLACE, point=point, shape=shape, texture_overrides=overrides))
    placed = mask_of(out)
    check(scene, node, before, out, "placed", placed.array)
    assert ml(placed) == pytest.approx(3.0, rel=0.2)
    assert np.linalg.norm(centroid_lps(placed) - lps) < 5.0, "the tumour must be centred on the clicked point"
    assert out["targets"]["volume_ml"] == 3.0 and out["measured"]["volume_ml"] == pytest.approx(3.0, rel=0.2)
    # the texture slider sets its feature; the table shows the request the engine completed from the preset
    from radsynth.pipelines.loading import load_models
    from radsynth.pipelines.texture_fill import complete_texture
    from radsynth.radiomics import load_preset

    table = out["table"].GetTable()
    rows = {table.GetValue(r, 0).ToString(): table.GetValue(r, 1).ToDouble() for r in range(table.GetNumberOfRows())}
    models = load_models(device="cpu")
    expected, _ = complete_texture(models.normalizer, models.gaussian, load_preset(PRESET), overrides)
    assert rows["firstorder_Mean"] == 20.0 and out["targets"]["firstorder_Mean"] == 20.0
    assert rows["glcm_Contrast"] == pytest.approx(expected["glcm_Contrast"])
    assert set(TEXTURE_SLIDER_FEATURES) <= set(out["measured"])


@pytest.mark.parametrize("mode", [SHAPE_PAINTED, SHAPE_INSIDE, SHAPE_AROUND])
def test_place_in_a_painted_region(logic, scene, loaded, lung1, points, mode):
    ct, _ = lung1
    node, _seg, _sid, _ = loaded
    before = array(node).copy()
    region = ball(ct, points[1], (12.0, 10.0, 10.0))
    painted = mrml.mask_to_segmentation_node(ct.with_array(region), scene, "painted", "painted", node)
    [out] = logic.run(op_params(node, operation=PLACE, shape_mode=mode, painted_segmentation=painted,
                              painted_segment_id=painted.GetSegmentation().GetNthSegmentID(0),
                              shape={"shape_Sphericity": 0.9}))
    placed = mask_of(out).array > 0
    check(scene, node, before, out, "placed", placed | (region > 0))
    region_ml = ml(ct.with_array(region))
    if mode == SHAPE_PAINTED:
        assert np.array_equal(placed, region > 0), "use my shape: the tumour is the painted region"
    elif mode == SHAPE_INSIDE:
        assert not (placed & (region == 0)).any(), "generated inside the region: nothing outside it"
        assert 0.5 * region_ml < ml(mask_of(out)) <= region_ml * 1.01
    else:
        assert not np.array_equal(placed, region > 0), "generated around the region: a new shape"
        assert ml(mask_of(out)) == pytest.approx(region_ml, rel=0.2)
        centre = ct.index_to_physical(np.argwhere(region).mean(0)[None])[0]
        assert np.linalg.norm(centroid_lps(mask_of(out)) - centre) < 5.0


def test_place_keeps_the_tumour_inside_the_organ(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, _seg, _sid, _ = loaded
    organ = ball(ct, points[1], (12.0, 10.0, 20.0))   # narrower than the tumour; the first point is outside
    # unconstrained, this tumour (same seed and volume) would stick out of the organ
    from radsynth.pipelines import shape as shape_gen

    frame = shape_gen.generate_shape(shape_gen.load_shape_model(), {"volume_ml": 4.0}, seed=1)[0]
    frame, voxel_mm = shape_gen.scale_to_volume(frame, 4.0)
    free = shape_gen.place_shape(ct, ct.index_to_physical(np.asarray(points[1], float)[None])[0], frame, voxel_mm)
    assert (free.array.astype(bool) & (organ == 0)).any()
    organ_node = mrml.mask_to_segmentation_node(ct.with_array(organ), scene, "organ", "organ", node)
    organ_id = organ_node.GetSegmentation().GetNthSegmentID(0)
    point, _ = markups(scene, ct, points[1])
    [out] = logic.run(op_params(node, operation=PLACE, point=point, shape={"volume_ml": 4.0},
                              organ_segmentation=organ_node, organ_segment_id=organ_id))
    placed = mask_of(out).array > 0
    assert placed.any() and not (placed & (organ == 0)).any(), "nothing outside the organ"
    count = scene.GetNumberOfNodes()
    elsewhere, _ = markups(scene, ct, points[0])
    with pytest.raises(InvalidMaskError, match="outside the selected organ"):
        logic.run(op_params(node, operation=PLACE, point=elsewhere, shape={"volume_ml": 4.0},
                          organ_segmentation=organ_node, organ_segment_id=organ_id))
    assert scene.GetNumberOfNodes() == count + 1  # the second markups node only


# -- operations on an existing tumour ------------------------------------------------------------------------------
def test_place_and_move_run_in_the_worker_process(logic, scene, loaded, lung1, points):
    """The module's default in Slicer: every operation runs in the background worker, with the results of an
    in-process run (same seed, same shape; texture equal up to float noise between two processes)."""
    from radsynth.worker import WorkerClient

    ct, _ = lung1
    node, seg, sid, nodule = loaded
    before = array(node).copy()
    point, _ = markups(scene, ct, points[1])
    place = op_params(node, operation=PLACE, point=point, shape={"volume_ml": 3.0},
                    texture_overrides={"firstorder_Mean": 20.0})
    move = op_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point)
    with WorkerClient() as client:
        worker = OperationsLogic(EngineRunner(worker=True, client=client))
        placed, moved = worker.run(place)[0], worker.run(move)[0]
        assert client.pid is not None, "the models live in the worker process, which stays up"
    check(scene, node, before, moved, "moved", (mask_of(moved).array > 0) | (nodule > 0))
    for there, params in ((placed, place), (moved, move)):
        [here] = logic.run(params)
        assert np.array_equal(mask_of(there).array, mask_of(here).array)
        diff = np.abs(array(there["volume"]).astype(np.float64) - array(here["volume"]))
        assert diff.max() <= 2.0, f"worker and in-process results differ by up to {diff.max():g} HU"
        assert there["measured"].keys() == here["measured"].keys()


def test_move_to_the_point(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, seg, sid, nodule = loaded
    before = array(node).copy()
    point, lps = markups(scene, ct, points[1])
    [out] = logic.run(op_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point))
    moved = mask_of(out)
    check(scene, node, before, out, "moved", (moved.array > 0) | (nodule > 0))
    assert np.linalg.norm(centroid_lps(moved) - lps) < 3.0
    assert moved.array.sum() == pytest.approx(nodule.sum(), rel=0.15), "the same shape, moved"
    after = array(out["volume"])
    assert after[nodule > 0].mean() < -500, "the old place is aerated lung again, not tumour"
    # the input segmentation is untouched too
    assert np.array_equal(mrml.segment_to_mask(seg, sid, node).array, nodule)


def test_move_onto_another_tumour_is_refused(logic, scene, loaded, lung1, points):
    """Another segment of the tumour's segmentation at the target: a clear refusal, nothing added."""
    ct, _ = lung1
    node, seg, sid, _ = loaded
    other = mrml.mask_to_segmentation_node(ct.with_array(ball(ct, points[1], (5.0,) * 3)), scene, "tmp", "other",
                                           node)
    seg.GetSegmentation().CopySegmentFromSegmentation(other.GetSegmentation(),
                                                      other.GetSegmentation().GetNthSegmentID(0))
    mrml.remove_nodes(scene, [other])
    point, _ = markups(scene, ct, points[1])
    count = scene.GetNumberOfNodes()
    with pytest.raises(InvalidMaskError, match="overlaps another tumour"):
        logic.run(op_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point))
    assert scene.GetNumberOfNodes() == count


def test_resize_from_the_volume_slider(logic, scene, loaded, lung1):
    ct, _ = lung1
    node, seg, sid, nodule = loaded
    before = array(node).copy()
    old = ct.with_array(nodule)
    [out] = logic.run(op_params(node, operation=RESIZE, segmentation=seg, segment_id=sid,
                              shape={"volume_ml": 2.5 * ml(old)}))
    resized = mask_of(out)
    check(scene, node, before, out, "resized", (resized.array > 0) | (nodule > 0))
    assert ml(resized) == pytest.approx(2.5 * ml(old), rel=0.2)
    assert np.linalg.norm(centroid_lps(resized) - centroid_lps(old)) < 3.0


def test_retexture_keeps_the_mask(logic, scene, loaded, lung1):
    node, seg, sid, nodule = loaded
    before = array(node).copy()
    [first] = logic.run(op_params(node, operation=RETEXTURE, segmentation=seg, segment_id=sid,
                                texture_overrides={"firstorder_Mean": -20.0}))
    check(scene, node, before, first, "retextured", nodule)
    assert np.array_equal(mask_of(first).array, nodule)
    # what the engine is asked for: the preset as the source, the sliders as overrides (the engine fills the rest)
    from radsynth.radiomics import load_preset

    asked = {}

    def spy(request, progress, cancel):
        asked.update(source=dict(request.target), overrides=dict(request.texture_overrides))
        return logic.runner(request, progress, cancel)

    [second] = logic.run(op_params(node, operation=RETEXTURE, segmentation=seg, segment_id=sid,
                                 texture_overrides={"firstorder_Mean": 80.0, "glcm_Contrast": 500.0}), runner=spy)
    assert asked == {"source": load_preset(PRESET), "overrides": {"firstorder_Mean": 80.0, "glcm_Contrast": 500.0}}
    assert second["targets"]["firstorder_Mean"] == 80.0 and second["targets"]["glcm_Contrast"] == 500.0
    # far beyond any training tumour: the panel is told so (the first request was within range)
    # beyond the training tumours, and a slider the bundled model's recorded sweep says it does not follow
    assert first["warnings"] == [] and len(second["warnings"]) == 2 and "glcm_Contrast = 500" in second["warnings"][0]
    assert "does not follow glcm_Contrast" in second["warnings"][1]
    assert np.array_equal(mask_of(second).array, nodule)


def test_remove(logic, scene, loaded):
    node, seg, sid, nodule = loaded
    before = array(node).copy()
    [out] = logic.run(op_params(node, operation=REMOVE, segmentation=seg, segment_id=sid))
    check(scene, node, before, out, "removed", nodule)
    assert out["segmentation"].GetName() == "lung1 - removed - removed region" and out["table"] is None
    assert np.array_equal(mask_of(out).array, nodule) and "firstorder_Mean" not in out["targets"]


def test_iterating_on_the_latest_result(logic, scene, loaded, lung1, points):
    """As the panel does after a run: the new volume and tumour segment become the next operation's inputs."""
    ct, _ = lung1
    node, seg, sid, nodule = loaded
    original = array(node).copy()
    point, lps = markups(scene, ct, points[1])
    [moved] = logic.run(op_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point))
    moved_array = array(moved["volume"]).copy()
    [grown] = logic.run(op_params(moved["volume"], operation=RESIZE, segmentation=moved["segmentation"],
                                segment_id=moved["segment_id"], shape={"volume_ml": 3.0}))
    assert grown["volume"].GetName() == "lung1 - moved - resized - synthetic"
    assert np.array_equal(array(moved["volume"]), moved_array), "the first result is an input now: untouched"
    assert np.array_equal(array(node), original)
    assert ml(mask_of(grown)) == pytest.approx(3.0, rel=0.2)
    assert np.linalg.norm(centroid_lps(mask_of(grown)) - lps) < 4.0
    # the provenance keeps the history: what made the input, then what was done to it
    history = grown["volume"].GetAttribute(PROVENANCE_KEY)
    assert history.startswith(moved["volume"].GetAttribute(PROVENANCE_KEY)) and len(history.split("; ")) > 2


# -- variants -----------------------------------------------------------------------------------------------------
def test_variants_differ_by_seed_and_repeat_with_the_same_seed(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, _seg, _sid, _ = loaded
    point, _ = markups(scene, ct, points[1])
    params = op_params(node, operation=PLACE, point=point, shape={"volume_ml": 2.0}, variants=2, seed=7)
    batch = logic.prepare(params)
    assert [r.seed for r in batch] == [7, 8] and all(r.eta == VARIANT_ETA for r in batch)
    first = logic.run(params)
    assert [o["volume"].GetName() for o in first] == ["lung1 - placed #1 - synthetic", "lung1 - placed #2 - synthetic"]
    assert [o["volume"].GetAttribute("RadSynth.Seed") for o in first] == ["7", "8"]
    # grouped where Slicer users look: one subject-hierarchy folder beside the input holds both variants' nodes
    from RadSynthLib import results

    sh = results.subject_hierarchy(scene)
    folders = {sh.GetItemParent(sh.GetItemByDataNode(o[k])) for o in first for k in ("volume", "segmentation")}
    assert len(folders) == 1
    folder = folders.pop()
    assert sh.GetItemName(folder) == "lung1 - placed variants" and sh.GetItemParent(folder) == sh.GetSceneItemID()
    a, b = (array(o["volume"]) for o in first)
    assert not np.array_equal(a, b), "different seeds give different tumours"
    again = logic.run(params)
    for one, two in zip(first, again):
        assert np.array_equal(array(one["volume"]), array(two["volume"])), "the same seed repeats exactly"
        assert np.array_equal(mask_of(one).array, mask_of(two).array)


def test_remove_variants_sample_stochastically(logic, scene, loaded):
    """Where the engine takes eta (remove), variants use stochastic sampling, so even the same mask differs."""
    node, seg, sid, nodule = loaded
    a, b = logic.run(op_params(node, operation=REMOVE, segmentation=seg, segment_id=sid, variants=2))
    assert not np.array_equal(array(a["volume"])[nodule > 0], array(b["volume"])[nodule > 0])


# -- bad input and cancel leave the scene unchanged ---------------------------------------------------------------
def test_bad_input_is_refused_before_anything_runs(logic, scene, loaded, lung1):
    ct, _ = lung1
    node, seg, sid, _ = loaded
    empty = seg.GetSegmentation().AddEmptySegment("", "empty")
    outside, _ = markups(scene, ct, (-40, 100, 100))
    no_point = slicer.vtkMRMLMarkupsFiducialNode()
    scene.AddNode(no_point)
    count = scene.GetNumberOfNodes()
    shape = {"volume_ml": 2.0}
    cases = [
        (dict(operation=PLACE, point=outside, shape=shape), InvalidMaskError, "outside the image"),
        (dict(operation=MOVE, segmentation=seg, segment_id=sid, point=outside), InvalidMaskError, "outside"),
        (dict(operation=PLACE, point=no_point, shape=shape), RadSynthError, "point"),
        (dict(operation=PLACE, point=None, shape=shape), RadSynthError, "point"),
        (dict(operation=PLACE, shape_mode=SHAPE_INSIDE, painted_segmentation=seg, painted_segment_id=empty),
         InvalidMaskError, "empty"),
        (dict(operation=RESIZE, segmentation=seg, segment_id=empty, shape=shape), InvalidMaskError, "empty"),
        (dict(operation=RETEXTURE, segmentation=seg, segment_id=empty), InvalidMaskError, "empty"),
        (dict(operation=REMOVE, segmentation=seg, segment_id=""), InvalidMaskError, "Select the tumour segment"),
        (dict(operation=RESIZE, segmentation=seg, segment_id=sid), RadSynthError, "volume"),
        (dict(operation=PLACE, point=no_point), RadSynthError, "point"),
        (dict(operation=RETEXTURE, segmentation=seg, segment_id=sid, texture_overrides={"glcm_Idm": 1.0}),
         RadSynthError, "slider"),
        (dict(operation=PLACE, point=outside, shape=shape, variants=0), RadSynthError, "variants"),
        (dict(operation="teleport"), RadSynthError, "Unknown operation"),
    ]
    for kw, error, match in cases:
        with pytest.raises(error, match=match):
            logic.run(op_params(node, **kw))
    assert scene.GetNumberOfNodes() == count


def test_engine_refusal_changes_nothing(logic, scene, loaded, lung1, points):
    """A place whose tumour would cross the image edge fails in the engine, after prepare: still nothing added."""
    ct, _ = lung1
    node = loaded[0]
    edge, _ = markups(scene, ct, (1, points[1][1], points[1][2]))
    count = scene.GetNumberOfNodes()
    with pytest.raises(InvalidMaskError, match="edge"):
        logic.run(op_params(node, operation=PLACE, point=edge, shape={"volume_ml": 8.0}))
    assert scene.GetNumberOfNodes() == count


def test_a_tumour_in_the_air_is_refused(logic, scene, loaded, lung1, points):
    """Placing at a point in the air beside the patient, or moving a tumour there, is refused in plain words before
    any model runs; nothing is added."""
    ct, _ = lung1
    node, seg, sid, _ = loaded
    air, _ = markups(scene, ct, (points[1][0], 40, 40))   # near the corner of the slice: air around the patient
    count = scene.GetNumberOfNodes()
    with pytest.raises(InvalidMaskError, match="in the air outside the patient's body"):
        logic.run(op_params(node, operation=PLACE, point=air, shape={"volume_ml": 2.0}))
    with pytest.raises(InvalidMaskError, match="moved tumour lies .* in the air"):
        logic.run(op_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=air))
    assert scene.GetNumberOfNodes() == count


def test_cancel_changes_nothing(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, seg, sid, _ = loaded
    before = array(node).copy()
    point, _ = markups(scene, ct, points[1])
    count = scene.GetNumberOfNodes()
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        logic.run(op_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point), cancel=token)
    # cancelled during sampling, as the panel does it: execute on a thread, cancel from the main thread
    batch = logic.prepare(op_params(node, operation=PLACE, point=point, shape={"volume_ml": 2.0}, steps=200))
    run = BackgroundRun(logic, batch).start()
    deadline = time.monotonic() + 300
    while run.running and "sample" not in run.stage and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.running, f"the run ended before sampling: {run.error!r}"
    run.cancel.cancel()
    assert run.wait(timeout=60) and isinstance(run.error, CancelledError) and run.result is None
    # cancelled after the first of two variants finished: the finished one is not added either
    token = CancelToken()

    def cancel_after_first(request, progress, cancel):
        result = logic.runner(request, progress, cancel)
        token.cancel()
        return result

    with pytest.raises(CancelledError):
        logic.run(op_params(node, operation=REMOVE, segmentation=seg, segment_id=sid, variants=2), cancel=token,
                  runner=cancel_after_first)
    assert scene.GetNumberOfNodes() == count
    assert np.array_equal(array(node), before)
