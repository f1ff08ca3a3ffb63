"""TumorSynth module logic on real MRML (slicer-core) and the real lung1 chest CT, through the real pipeline."""

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

from RadSynthLib.jobs import BackgroundRun  # noqa: E402
from RadSynthLib.workers import EngineRunner  # noqa: E402
from TumorSynthLib.logic import (REMOVE, SYNTHESIZE, TEXTURE_PRESET, TEXTURE_SEGMENT,  # noqa: E402
                                 TumorSynthLogic, TumorSynthParameters)

from radsynth import mrml  # noqa: E402
from radsynth.errors import CancelledError, InvalidImageError, InvalidMaskError, RadSynthError  # noqa: E402
from radsynth.progress import CancelToken  # noqa: E402
from radsynth.sample_data import sample_path  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY, Volume, read_volume  # noqa: E402

SPHERE_RADIUS_MM = 7.5   # a ~15 mm nodule
UNTOUCHED_MM = 10.0      # beyond this distance from the mask every voxel must be bit-identical


# -- fixtures: the real CT, a lung point away from the real tumour ------------------------------------------------
@pytest.fixture(scope="module")
def lung1() -> tuple[Volume, Volume]:
    return read_volume(sample_path("lung1", "image")), read_volume(sample_path("lung1", "label"))


def _spacing_kji(vol: Volume) -> np.ndarray:
    return np.asarray(vol.spacing)[::-1]


@pytest.fixture(scope="module")
def sphere(lung1) -> np.ndarray:
    """A sphere deep inside lung parenchyma, > 40 mm from the labelled tumour."""
    ct, label = lung1
    air = ct.array < -500
    components, n = ndimage.label(air)
    edges = np.concatenate([components[:, [0, -1], :].ravel(), components[:, :, [0, -1]].ravel()])
    outside = set(np.unique(edges).tolist())  # air around the patient touches the image border
    sizes = ndimage.sum(air, components, range(1, n + 1))
    lung_ids = [i + 1 for i in np.argsort(sizes)[::-1][:4] if i + 1 not in outside]
    lung = np.isin(components, lung_ids)
    depth = ndimage.distance_transform_edt(lung, sampling=_spacing_kji(ct))
    from_tumor = ndimage.distance_transform_edt(label.array == 0, sampling=_spacing_kji(ct))
    candidates = (depth > SPHERE_RADIUS_MM + 5) & (from_tumor > 40)
    centre = np.unravel_index(np.argmax(np.where(candidates, depth, 0)), ct.shape)
    kji = np.indices(ct.shape, sparse=True)
    dist2 = sum(((kji[a] - centre[a]) * _spacing_kji(ct)[a]) ** 2 for a in range(3))
    mask = (dist2 <= SPHERE_RADIUS_MM ** 2).astype(np.uint8)
    assert 20 < mask.sum() < 2000
    assert ct.array[mask > 0].max() < -500, "the sphere must lie in aerated lung"
    return mask


@pytest.fixture(scope="module")
def logic() -> TumorSynthLogic:
    """One logic for the module, so the models load once, as they do in the panel."""
    return TumorSynthLogic()


@pytest.fixture
def loaded(scene, lung1, sphere):
    """lung1 in the scene with one segmentation: 'nodule' (the sphere) and 'tumor' (the real label)."""
    ct, label = lung1
    node = mrml.volume_to_node(ct, scene, "lung1")
    seg = mrml.mask_to_segmentation_node(ct.with_array(sphere), scene, "lung1 segmentation", "nodule", node)
    label_node = slicer.vtkMRMLLabelMapVolumeNode()
    label_node.SetIJKToRASMatrix(_matrix(node))
    label_node.SetAndObserveImageData(mrml._array_to_image_data(label.array.astype(np.uint8)))
    scene.AddNode(label_node)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, seg)
    scene.RemoveNode(label_node)
    segmentation = seg.GetSegmentation()
    segmentation.GetNthSegment(1).SetName("tumor")
    ids = {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegmentID(i) for i in range(2)}
    return node, seg, ids


