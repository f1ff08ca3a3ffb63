"""The answers database: append-only rows, resume position, refusals, several writers at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest

from radsynth.reader.build import build_study
from radsynth.reader.errors import StudyError
from radsynth.reader.responses import ResponseStore
from radsynth.reader.samples import toy_inputs
from radsynth.reader.study import Study

ANSWER = {"label": "synthetic", "confidence": 4, "realism": 2}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return toy_inputs(tmp_path_factory.mktemp("inputs"), 3, 3, shape=(4, 16, 16))


def make(inputs, folder, **options) -> Study:
    return build_study(inputs, folder, readers=options.pop("readers", 2), seed=3, likert=["realism"],
                       **options).study


def test_record_latest_position_and_new_rows(inputs, tmp_path):
    study = make(inputs, tmp_path / "s")
    store = ResponseStore(study)
    assert not store.path.exists(), "the database is created on the first answer"
    assert store.position("R1") == 0 and store.latest("R1") == {} and store.rows() == []
    order = study.order("R1")
    t = time.time()
    store.mark_shown("R1", order[0], t)
    first = store.record("R1", order[0], ANSWER, t, t + 5)
    assert store.path.exists() and store.position("R1") == 1 and store.position("R2") == 0
    second = store.record("R1", order[0], {**ANSWER, "label": "real", "comment": "changed my mind"}, t, t + 9)
    assert second > first
    rows = store.rows("R1")
    assert [r["answers"]["label"] for r in rows] == ["synthetic", "real"], "a change is a new row"
    assert store.latest("R1") == {order[0]: {"label": "real", "confidence": 4, "realism": 2,
                                             "comment": "changed my mind"}}
    store.record("R1", order[2], {"label": "real", "confidence": "2", "realism": 5.0}, t, t + 1)
    assert store.position("R1") == 1, "resume at the first unanswered case"
    assert store.latest("R1")[order[2]] == {"label": "real", "confidence": 2, "realism": 5}
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for sql in ("UPDATE answers SET answers = '{}'", "DELETE FROM answers", "DELETE FROM shown"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(sql)
    assert len(ResponseStore(Study.open(study.folder)).rows()) == 3


@pytest.mark.parametrize("answers, message", [
    ({"label": "maybe", "confidence": 3, "realism": 1}, "one of real, synthetic"),
    ({"label": "real", "confidence": 6, "realism": 1}, "from 1 to 5"),
    ({"label": "real", "confidence": True, "realism": 1}, "whole number"),
    ({"label": "real", "confidence": 3}, "'realism'"),
    ({"label": "real", "confidence": 3, "realism": 1, "colour": "red"}, "does not ask 'colour'"),
    ({"label": "real", "confidence": 3, "realism": 1, "comment": 5}, "must be text"),
    ("real", "JSON object"),
])
def test_answers_that_do_not_fit_are_refused(inputs, tmp_path, answers, message):
    study = make(inputs, tmp_path / "s")
    store = ResponseStore(study)
    with pytest.raises(StudyError, match=message):
        store.record("R1", study.order("R1")[0], answers, 1.0, 2.0)
    assert store.rows() == []


def test_other_refusals(inputs, tmp_path):
    study = make(inputs, tmp_path / "s")
    store = ResponseStore(study)
    case = study.order("R1")[0]
    with pytest.raises(StudyError, match="not part of this study"):
        store.record("R7", case, ANSWER, 1.0, 2.0)
    with pytest.raises(StudyError, match="not one of reader"):
        store.record("R1", "0123456789abcdef", ANSWER, 1.0, 2.0)
    with pytest.raises(StudyError, match="before its case was shown"):
        store.record("R1", case, ANSWER, 5.0, 2.0)
    with pytest.raises(StudyError, match="seconds since the epoch"):
        store.record("R1", case, ANSWER, float("nan"), 2.0)
    other = make(inputs, tmp_path / "other")
    ResponseStore(other).record("R1", other.order("R1")[0], ANSWER, 1.0, 2.0)
    (tmp_path / "other" / "responses.sqlite").rename(tmp_path / "s" / "responses.sqlite")
    with pytest.raises(StudyError, match="another study"):
        ResponseStore(study)


def test_no_changes_and_no_going_back(inputs, tmp_path):
    study = make(inputs, tmp_path / "s", allow_changes=False, no_going_back=True)
    store = ResponseStore(study)
    a, b, c = study.order("R1")[:3]
    store.mark_shown("R1", a, 1.0)
    store.record("R1", a, ANSWER, 1.0, 2.0)
    with pytest.raises(StudyError, match="does not allow changing"):
        store.record("R1", a, ANSWER, 1.0, 3.0)
    store.mark_shown("R1", b, 3.0)
    with pytest.raises(StudyError, match="going back"):
        store.mark_shown("R1", a, 4.0)
    store.record("R1", c, ANSWER, 5.0, 6.0)  # skipping ahead is allowed, going back is not
    with pytest.raises(StudyError, match="going back"):
        store.record("R1", b, ANSWER, 3.0, 7.0)
    assert len(store.rows()) == 2 and store.position("R1") == 1


def _write_many(folder: str, reader: str, start: float) -> None:
    store = ResponseStore(Study.open(folder))
    for n, case in enumerate(store.study.order(reader)):
        for repeat in range(4):
            store.record(reader, case, {"label": "real" if (n + repeat) % 2 else "synthetic",
                                        "confidence": 1 + (n + repeat) % 5, "realism": 1 + repeat},
                         start, start + n + repeat / 10)


def test_concurrent_threads_and_processes_lose_and_mix_nothing(inputs, tmp_path):
    study = make(inputs, tmp_path / "s", readers=6)
    readers = study.reader_ids
    threads = [threading.Thread(target=_write_many, args=(str(study.folder), r, 100.0)) for r in readers[:3]]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(study.folder), r, 100.0)) for r in readers[3:]]
    for w in [*threads, *procs]:
        w.start()
    for w in [*threads, *procs]:
        w.join(120)
    assert all(p.exitcode == 0 for p in procs)
    store = ResponseStore(study)
    rows = store.rows()
    assert len(rows) == 6 * 6 * 4
    for reader in readers:
        mine = [r for r in rows if r["reader_id"] == reader]
        assert {r["case_id"] for r in mine} == set(study.order(reader))
        for n, case in enumerate(study.order(reader)):
            got = [r["answers"]["realism"] for r in mine if r["case_id"] == case]
            assert got == [1, 2, 3, 4], "each reader's rows keep their own order and values"
            assert store.latest(reader)[case]["label"] == ("real" if (n + 3) % 2 else "synthetic")
        assert store.position(reader) == 6


def test_racing_answers_to_a_no_changes_case_keep_exactly_one(inputs, tmp_path):
    study = make(inputs, tmp_path / "s", allow_changes=False)
    case = study.order("R1")[0]
    barrier = threading.Barrier(8)
    outcomes = []

    def race(n: int) -> None:
        store = ResponseStore(study)
        barrier.wait()
        try:
            store.record("R1", case, {**ANSWER, "confidence": 1 + n % 5}, 1.0, 2.0)
            outcomes.append("kept")
        except StudyError:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["kept"] + ["refused"] * 7
    assert len(ResponseStore(study).rows()) == 1
