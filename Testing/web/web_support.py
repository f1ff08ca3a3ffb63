"""Helpers of the web reader tests (a module of its own: every test folder has a conftest.py, so importing from
"conftest" would pick whichever was imported first)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from radsynth.reader.build import build_study
from radsynth.reader.samples import toy_inputs
from radsynth.reader.study import Study
from radsynth.web.server import BackgroundServer

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
