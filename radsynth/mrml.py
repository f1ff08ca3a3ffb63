"""The bridge between MRML nodes and :class:`~radsynth.volume.Volume`; the only module that imports ``slicer``.

MRML stores geometry as an IJK→RAS matrix, ITK (and ``Volume``) as origin / spacing / direction in LPS. The two
differ by the sign of the first two physical axes; :mod:`radsynth.geometry` holds that conversion for every module.
``slicer`` and ``vtk`` are imported inside the functions so that the engine, the CLI and the worker import this
module without 3D Slicer installed. Provenance (node attributes ⇄ files) is in :mod:`radsynth.provenance`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from . import provenance
from .errors import InvalidImageError, InvalidMaskError
from .geometry import grid_from_ijk_to_ras, ijk_to_ras_matrix
from .volume import Volume


# -- geometry -----------------------------------------------------------------------------------------------------
def _vtk_to_np4(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def _np4_to_vtk(array: np.ndarray):
    import vtk

    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r, c]))
    return m


def _ijk_to_ras(volume: Volume) -> np.ndarray:
    return ijk_to_ras_matrix(volume)


def _node_to_world(node) -> np.ndarray:
    """Matrix from the node's own frame to world RAS; a registration result is usually a linear parent transform."""
    transform = node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    if not transform.IsTransformToWorldLinear():
        raise InvalidImageError(
            f"'{node.GetName()}' is under a non-linear (warping) transform. Harden the transform first "
            "(Data module → right-click → Harden transform).")
    import vtk

    m = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(m)
    return _vtk_to_np4(m)


# -- arrays -------------------------------------------------------------------------------------------------------
def _image_data_to_array(image_data, dims_ijk: Sequence[int]) -> np.ndarray:
    from vtk.util import numpy_support

    scalars = image_data.GetPointData().GetScalars()
    if scalars is None:
        raise InvalidImageError("The volume has no voxel data.")
    if scalars.GetNumberOfComponents() != 1:
        raise InvalidImageError("Expected a scalar image; got a multi-component (colour or vector) image.")
    i, j, k = dims_ijk
    return numpy_support.vtk_to_numpy(scalars).reshape(k, j, i).copy()


def _array_to_image_data(array: np.ndarray):
    import vtk
    from vtk.util import numpy_support

    if array.dtype == bool:
        array = array.astype(np.uint8)
    array = np.ascontiguousarray(array)
    image = vtk.vtkImageData()
    k, j, i = array.shape
    image.SetDimensions(i, j, k)
    # deep copy: the node must not keep a view into an array the caller may mutate or free
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True,
                                         array_type=numpy_support.get_vtk_array_type(array.dtype))
    image.GetPointData().SetScalars(scalars)
    return image


# -- volumes ------------------------------------------------------------------------------------------------------
def volume_from_node(node) -> Volume:
    """A scalar volume node (in world coordinates, linear parent transforms applied) as a Volume in LPS."""
    if node is None:
        raise InvalidImageError("No input volume is selected.")
    image = node.GetImageData()
    if image is None:
        raise InvalidImageError(f"The volume '{node.GetName()}' has no voxel data.")
    dims = image.GetDimensions()
    if min(dims) < 2:
        raise InvalidImageError(
            f"The volume '{node.GetName()}' is a single slice (size {dims[0]}×{dims[1]}×{dims[2]}); "
            "a 3D volume is needed.")
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    origin, spacing, direction = grid_from_ijk_to_ras(_node_to_world(node) @ _vtk_to_np4(m))
    return Volume(_image_data_to_array(image, dims), origin, spacing, direction, provenance.node_metadata(node))


