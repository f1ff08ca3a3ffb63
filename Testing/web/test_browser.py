"""Chromium (Debian's, driven by Playwright): a reader opens their link, reads three cases (scrolls, changes the
window), answers, closes; the database holds the answers; a second reader's link shows a different order."""

from __future__ import annotations

import hashlib

from radsynth.reader.responses import ResponseStore

ANSWERS = [("synthetic", 4, "looks smooth"), ("real", 2, ""), ("real", 5, "noise pattern")]


def read_three(browser, link: str) -> tuple[list[str], list]:
    """Read three cases in a fresh browser context; returns the hash of the first image of each case and every
    response the page received."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    responses = []
    page.on("response", lambda r: responses.append(r))
    page.goto(link)
    page.wait_for_selector("body[data-shown='0']", timeout=20000)
    images = []
    for position, (label, confidence, comment) in enumerate(ANSWERS):
        page.wait_for_selector(f"body[data-shown='{position}']", timeout=20000)
        assert page.text_content("#progress") == f"Case {position + 1} of 4"
        images.append(hashlib.sha256(page.eval_on_selector("#slice", "c => c.toDataURL()").encode()).hexdigest())
        canvas = page.locator("#slice")
        first = canvas.get_attribute("data-slice")
        canvas.hover()
        page.mouse.wheel(0, 120)
        page.wait_for_function(f"document.getElementById('slice').dataset.slice !== '{first}'", timeout=10000)
        page.click("#presets button:nth-child(2)")
        assert page.text_content("#window-level").strip().startswith("W 400")
        page.check(f"fieldset[data-question='label'] input[value='{label}']")
        page.check(f"fieldset[data-question='confidence'] input[value='{confidence}']")
        if comment:
            page.fill("fieldset[data-question='comment'] textarea", comment)
        page.click("#save")
        if position + 1 < len(ANSWERS):
            page.wait_for_selector(f"body[data-position='{position + 1}']", timeout=20000)
    page.wait_for_selector("body[data-shown='3']", timeout=20000)
    received = []
    for r in responses:
        text = r.text() if "/api/" in r.url and "/slice/" not in r.url else ""
        received.append((r.url, r.status, r.headers, text))
    context.close()
    return images, received


def test_reader_reads_three_cases_in_chromium(study_factory, serve, browser):
    built = study_factory(n_real=2, n_synthetic=2, readers=2, seed=7)
    order1, order2 = built.study.order("R1"), built.study.order("R2")
    assert order1[:3] != order2[:3], "seed 7 gives the two readers different first cases"
    server = serve(built)

    images1, responses = read_three(browser, built.link(server, "R1"))
    store = ResponseStore(built.study)
    rows = store.rows("R1")
    assert [r["case_id"] for r in rows] == order1[:3]
    for row, (label, confidence, comment) in zip(rows, ANSWERS):
        expected = {"label": label, "confidence": confidence, **({"comment": comment} if comment else {})}
        assert row["answers"] == expected
        assert row["answered_at"] > row["shown_at"]
    assert store.position("R1") == 3 and store.rows("R2") == []

    # what the browser received never names a case, and every slice response looks the same
    case_ids = set(built.study.cases)
    assert len(responses) > 10
    for url, status, headers, text in responses:
        assert not any(c in url or c in text or c in str(headers) for c in case_ids)
    slice_headers = {tuple(sorted((k, v) for k, v in headers.items() if k != "date"))
                     for url, status, headers, text in responses if "/slice/" in url and status == 200}
    assert len(slice_headers) == 1

    # resume: the same link opens where the reader stopped
    context = browser.new_context()
    page = context.new_page()
    page.goto(built.link(server, "R1"))
    page.wait_for_selector("body[data-shown='3']", timeout=20000)
    assert page.text_content("#progress") == "Case 4 of 4"
    context.close()

    images2, _ = read_three(browser, built.link(server, "R2"))
    assert [r["case_id"] for r in ResponseStore(built.study).rows("R2")] == order2[:3]
    assert images1 != images2, "the second reader sees the cases in another order"
    same_case = {c: i for i, c in enumerate(order1[:3])}
    for position, case_id in enumerate(order2[:3]):
        if case_id in same_case:   # the same case shows the same first image to both readers
            assert images2[position] == images1[same_case[case_id]]


def test_unknown_link_shows_a_clear_page(study_factory, serve, browser):
    built = study_factory(n_real=1, n_synthetic=1, readers=1)
    server = serve(built)
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(f"{server.url}/r/{'f' * 32}")
    assert response.status == 403
    assert page.text_content("h1") == "Not a valid reader link"
    assert "personal link" in page.text_content("#message")
    context.close()
