"""What the project's fake services share: an HTTP server on 127.0.0.1 in a thread, used as a
context manager, that a test can break (``fail``), freeze (``hang``) and mend (``heal``)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.error
import urllib.request
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, Self

HANG_LIMIT = 30.0
"""Seconds a hanging request waits at most when nobody releases it."""


class Answer(NamedTuple):
    """What a fake answered a test's request, whatever the status."""

    status: int
    headers: Message
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def send(request: urllib.request.Request, timeout: float) -> Answer:
    """Send a test's request to a fake; an error status is an answer too, not an exception."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.headers, response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read().decode("utf-8"))


def free_port() -> int:
    """A loopback port nobody listens on right now (a server that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LoopbackServer:
    """Subclasses answer in ``_answer(handler)``; ``methods`` are the HTTP methods served."""

    methods: tuple[str, ...] = ("POST",)

    def __init__(self) -> None:
        self._fault: int | None = None
        self._hanging = False
        self._release = threading.Event()
        fake = self

        def serve(handler: BaseHTTPRequestHandler) -> None:
            fake._serve(handler)

        def quiet(handler: BaseHTTPRequestHandler, format: str, *args: Any) -> None:
            pass

        members: dict[str, Any] = {f"do_{method}": serve for method in self.methods}
        handler = type("Handler", (BaseHTTPRequestHandler,), {**members, "log_message": quiet})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # Request threads are joined by server_close(), so no thread outlives the fake.
        self._server.daemon_threads = False
        self._server.block_on_close = True
        # A short poll so that close() (shutdown) returns at once, not after half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name=type(self).__name__
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    # --- faults -------------------------------------------------------------------------------

    def fail(self, status: int = 502) -> None:
        """Answer every request with HTTP ``status`` and an HTML page, like a broken gateway."""
        self._fault, self._hanging = status, False

    def hang(self) -> None:
        """Read requests and never answer them (until ``heal()`` or ``close()``)."""
        self._release.clear()
        self._fault, self._hanging = None, True

    def heal(self) -> None:
        self._fault, self._hanging = None, False
        self._release.set()

    def hold_if_hanging(self) -> bool:
        """For ``_answer``: when hanging, wait until healed and say so (answer nothing)."""
        if not self._hanging:
            return False
        self._release.wait(HANG_LIMIT)
        return True

    def fault_page(self) -> tuple[int, str] | None:
        """For ``_answer``: the status and page of a broken gateway, when ``fail()`` holds."""
        if self._fault is None:
            return None
        return self._fault, f"<html><body><h1>{self._fault} Bad Gateway</h1></body></html>"

    # --- life ---------------------------------------------------------------------------------

    def close(self) -> None:
        self.heal()
        self._closing()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _closing(self) -> None:
        """Release what holds requests open (long polls) so the server can stop."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- one request --------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        # The client may have given up (its timeout): then there is nobody to answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(handler)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError
