"""Web reader fixtures: small blinded studies built by the real builder, a server on 127.0.0.1, and Debian's
Chromium driven by Playwright (required, not skipped: scripts/install_browser.sh installs it)."""

from __future__ import annotations

from typing import Any

import pytest

from radsynth.web.server import BackgroundServer
from radsynth.web.session import ReaderSessions
from web_support import CHROMIUM, CHROMIUM_ARGS, SIZE, Built, make_study


@pytest.fixture
def study_factory(tmp_path):
    counter = iter(range(1000))

    def factory(**kwargs: Any) -> Built:
        return make_study(tmp_path / f"s{next(counter)}", **kwargs)
    return factory


@pytest.fixture
def serve():
    """serve(built, **session_options) -> running server; all are stopped at the end of the test."""
    running: list[BackgroundServer] = []

    def start(built: Built, handler=None, sessions_cls=ReaderSessions, **options: Any) -> BackgroundServer:
        options.setdefault("size", SIZE)
        options.setdefault("open_floor_s", 0.02)
        kwargs = {"handler": handler} if handler is not None else {}
        server = BackgroundServer(sessions_cls(built.study, **options), **kwargs).__enter__()
        running.append(server)
        return server
    yield start
    for server in running:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's Chromium is missing: run scripts/install_browser.sh (or scripts/setup_env.sh).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
