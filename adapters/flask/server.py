"""Serving an app with uvicorn, its Apollo polls held on the event loop, and stopping cleanly.

The Flask app runs on a pool of ``threads`` through :mod:`grayrelease_adapters.flask.asgi`,
so requests that take a thread are served as under a threaded WSGI server, while Apollo
clients' held notification polls take none: ten thousand clients do not starve config
reads. On SIGTERM or Ctrl-C the held polls are answered at once (304, as when a hold ends),
requests in progress finish, and the gray-release engine is flushed.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from flask import Flask

from grayrelease_core import ConfigurationError

from .asgi import create_asgi_app

GRACE_SECONDS = 10
"""How long requests in progress may take to finish once the server is told to stop."""


class Stop(SystemExit):
    """Raised by the SIGTERM handler, to leave uvicorn's loop when it re-raises the signal
    it caught (and to stop before uvicorn runs, or after it returned)."""


class _Server(uvicorn.Server):
    """uvicorn, answering the held polls as soon as it is told to stop: it would otherwise
    wait for each to run out its hold before it stops."""

    def __init__(self, config: uvicorn.Config, release: Callable[[], None]) -> None:
        super().__init__(config)
        self._release = release

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._release()
        super().handle_exit(sig, frame)


def serve(
    app: Flask, host: str, port: int, *, threads: int = 8, on_ready: Callable[[int], None]
) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C, then flush the gray-release engine and return.

    The body limit (``GRAYRELEASE_MAX_BODY_BYTES``) holds for every route, the host's too:
    the ASGI layer refuses a body by its ``Content-Length`` before reading it, and a chunked
    one as soon as it passes the limit (413 in the API's error shape).
    """
    asgi = create_asgi_app(app, threads=threads)
    config = uvicorn.Config(
        asgi,
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        # The app decides whom to believe (GRAYRELEASE_TRUSTED_PROXIES); uvicorn's default
        # would take X-Forwarded-For from any local caller as its address.
        proxy_headers=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    server = _Server(config, asgi.watcher.release_soon)
    listener = _listen(host, port)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        on_ready(int(listener.getsockname()[1]))
        sys.stdout.flush()
        server.run(sockets=[listener])
    except (Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        listener.close()
        extension = app.extensions.get("grayrelease")
        if extension is not None:
            extension.close(app)
        print("grayrelease: stopped; buffered instance hits written", flush=True)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the banner names its port (``0``: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off only on sockets that say they are
    # TCP, and with it on every answer waits 40 ms for the client's delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another port with "
                "--port (make run PORT=...)"
            ) from None
        raise
    return listener
