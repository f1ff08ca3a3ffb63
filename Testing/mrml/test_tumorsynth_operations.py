"""TumorSynth operations (place, remove, move, resize, re-texture, variants, preview) on real MRML (slicer-core),
the real lung1 chest CT and the bundled demo models, through the real pipelines."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

slicer = pytest.importorskip("slicer")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "TumorSynth"))

from TumorSynthLib import sliders  # noqa: E402
from TumorSynthLib.logic import TEXTURE_SEGMENT, BackgroundRun, EngineRunner  # noqa: E402
from TumorSynthLib.operations import (MOVE, PLACE, REMOVE, RESIZE, RETEXTURE, SHAPE_AROUND,  # noqa: E402
                                      SHAPE_INSIDE, SHAPE_PAINTED, TEXTURE_SLIDER_FEATURES, VARIANT_ETA,
                                      OperationParameters, OperationsLogic, centroid_lps)

from radsynth import mrml  # noqa: E402
from radsynth.errors import CancelledError, InvalidMaskError, RadSynthError  # noqa: E402
from radsynth.progress import CancelToken  # noqa: E402
from radsynth.sample_data import sample_path  # noqa: E402
from radsynth.volume import PROVENANCE_KEY, SYNTHETIC_KEY, Volume, read_volume  # noqa: E402

STEPS = 4
UNTOUCHED_MM = 10.0      # beyond this distance from old ∪ new tumour every voxel must be bit-identical
NODULE_MM = 7.5
PRESET = "lung1-tumor"


# -- fixtures: lung1, two points deep in aerated lung, a nodule at the first ---------------------------------------
@pytest.fixture(scope="module")
def lung1() -> tuple[Volume, Volume]:
    return read_volume(sample_path("lung1", "image")), read_volume(sample_path("lung1", "label"))


def _spacing(vol: Volume) -> np.ndarray:
    return np.asarray(vol.spacing)[::-1]


def _ball(vol: Volume, centre_kji, radii_mm) -> np.ndarray:
    kji = np.indices(vol.shape, sparse=True)
    d = sum((((kji[a] - centre_kji[a]) * _spacing(vol)[a]) / radii_mm[a]) ** 2 for a in range(3))
    return (d <= 1.0).astype(np.uint8)


@pytest.fixture(scope="module")
def points(lung1) -> tuple[tuple, tuple]:
    """Two voxels (k, j, i) deep inside lung, > 40 mm from the real tumour and > 30 mm from each other."""
    ct, label = lung1
    air = ct.array < -500
    parts, n = ndimage.label(air)
    border = set(np.unique(np.concatenate([parts[:, [0, -1], :].ravel(), parts[:, :, [0, -1]].ravel()])).tolist())
    sizes = ndimage.sum(air, parts, range(1, n + 1))
    lung = np.isin(parts, [i + 1 for i in np.argsort(sizes)[::-1][:4] if i + 1 not in border])
    depth = ndimage.distance_transform_edt(lung, sampling=_spacing(ct))
    depth[ndimage.distance_transform_edt(label.array == 0, sampling=_spacing(ct)) <= 40] = 0
    first = np.unravel_index(np.argmax(depth), ct.shape)
    away = np.zeros(ct.shape, bool)
    away[first] = True
    depth[ndimage.distance_transform_edt(~away, sampling=_spacing(ct)) <= 30] = 0
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
    nodule = _ball(ct, points[0], (NODULE_MM,) * 3)
    seg = mrml.mask_to_segmentation_node(ct.with_array(nodule), scene, "lung1 segmentation", "nodule", node)
    return node, seg, seg.GetSegmentation().GetNthSegmentID(0), nodule


def _markups(scene, vol: Volume, kji):
    import vtk

    lps = vol.index_to_physical(np.asarray(kji, float)[None])[0]
    node = slicer.vtkMRMLMarkupsFiducialNode()
    scene.AddNode(node)
    node.AddControlPoint(vtk.vtkVector3d(-lps[0], -lps[1], lps[2]))  # markups live in RAS
    return node, lps


def _array(node) -> np.ndarray:
    return mrml.volume_from_node(node).array


def _mask(out: dict) -> Volume:
    return mrml.segment_to_mask(out["segmentation"], out["segment_id"], out["volume"])


def _ml(mask: Volume) -> float:
    return float(mask.array.sum() * np.prod(mask.spacing) / 1000.0)


def _check(scene, node, before, out, word: str, changed: np.ndarray) -> np.ndarray:
    """Names, synthetic mark, same grid, input untouched, nothing changed away from ``changed``."""
    assert out["volume"].GetName() == f"lung1 - {word} - synthetic"
    assert out["volume"].GetAttribute(SYNTHETIC_KEY) == "1"
    assert out["segmentation"].GetName().startswith(f"lung1 - {word}")
    assert out["volume"].GetScene() is scene and out["volume"] is not node
    result = mrml.volume_from_node(out["volume"])
    assert result.same_grid(mrml.volume_from_node(node), tol=1e-9)
    assert np.array_equal(_array(node), before), "the input volume must not change"
    far = ndimage.distance_transform_edt(changed == 0, sampling=_spacing(result)) > UNTOUCHED_MM
    assert np.array_equal(result.array[far], before[far]), "voxels away from the tumour must be bit-identical"
    assert np.any(result.array[changed > 0] != before[changed > 0])
    return result.array


def _params(node, **kw) -> OperationParameters:
    kw = {"preset": PRESET, "steps": STEPS, "seed": 1, **kw}
    return OperationParameters(input_volume=node, **kw)


# -- place --------------------------------------------------------------------------------------------------------
def test_place_at_a_point(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, _seg, _sid, _ = loaded
    before = _array(node).copy()
    point, lps = _markups(scene, ct, points[1])
    shape = {"volume_ml": 3.0, "shape_Sphericity": 0.85, "shape_Elongation": 0.8, "shape_Flatness": 0.7}
    overrides = {"firstorder_Mean": 20.0}
    [out] = logic.run(_params(node, operation=PLACE, point=point, shape=shape, texture_overrides=overrides))
    placed = _mask(out)
    _check(scene, node, before, out, "placed", placed.array)
    assert _ml(placed) == pytest.approx(3.0, rel=0.2)
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
    before = _array(node).copy()
    region = _ball(ct, points[1], (12.0, 10.0, 10.0))
    painted = mrml.mask_to_segmentation_node(ct.with_array(region), scene, "painted", "painted", node)
    [out] = logic.run(_params(node, operation=PLACE, shape_mode=mode, painted_segmentation=painted,
                              painted_segment_id=painted.GetSegmentation().GetNthSegmentID(0),
                              shape={"shape_Sphericity": 0.9}))
    placed = _mask(out).array > 0
    _check(scene, node, before, out, "placed", placed | (region > 0))
    region_ml = _ml(ct.with_array(region))
    if mode == SHAPE_PAINTED:
        assert np.array_equal(placed, region > 0), "use my shape: the tumour is the painted region"
    elif mode == SHAPE_INSIDE:
        assert not (placed & (region == 0)).any(), "generated inside the region: nothing outside it"
        assert 0.5 * region_ml < _ml(_mask(out)) <= region_ml * 1.01
    else:
        assert not np.array_equal(placed, region > 0), "generated around the region: a new shape"
        assert _ml(_mask(out)) == pytest.approx(region_ml, rel=0.2)
        centre = ct.index_to_physical(np.argwhere(region).mean(0)[None])[0]
        assert np.linalg.norm(centroid_lps(_mask(out)) - centre) < 5.0


def test_place_keeps_the_tumour_inside_the_organ(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, _seg, _sid, _ = loaded
    organ = _ball(ct, points[1], (12.0, 10.0, 20.0))   # narrower than the tumour; the first point is outside
    # unconstrained, this tumour (same seed and volume) would stick out of the organ
    from radsynth.pipelines import shape as shape_gen

    frame = shape_gen.generate_shape(shape_gen.load_shape_model(), {"volume_ml": 4.0}, seed=1)[0]
    frame, voxel_mm = shape_gen.scale_to_volume(frame, 4.0)
    free = shape_gen.place_shape(ct, ct.index_to_physical(np.asarray(points[1], float)[None])[0], frame, voxel_mm)
    assert (free.array.astype(bool) & (organ == 0)).any()
    organ_node = mrml.mask_to_segmentation_node(ct.with_array(organ), scene, "organ", "organ", node)
    organ_id = organ_node.GetSegmentation().GetNthSegmentID(0)
    point, _ = _markups(scene, ct, points[1])
    [out] = logic.run(_params(node, operation=PLACE, point=point, shape={"volume_ml": 4.0},
                              organ_segmentation=organ_node, organ_segment_id=organ_id))
    placed = _mask(out).array > 0
    assert placed.any() and not (placed & (organ == 0)).any(), "nothing outside the organ"
    count = scene.GetNumberOfNodes()
    elsewhere, _ = _markups(scene, ct, points[0])
    with pytest.raises(InvalidMaskError, match="outside the selected organ"):
        logic.run(_params(node, operation=PLACE, point=elsewhere, shape={"volume_ml": 4.0},
                          organ_segmentation=organ_node, organ_segment_id=organ_id))
    assert scene.GetNumberOfNodes() == count + 1  # the second markups node only


# -- operations on an existing tumour ------------------------------------------------------------------------------
def test_place_and_move_run_in_the_worker_process(logic, scene, loaded, lung1, points):
    """The module's default in Slicer: every operation runs in the background worker, with the results of an
    in-process run (same seed, same shape; texture equal up to float noise between two processes)."""
    from radsynth.worker import WorkerClient

    ct, _ = lung1
    node, seg, sid, nodule = loaded
    before = _array(node).copy()
    point, _ = _markups(scene, ct, points[1])
    place = _params(node, operation=PLACE, point=point, shape={"volume_ml": 3.0},
                    texture_overrides={"firstorder_Mean": 20.0})
    move = _params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point)
    with WorkerClient() as client:
        worker = OperationsLogic(EngineRunner(worker=True, client=client))
        placed, moved = worker.run(place)[0], worker.run(move)[0]
        assert client.pid is not None, "the models live in the worker process, which stays up"
    _check(scene, node, before, moved, "moved", (_mask(moved).array > 0) | (nodule > 0))
    for there, params in ((placed, place), (moved, move)):
        [here] = logic.run(params)
        assert np.array_equal(_mask(there).array, _mask(here).array)
        diff = np.abs(_array(there["volume"]).astype(np.float64) - _array(here["volume"]))
        assert diff.max() <= 2.0, f"worker and in-process results differ by up to {diff.max():g} HU"
        assert there["measured"].keys() == here["measured"].keys()


def test_move_to_the_point(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, seg, sid, nodule = loaded
    before = _array(node).copy()
    point, lps = _markups(scene, ct, points[1])
    [out] = logic.run(_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point))
    moved = _mask(out)
    _check(scene, node, before, out, "moved", (moved.array > 0) | (nodule > 0))
    assert np.linalg.norm(centroid_lps(moved) - lps) < 3.0
    assert moved.array.sum() == pytest.approx(nodule.sum(), rel=0.15), "the same shape, moved"
    after = _array(out["volume"])
    assert after[nodule > 0].mean() < -500, "the old place is aerated lung again, not tumour"
    # the input segmentation is untouched too
    assert np.array_equal(mrml.segment_to_mask(seg, sid, node).array, nodule)


def test_move_onto_another_tumour_is_refused(logic, scene, loaded, lung1, points):
    """Another segment of the tumour's segmentation at the target: a clear refusal, nothing added."""
    ct, _ = lung1
    node, seg, sid, _ = loaded
    other = mrml.mask_to_segmentation_node(ct.with_array(_ball(ct, points[1], (5.0,) * 3)), scene, "tmp", "other",
                                           node)
    seg.GetSegmentation().CopySegmentFromSegmentation(other.GetSegmentation(),
                                                      other.GetSegmentation().GetNthSegmentID(0))
    mrml.remove_nodes(scene, [other])
    point, _ = _markups(scene, ct, points[1])
    count = scene.GetNumberOfNodes()
    with pytest.raises(InvalidMaskError, match="overlaps another tumour"):
        logic.run(_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point))
    assert scene.GetNumberOfNodes() == count