def _robust_window(array: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(array[:: max(1, array.shape[0] // 16)], [1, 99])
    return max(float(hi - lo), 1.0), float(lo + hi) / 2.0


def _set_geometry(node, volume: Volume) -> None:
    node.SetIJKToRASMatrix(_np4_to_vtk(_ijk_to_ras(volume)))


def volume_to_node(volume: Volume, scene, name: str, reference=None):
    """Add a new scalar volume node with ``volume``'s voxels and geometry; RadSynth metadata become attributes,
    and a synthetic volume's node name says so (`` - synthetic`` is appended unless it is there).

    The display copies ``reference``'s window/level and colour map so the result looks like its source; without
    a reference the window spans the 1st–99th intensity percentile.
    """
    from slicer import vtkMRMLScalarVolumeDisplayNode, vtkMRMLScalarVolumeNode

    if volume.array.ndim != 3:
        raise InvalidImageError("Only 3D volumes can be added to the scene.")
    node = vtkMRMLScalarVolumeNode()
    node.SetName(name)
    _set_geometry(node, volume)
    node.SetAndObserveImageData(_array_to_image_data(volume.array))
    for key, value in volume.metadata.items():
        node.SetAttribute(str(key), str(value))
    provenance.mark_node(node, volume.metadata)
    scene.AddNode(node)

    display = vtkMRMLScalarVolumeDisplayNode()
    ref_display = reference.GetDisplayNode() if reference is not None else None
    scene.AddNode(display)
    if isinstance(ref_display, vtkMRMLScalarVolumeDisplayNode):
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(ref_display.GetWindow(), ref_display.GetLevel())
        if ref_display.GetColorNodeID():
            display.SetAndObserveColorNodeID(ref_display.GetColorNodeID())
    else:
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(*_robust_window(volume.array))
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def update_volume_node(node, volume: Volume) -> None:
    """Replace a volume node's voxels, geometry and RadSynth attributes with ``volume``'s (a live view of a
    volume that grows while it is generated); its display stays as it is."""
    if volume.array.ndim != 3:
        raise InvalidImageError("Only 3D volumes can be shown in a volume node.")
    was = node.StartModify()
    _set_geometry(node, volume)
    node.SetAndObserveImageData(_array_to_image_data(volume.array))
    for key, value in volume.metadata.items():
        node.SetAttribute(str(key), str(value))
    provenance.mark_node(node, volume.metadata)
    node.EndModify(was)


# -- segments -----------------------------------------------------------------------------------------------------
def _segment(segmentation_node, segment_id: str):
    if segmentation_node is None:
        raise InvalidMaskError("No segmentation is selected.")
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id) if segment_id else None
    if segment is None:
        raise InvalidMaskError(
            f"Segment '{segment_id}' was not found in '{segmentation_node.GetName()}'. Select a segment.")
    return segment


def segment_to_mask(segmentation_node, segment_id: str, reference_volume_node) -> Volume:
    """One segment as a uint8 0/1 Volume on the reference volume's voxel grid (resampled if the grids differ).

    ``reference_volume_node`` may also be a Volume already read from that node, to spare a copy of a large CT.
    """
    from slicer import vtkOrientedImageData, vtkSlicerSegmentationsModuleLogic

    segment = _segment(segmentation_node, segment_id)
    reference = (reference_volume_node if isinstance(reference_volume_node, Volume)
                 else volume_from_node(reference_volume_node))
    name = segment.GetName()
    labelmap = vtkOrientedImageData()
    if not vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentation_node, segment_id, labelmap):
        raise InvalidMaskError(f"Segment '{name}' has no labelmap representation; it cannot be used as a mask.")
    ext = labelmap.GetExtent()
    if ext[1] < ext[0] or ext[3] < ext[2] or ext[5] < ext[4] or labelmap.GetPointData().GetScalars() is None:
        raise InvalidMaskError(f"Segment '{name}' is empty: draw the region with the Segment Editor first.")

    import vtk

    m = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(m)
    dims = (ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1)
    # segments may share one labelmap, each with its own label value; keep only this segment's voxels
    values = _image_data_to_array(labelmap, dims) == segment.GetLabelValue()
    if not values.any():
        raise InvalidMaskError(f"Segment '{name}' is empty: draw the region with the Segment Editor first.")
    if min(dims) < 2:
        # one-voxel-thick extents cannot be resampled by ITK as 3D images: pad by a voxel of background
        values = np.pad(values, 1)
        ext = (ext[0] - 1, ext[1], ext[2] - 1, ext[3], ext[4] - 1, ext[5])
    origin, spacing, direction = grid_from_ijk_to_ras(_vtk_to_np4(m), (ext[0], ext[2], ext[4]))
    from .volume import mask_on_grid

    try:
        return mask_on_grid(Volume(values.astype(np.uint8), origin, spacing, direction), reference)
    except InvalidMaskError as exc:
        raise InvalidMaskError(f"Segment '{name}': {exc}") from exc


def mask_to_segmentation_node(mask: Volume, scene, name: str, segment_name: str, reference_volume_node,
                              color: tuple[float, float, float] = (0.9, 0.3, 0.2)):
    """A new segmentation node holding ``mask`` as one segment, with the reference volume's geometry.

    The mask is imported as oriented image data rather than through a temporary labelmap node, so the scene
    never holds a half-built node, even if the import fails.
    """
    return label_map_to_segmentation_node(mask.with_array(np.asarray(mask.array) > 0), scene, name,
                                          [(1, segment_name, color)], reference_volume_node)


def label_map_to_segmentation_node(label_map: Volume, scene, name: str,
                                   segments: Sequence[tuple[int, str, tuple[float, float, float]]],
                                   reference_volume_node):
    """A new segmentation node with one segment per ``(value, segment name, colour)``, in that order, holding the
    voxels of ``label_map`` equal to the value (empty segments for values absent, ready to paint in)."""
    from slicer import vtkMRMLSegmentationNode, vtkOrientedImageData, vtkSlicerSegmentationsModuleLogic

    node = vtkMRMLSegmentationNode()
    node.SetName(name)
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    segmentation = node.GetSegmentation()
    values = np.asarray(label_map.array)
    try:
        for value, segment_name, color in segments:
            binary = (values == value).astype(np.uint8)
            if binary.any():
                labelmap = vtkOrientedImageData()
                labelmap.ShallowCopy(_array_to_image_data(binary))
                labelmap.SetImageToWorldMatrix(_np4_to_vtk(_ijk_to_ras(label_map)))
                if not vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node,
                                                                                          segment_name):
                    raise InvalidMaskError(f"Could not create the segment '{segment_name}'.")
                segment = segmentation.GetNthSegment(segmentation.GetNumberOfSegments() - 1)
            else:
                segment = segmentation.GetSegment(segmentation.AddEmptySegment("", segment_name))
                if segment is None:
                    raise InvalidMaskError(f"Could not create the empty segment '{segment_name}'.")
            segment.SetName(segment_name)
            segment.SetColor(*color)
    except Exception:
        remove_nodes(scene, [node])
        raise
    return node


def remove_nodes(scene, nodes) -> None:
    """Remove nodes and their display nodes, so that a failed operation leaves the scene as it was."""
    for node in nodes:
        if node is None or node.GetScene() is not scene:
            continue
        for n in range(node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0):
            display = node.GetNthDisplayNode(n)
            if display is not None and display.GetScene() is scene:
                scene.RemoveNode(display)
        scene.RemoveNode(node)


# -- tables -------------------------------------------------------------------------------------------------------
def features_to_table_node(rows: Sequence[tuple[str, Optional[float], Optional[float]]], scene, name: str):
    """A table node with columns Feature, Target, Achieved; a missing value is shown as NaN."""
    import vtk
    from slicer import vtkMRMLTableNode

    def number(value) -> float:
        return math.nan if value is None else float(value)

    feature, target, achieved = vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkDoubleArray()
    for array, title in ((feature, "Feature"), (target, "Target"), (achieved, "Achieved")):
        array.SetName(title)
    for f, t, a in rows:
        feature.InsertNextValue(str(f))
        target.InsertNextValue(number(t))
        achieved.InsertNextValue(number(a))
    node = vtkMRMLTableNode()
    node.SetName(name)
    table = node.GetTable()
    for array in (feature, target, achieved):
        table.AddColumn(array)
    node.SetUseColumnNameAsColumnHeader(True)
    scene.AddNode(node)
    return node
