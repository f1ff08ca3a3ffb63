"""DiffusionInpaint logic on real MRML (slicer-core) and crops of the real lung1 CT, through the real engine with tiny
models this test saves (2 steps): both panel workflows — fill on a segment (variants, under the input's study,
marked synthetic, every voxel beyond the blend band bit-identical) and build map → paint / erase a nodule →
render — and bad input refused with the scene unchanged (empty segment, a segment covering whole slices, a segment
name the label scheme does not know, a non-CT volume, cancel mid-run)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

slicer = pytest.importorskip("slicer")

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "DiffusionInpaint"), str(ROOT / "Testing" / "e2e")]

from DiffusionInpaintLib.logic import (MAP_ATTRIBUTE, MAP_SEGMENTS, DiffusionInpaintLogic,  # noqa: E402
                                       FillParameters, MapParameters, RenderParameters)
from inpaint_support import crop, lung1_crop, tiny_models  # noqa: E402
from RadSynthLib import results  # noqa: E402
from RadSynthLib.jobs import BackgroundRun  # noqa: E402
from RadSynthLib.workers import EngineRunner  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.errors import CancelledError, InvalidImageError, InvalidMaskError, UnknownLabelError  # noqa: E402
from radsynth.progress import CancelToken  # noqa: E402
from radsynth.pipelines.inpaint import labels as L  # noqa: E402
from radsynth.sample_data import sample_path  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY, Volume, read_volume  # noqa: E402

#: the margin + feather band (defaults 2 + 3 mm) plus a model pixel (1.25 mm) of resampling reach, in-plane
REACH_MM = 2.0 + 3.0 + 1.25


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def logic():
    return DiffusionInpaintLogic(EngineRunner())   # in process; each model loads once


@pytest.fixture(scope="module")
def small():
    return lung1_crop()


@pytest.fixture(scope="module")
def chest():
    """14 full axial slices of lung1 around its tumour: enough chest for the automatic map's lungs and trachea."""
    box = (slice(26, 40), slice(None), slice(None))
    return (crop(read_volume(sample_path("lung1", "image")), box),
            crop(read_volume(sample_path("lung1", "label")), box))


def in_study(scene, node):
    sh = results.subject_hierarchy(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "patient")
    study = sh.CreateStudyItem(patient, "CT chest")
    sh.CreateItem(study, node)
    return study


def node_count(scene) -> int:
    return scene.GetNumberOfNodes()


def far_from(mask: np.ndarray, spacing, mm: float) -> np.ndarray:
    """Voxels more than ``mm`` in-plane from the mask on their own slice, and every voxel of a slice without it."""
    out = np.ones(mask.shape, bool)
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        out[k] = ndimage.distance_transform_edt(~mask[k], sampling=spacing[1::-1]) > mm
    return out


def segment_ids(seg) -> dict[str, str]:
    s = seg.GetSegmentation()
    return {s.GetNthSegment(i).GetName(): s.GetNthSegmentID(i) for i in range(s.GetNumberOfSegments())}


def replace_segment(scene, seg, name: str, mask: Volume, reference) -> None:
    """What the Segment Editor does to the map: the segment ``name`` now holds ``mask`` (empty: erased)."""
    segmentation = seg.GetSegmentation()
    segmentation.RemoveSegment(segment_ids(seg)[name])
    if not mask.array.any():
        segmentation.AddEmptySegment("", name)
        return
    painted = mrml.mask_to_segmentation_node(mask, scene, "painted", name, reference)
    segmentation.CopySegmentFromSegmentation(painted.GetSegmentation(), painted.GetSegmentation().GetNthSegmentID(0))
    mrml.remove_nodes(scene, [painted])


