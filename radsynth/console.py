"""The ``radsynth`` console script (and ``python -m radsynth``): Ctrl-C is quiet from the first instant.

Until a command installs its own handler (``cli.common.cancel_on_ctrl_c``), Ctrl-C while Python imports the CLI
exits at once with one line instead of a KeyboardInterrupt traceback; a cancelled run that is still unwinding in
its thread does not hold up the exit.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_ERROR = 2


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _quit_quietly(signum, frame) -> None:
    _flush()
    os.write(2, b"Error: Cancelled by the user; nothing was changed.\n")
    os._exit(EXIT_ERROR)


def main() -> None:
    signal.signal(signal.SIGINT, _quit_quietly)
    from .cli import app, common
    code: object = 0
    try:
        app(prog_name="radsynth")
    except SystemExit as exc:
        code = exc.code
    if common.abandoned():
        # the cancelled work's thread may sit in a long C call; it writes nothing more, so do not wait for it
        from .outputs import discard_all
        discard_all()
        _flush()
        os._exit(code if isinstance(code, int) else EXIT_ERROR)
    sys.exit(code)


if __name__ == "__main__":
    main()
