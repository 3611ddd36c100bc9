"""Serving an app with waitress, a production WSGI server, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from types import FrameType

import waitress
from flask import Flask
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from .http import too_large

BODY_SLACK = 64 * 1024
"""Bytes waitress lets past the app's limit, so that the app, which counts exactly (waitress
counts a chunked body's framing too), answers a body just over it; anything further over
is refused by waitress as soon as the headers (or that many chunked bytes) are in."""


class Stop(SystemExit):
    """Raised by the signal handler to leave waitress's loop.

    A ``SystemExit``: waitress swallows plain exceptions raised while it handles a connection
    event and would keep serving, so a SIGTERM under load would be lost.
    """


def serve(
    app: Flask, host: str, port: int, *, threads: int = 8, on_ready: Callable[[int], None]
) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C, then flush the gray-release engine and return.

    Waitress reads a whole body before it calls the app, so the body limit
    (``GRAYRELEASE_MAX_BODY_BYTES``) is given to waitress too: a 200 MB body is refused
    by its ``Content-Length`` alone, not read first.
    """
    limit = app.extensions["grayrelease"].state(app).max_body_bytes
    server = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="grayrelease",
        max_request_body_size=limit + BODY_SLACK,
    )
    server.channel_class = _channel_class(limit)

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


def _channel_class(limit: int) -> type[HTTPChannel]:
    """Waitress's connection handler, answering its own 413 in the API's error shape."""

    class JsonErrorTask(ErrorTask):  # type: ignore[misc]
        def execute(self) -> None:
            if not isinstance(self.request.error, RequestEntityTooLarge):
                super().execute()
                return
            body = json.dumps({"error": too_large(limit).to_dict()}).encode()
            self.status = "413 Request Entity Too Large"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class Channel(HTTPChannel):  # type: ignore[misc]
        error_task_class = JsonErrorTask

    return Channel
