"""Result nodes: a synthetic volume, its segmentation and a table, added all or none, where Slicer users look.

- The nodes go under the input's place in the subject hierarchy (its study, or the folder it sits in), so a result
  is listed next to the CT it came from; a batch of variants is grouped in one folder there.
- A result segment carries standard terminology (a tumour is SCT "Neoplasm", not "Segment_1"), as the segment's
  ``TerminologyEntry`` tag in Slicer's serialized form, so the Segment Editor, DICOM SEG export and other modules
  read what it is.
- Any failure removes every node and subject-hierarchy item the call added: the scene is as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

from radsynth import mrml
from radsynth.errors import RadSynthError, WorkerError

SOURCE_ATTRIBUTE = "RadSynth.SourceVolume"


# -- terminology ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Code:
    scheme: str
    value: str
    meaning: str

    def __str__(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


@dataclasses.dataclass(frozen=True)
class Terminology:
    """A segment's meaning in Slicer's terminology-entry form (category, type, optional modifier and region)."""
    category: Code
    type: Code
    modifier: Optional[Code] = None
    region: Optional[Code] = None
    context: str = "Segmentation category and type - DICOM master list"
    anatomic_context: str = "Anatomic codes - DICOM master list"

    def entry(self) -> str:
        """The string Slicer stores in a segment's ``TerminologyEntry`` tag."""
        empty = "^^"
        return "~".join((self.context, str(self.category), str(self.type), str(self.modifier or empty),
                         self.anatomic_context, str(self.region or empty), empty))


MORPHOLOGICALLY_ALTERED = Code("SCT", "49755003", "Morphologically Altered Structure")
#: a synthetic tumour: DICOM CID 7159 (lesion segmentation types) "Neoplasm"
NEOPLASM = Terminology(MORPHOLOGICALLY_ALTERED, Code("SCT", "108369006", "Neoplasm"))
MASS = Terminology(MORPHOLOGICALLY_ALTERED, Code("SCT", "4147007", "Mass"))
#: a region regenerated as healthy-looking tissue (a removed tumour's place)
TISSUE = Terminology(Code("SCT", "85756007", "Tissue"), Code("SCT", "85756007", "Tissue"))
TERMINOLOGY_TAG = "TerminologyEntry"   # vtkSegment.GetTerminologyEntryTagName()


def set_terminology(segment: Any, terminology: Terminology) -> None:
    # SetTag works on every Slicer 5; vtkSegment.SetTerminology only exists from 5.7
    segment.SetTag(TERMINOLOGY_TAG, terminology.entry())


# -- what to add ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SegmentSpec:
    name: str
    terminology: Terminology
    color: tuple[float, float, float] = (0.9, 0.3, 0.2)


@dataclasses.dataclass
class Output:
    """Names of one result's nodes. ``segmentation``/``table`` None: that node is not made."""
    volume: str
    provenance: str                           # recorded in the volume's synthetic mark, e.g. "TumorSynth remove"
    segmentation: Optional[str] = None
    segment: Optional[SegmentSpec] = None
    table: Optional[str] = None
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)        # on every node made
    table_attributes: dict[str, str] = dataclasses.field(default_factory=dict)  # on the table only


# -- the subject hierarchy -----------------------------------------------------------------------------------------
def subject_hierarchy(scene: Any):
    from slicer import vtkMRMLSubjectHierarchyNode

    return vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def study_item(scene: Any, node: Any) -> int:
    """The subject-hierarchy study holding ``node`` (0 when it is in none)."""
    sh = subject_hierarchy(scene)
    item = sh.GetItemByDataNode(node) if node is not None else 0
    if not item:
        return 0
    from slicer import vtkMRMLSubjectHierarchyConstants

    return sh.GetItemAncestorAtLevel(item, vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())


class Placement:
    """Puts new nodes where the input is in the subject hierarchy, optionally in a new folder; undoable.

    In Slicer the hierarchy gets an item for each new node as it is added (at the scene's top level); without the
    application (slicer-core) it does not, so a missing item is created here.
    """

    def __init__(self, scene: Any, reference: Any = None, folder: Optional[str] = None) -> None:
        self.scene, self.sh = scene, subject_hierarchy(scene)
        self.parent = self._parent_of(reference)
        self.folder_name, self.folder = folder, 0

    def _parent_of(self, reference: Any) -> int:
        item = self.sh.GetItemByDataNode(reference) if reference is not None else 0
        parent = self.sh.GetItemParent(item) if item else 0
        return parent or self.sh.GetSceneItemID()

    def target(self) -> int:
        if self.folder_name and not self.folder:
            self.folder = self.sh.CreateFolderItem(self.parent, self.folder_name)
        return self.folder or self.parent

    def place(self, node: Any) -> int:
        parent = self.target()
        item = self.sh.GetItemByDataNode(node)
        if item:
            self.sh.SetItemParent(item, parent)
            return item
        return self.sh.CreateItem(parent, node)

    def undo(self) -> None:
        """Remove the folder this placement made (the nodes' items go with their nodes, see ``remove_result``)."""
        if self.folder:
            self.sh.RemoveItem(self.folder, False, True)
        self.folder = 0