def test_resize_from_the_volume_slider(logic, scene, loaded, lung1):
    ct, _ = lung1
    node, seg, sid, nodule = loaded
    before = _array(node).copy()
    old = ct.with_array(nodule)
    [out] = logic.run(_params(node, operation=RESIZE, segmentation=seg, segment_id=sid,
                              shape={"volume_ml": 2.5 * _ml(old)}))
    resized = _mask(out)
    _check(scene, node, before, out, "resized", (resized.array > 0) | (nodule > 0))
    assert _ml(resized) == pytest.approx(2.5 * _ml(old), rel=0.2)
    assert np.linalg.norm(centroid_lps(resized) - centroid_lps(old)) < 3.0


def test_retexture_keeps_the_mask(logic, scene, loaded, lung1):
    node, seg, sid, nodule = loaded
    before = _array(node).copy()
    [first] = logic.run(_params(node, operation=RETEXTURE, segmentation=seg, segment_id=sid,
                                texture_overrides={"firstorder_Mean": -20.0}))
    _check(scene, node, before, first, "retextured", nodule)
    assert np.array_equal(_mask(first).array, nodule)
    # what the engine is asked for: the preset as the source, the sliders as overrides (the engine fills the rest)
    from radsynth.radiomics import load_preset

    asked = {}

    def spy(request, target, progress, cancel):
        asked.update(source=dict(target), overrides=dict(request.texture_overrides))
        return logic.runner(request, target, progress, cancel)

    [second] = logic.run(_params(node, operation=RETEXTURE, segmentation=seg, segment_id=sid,
                                 texture_overrides={"firstorder_Mean": 80.0, "glcm_Contrast": 5.0}), runner=spy)
    assert asked == {"source": load_preset(PRESET), "overrides": {"firstorder_Mean": 80.0, "glcm_Contrast": 5.0}}
    assert second["targets"]["firstorder_Mean"] == 80.0 and second["targets"]["glcm_Contrast"] == 5.0
    assert np.array_equal(_mask(second).array, nodule)


