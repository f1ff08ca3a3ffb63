"""ReaderStudy logic on real MRML (slicer-core): neutral case nodes, presets, answers, Next, no going back, resume,
and a scene that never holds a string revealing a case's label, id or source."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import slicer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ReaderStudy"))

from ReaderStudyLib.logic import ReaderSession  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.reader.build import build_study  # noqa: E402
from radsynth.reader.errors import StudyError  # noqa: E402
from radsynth.reader.responses import ResponseStore  # noqa: E402
from radsynth.reader.samples import toy_inputs  # noqa: E402
from radsynth.volume import read_volume  # noqa: E402

ANSWER = {"label": "synthetic", "confidence": 4, "realism": 3}


@pytest.fixture
def built(tmp_path):
    inputs = toy_inputs(tmp_path / "inputs", 3, 3, shape=(6, 20, 20))
    res = build_study(inputs, tmp_path / "study", readers=2, seed=8, likert=["realism"],
                      presets=[{"name": "Lung", "window": 1500, "level": -600},
                               {"name": "Soft tissue", "window": 400, "level": 40}])
    return res.study, json.loads(res.key_path.read_text()), inputs


def token(study, reader="R1"):
    return next(r["token"] for r in study.readers if r["reader_id"] == reader)


def scene_text(scene) -> str:
    """Everything the scene would save, plus every node's name and attributes."""
    scene.SetSaveToXMLString(1)
    scene.Commit()
    parts = [scene.GetSceneXMLString()]
    for n in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(n)
        parts.append(node.GetName() or "")
        parts += [f"{a}={node.GetAttribute(a)}" for a in (node.GetAttributeNames() or ())]
    return "\n".join(parts)


def test_reading_shows_neutral_cases_with_the_first_preset(scene, built):
    study, key, _ = built
    session = ReaderSession(study.folder, token(study), scene)
    node = session.show()
    assert session.reader_id == "R1" and node.GetName() == "Case 1 of 6" and session.title == "Case 1 of 6"
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1500, -600)
    session.apply_preset(1)
    assert (display.GetWindow(), display.GetLevel()) == (400, 40)
    case = study.order("R1")[0]
    assert np.array_equal(mrml.volume_from_node(node).array, read_volume(study.case_path(case)).array)
    assert node.GetStorageNode() is None and not node.GetAttributeNames()
    with pytest.raises(StudyError, match="Answer case 1 of 6 before moving on"):
        session.next()
    session.record(ANSWER)
    second = session.next()
    assert second.GetName() == "Case 2 of 6"
    assert scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1, "one case at a time"
    assert session.previous().GetName() == "Case 1 of 6" and session.answer() == ANSWER
    session.close()
    assert scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0


def test_the_scene_never_reveals_label_id_or_source(scene, built):
    study, key, inputs = built
    session = ReaderSession(study.folder, token(study), scene)
    texts = []
    session.show()
    while not session.done:
        texts.append(scene_text(scene))
        session.record(ANSWER)
        session.next()
    forbidden = ["synthetic", "RadSynth", "patient", str(study.folder), *study.cases,
                 *[Path(s).name for s in key["sources"].values()], *[str(c.path.parent) for c in inputs]]
    for text in texts:
        lowered = text.lower()
        assert not [f for f in forbidden if f.lower() in lowered]
        assert "real" not in lowered.replace("realism", "")


def test_resume_after_restart_at_the_first_unanswered_case(scene, built):
    study, _, _ = built
    session = ReaderSession(study.folder, token(study), scene)
    session.show()
    for _ in range(3):
        session.record(ANSWER)
        session.next()
    assert session.title == "Case 4 of 6"
    session.close()   # Slicer closed (or crashed: the answers are already committed)
    again = ReaderSession(study.folder, token(study), slicer.vtkMRMLScene())
    assert again.index == 3 and again.show().GetName() == "Case 4 of 6"
    assert again.case_id == study.order("R1")[3]
    other = ReaderSession(study.folder, token(study, "R2"), scene)
    assert other.index == 0 and other.order != again.order


def test_no_going_back_no_changes_and_the_last_case(scene, tmp_path):
    inputs = toy_inputs(tmp_path / "inputs", 1, 1, shape=(4, 10, 10))
    study = build_study(inputs, tmp_path / "study", readers=1, no_going_back=True, allow_changes=False,
                        time_limit_s=60, comment=False).study
    now = [1000.0]
    session = ReaderSession(study.folder, token(study), scene, clock=lambda: now[0])
    session.show()
    assert not session.can_go_back and session.time_left() == 60
    now[0] += 25
    assert session.time_left() == 35
    session.record({"label": "real", "confidence": 2})
    with pytest.raises(StudyError, match="does not allow changing"):
        session.record({"label": "synthetic", "confidence": 2})
    session.next()
    with pytest.raises(StudyError, match="does not allow going back"):
        session.previous()
    session.record({"label": "synthetic", "confidence": 5})
    assert session.next() is None and session.done and session.title == "All cases read"
    assert scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0
    rows = ResponseStore(study).rows()
    assert [r["answered_at"] - r["shown_at"] for r in rows] == [25.0, 0.0]


def test_time_limit_counts_from_the_first_showing_across_a_restart(scene, tmp_path):
    inputs = toy_inputs(tmp_path / "inputs", 1, 1, shape=(4, 10, 10))
    study = build_study(inputs, tmp_path / "study", readers=1, time_limit_s=60).study
    now = [1000.0]
    session = ReaderSession(study.folder, token(study), scene, clock=lambda: now[0])
    session.show()
    now[0] += 40
    session.close()   # restart 40 s into the case
    again = ReaderSession(study.folder, token(study), scene, clock=lambda: now[0])
    again.show()
    assert again.time_left() == 20
    now[0] += 30
    assert again.time_left() == -10
    again.record({"label": "real", "confidence": 1})   # a late answer is kept, not lost
    assert ResponseStore(study).latest("R1")


def test_bad_token_and_missing_case_file(scene, built):
    study, _, _ = built
    with pytest.raises(StudyError, match="does not belong to this study"):
        ReaderSession(study.folder, "f" * 32, scene)
    study.case_path(study.cases[0]).unlink()
    with pytest.raises(StudyError, match="missing"):
        ReaderSession(study.folder, token(study), scene)
    assert scene.GetNumberOfNodes() == 0 or scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0
