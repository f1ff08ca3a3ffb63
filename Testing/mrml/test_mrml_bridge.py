"""radsynth.mrml against real MRML (slicer-core): geometry, voxels, segments, tables, provenance."""

from __future__ import annotations

import math

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from radsynth import geometry, mrml  # noqa: E402
from radsynth.errors import InvalidImageError, InvalidMaskError  # noqa: E402
from radsynth.geometry import rotation  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY, Volume, read_volume, write_volume  # noqa: E402


def oblique_volume(shape=(6, 9, 11), dtype=np.int16, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    array = rng.integers(-1024, 3000, size=shape).astype(dtype)
    direction = tuple(rotation((1, 2, 0.5), 20).ravel())
    return Volume(array, (12.5, -40.25, 101.0), (0.7, 0.7, 5.0), direction)


def ras_matrix(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def labelmap_node(scene, volume: Volume):
    """A real labelmap node, built the way Slicer's volume loader does (image data + IJK→RAS)."""
    node = slicer.vtkMRMLLabelMapVolumeNode()
    node.SetIJKToRASMatrix(mrml._np4_to_vtk(geometry.ijk_to_ras_matrix(volume)))
    node.SetAndObserveImageData(mrml._array_to_image_data(volume.array.astype(np.uint8)))
    scene.AddNode(node)
    return node


def segmentation_from_labelmap(scene, labelmap):
    seg = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(seg)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, seg)
    s = seg.GetSegmentation()
    return seg, [s.GetNthSegmentID(i) for i in range(s.GetNumberOfSegments())]


# -- volumes ------------------------------------------------------------------------------------------------------
def test_round_trip_oblique_anisotropic_is_exact(scene):
    vol = oblique_volume()
    vol.mark_synthetic("test")
    node = mrml.volume_to_node(vol, scene, "oblique")
    back = mrml.volume_from_node(node)
    # a synthetic volume's node says so in its name
    assert node.GetName() == "oblique - synthetic" and node.GetScene() is scene
    assert back.array.dtype == np.int16 and np.array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.spacing, (0.7, 0.7, 5.0), atol=1e-12)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-9)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-12)
    np.testing.assert_allclose(node.GetSpacing(), (0.7, 0.7, 5.0), atol=1e-12)
    assert node.GetAttribute(SYNTHETIC_KEY) == "1" and back.is_synthetic
    assert back.metadata == vol.metadata


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_round_trip_keeps_dtype(scene, dtype):
    vol = oblique_volume(dtype=dtype, seed=3)
    node = mrml.volume_to_node(vol, scene, "v")
    back = mrml.volume_from_node(node)
    assert back.array.dtype == vol.array.dtype and np.array_equal(back.array, vol.array)
    assert node.GetName() == "v" and not back.is_synthetic and back.metadata == {}   # a real volume stays unmarked


def test_physical_point_agrees_with_ras_sign_flip(scene):
    vol = oblique_volume()
    node = mrml.volume_to_node(vol, scene, "oblique")
    m = ras_matrix(node)
    kji = np.array([[0, 0, 0], [5, 8, 10], [2, 3, 7], [1, 8, 0]])
    lps = vol.index_to_physical(kji)
    ijk1 = np.c_[kji[:, ::-1], np.ones(len(kji))]
    ras = (m @ ijk1.T).T[:, :3]
    np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)
    np.testing.assert_allclose(ras, [geometry.lps_to_ras(p) for p in lps], atol=1e-9)
    # and back: the RAS position of a voxel centre finds that voxel
    assert [geometry.physical_to_index(vol, geometry.ras_to_lps(p)) for p in ras] == [tuple(v) for v in kji]
    # and the sign flip is really exercised: the origin is not on the x/y axes
    assert abs(ras[0, 0] + vol.origin[0]) < 1e-9 and abs(ras[0, 0]) > 1


def test_linear_parent_transform_is_applied(scene):
    vol = oblique_volume()
    node = mrml.volume_to_node(vol, scene, "moved")
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)  # +10 mm along R is -10 mm along L
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    back = mrml.volume_from_node(node)
    np.testing.assert_allclose(np.subtract(back.origin, vol.origin), (-10.0, 0, 0), atol=1e-9)
    assert np.array_equal(back.array, vol.array)


