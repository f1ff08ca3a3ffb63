"""Web reader fixtures: small blinded studies built by the real builder, a server on 127.0.0.1, plain HTTP helpers,
and Debian's Chromium driven by Playwright (required, not skipped: scripts/install_browser.sh installs it)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from radsynth.reader.build import build_study
from radsynth.reader.samples import toy_inputs
from radsynth.reader.study import Study
from radsynth.web.server import BackgroundServer
from radsynth.web.session import ReaderSessions

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SIZE = 64  # displayed slice size in the tests (the product default is 512)


@dataclass
class Built:
    study: Study
    truth: dict[str, str]  # from the answer key: the test side only, never given to the server

    def link(self, server: BackgroundServer, reader_id: str) -> str:
        return server.httpd.reader_links()[reader_id]


def make_study(root: Path, n_real: int = 3, n_synthetic: int = 3, readers: int = 2, seed: int = 5,
               shape=(10, 40, 40), **options: Any) -> Built:
    inputs = toy_inputs(root / "inputs", n_real, n_synthetic, shape=shape, seed=seed)
    result = build_study(inputs, root / "study", readers=readers, seed=seed, **options)
    key = json.loads(result.key_path.read_text())
    return Built(result.study, key["truth"])


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


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, payload: Optional[Any] = None, method: Optional[str] = None, timeout: float = 30) -> Reply:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            body = response.read()
            return Reply(response.status, list(response.headers.items()), body, time.perf_counter() - started)
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return Reply(exc.code, list(exc.headers.items()), body, time.perf_counter() - started)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's Chromium is missing: run scripts/install_browser.sh (or scripts/setup_env.sh).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