# -- fill --------------------------------------------------------------------------------------------------------------
def test_fill_on_a_segment_adds_marked_variants_under_the_study(scene, small, tiny, logic):
    ct, tumour = small
    node = mrml.volume_to_node(ct, scene, "lung1")
    study = in_study(scene, node)
    seg = mrml.mask_to_segmentation_node(tumour, scene, "lung1 segmentation", "tumor", node)
    before = node_count(scene)
    out = logic.fill(FillParameters(node, seg, seg.GetSegmentation().GetNthSegmentID(0), variants=2, steps=2,
                                    model_dir=str(tiny["palette"])))
    assert len(out) == 2
    names = [o["volume"].GetName() for o in out]
    assert names == ["lung1 - filled #1 - synthetic", "lung1 - filled #2 - synthetic"]
    region = tumour.array > 0
    arrays = []
    for o in out:
        vol = o["volume"]
        assert vol.GetAttribute(SYNTHETIC_KEY) == "1" and results.study_item(scene, vol) == study
        assert vol.GetAttribute("RadSynth.Operation") == "fill"
        assert o["segmentation"].GetSegmentation().GetNthSegment(0).GetName() == "filled region"
        a = mrml.volume_from_node(vol).array
        np.testing.assert_array_equal(a[far_from(region, ct.spacing, REACH_MM)],
                                      ct.array[far_from(region, ct.spacing, REACH_MM)])
        assert np.abs(a[region].astype(int) - ct.array[region]).mean() > 20   # the tumour was replaced
        arrays.append(a)
    assert not np.array_equal(arrays[0][region], arrays[1][region])          # seeds seed and seed + 1 differ
    assert mrml.volume_from_node(node).array.tobytes() == ct.array.tobytes()  # the input is untouched
    assert node_count(scene) > before
    # the seeds are recorded, and both variants sit in one folder beside the input
    assert [o["volume"].GetAttribute("RadSynth.Seed") for o in out] == ["0", "1"]
    sh = results.subject_hierarchy(scene)
    folder = sh.GetItemParent(sh.GetItemByDataNode(out[0]["volume"]))
    assert sh.GetItemName(folder) == "lung1 - filled variants" and sh.GetItemParent(folder) == study


def test_healthy_fill_with_the_unconditional_model_is_repaint(scene, small, tiny, logic):
    ct, tumour = small
    node = mrml.volume_to_node(ct, scene, "lung1")
    seg = mrml.mask_to_segmentation_node(tumour, scene, "seg", "tumor", node)
    sid = seg.GetSegmentation().GetNthSegmentID(0)
    (out,) = logic.fill(FillParameters(node, seg, sid, steps=2, model_dir=str(tiny["slice"])))
    a = mrml.volume_from_node(out["volume"]).array
    far = far_from(tumour.array > 0, ct.spacing, REACH_MM)
    np.testing.assert_array_equal(a[far], ct.array[far])
    with pytest.raises(Exception, match="mask-conditioned"):   # regenerate needs the palette model
        logic.fill(FillParameters(node, seg, sid, mode="regenerate", steps=2, model_dir=str(tiny["slice"])))