def test_remove(logic, scene, loaded):
    node, seg, sid, nodule = loaded
    before = _array(node).copy()
    [out] = logic.run(_params(node, operation=REMOVE, segmentation=seg, segment_id=sid))
    _check(scene, node, before, out, "removed", nodule)
    assert out["segmentation"].GetName() == "lung1 - removed - removed region" and out["table"] is None
    assert np.array_equal(_mask(out).array, nodule) and "firstorder_Mean" not in out["targets"]


def test_iterating_on_the_latest_result(logic, scene, loaded, lung1, points):
    """As the panel does after a run: the new volume and tumour segment become the next operation's inputs."""
    ct, _ = lung1
    node, seg, sid, nodule = loaded
    original = _array(node).copy()
    point, lps = _markups(scene, ct, points[1])
    [moved] = logic.run(_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point))
    moved_array = _array(moved["volume"]).copy()
    [grown] = logic.run(_params(moved["volume"], operation=RESIZE, segmentation=moved["segmentation"],
                                segment_id=moved["segment_id"], shape={"volume_ml": 3.0}))
    assert grown["volume"].GetName() == "lung1 - moved - resized - synthetic"
    assert np.array_equal(_array(moved["volume"]), moved_array), "the first result is an input now: untouched"
    assert np.array_equal(_array(node), original)
    assert _ml(_mask(grown)) == pytest.approx(3.0, rel=0.2)
    assert np.linalg.norm(centroid_lps(_mask(grown)) - lps) < 4.0
    # the provenance keeps the history: what made the input, then what was done to it
    history = grown["volume"].GetAttribute(PROVENANCE_KEY)
    assert history.startswith(moved["volume"].GetAttribute(PROVENANCE_KEY)) and len(history.split("; ")) > 2