def test_single_slice_is_rejected(scene):
    vol = Volume(np.zeros((1, 8, 8), np.int16), (0, 0, 0), (1, 1, 1), tuple(np.eye(3).ravel()))
    node = mrml.volume_to_node(vol, scene, "slice")
    with pytest.raises(InvalidImageError, match="single slice"):
        mrml.volume_from_node(node)
    with pytest.raises(InvalidImageError):
        mrml.volume_from_node(None)


def test_display_copies_reference_window_level(scene):
    ref = mrml.volume_to_node(oblique_volume(), scene, "ref")
    ref.GetDisplayNode().SetWindowLevel(400, 40)
    node = mrml.volume_to_node(oblique_volume(seed=1), scene, "out", reference=ref)
    d = node.GetDisplayNode()
    assert (d.GetWindow(), d.GetLevel()) == (400, 40)
    own = mrml.volume_to_node(oblique_volume(seed=1), scene, "own").GetDisplayNode()
    assert own.GetWindow() > 1000  # spans the 1st-99th percentile of the random HU values


# -- provenance survives saving ---------------------------------------------------------------------------------
def test_synthetic_mark_survives_saving(scene, tmp_path):
    vol = oblique_volume()
    vol.mark_synthetic("tumor synthesis, test")
    node = mrml.volume_to_node(vol, scene, "out - synthetic")
    path = tmp_path / "out.nrrd"
    write_volume(mrml.volume_from_node(node), path)
    assert b"RadSynth.Synthetic:=1" in path.read_bytes()[:4096]
    again = read_volume(path)
    assert again.is_synthetic and np.array_equal(again.array, vol.array)
    # and in the scene file (.mrml), where Slicer keeps node attributes
    scene.SetSaveToXMLString(1)
    scene.Commit()
    assert "RadSynth.Synthetic:1" in scene.GetSceneXMLString()


# -- segments -----------------------------------------------------------------------------------------------------
def blob_labels(vol: Volume) -> np.ndarray:
    k, j, i = np.indices(vol.shape)
    labels = np.zeros(vol.shape, np.uint8)
    labels[((k - 3) ** 2 / 4 + (j - 4) ** 2 / 9 + (i - 5) ** 2 / 9) <= 1] = 1
    labels[1:3, 6:8, 0:3] = 2  # a second label in the same labelmap: the segments share one labelmap
    return labels


def test_segment_to_mask_equals_labelmap(scene):
    vol = oblique_volume()
    ref = mrml.volume_to_node(vol, scene, "ct")
    labels = blob_labels(vol)
    seg, ids = segmentation_from_labelmap(scene, labelmap_node(scene, vol.with_array(labels)))
    assert len(ids) == 2
    for label, segment_id in zip((1, 2), ids):
        mask = mrml.segment_to_mask(seg, segment_id, ref)
        assert mask.array.dtype == np.uint8 and mask.same_grid(vol)
        assert np.array_equal(mask.array, (labels == label).astype(np.uint8))


def test_mask_to_segmentation_round_trip(scene):
    vol = oblique_volume()
    ref = mrml.volume_to_node(vol, scene, "ct")
    labels = (blob_labels(vol) == 1).astype(np.uint8)
    before = scene.GetNumberOfNodes()
    seg = mrml.mask_to_segmentation_node(vol.with_array(labels), scene, "ct - mask", "tumor", ref)
    # the segmentation and its display node, nothing temporary left behind
    assert scene.GetNumberOfNodes() == before + 2
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetNthSegment(0)
    assert segment.GetName() == "tumor"
    np.testing.assert_allclose(segment.GetColor(), (0.9, 0.3, 0.2))
    assert seg.GetNodeReferenceID(seg.GetReferenceImageGeometryReferenceRole()) == ref.GetID()
    back = mrml.segment_to_mask(seg, segmentation.GetNthSegmentID(0), ref)
    assert np.array_equal(back.array, labels)


