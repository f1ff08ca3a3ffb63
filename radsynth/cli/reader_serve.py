"""``radsynth reader serve STUDY``: the browser reader for a reader study, one personal link per reader.

Mount with ``reader_app.command("serve")(serve_command)``. The server listens on 127.0.0.1 unless told otherwise;
it speaks plain HTTP, so another host is only for a trusted network.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Callable, Optional

import typer

from ..reader.study import Study
from .common import user_errors, warn

DEFAULT_PORT = 8765


def serve(study: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, size: int = 512,
          cache_cases: int = 16, open_floor_s: Optional[float] = None, echo: Callable[[str], None] = typer.echo,
          ready: Optional[Callable[[object], None]] = None) -> None:
    """Serve ``study`` until Ctrl-C. ``ready(server)`` is called once the port is bound (tests use port 0)."""
    from ..web.server import ReaderHTTPServer
    from ..web.session import ReaderSessions

    opened = Study.open(study)
    floor = {} if open_floor_s is None else {"open_floor_s": open_floor_s}
    sessions = ReaderSessions(opened, size=size, cache_cases=cache_cases, **floor)
    try:
        httpd = ReaderHTTPServer((host, port), sessions)
    except OSError as exc:
        from ..reader.errors import StudyError
        raise StudyError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port.") from None
    if not _is_loopback(host):
        warn(f"Listening on {host}: the links are plain HTTP, anyone on that network who has one can read as that "
             "reader.")
    echo(f"Reader study {opened.study_id}: {len(opened.cases)} cases, {len(opened.reader_ids)} readers.")
    for reader_id, link in httpd.reader_links().items():
        echo(f"  {reader_id}: {link}")
    echo("Give each reader only their own link. Press Ctrl-C to stop (answers are saved as they are given).")
    sessions.warm()
    if ready is not None:
        ready(httpd)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        echo("Stopped.")
    finally:
        httpd.server_close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(
        study: Path = typer.Argument(..., help="Study folder written by 'radsynth reader build'."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this computer only)."),
        port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="TCP port (0: any free port)."),
        size: int = typer.Option(512, "--size", min=64, max=2048,
                                 help="Displayed slice size in pixels (every case is shown at this size)."),
) -> None:
    """Start the browser reader: prints one personal link per reader."""
    with user_errors():
        serve(study, host=host, port=port, size=size)