def _remove(scene: Any, nodes: Sequence[Any]) -> None:
    sh = subject_hierarchy(scene)
    for node in nodes:
        if node is None or node.GetScene() is not scene:
            continue
        item = sh.GetItemByDataNode(node)
        if item:
            sh.RemoveItem(item, False, False)   # without the application, removing a node leaves its item
    mrml.remove_nodes(scene, nodes)


def remove_result(scene: Any, nodes: dict[str, Any]) -> None:
    _remove(scene, [nodes.get("volume"), nodes.get("segmentation"), nodes.get("table")])


# -- adding --------------------------------------------------------------------------------------------------------
def input_node(scene: Any, node_id: str, name: str) -> Any:
    """The input node if it is still the same one (an ID can be reused after the input was deleted)."""
    node = scene.GetNodeByID(node_id) if node_id else None
    return node if node is not None and node.GetName() == name else None


def add_result(scene: Any, request: Any, result: Any, output: Output, placement: Optional[Placement] = None,
               ) -> dict[str, Any]:
    """New ``volume`` (marked synthetic), ``segmentation`` (when named and the result has a mask) and ``table``
    (when named and the result measured features) nodes for one result; all or none.

    ``request`` gives the input grid (``image``), node (``input_node_id``, ``input_name``).
    """
    if scene is None:
        raise RadSynthError("There is no scene to add the result to.")
    volume, mask = result.volume, result.mask
    if not volume.same_grid(request.image) or (mask is not None and not mask.same_grid(request.image)):
        raise WorkerError("The result does not lie on the input volume's grid; nothing was added.")
    if not volume.is_synthetic:
        volume.mark_synthetic(output.provenance)
    reference = input_node(scene, request.input_node_id, request.input_name)
    own = placement is None
    placement = placement or Placement(scene, reference)
    created: list[Any] = []
    nodes: dict[str, Any] = {"volume": None, "segmentation": None, "table": None}
    try:
        nodes["volume"] = mrml.volume_to_node(volume, scene, output.volume, reference=reference)
        created.append(nodes["volume"])
        if output.segmentation and mask is not None:
            spec = output.segment or SegmentSpec(output.segmentation, NEOPLASM)
            nodes["segmentation"] = mrml.mask_to_segmentation_node(mask, scene, output.segmentation, spec.name,
                                                                   nodes["volume"], spec.color)
            created.append(nodes["segmentation"])
            segmentation = nodes["segmentation"].GetSegmentation()
            set_terminology(segmentation.GetNthSegment(0), spec.terminology)
        if output.table and result.features is not None:
            nodes["table"] = mrml.features_to_table_node(result.features, scene, output.table)
            created.append(nodes["table"])
            for key, value in output.table_attributes.items():
                nodes["table"].SetAttribute(key, value)
        for node in created:
            node.SetAttribute(SOURCE_ATTRIBUTE, request.input_name)
            for key, value in output.attributes.items():
                node.SetAttribute(key, value)
            placement.place(node)
    except Exception:
        _remove(scene, created)
        if own:
            placement.undo()
        raise
    return nodes


def add_results(scene: Any, items: Sequence[tuple[Any, Any, Output]], folder: Optional[str] = None,
                ) -> list[dict[str, Any]]:
    """Several results (variants) at once, all or none; with ``folder`` (used when there are several) they are
    grouped in one subject-hierarchy folder beside the input."""
    if not items:
        return []
    first = items[0][0]
    reference = input_node(scene, first.input_node_id, first.input_name) if scene is not None else None
    placement = Placement(scene, reference, folder if len(items) > 1 else None) if scene is not None else None
    added: list[dict[str, Any]] = []
    try:
        for request, result, output in items:
            added.append(add_result(scene, request, result, output, placement))
    except Exception:
        for nodes in added:
            remove_result(scene, nodes)
        if placement is not None:
            placement.undo()
        raise
    return added
