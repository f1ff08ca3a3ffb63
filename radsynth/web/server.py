"""The web reader's HTTP server (standard library only): one link per reader, ``/r/<token>``.

Blinding on the wire: every response goes through :meth:`Handler._send`, which writes one fixed set of headers
(no Last-Modified, ETag or file names; Cache-Control: no-store), slices are fixed-size raw int16 with no
compression (compressed sizes follow image content), URLs carry the reader's position index, never a case id,
and requests are not logged (the log would hold tokens).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Optional
from urllib.parse import urlsplit

from ..reader.errors import StudyError
from .session import ReaderSessions, Refused

MAX_BODY = 64 * 1024
_READER = re.compile(r"^/r/([^/]+)/?$")
_API = re.compile(r"^/r/([^/]+)/api/(state|case/(\d{1,6})(?:/(slice/(\d{1,6})|answer))?)$")
_STATIC = {"reader.js": "text/javascript; charset=utf-8", "reader.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _asset(name: str) -> bytes:
    return resources.files("radsynth.web").joinpath("static", name).read_bytes()


def _page(title: str, message: str) -> bytes:
    from html import escape
    return _asset("message.html").replace(b"{title}", escape(title).encode()).replace(
        b"{message}", escape(message).encode())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "radsynth-reader"
    sys_version = ""
    timeout = 60  # a stalled client frees its thread
    server: "ReaderHTTPServer"

    def version_string(self) -> str:
        return self.server_version

    # -- responses --------------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode(),
                   "application/json")

    def _refused(self, exc: Refused, api: bool) -> None:
        if api:
            self._json(exc.status, {"error": str(exc)})
        elif exc.status == 403:
            self._send(403, _page("Not a valid reader link", str(exc)), "text/html; charset=utf-8")
        else:
            self._send(exc.status, _page("Cannot show this page", str(exc)), "text/html; charset=utf-8")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass  # request lines carry reader tokens; nothing is logged

    # -- routing ----------------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        api = path.startswith("/r/") and "/api/" in path
        try:
            self._dispatch(method, path)
        except Refused as exc:
            self._refused(exc, api)
        except StudyError as exc:
            self._refused(Refused(409, str(exc)), api)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader closed the tab
        except Exception:  # noqa: BLE001 - one failed request must not stop the server
            traceback.print_exc(file=sys.stderr)
            self._refused(Refused(500, "The reader server hit an internal error; your earlier answers are saved."),
                          api)

    def _dispatch(self, method: str, path: str) -> None:
        sessions = self.server.sessions
        if path == "/" and method == "GET":
            self._send(200, _page("RadSynth reader study", "Open the personal link you were given to start "
                                  "reading."), "text/html; charset=utf-8")
            return
        if path.startswith("/static/") and method == "GET" and path[8:] in _STATIC:
            self._send(200, _asset(path[8:]), _STATIC[path[8:]])
            return
        match = _READER.match(path)
        if match and method == "GET":
            sessions.reader(match.group(1))
            self._send(200, _asset("reader.html"), "text/html; charset=utf-8")
            return
        match = _API.match(path)
        if not match:
            raise Refused(404, "There is no such page.")
        reader_id = sessions.reader(match.group(1))
        what, position, tail, k = match.group(2), match.group(3), match.group(4), match.group(5)
        if what == "state" and method == "GET":
            self._json(200, sessions.state(reader_id))
        elif position is not None and tail is None and method == "GET":
            self._json(200, sessions.open_case(reader_id, int(position)))
        elif k is not None and method == "GET":
            self._send(200, sessions.slice(reader_id, int(position), int(k)), "application/octet-stream")
        elif tail == "answer" and method == "POST":
            self._json(200, sessions.answer(reader_id, int(position), self._read_json()))
        else:
            raise Refused(405 if method == "POST" else 404, "This request is not supported here.")

    def _read_json(self) -> Any:
        if self.headers.get_content_type() != "application/json":
            raise Refused(415, "Answers are sent as JSON.")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refused(411, "The answer has no length.") from None
        if not 0 <= length <= MAX_BODY:
            raise Refused(413, "The answer is too long.")
        try:
            return json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Refused(400, "The answer is not valid JSON.") from None


class ReaderHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sessions: ReaderSessions, handler: type = Handler) -> None:
        self.sessions = sessions
        super().__init__(address, handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def reader_links(self) -> dict[str, str]:
        return {r["reader_id"]: f"{self.url}/r/{r['token']}" for r in self.sessions.study.readers}


class BackgroundServer:
    """A running server in a daemon thread (tests, load script); ``with BackgroundServer(...) as srv: srv.url``."""

    def __init__(self, sessions: ReaderSessions, host: str = "127.0.0.1", port: int = 0,
                 handler: type = Handler) -> None:
        self.httpd = ReaderHTTPServer((host, port), sessions, handler)
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return self.httpd.url

    def __enter__(self) -> "BackgroundServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="reader-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
