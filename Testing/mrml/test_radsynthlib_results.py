"""RadSynthLib.results on real MRML (slicer-core): result nodes land under the input's study in the subject
hierarchy, segments carry standard terminology, variants share one folder, and a failure adds nothing."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from RadSynthLib import results  # noqa: E402
from RadSynthLib.jobs import EngineRequest  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.errors import WorkerError  # noqa: E402
from radsynth.result import Result, feature_table  # noqa: E402
from radsynth.volume import SYNTHETIC_KEY, Volume  # noqa: E402

SHAPE = (6, 20, 24)
#: anisotropic spacing and an oblique direction, as the architecture guide asks of geometry tests
SPACING = (0.7, 0.8, 5.0)
_c, _s = np.cos(0.3), np.sin(0.3)
DIRECTION = (_c, -_s, 0.0, _s, _c, 0.0, 0.0, 0.0, 1.0)


def _ct() -> Volume:
    rng = np.random.default_rng(0)
    array = rng.integers(-900, 60, SHAPE).astype(np.int16)
    return Volume(array, (10.0, -20.0, 30.0), SPACING, DIRECTION)


def _mask(image: Volume) -> Volume:
    m = np.zeros(SHAPE, np.uint8)
    m[2:4, 6:12, 8:14] = 1
    return image.label_like(m) if hasattr(image, "label_like") else image.with_array(m)


def _result(image: Volume, operation: str = "synthesize", features: bool = True, offset: float = 0.0) -> Result:
    out = image.with_array(image.array + 100)
    if offset:
        out = Volume(out.array, tuple(o + offset for o in image.origin), image.spacing, image.direction)
    tables = {"features": feature_table([("firstorder_Mean", 20.0, 18.5)])} if features else {}
    return Result(operation, out, _mask(image), tables=tables)


def _output(name: str, table: bool = True) -> results.Output:
    return results.Output(f"{name} - synthetic", "Test synthesize", f"{name} - tumor",
                          results.SegmentSpec("synthetic tumor", results.NEOPLASM),
                          f"{name} - features" if table else None, attributes={"RadSynth.Operation": "synthesize"})


@pytest.fixture
def study(scene):
    """A patient with a study holding the input CT, as DICOM import or a user's drag and drop leaves it."""
    image = _ct()
    node = mrml.volume_to_node(image, scene, "chest CT")
    sh = results.subject_hierarchy(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1")
    study = sh.CreateStudyItem(patient, "CT study")
    sh.CreateItem(study, node)
    request = EngineRequest("synthesize", image, _mask(image), node.GetName(), node.GetID())
    return sh, study, node, request


def _children(sh, item) -> list[int]:
    ids = vtk.vtkIdList()
    sh.GetItemChildren(item, ids)
    return [ids.GetId(i) for i in range(ids.GetNumberOfIds())]


def _state(scene) -> tuple[int, int]:
    return scene.GetNumberOfNodes(), results.subject_hierarchy(scene).GetNumberOfItems()


def _tag(segment, name: str) -> str:
    value = vtk.reference("")
    assert segment.GetTag(name, value)
    return str(value)


def test_result_lands_under_the_inputs_study(scene, study):
    sh, study_item, node, request = study
    nodes = results.add_result(scene, request, _result(request.image), _output("chest CT"))
    for key in ("volume", "segmentation", "table"):
        item = sh.GetItemByDataNode(nodes[key])
        assert item and sh.GetItemParent(item) == study_item, key
        assert results.study_item(scene, nodes[key]) == study_item
        assert nodes[key].GetAttribute(results.SOURCE_ATTRIBUTE) == "chest CT"
        assert nodes[key].GetAttribute("RadSynth.Operation") == "synthesize"
    assert nodes["volume"].GetAttribute(SYNTHETIC_KEY) == "1"
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study_item, "the input stays where it was"


def test_result_next_to_an_input_in_a_folder_or_at_the_top(scene, study):
    sh, study_item, node, request = study
    folder = sh.CreateFolderItem(study_item, "baseline")
    sh.SetItemParent(sh.GetItemByDataNode(node), folder)
    nodes = results.add_result(scene, request, _result(request.image), _output("chest CT"))
    assert sh.GetItemParent(sh.GetItemByDataNode(nodes["volume"])) == folder
    assert results.study_item(scene, nodes["volume"]) == study_item
    # an input outside any study: the result goes to the top level, like the input
    loose = mrml.volume_to_node(request.image, scene, "loose CT")
    loose_request = EngineRequest("synthesize", request.image, request.mask, "loose CT", loose.GetID())
    nodes = results.add_result(scene, loose_request, _result(request.image), _output("loose CT"))
    assert sh.GetItemParent(sh.GetItemByDataNode(nodes["volume"])) == sh.GetSceneItemID()
    assert results.study_item(scene, nodes["volume"]) == 0


def test_segment_has_standard_terminology(scene, study):
    sh, study_item, node, request = study
    nodes = results.add_result(scene, request, _result(request.image), _output("chest CT"))
    segment = nodes["segmentation"].GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "synthetic tumor"
    entry = _tag(segment, slicer.vtkSegment.GetTerminologyEntryTagName())
    assert entry == results.NEOPLASM.entry()
    parsed = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(entry, parsed)
    assert (parsed.GetTypeObject().GetCodingSchemeDesignator(), parsed.GetTypeObject().GetCodeValue(),
            parsed.GetTypeObject().GetCodeMeaning()) == ("SCT", "108369006", "Neoplasm")
    assert parsed.GetCategoryObject().GetCodeValue() == "49755003"
    assert slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(parsed) == entry


@pytest.mark.parametrize("terminology", [results.NEOPLASM, results.MASS, results.TISSUE], ids=lambda t: t.type.meaning)
def test_terminology_entries_round_trip_through_slicer(terminology):
    parsed = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(terminology.entry(), parsed)
    assert parsed.GetTypeObject().GetCodeValue() == terminology.type.value
    assert slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(parsed) == terminology.entry()


def test_variants_are_grouped_in_one_folder_under_the_study(scene, study):
    sh, study_item, node, request = study
    items = [(request, _result(request.image), _output(f"chest CT #{k}")) for k in (1, 2, 3)]
    added = results.add_results(scene, items, "chest CT - placed variants")
    folders = {sh.GetItemParent(sh.GetItemByDataNode(n[k])) for n in added for k in ("volume", "segmentation",
                                                                                      "table")}
    assert len(folders) == 1
    folder = folders.pop()
    assert sh.GetItemName(folder) == "chest CT - placed variants"
    assert sh.GetItemParent(folder) == study_item and results.study_item(scene, added[0]["volume"]) == study_item
    assert len(_children(sh, folder)) == 9
    # one result needs no folder
    [single] = results.add_results(scene, items[:1], "unused folder")
    assert sh.GetItemParent(sh.GetItemByDataNode(single["volume"])) == study_item


def test_a_result_off_the_input_grid_adds_nothing(scene, study):
    sh, study_item, node, request = study
    before = _state(scene)
    with pytest.raises(WorkerError, match="grid"):
        results.add_result(scene, request, _result(request.image, offset=3.0), _output("chest CT"))
    assert _state(scene) == before


def test_a_failing_variant_removes_the_others_and_the_folder(scene, study):
    sh, study_item, node, request = study
    before, children = _state(scene), _children(sh, study_item)
    items = [(request, _result(request.image), _output("chest CT #1")),
             (request, _result(request.image), _output("chest CT #2")),
             (request, _result(request.image, offset=2.0), _output("chest CT #3"))]
    with pytest.raises(WorkerError):
        results.add_results(scene, items, "chest CT - placed variants")
    assert _state(scene) == before
    assert _children(sh, study_item) == children


def test_a_failure_while_adding_nodes_removes_what_was_added(scene, study, monkeypatch):
    sh, study_item, node, request = study
    before = _state(scene)

    def broken(*args, **kwargs):
        raise RuntimeError("table storage full")

    monkeypatch.setattr(results.mrml, "features_to_table_node", broken)
    with pytest.raises(RuntimeError):
        results.add_result(scene, request, _result(request.image), _output("chest CT"))
    assert _state(scene) == before
    with pytest.raises(RuntimeError):
        results.add_results(scene, [(request, _result(request.image), _output(f"v{k}")) for k in (1, 2)], "f")
    assert _state(scene) == before


def test_no_mask_no_segmentation_no_features_no_table(scene, study):
    """A whole-volume generation has no mask: only a volume is added."""
    sh, study_item, node, request = study
    result = Result("generate", request.image.with_array(request.image.array + 1))
    nodes = results.add_result(scene, request, result, _output("chest CT"))
    assert nodes["segmentation"] is None and nodes["table"] is None
    assert sh.GetItemParent(sh.GetItemByDataNode(nodes["volume"])) == study_item


def test_input_deleted_meanwhile_results_go_to_the_top(scene, study):
    """An input deleted while the job ran (its ID may be reused): the result still lands, at the top level."""
    sh, study_item, node, request = study
    scene.RemoveNode(node)
    nodes = results.add_result(scene, request, _result(request.image), _output("chest CT"))
    assert sh.GetItemParent(sh.GetItemByDataNode(nodes["volume"])) == sh.GetSceneItemID()


def test_a_failure_while_placing_removes_the_items_already_placed(scene, study, monkeypatch):
    sh, study_item, node, request = study
    before = _state(scene)
    place, calls = results.Placement.place, []

    def place_twice(self, node_):
        calls.append(node_)
        if len(calls) == 2:
            raise RuntimeError("hierarchy locked")
        return place(self, node_)

    monkeypatch.setattr(results.Placement, "place", place_twice)
    with pytest.raises(RuntimeError):
        results.add_result(scene, request, _result(request.image), _output("chest CT"))
    assert _state(scene) == before