# -- semantic map -> CT ------------------------------------------------------------------------------------------------
def test_build_map_paint_a_nodule_and_render(scene, chest, tiny, logic):
    ct, tumour = chest
    node = mrml.volume_to_node(ct, scene, "lung1")
    study = in_study(scene, node)
    built = logic.build_map(MapParameters(node))
    seg = built["segmentation"]
    assert seg.GetAttribute(MAP_ATTRIBUTE) == "1" and results.study_item(scene, seg) == study
    ids = segment_ids(seg)
    assert list(ids) == [name for _, name, _ in MAP_SEGMENTS]
    volumes_before = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    for name in ("body", "left lung", "right lung"):
        assert mrml.segment_to_mask(seg, ids[name], ct).array.sum() > 1000, name
    with pytest.raises(InvalidMaskError, match="empty"):      # nothing painted yet
        mrml.segment_to_mask(seg, ids["nodule"], ct)
    with pytest.raises(InvalidMaskError, match="no nodule and is as it was built"):
        logic.render(RenderParameters(node, seg, steps=2, model_dir=str(tiny["sdm"])))

    # paint a 12 mm nodule in the right lung (the patient's right: LPS x < 0), then render
    lung = mrml.segment_to_mask(seg, ids["right lung"], ct).array > 0
    depth = ndimage.distance_transform_edt(lung, sampling=ct.spacing[::-1])
    depth[[0, 1, -2, -1]] = 0
    centre = np.unravel_index(np.argmax(depth), ct.shape)
    kji = np.indices(ct.shape).reshape(3, -1).T
    dist = np.linalg.norm((kji - centre) * np.asarray(ct.spacing[::-1]), axis=1).reshape(ct.shape)
    nodule = ct.label_like(dist <= 6.0)
    replace_segment(scene, seg, "nodule", nodule, node)
    out = logic.render(RenderParameters(node, seg, steps=2, model_dir=str(tiny["sdm"])))
    vol = out["volume"]
    assert vol.GetName() == "lung1 - rendered - synthetic" and vol.GetAttribute(SYNTHETIC_KEY) == "1"
    assert results.study_item(scene, vol) == study
    region = mrml.segment_to_mask(out["segmentation"], out["segmentation"].GetSegmentation().GetNthSegmentID(0),
                                  ct).array > 0
    np.testing.assert_array_equal(region, nodule.array > 0)          # what was painted, nothing else
    a = mrml.volume_from_node(vol).array
    far = far_from(region, ct.spacing, REACH_MM)
    np.testing.assert_array_equal(a[far], ct.array[far])
    assert not np.array_equal(a[region], ct.array[region])
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes_before + 1


def test_erasing_the_real_tumour_renders_where_it_was(scene, chest, tiny, logic):
    ct, tumour = chest
    node = mrml.volume_to_node(ct, scene, "lung1")
    tumour_seg = mrml.mask_to_segmentation_node(tumour, scene, "lung1 tumour", "GTV", node)
    built = logic.build_map(MapParameters(node, tumour_seg, tumour_seg.GetSegmentation().GetNthSegmentID(0),
                                          nodule_label="malignant nodule"))
    seg = built["segmentation"]
    ids = segment_ids(seg)
    np.testing.assert_array_equal(mrml.segment_to_mask(seg, ids["malignant nodule"], ct).array > 0,
                                  tumour.array > 0)
    replace_segment(scene, seg, "malignant nodule", ct.label_like(np.zeros(ct.shape, bool)), node)
    out = logic.render(RenderParameters(node, seg, steps=2, model_dir=str(tiny["sdm"])))
    region = mrml.segment_to_mask(out["segmentation"], out["segmentation"].GetSegmentation().GetNthSegmentID(0),
                                  ct).array > 0
    np.testing.assert_array_equal(region, tumour.array > 0)