def _matrix(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return m


def _array(node) -> np.ndarray:
    return mrml.volume_from_node(node).array


def _check_outputs(scene, node, before: np.ndarray, mask: np.ndarray, out: dict, seg_name: str) -> np.ndarray:
    assert out["volume"].GetName() == "lung1 - synthetic"
    assert out["volume"].GetAttribute(SYNTHETIC_KEY) == "1"
    assert out["segmentation"].GetName() == seg_name
    for new in (out["volume"], out["segmentation"]):
        assert new.GetScene() is scene and new.GetID() != node.GetID()
    result = mrml.volume_from_node(out["volume"])
    assert result.same_grid(mrml.volume_from_node(node), tol=1e-9)
    assert result.array.dtype == before.dtype
    assert np.array_equal(_array(node), before), "the input volume must not change"
    assert node.GetAttribute(SYNTHETIC_KEY) is None
    far = ndimage.distance_transform_edt(mask == 0, sampling=_spacing_kji(result)) > UNTOUCHED_MM
    assert np.array_equal(result.array[far], before[far]), "voxels far from the mask must be bit-identical"
    assert np.any(result.array[mask > 0] != before[mask > 0]), "the masked region must have changed"
    seg_mask = mrml.segment_to_mask(out["segmentation"], out["segmentation"].GetSegmentation().GetNthSegmentID(0),
                                    out["volume"])
    assert seg_mask.array[mask > 0].mean() > 0.5  # the reported region covers the requested one
    return result.array


def _params(node, seg, ids, **kw) -> TumorSynthParameters:
    return TumorSynthParameters(input_volume=node, segmentation=seg, segment_id=ids["nodule"], seed=1, **kw)


def _table_rows(table) -> list[tuple[str, float, float]]:
    t = table.GetTable()
    return [(t.GetValue(r, 0).ToString(), t.GetValue(r, 1).ToDouble(), t.GetValue(r, 2).ToDouble())
            for r in range(t.GetNumberOfRows())]


# -- the operations -----------------------------------------------------------------------------------------------
def test_remove(logic, scene, loaded, sphere):
    node, seg, ids = loaded
    before = _array(node).copy()
    count = scene.GetNumberOfNodes()
    stages = []
    out = logic.run(_params(node, seg, ids, operation=REMOVE), progress=lambda f, s: stages.append(f))
    _check_outputs(scene, node, before, sphere, out, "lung1 - removed region")
    assert out["table"] is None
    assert scene.GetNodeByID(out["volume"].GetID()) is out["volume"]
    assert scene.GetNumberOfNodes() > count and stages and max(stages) <= 1.0


def test_synthesize_from_preset(logic, scene, loaded, sphere):
    from radsynth.radiomics import list_presets, load_preset

    node, seg, ids = loaded
    before = _array(node).copy()
    preset = list_presets()[0]
    out = logic.run(_params(node, seg, ids, operation=SYNTHESIZE, texture_source=TEXTURE_PRESET,
                                        preset=preset))
    after = _check_outputs(scene, node, before, sphere, out, "lung1 - synthetic tumor")
    # a solid tumour in aerated lung is far denser than the air it replaces
    assert after[sphere > 0].mean() > before[sphere > 0].mean() + 100
    rows = _table_rows(out["table"])
    assert out["table"].GetName() == "lung1 - tumor features"
    names = [r[0] for r in rows]
    assert rows and len(names) == len(set(names)), "one row per feature"
    target = load_preset(preset)
    for name, wanted, _achieved in rows:
        assert wanted == pytest.approx(target[name], rel=1e-6)


def test_synthesize_texture_from_another_segment(logic, scene, loaded, sphere, lung1):
    from radsynth.radiomics import texture_features

    node, seg, ids = loaded
    before = _array(node).copy()
    out = logic.run(_params(node, seg, ids, operation=SYNTHESIZE, texture_source=TEXTURE_SEGMENT,
                                        texture_segment_id=ids["tumor"]))
    _check_outputs(scene, node, before, sphere, out, "lung1 - synthetic tumor")
    ct, label = lung1
    measured = texture_features(ct, label)
    rows = _table_rows(out["table"])
    assert rows and len({r[0] for r in rows}) == len(rows)
    for name, wanted, _achieved in rows:
        assert wanted == pytest.approx(measured[name], rel=1e-6, abs=1e-9)
    assert "tumor" in out["table"].GetAttribute("RadSynth.TextureSource")


# -- bad input and cancel leave the scene unchanged ---------------------------------------------------------------
def test_empty_segment_changes_nothing(scene, loaded):
    node, seg, ids = loaded
    empty = seg.GetSegmentation().AddEmptySegment("", "empty")
    count = scene.GetNumberOfNodes()
    for op in (REMOVE, SYNTHESIZE):
        params = TumorSynthParameters(operation=op, input_volume=node, segmentation=seg, segment_id=empty,
                                      preset="lung1-tumor")
        with pytest.raises(RadSynthError, match="empty"):
            TumorSynthLogic().run(params)
    with pytest.raises(InvalidMaskError):  # an empty texture segment, too
        TumorSynthLogic().run(_params(node, seg, ids, texture_source=TEXTURE_SEGMENT, texture_segment_id=empty))
    assert scene.GetNumberOfNodes() == count


def test_bad_choices_are_refused_early(scene, loaded):
    node, seg, ids = loaded
    count = scene.GetNumberOfNodes()
    logic = TumorSynthLogic()
    with pytest.raises(InvalidImageError):
        logic.prepare(TumorSynthParameters(input_volume=None, segmentation=seg, segment_id=ids["nodule"]))
    with pytest.raises(InvalidMaskError, match="not found"):
        logic.prepare(_params(node, seg, {"nodule": "nope"}, operation=REMOVE))
    with pytest.raises(RadSynthError, match="preset"):
        logic.prepare(_params(node, seg, ids, texture_source=TEXTURE_PRESET, preset="no-such-preset"))
    with pytest.raises(RadSynthError, match="operation"):
        logic.prepare(_params(node, seg, ids, operation="paint"))
    with pytest.raises(RadSynthError, match="steps"):
        logic.prepare(_params(node, seg, ids, operation=REMOVE, steps=-3))
    mri_like = mrml.volume_to_node(Volume(np.full((8, 32, 32), 300, np.int16), (0, 0, 0), (1, 1, 1),
                                          tuple(np.eye(3).ravel())), scene, "not a CT")
    count += 2  # that node and its display node
    with pytest.raises(InvalidImageError, match="CT"):
        logic.prepare(TumorSynthParameters(operation=REMOVE, input_volume=mri_like, segmentation=seg,
                                           segment_id=ids["nodule"]))
    assert scene.GetNumberOfNodes() == count


def test_cancel_before_running_changes_nothing(scene, loaded):
    node, seg, ids = loaded
    count = scene.GetNumberOfNodes()
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        TumorSynthLogic().run(_params(node, seg, ids, operation=REMOVE), cancel=token)
    assert scene.GetNumberOfNodes() == count


def test_cancel_while_running_changes_nothing(logic, scene, loaded):
    """As the panel does it: execute on a background thread, cancel from the main thread once sampling runs."""
    node, seg, ids = loaded
    before = _array(node).copy()
    count = scene.GetNumberOfNodes()
    # many steps, so that even a fast GPU is still sampling when the main thread looks
    request = logic.prepare(_params(node, seg, ids, operation=SYNTHESIZE, preset="lung1-tumor", steps=200))
    run = BackgroundRun(logic, request)
    run.start()
    deadline = time.monotonic() + 600
    while run.running and run.stage != "sample" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.running, f"the run ended before sampling: {run.error!r}"
    run.cancel.cancel()
    assert run.wait(timeout=60), "cancel must take effect within a step"
    assert isinstance(run.error, CancelledError) and run.result is None
    assert scene.GetNumberOfNodes() == count
    assert np.array_equal(_array(node), before)


def test_background_run_delivers_result_for_apply(logic, scene, loaded, sphere):
    node, seg, ids = loaded
    request = logic.prepare(_params(node, seg, ids, operation=REMOVE, steps=2))
    run = BackgroundRun(logic, request).start()
    assert run.wait(timeout=600) and run.error is None
    assert run.fraction == pytest.approx(1.0)
    out = logic.apply(request, run.result, scene)
    assert out["volume"].GetAttribute(SYNTHETIC_KEY) == "1"


def test_remove_through_the_worker_process(scene, loaded, sphere):
    """The panel's default when Slicer's Python launcher is found: the same logic, run in the worker process."""
    from radsynth.worker import WorkerClient

    node, seg, ids = loaded
    before = _array(node).copy()
    with WorkerClient() as client:
        logic = TumorSynthLogic(EngineRunner(worker=True, client=client))
        out = logic.run(_params(node, seg, ids, operation=REMOVE, steps=2))
        assert client.pid is not None  # the models live in the other process, which stays up for the next run
    _check_outputs(scene, node, before, sphere, out, "lung1 - removed region")
