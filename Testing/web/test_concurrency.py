"""Ten readers at once (threads with urllib against 127.0.0.1): no errors, no lost or mixed answers."""

from __future__ import annotations

import threading

from web_support import request
from radsynth.reader.responses import ResponseStore

READERS = 10


def test_ten_concurrent_readers_keep_their_own_answers(study_factory, serve):
    built = study_factory(n_real=3, n_synthetic=3, readers=READERS, seed=9)
    server = serve(built, cache_cases=4)   # smaller than the case list: loads and evictions happen under load
    start = threading.Barrier(READERS)
    errors: list[str] = []

    def read(reader_id: str) -> None:
        link = built.link(server, reader_id)
        try:
            start.wait(timeout=30)
            total = request(f"{link}/api/state").json()["total"]
            for position in range(total):
                info = request(f"{link}/api/case/{position}")
                if info.status != 200:
                    errors.append(f"{reader_id} case {position}: {info.status}")
                    return
                for k in (0, info.json()["slices"] // 2, info.json()["slices"] - 1):
                    reply = request(f"{link}/api/case/{position}/slice/{k}")
                    if reply.status != 200:
                        errors.append(f"{reader_id} slice {position}/{k}: {reply.status}")
                payload = {"label": "real", "confidence": 1 + position % 5, "comment": f"{reader_id}@{position}"}
                reply = request(f"{link}/api/case/{position}/answer", payload)
                if reply.status != 200 or reply.json()["position"] != position + 1:
                    errors.append(f"{reader_id} answer {position}: {reply.status} {reply.body[:200]!r}")
            # one changed answer each: a new row, not an overwrite
            request(f"{link}/api/case/0")
            reply = request(f"{link}/api/case/0/answer", {"label": "synthetic", "confidence": 5,
                                                          "comment": f"{reader_id}@0 changed"})
            if reply.status != 200:
                errors.append(f"{reader_id} change: {reply.status}")
        except Exception as exc:  # noqa: BLE001 - reported below with the reader's name
            errors.append(f"{reader_id}: {exc!r}")

    threads = [threading.Thread(target=read, args=(r,)) for r in built.study.reader_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a reader hung"
    assert errors == []

    store = ResponseStore(built.study)
    rows = store.rows()
    assert len(rows) == READERS * (6 + 1)
    for reader_id in built.study.reader_ids:
        order = built.study.order(reader_id)
        mine = [r for r in rows if r["reader_id"] == reader_id]
        assert [r["case_id"] for r in mine] == order + [order[0]], "every answer is filed under its own case"
        assert [r["answers"]["comment"] for r in mine] == [f"{reader_id}@{p}" for p in range(6)] + \
            [f"{reader_id}@0 changed"]
        assert store.latest(reader_id)[order[0]]["label"] == "synthetic"
        assert store.position(reader_id) == 6
