"""DICOM export of synthetic volumes from Slicer's DICOM module, marked as synthetic.

Slicer's own scalar-volume exporter writes ORIGINAL\\PRIMARY and no Synthetic Data attribute, so a synthetic volume
exported through it would look like an acquired image. This plugin offers itself with a higher confidence than the
stock one for every volume node marked synthetic, and writes the series with ``radsynth.dicom_export``: Image Type
DERIVED\\SECONDARY, Synthetic Data (0008,001C) YES, a series description that says synthetic and the provenance as
Derivation Description. Real volumes are left to Slicer's exporter.

``examine`` and ``export_node`` are Qt-free (tested with slicer-core); ``register`` adds the DICOMLib plugin class in
the application, once the DICOM module is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from radsynth import dicom_export, provenance

#: above the stock DICOMScalarVolumePlugin's 0.5, so the DICOM export dialog picks this one for synthetic volumes
CONFIDENCE = 0.8
PLUGIN_NAME = "RadSynthSyntheticVolume"


def examine(node: Any) -> Optional[dict[str, str]]:
    """The tags to export ``node`` with when it is a synthetic scalar volume; None for anything else."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        return None
    metadata = provenance.node_metadata(node)
    if not provenance.is_synthetic(metadata):
        return None
    return dicom_export.exportable_tags(node.GetName(), metadata)


def export_node(node: Any, directory: str | Path, tags: Optional[dict[str, str]] = None) -> list[Path]:
    """Write ``node`` as a marked DICOM series into ``directory`` with the exportable's tags (patient, study);
    nothing given can unmark a synthetic volume (``dicom_export`` applies the synthetic set last)."""
    return dicom_export.write_node_series(node, directory, tags)


def register() -> None:
    """Add the plugin to Slicer's DICOM module (call once the application has started)."""
    import slicer
    try:
        from DICOMLib import DICOMPlugin
    except ImportError:   # an application built without the DICOM module
        return

    class RadSynthSyntheticVolumePluginClass(DICOMPlugin):
        def __init__(self):
            super().__init__()
            self.loadType = "RadSynth synthetic volume"

        def examineForExport(self, subjectHierarchyItemID):
            sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
            node = sh.GetItemDataNode(subjectHierarchyItemID)
            tags = examine(node)
            if tags is None:
                return []
            exportable = slicer.qSlicerDICOMExportable()
            exportable.name = self.loadType
            exportable.tooltip = "Synthetic volume, exported with Synthetic Data = YES and Image Type DERIVED"
            exportable.subjectHierarchyItemID = subjectHierarchyItemID
            exportable.pluginClass = self.__module__
            exportable.confidence = CONFIDENCE
            for keyword, value in tags.items():
                exportable.setTag(keyword, value)
            return [exportable]

        def export(self, exportables):
            sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
            for exportable in exportables:
                node = sh.GetItemDataNode(exportable.subjectHierarchyItemID)
                tags = {k: exportable.tag(k) for k in ("PatientName", "PatientID", "StudyInstanceUID",
                                                        "StudyDescription", "SeriesNumber") if exportable.tag(k)}
                try:
                    export_node(node, exportable.directory, tags)
                except Exception as exc:  # noqa: BLE001 - the DICOM module shows the returned message
                    return f"Could not export {node.GetName()}: {exc}"
            return ""

    slicer.modules.dicomPlugins[PLUGIN_NAME] = RadSynthSyntheticVolumePluginClass
