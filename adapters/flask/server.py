"""Serving an app with waitress, a production WSGI server, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

import waitress
from flask import Flask


class Stop(SystemExit):
    """Raised by the signal handler to leave waitress's loop.

    A ``SystemExit``: waitress swallows plain exceptions raised while it handles a connection
    event and would keep serving, so a SIGTERM under load would be lost.
    """


def serve(
    app: Flask, host: str, port: int, *, threads: int = 8, on_ready: Callable[[int], None]
) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C, then flush the gray-release engine and return."""
    server = waitress.create_server(app, host=host, port=port, threads=threads, ident="grayrelease")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        on_ready(int(server.effective_port))
        sys.stdout.flush()
        server.run()
    except (Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        extension = app.extensions.get("grayrelease")
        if extension is not None:
            extension.close(app)
        print("grayrelease: stopped; buffered instance hits written", flush=True)