# -- bad input ---------------------------------------------------------------------------------------------------------
def test_bad_input_is_refused_and_the_scene_is_unchanged(scene, small, chest, tiny, logic):
    ct, tumour = small
    node = mrml.volume_to_node(ct, scene, "lung1")
    seg = mrml.mask_to_segmentation_node(tumour, scene, "seg", "tumor", node)
    sid = seg.GetSegmentation().GetNthSegmentID(0)
    empty = seg.GetSegmentation().AddEmptySegment("", "empty")
    whole = np.zeros(ct.shape, bool)
    whole[5] = True
    most = np.zeros(ct.shape, bool)
    most[5, 10:-10, 10:-10] = True
    regions = {name: mrml.mask_to_segmentation_node(ct.label_like(m), scene, name, name, node)
               for name, m in (("whole", whole), ("most", most))}
    mri = mrml.volume_to_node(ct.with_array((ct.array.astype(np.float32) + 1024) / 4096), scene, "MR")
    before = node_count(scene)
    palette = str(tiny["palette"])
    with pytest.raises(InvalidMaskError, match="'empty' is empty"):
        logic.prepare_fill(FillParameters(node, seg, empty, model_dir=palette))
    with pytest.raises(InvalidImageError, match="does not look like a CT"):
        logic.prepare_fill(FillParameters(mri, seg, sid, model_dir=palette))
    with pytest.raises(InvalidImageError, match="does not look like a CT"):
        logic.prepare_map(MapParameters(mri))
    for name, message in (("whole", "touches the edge"), ("most", "covers most of slice 5")):
        params = FillParameters(node, regions[name], regions[name].GetSegmentation().GetNthSegmentID(0), steps=2,
                                model_dir=palette)
        with pytest.raises(InvalidMaskError, match=message):
            logic.fill(params)
    with pytest.raises(Exception, match="variants"):
        logic.prepare_fill(FillParameters(node, seg, sid, variants=0))
    assert node_count(scene) == before
    # a map segmentation with segments the scheme does not know: every one is named
    big, _ = chest
    chest_node = mrml.volume_to_node(big, scene, "chest")
    segmentation = mrml.label_map_to_segmentation_node(
        big.label_like(np.where(big.array > -500, L.BODY, 0)), scene, "map", [(1, "body", (1, 1, 1))], chest_node)
    for name in ("liver", "Segment_1"):
        segmentation.GetSegmentation().AddEmptySegment("", name)
    before = node_count(scene)
    with pytest.raises(UnknownLabelError, match="'liver', 'Segment_1'"):
        logic.prepare_render(RenderParameters(chest_node, segmentation, model_dir=str(tiny["sdm"])))
    assert node_count(scene) == before


def test_cancel_mid_run_adds_nothing(scene, small, tiny, logic):
    ct, tumour = small
    node = mrml.volume_to_node(ct, scene, "lung1")
    seg = mrml.mask_to_segmentation_node(tumour, scene, "seg", "tumor", node)
    batch = logic.prepare_fill(FillParameters(node, seg, seg.GetSegmentation().GetNthSegmentID(0), variants=2,
                                              steps=2, model_dir=str(tiny["palette"])))
    before = node_count(scene)
    token, stages = CancelToken(), []

    def progress(fraction, stage):   # cancel once the second variant's slices are under way
        stages.append(stage)
        if stage.startswith("variant 2 of 2: slice"):
            token.cancel()

    job = BackgroundRun(logic, batch)
    job.cancel, job._progress = token, progress
    assert job.start().wait(120)
    assert isinstance(job.error, CancelledError) and job.result is None
    assert any(s.startswith("variant 2 of 2: slice") for s in stages)
    assert node_count(scene) == before


def test_progress_shows_the_stage_and_an_eta(scene, small, tiny):
    """What the panel's status line shows while a fill runs (RadSynthLib.jobs polled as the panel's timer does)."""
    import threading
    import time

    from RadSynthLib.jobs import JobController

    ct, tumour = small
    node = mrml.volume_to_node(ct, scene, "lung1")
    seg = mrml.mask_to_segmentation_node(tumour, scene, "seg", "tumor", node)
    halfway, release = threading.Event(), threading.Event()

    def runner(request, progress, cancel):   # stands in for the engine: half done after 0.4 s, then waits
        time.sleep(0.4)
        progress(0.5, "slice 2/4")
        halfway.set()
        release.wait(10)
        cancel.check()

    logic = DiffusionInpaintLogic(runner)
    jobs = JobController("DiffusionInpaint")
    jobs.start(logic, logic.prepare_fill(FillParameters(node, seg, seg.GetSegmentation().GetNthSegmentID(0))))
    assert halfway.wait(10)
    status = jobs.poll(scene)
    assert status.state == "running" and status.stage == "slice 2/4" and status.fraction == 0.5
    assert 0.3 < status.eta_s < 5.0            # as long again as the 0.4 s so far
    jobs.cancel()
    release.set()
    assert jobs.wait(10) and jobs.poll(scene).state == "cancelled"
