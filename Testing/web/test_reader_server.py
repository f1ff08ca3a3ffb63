"""The web reader over plain HTTP: links and tokens, the study's rules (order, resume, no going back, changes,
time limit), answers in the ResponseStore, clear refusals that change nothing."""

from __future__ import annotations

import threading
import time

import numpy as np
import SimpleITK as sitk
from typer.testing import CliRunner

import typer

from web_support import SIZE, request
from radsynth.cli.reader_serve import serve, serve_command
from radsynth.reader.responses import ResponseStore
from radsynth.web.cases import load_case
from radsynth.web.server import BackgroundServer
from radsynth.web.session import ReaderSessions

ANSWER = {"label": "real", "confidence": 4, "comment": "sharp edges"}


def read_case(link: str, position: int) -> dict:
    reply = request(f"{link}/api/case/{position}")
    assert reply.status == 200, reply.body
    return reply.json()


def answer(link: str, position: int, payload=ANSWER):
    return request(f"{link}/api/case/{position}/answer", payload)


def test_unknown_token_gets_a_clear_403(study_factory, serve):
    built = study_factory()
    server = serve(built)
    page = request(f"{server.url}/r/{'0' * 32}")
    assert page.status == 403
    assert b"Not a valid reader link" in page.body and b"does not belong to this study" in page.body
    api = request(f"{server.url}/r/{'0' * 32}/api/state")
    assert api.status == 403 and "does not belong" in api.json()["error"]
    # a known token works, and the page is the same for every reader (it knows only its own URL)
    first, second = (request(built.link(server, r)) for r in ("R1", "R2"))
    assert first.status == second.status == 200 and first.body == second.body
    assert request(f"{server.url}/").status == 200
    assert request(f"{server.url}/cases/").status == 404


def test_reader_reads_in_their_order_and_answers_land_in_the_store(study_factory, serve):
    built = study_factory()
    server = serve(built)
    link = built.link(server, "R1")
    state = request(f"{link}/api/state").json()
    assert state["position"] == 0 and state["total"] == 6 and state["size"] == SIZE
    assert [q["id"] for q in state["questions"]] == ["label", "confidence", "comment"]
    assert state["presets"][0] == {"name": "Lung", "window": 1500, "level": -600}
    info = read_case(link, 0)
    assert info["slices"] == 10 and info["answers"] is None and info["editable"]
    assert request(f"{link}/api/case/2").status == 409, "a reader cannot skip ahead"
    slice_reply = request(f"{link}/api/case/0/slice/4")
    assert slice_reply.status == 200 and len(slice_reply.body) == SIZE * SIZE * 2
    expected = load_case(built.study.case_path(built.study.order("R1")[0]), SIZE).array[4]
    assert np.array_equal(np.frombuffer(slice_reply.body, "<i2").reshape(SIZE, SIZE), expected)
    assert request(f"{link}/api/case/0/slice/10").status == 404
    assert answer(link, 0).json() == {"position": 1, "total": 6}
    rows = ResponseStore(built.study).rows("R1")
    assert [(r["case_id"], r["answers"]) for r in rows] == [(built.study.order("R1")[0], ANSWER)]
    assert rows[0]["answered_at"] >= rows[0]["shown_at"]
    # going back shows the reader's own answer, and a changed answer is a new row
    assert read_case(link, 0)["answers"] == ANSWER
    assert answer(link, 0, {"label": "synthetic", "confidence": 2}).status == 200
    assert len(ResponseStore(built.study).rows("R1")) == 2
    # the other reader sees none of it
    other = built.link(server, "R2")
    assert request(f"{other}/api/state").json()["position"] == 0
    assert read_case(other, 0)["answers"] is None


def test_bad_answers_are_refused_and_change_nothing(study_factory, serve):
    built = study_factory()
    server = serve(built)
    link = built.link(server, "R1")
    assert answer(link, 0).status == 409, "a case must be shown before it is answered"
    read_case(link, 0)
    for payload, words in (({"label": "maybe", "confidence": 3}, "real, synthetic"),
                           ({"label": "real", "confidence": 9}, "from 1 to 5"),
                           ({"label": "real"}, "confidence"),
                           ({"label": "real", "confidence": 3, "extra": 1}, "'extra'")):
        reply = answer(link, 0, payload)
        assert reply.status == 409 and words in reply.json()["error"], reply.body
    not_json = request(f"{link}/api/case/0/answer", method="POST")
    assert not_json.status in (411, 415)
    assert ResponseStore(built.study).rows() == []