def test_segmentation_on_another_grid_is_resampled(scene):
    ref_vol = Volume(np.zeros((10, 20, 24), np.int16), (-5.0, 7.0, -30.0), (1.0, 1.0, 4.0),
                     tuple(rotation((0, 0, 1), 20).ravel()))
    ref = mrml.volume_to_node(ref_vol, scene, "ct")
    # a finer labelmap (half the spacing) over a sub-box of the CT: every CT voxel centre is a fine voxel centre
    offset = np.array([2, 4, 6])  # CT voxels (k, j, i)
    fine_shape = (12, 20, 24)
    origin = ref_vol.index_to_physical(offset[None])[0]
    fine = Volume(np.zeros(fine_shape, np.uint8), tuple(origin), (0.5, 0.5, 2.0), ref_vol.direction)
    k, j, i = np.indices(fine_shape)
    fine.array[((k - 6) ** 2 / 16 + (j - 9) ** 2 / 36 + (i - 11) ** 2 / 49) <= 1] = 1
    seg, ids = segmentation_from_labelmap(scene, labelmap_node(scene, fine))
    mask = mrml.segment_to_mask(seg, ids[0], ref)
    expected = np.zeros(ref_vol.shape, np.uint8)
    sub = fine.array[::2, ::2, ::2]
    expected[offset[0]:offset[0] + sub.shape[0], offset[1]:offset[1] + sub.shape[1],
             offset[2]:offset[2] + sub.shape[2]] = sub
    assert mask.same_grid(ref_vol)
    assert expected.sum() > 20 and np.array_equal(mask.array, expected)


def test_empty_or_missing_segment_raises(scene):
    vol = oblique_volume()
    ref = mrml.volume_to_node(vol, scene, "ct")
    seg = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(seg)
    empty_id = seg.GetSegmentation().AddEmptySegment("", "empty")
    with pytest.raises(InvalidMaskError, match="empty"):
        mrml.segment_to_mask(seg, empty_id, ref)
    with pytest.raises(InvalidMaskError, match="not found"):
        mrml.segment_to_mask(seg, "no-such-segment", ref)
    with pytest.raises(InvalidMaskError):
        mrml.segment_to_mask(None, empty_id, ref)


def test_segment_outside_image_raises(scene):
    vol = oblique_volume()
    ref = mrml.volume_to_node(vol, scene, "ct")
    far = Volume(np.ones((3, 3, 3), np.uint8), (500.0, 500.0, 500.0), (1.0, 1.0, 1.0), tuple(np.eye(3).ravel()))
    seg, ids = segmentation_from_labelmap(scene, labelmap_node(scene, far))
    with pytest.raises(InvalidMaskError, match="outside"):
        mrml.segment_to_mask(seg, ids[0], ref)


# -- tables -------------------------------------------------------------------------------------------------------
def test_features_to_table_node(scene):
    rows = [("original_firstorder_Mean", -20.5, -18.0), ("original_glcm_Contrast", 3.0, None)]
    node = mrml.features_to_table_node(rows, scene, "features")
    table = node.GetTable()
    assert node.GetScene() is scene and node.GetName() == "features"
    assert [table.GetColumn(c).GetName() for c in range(3)] == ["Feature", "Target", "Achieved"]
    assert table.GetNumberOfRows() == 2
    assert table.GetValue(0, 0).ToString() == "original_firstorder_Mean"
    assert table.GetValue(0, 1).ToDouble() == -20.5 and table.GetValue(0, 2).ToDouble() == -18.0
    assert math.isnan(table.GetValue(1, 2).ToDouble())


# -- the real sample CT -------------------------------------------------------------------------------------------
def test_lung1_round_trip_is_bit_identical(scene):
    from radsynth.sample_data import sample_path

    ct = read_volume(sample_path("lung1", "image"))
    node = mrml.volume_to_node(ct, scene, "lung1")
    assert node.GetImageData().GetDimensions() == (512, 512, 48)
    back = mrml.volume_from_node(node)
    assert back.array.dtype == ct.array.dtype and np.array_equal(back.array, ct.array)
    assert back.same_grid(ct, tol=1e-9)
    # Slicer shows this CT in RAS: x and y origin negated
    np.testing.assert_allclose(node.GetOrigin(), (146.0, 325.0, -777.5), atol=1e-9)


def test_empty_mask_gives_an_empty_named_segment(scene):
    vol = oblique_volume()
    ref = mrml.volume_to_node(vol, scene, "ct")
    seg = mrml.mask_to_segmentation_node(vol.with_array(np.zeros(vol.shape, np.uint8)), scene, "s", "none", ref)
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1 and segmentation.GetNthSegment(0).GetName() == "none"
    with pytest.raises(InvalidMaskError, match="empty"):
        mrml.segment_to_mask(seg, segmentation.GetNthSegmentID(0), ref)