# -- variants -----------------------------------------------------------------------------------------------------
def test_variants_differ_by_seed_and_repeat_with_the_same_seed(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, _seg, _sid, _ = loaded
    point, _ = _markups(scene, ct, points[1])
    params = _params(node, operation=PLACE, point=point, shape={"volume_ml": 2.0}, variants=2, seed=7)
    batch = logic.prepare(params)
    assert [r.seed for r in batch] == [7, 8] and all(r.eta == VARIANT_ETA for r in batch)
    first = logic.run(params)
    assert [o["volume"].GetName() for o in first] == ["lung1 - placed #1 - synthetic", "lung1 - placed #2 - synthetic"]
    assert [o["volume"].GetAttribute("RadSynth.Seed") for o in first] == ["7", "8"]
    a, b = (_array(o["volume"]) for o in first)
    assert not np.array_equal(a, b), "different seeds give different tumours"
    again = logic.run(params)
    for one, two in zip(first, again):
        assert np.array_equal(_array(one["volume"]), _array(two["volume"])), "the same seed repeats exactly"
        assert np.array_equal(_mask(one).array, _mask(two).array)


def test_remove_variants_sample_stochastically(logic, scene, loaded):
    """Where the engine takes eta (remove), variants use stochastic sampling, so even the same mask differs."""
    node, seg, sid, nodule = loaded
    a, b = logic.run(_params(node, operation=REMOVE, segmentation=seg, segment_id=sid, variants=2))
    assert not np.array_equal(_array(a["volume"])[nodule > 0], _array(b["volume"])[nodule > 0])


# -- preview and slider helpers ------------------------------------------------------------------------------------
def test_shape_preview_is_a_temporary_segment_at_the_point(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node = loaded[0]
    point, lps = _markups(scene, ct, points[1])
    preview = sliders.ShapePreview()
    shape = sliders.shape_defaults(preview.shape_model())
    assert shape["volume_ml"] == sliders.DEFAULT_VOLUME_ML and 0 < shape["shape_Flatness"] <= 1
    count = scene.GetNumberOfNodes()
    state = preview.update(dict(shape, volume_ml=5.0), seed=0, volume_node=node, point=point)
    assert state.error is None and state.measured["volume_ml"] == pytest.approx(5.0, rel=1e-3)
    mask = mrml.segment_to_mask(state.node, state.node.GetSegmentation().GetNthSegmentID(0), node)
    assert _ml(mask) == pytest.approx(5.0, rel=0.2) and np.linalg.norm(centroid_lps(mask) - lps) < 5.0
    assert not state.node.GetSaveWithScene()
    preview.update(dict(shape, volume_ml=1.0), seed=0, volume_node=node, point=point)  # replaces, not adds
    assert scene.GetNumberOfNodes() == count + 2  # the preview segmentation and its display node
    far, _ = _markups(scene, ct, (0, 0, 0))
    state = preview.update(shape, seed=0, volume_node=node, point=far)
    assert state.node is None and "edge" in state.error
    preview.clear()
    assert scene.GetNumberOfNodes() == count + 1  # only the second markups node remains


def test_texture_sliders_start_from_the_source(scene, loaded, lung1):
    from radsynth.radiomics import load_preset, texture_features

    ct, _ = lung1
    node, seg, sid, nodule = loaded
    values = sliders.texture_source_values(OperationParameters(preset=PRESET))
    assert values == {k: pytest.approx(load_preset(PRESET)[k]) for k in TEXTURE_SLIDER_FEATURES}
    measured = sliders.texture_source_values(OperationParameters(input_volume=node, segmentation=seg,
                                                                 texture_source=TEXTURE_SEGMENT,
                                                                 texture_segment_id=sid))
    expected = texture_features(ct, ct.with_array(nodule))
    assert measured == {k: pytest.approx(expected[k], rel=1e-6) for k in TEXTURE_SLIDER_FEATURES}
    assert tuple(s.feature for s in sliders.TEXTURE_SLIDERS) == TEXTURE_SLIDER_FEATURES


def test_log_volume_slider_round_trips():
    positions = [sliders.position_from_volume(v) for v in (0.1, 1.0, 10.0, 100.0)]
    assert positions == [0, 333, 667, 1000], "equal ratios are equal slider steps"
    for v in (0.25, 3.0, 42.0):
        assert sliders.volume_from_position(sliders.position_from_volume(v)) == pytest.approx(v, rel=0.01)


# -- bad input and cancel leave the scene unchanged ---------------------------------------------------------------
def test_bad_input_is_refused_before_anything_runs(logic, scene, loaded, lung1):
    ct, _ = lung1
    node, seg, sid, _ = loaded
    empty = seg.GetSegmentation().AddEmptySegment("", "empty")
    outside, _ = _markups(scene, ct, (-40, 100, 100))
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
            logic.run(_params(node, **kw))
    assert scene.GetNumberOfNodes() == count


def test_engine_refusal_changes_nothing(logic, scene, loaded, lung1, points):
    """A place whose tumour would cross the image edge fails in the engine, after prepare: still nothing added."""
    ct, _ = lung1
    node = loaded[0]
    edge, _ = _markups(scene, ct, (1, points[1][1], points[1][2]))
    count = scene.GetNumberOfNodes()
    with pytest.raises(InvalidMaskError, match="edge"):
        logic.run(_params(node, operation=PLACE, point=edge, shape={"volume_ml": 8.0}))
    assert scene.GetNumberOfNodes() == count


def test_cancel_changes_nothing(logic, scene, loaded, lung1, points):
    ct, _ = lung1
    node, seg, sid, _ = loaded
    before = _array(node).copy()
    point, _ = _markups(scene, ct, points[1])
    count = scene.GetNumberOfNodes()
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        logic.run(_params(node, operation=MOVE, segmentation=seg, segment_id=sid, point=point), cancel=token)
    # cancelled during sampling, as the panel does it: execute on a thread, cancel from the main thread
    batch = logic.prepare(_params(node, operation=PLACE, point=point, shape={"volume_ml": 2.0}, steps=200))
    run = BackgroundRun(logic, batch).start()
    deadline = time.monotonic() + 300
    while run.running and "sample" not in run.stage and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.running, f"the run ended before sampling: {run.error!r}"
    run.cancel.cancel()
    assert run.wait(timeout=60) and isinstance(run.error, CancelledError) and run.result is None
    # cancelled after the first of two variants finished: the finished one is not added either
    token = CancelToken()

    def cancel_after_first(request, target, progress, cancel):
        result = logic.runner(request, target, progress, cancel)
        token.cancel()
        return result

    with pytest.raises(CancelledError):
        logic.run(_params(node, operation=REMOVE, segmentation=seg, segment_id=sid, variants=2), cancel=token,
                  runner=cancel_after_first)
    assert scene.GetNumberOfNodes() == count
    assert np.array_equal(_array(node), before)