def test_resume_after_a_server_restart(study_factory, serve):
    built = study_factory()
    server = serve(built)
    link = built.link(server, "R1")
    for position in range(2):
        read_case(link, position)
        assert answer(link, position).status == 200
    server.__exit__(None, None, None)
    restarted = serve(built)
    link = built.link(restarted, "R1")
    assert request(f"{link}/api/state").json()["position"] == 2
    assert request(f"{link}/api/case/2/slice/0").status == 409, "slices only of a case opened on this server"
    assert read_case(link, 2)["position"] == 2


def test_no_going_back_and_no_changes(study_factory, serve):
    built = study_factory(no_going_back=True, allow_changes=False)
    server = serve(built)
    link = built.link(server, "R1")
    read_case(link, 0)
    assert answer(link, 0).status == 200
    second = answer(link, 0, {"label": "synthetic", "confidence": 1})
    assert second.status == 409
    back = request(f"{link}/api/case/0")
    assert back.status == 409 and "going back" in back.json()["error"]
    assert request(f"{link}/api/case/0/slice/1").status == 409
    assert len(ResponseStore(built.study).rows("R1")) == 1


def test_time_limit_hides_the_images_but_keeps_the_answer(study_factory, serve):
    built = study_factory(time_limit_s=1)
    server = serve(built)
    link = built.link(server, "R1")
    info = read_case(link, 0)
    assert info["time_left_s"] == 1
    assert request(f"{link}/api/case/0/slice/0").status == 200
    time.sleep(1.6)
    late = request(f"{link}/api/case/0/slice/0")
    assert late.status == 410 and "time" in late.json()["error"]
    assert read_case(link, 0)["time_left_s"] == 0, "reopening does not restart the clock"
    assert answer(link, 0).status == 200


def test_slices_are_radiological_and_square(tmp_path):
    """Patient right on screen left, anterior on top, whatever the file's axis directions; non-square grids are
    resampled onto the fixed display size (letterboxed with air)."""
    array = np.full((4, 20, 30), -1000, np.int16)
    array[:, 2:5, 2:5] = 500   # low i (patient right in LPS), low j (anterior): must land top left
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(img, str(tmp_path / "lps.nrrd"))
    flipped = sitk.Flip(img, [True, True, False])   # same anatomy, stored with the i and j axes reversed
    sitk.WriteImage(flipped, str(tmp_path / "flipped.nrrd"))
    for name in ("lps.nrrd", "flipped.nrrd"):
        case = load_case(tmp_path / name, size=60)
        assert case.array.shape == (4, 60, 60)
        top_left = case.array[1, :30, :30]
        assert (top_left > 0).sum() > 10 and (case.array[1, 30:, 30:] > 0).sum() == 0, name
        assert case.array[1, 0, 0] == -1024 or case.array[1, 0, 0] == -1000  # letterbox rows are air
    assert load_case(tmp_path / "lps.nrrd", size=60, slice_range=(1, 2)).n_slices == 2


def test_cli_serve_prints_links_and_refuses_a_bad_folder(study_factory, tmp_path):
    app = typer.Typer()
    app.command()(serve_command)
    result = CliRunner().invoke(app, [str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "Study folder not found" in result.output

    built = study_factory()
    lines, started = [], threading.Event()
    holder = {}

    def ready(httpd):
        holder["httpd"] = httpd
        started.set()
    thread = threading.Thread(target=serve, kwargs=dict(study=built.study.folder, port=0, size=SIZE,
                                                         echo=lines.append, ready=ready), daemon=True)
    thread.start()
    assert started.wait(30)
    links = [line.split(": ", 1)[1] for line in lines if line.startswith("  R")]
    assert len(links) == 2 and all(link.startswith("http://127.0.0.1:") for link in links)
    assert request(links[0] + "/api/state").status == 200
    holder["httpd"].shutdown()
    thread.join(10)
    assert not thread.is_alive()


def test_several_servers_do_not_share_state(study_factory):
    """Two studies served at once keep their own readers (tokens of one are refused by the other)."""
    a, b = study_factory(), study_factory()
    with BackgroundServer(ReaderSessions(a.study, size=SIZE, open_floor_s=0)) as sa, \
            BackgroundServer(ReaderSessions(b.study, size=SIZE, open_floor_s=0)) as sb:
        token = a.study.readers[0]["token"]
        assert request(f"{sa.url}/r/{token}/api/state").status == 200
        assert request(f"{sb.url}/r/{token}/api/state").status == 403
