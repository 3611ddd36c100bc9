"""The Flask app as an ASGI app whose Apollo notification polls hold no thread.

An Apollo client keeps one notification poll open all the time, held up to 60 s until one
of its namespaces changes. Under a threaded WSGI server each held poll ties up a worker
thread, so a handful of clients starve every other request (eight polls froze
``grayrelease serve`` when it ran waitress with eight threads). Apollo holds them with
Spring's ``DeferredResult``; here:

- every request, polls included, goes to the Flask app on a small pool of threads, so a poll
  is checked, parsed and authenticated by the same view as always. The body is read on the
  loop first (never past the body limit) and the answer is collected whole in the thread,
  so each request crosses between thread and loop once: a general WSGI bridge (``a2wsgi``)
  crosses for every message and served config reads at 65% of this one's rate;
- when the view finds nothing new it does not sleep: it answers, to this layer only, what
  the poll waits for (:data:`~grayrelease_adapters.flask.apollo_api.HOLD_HEADER`), and the
  poll waits on the event loop as a future;
- one watcher task looks at the notification ids of the namespaces being waited on
  (one look per namespace, however many polls wait on it) every :data:`RECHECK` seconds,
  and answers the polls whose namespace moved past the id they know. A poll whose hold
  runs out gets Apollo's 304.

Run it with any ASGI server, for example ``uvicorn --factory 'myhost:make_asgi'`` where
``make_asgi`` returns ``create_asgi_app(create_app())``; ``grayrelease serve`` runs it with
uvicorn (see :mod:`grayrelease_adapters.flask.server`).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
from flask import Flask

from .apollo_api import HOLD_ENVIRON, HOLD_HEADER, changes, notification_id
from .http import too_large
from .state import AppState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RECHECK = 0.2
"""Seconds between the watcher's looks at the namespaces held polls wait on."""
POLL_THREADS = 2
"""Threads that check arriving polls (the Flask view), apart from the ``threads`` that
serve everything else."""
log = logging.getLogger("grayrelease")
Key = tuple[str, str, str]
"""``(environment, appId, namespace)``: what a held poll waits on."""


@attrs.define(eq=False)
class _Held:
    """One held poll: what it knows, and the future its answer is set on."""

    environment: str
    app_id: str
    cluster: str
    asked: dict[str, int]
    answer: asyncio.Future[list[dict[str, object]] | None]


class PollWatcher:
    """The held polls of one process, by namespace, and the task that answers them."""

    def __init__(self, state: AppState, recheck: float = RECHECK) -> None:
        self._state = state
        self._recheck = recheck
        self._waiting: dict[Key, set[_Held]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failing = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the polls are held on (for :meth:`release_soon`)."""
        self._loop = loop

    @property
    def held(self) -> int:
        """Polls held now."""
        return len({held for waiting in self._waiting.values() for held in waiting})

    async def hold(
        self, what: dict[str, Any], gone: asyncio.Future[None] | None = None
    ) -> list[dict[str, object]] | None:
        """Wait for a change of one of the poll's namespaces (its answer), or the end of its
        hold, or ``gone`` (the client hung up): ``None``, Apollo's 304."""
        if self._closing:
            return None
        loop = self._loop = asyncio.get_running_loop()
        held = _Held(
            what["environment"], what["appId"], what["cluster"], what["asked"], loop.create_future()
        )
        keys = [(held.environment, held.app_id, name) for name in held.asked]
        for key in keys:
            self._waiting.setdefault(key, set()).add(held)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._watch(), name="grayrelease-apollo-polls")
        try:
            waits: set[asyncio.Future[Any]] = {held.answer}
            if gone is not None:
                waits.add(gone)
            await asyncio.wait(waits, timeout=float(what["hold"]), return_when="FIRST_COMPLETED")
            return held.answer.result() if held.answer.done() else None
        finally:
            for key in keys:
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting.discard(held)
                    if not waiting:
                        del self._waiting[key]

    def release(self) -> None:
        """Answer every held poll now (304): the server is stopping. Call it on the loop;
        from a signal handler or another thread, :meth:`release_soon`."""
        self._closing = True
        for waiting in list(self._waiting.values()):
            for held in waiting:
                if not held.answer.done():
                    held.answer.set_result(None)

    def release_soon(self) -> None:
        """:meth:`release`, run by the loop: safe from a signal handler, which may interrupt
        the watcher between its look at a future and its answer."""
        self._closing = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.release)

    async def _watch(self) -> None:
        """Look at the waited-on namespaces until no poll is held."""
        while self._waiting:
            await asyncio.sleep(self._recheck)
            keys = list(self._waiting)
            try:
                current = await asyncio.to_thread(self._ids, keys)
            except Exception:  # the backend is down: the polls wait, the next look retries
                if not self._failing:  # once, not five times a second
                    log.exception("grayrelease: looking at Apollo notification ids failed")
                self._failing = True
                continue
            if self._failing:
                log.warning("grayrelease: Apollo notification ids can be looked at again")
                self._failing = False
            for key, number in current.items():
                for held in list(self._waiting.get(key, ())):
                    if held.answer.done() or number <= held.asked[key[2]]:
                        continue
                    ids = {name: current.get((key[0], key[1], name), -1) for name in held.asked}
                    held.answer.set_result(changes(held.app_id, held.cluster, held.asked, ids))

    def _ids(self, keys: list[Key]) -> dict[Key, int]:
        return {key: notification_id(self._state, key[0], key[1], key[2]) for key in keys}


class HeldPollApp:
    """The ASGI app: ``flask_app`` on a pool of threads, its Apollo polls held on the loop."""

    def __init__(self, flask_app: Flask, *, threads: int = 8, recheck: float = RECHECK) -> None:
        self.flask_app = flask_app
        state: AppState = flask_app.extensions["grayrelease"].state(flask_app)
        self.watcher = PollWatcher(state, recheck)
        self._max_body = state.max_body_bytes
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grayrelease-http")
        # Polls are checked on threads of their own: when every client of a fleet polls
        # again at once (after a plan change answered them all), the checks queue here, not
        # in front of config reads.
        self._poll_pool = ThreadPoolExecutor(
            max_workers=POLL_THREADS, thread_name_prefix="grayrelease-polls"
        )
        self._poll_path = _poll_path(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here: the server answers 403/closes
        environ = await self._environ(scope, receive)
        if environ is None:
            return  # the client went away while sending its body
        if isinstance(environ, int):
            await _respond(send, 413, [(b"content-type", b"application/json")], _too_large(environ))
            return
        if self._poll_path(environ["PATH_INFO"]):
            if scope["method"] == "HEAD":  # Flask would answer it by sleeping in a thread
                await _respond(send, 405, [(b"allow", b"GET")], b"")
                return
            if scope["method"] == "GET":
                environ[HOLD_ENVIRON] = True
                status, headers, body = await self._call(environ, self._poll_pool)
                if any(name == HOLD_HEADER.lower().encode() for name, _ in headers):
                    await self._hold(json.loads(body), receive, send)
                    return
                await _respond(send, status, headers, body)
                return
        status, headers, body = await self._call(environ, self._pool)
        await _respond(send, status, headers, body)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.watcher.bind(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.watcher.release()
                self._pool.shutdown(wait=False)
                self._poll_pool.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _hold(self, what: dict[str, Any], receive: Receive, send: Send) -> None:
        """Hold a poll the view found nothing new for, then answer as the view would. A
        client that hangs up meanwhile stops being waited on (behind a load balancer whose
        idle timeout is under the hold, that is most of them)."""
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            answer = await self.watcher.hold(what, gone)
        finally:
            gone.cancel()
        if gone.done() and not gone.cancelled():
            return
        if answer is None:
            await _respond(send, 304, [], b"")
            return
        body = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
        await _respond(send, 200, [(b"content-type", b"application/json")], body)

    async def _environ(self, scope: Scope, receive: Receive) -> dict[str, Any] | int | None:
        """The WSGI environ, with the body read here on the loop; the limit (an ``int``,
        answered 413 for every route) when the body is over ``GRAYRELEASE_MAX_BODY_BYTES``:
        a declared length over it is not read at all, a chunked body not past one byte over
        it, and no route is ever handed part of a body as if it were all of it. A slow
        sender holds no thread. ``None``: the client hung up."""
        environ = _environ(scope)
        declared = environ.get("CONTENT_LENGTH", "")
        if declared.isdigit() and int(declared) > self._max_body:
            return self._max_body
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body.extend(message.get("body", b""))
            if len(body) > self._max_body:
                return self._max_body
            more = message.get("more_body", False)
        if not declared:  # chunked: a body of known length from here on, as waitress
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(bytes(body))
        return environ

    async def _call(
        self, environ: dict[str, Any], pool: ThreadPoolExecutor
    ) -> tuple[int, list[Header], bytes]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            pool, contextvars.copy_context().run, _run_wsgi, self.flask_app, environ
        )


Header = tuple[bytes, bytes]


def _run_wsgi(app: Flask, environ: dict[str, Any]) -> tuple[int, list[Header], bytes]:
    """Call the app in a worker thread and collect its whole answer: one hop between the
    thread and the loop per request (the app's answers are small; none is streamed)."""
    started: list[tuple[str, list[tuple[str, str]]]] = []
    chunks: list[bytes] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        started[:] = [(status, headers)]
        return chunks.append

    iterable = app(environ, start_response)
    try:
        chunks.extend(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return int(status.split(" ", 1)[0]), encoded, b"".join(chunks)


async def _disconnected(receive: Receive) -> None:
    """Ends when the client hangs up (its body was read before: nothing else comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _too_large(limit: int) -> bytes:
    return json.dumps({"error": too_large(limit).to_dict()}, ensure_ascii=False).encode()


async def _respond(send: Send, status: int, headers: list[Header], body: bytes) -> None:
    """The whole answer, with its length (the app's own answers carry it already)."""
    if status not in (204, 304) and not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _environ(scope: Scope) -> dict[str, Any]:
    """PEP 3333's environ for an ASGI HTTP scope (the body is added by the caller)."""
    root = scope.get("root_path", "")
    path = scope["path"]
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope.get("headers", []):
        if b"_" in raw_name:
            # X_Forwarded_For would become HTTP_X_FORWARDED_FOR and merge with the real one:
            # dropped, as waitress and nginx drop them.
            continue
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        joint = "; " if key == "HTTP_COOKIE" else ","
        environ[key] = f"{environ[key]}{joint}{value}" if key in environ else value
    return environ


def _poll_path(state: AppState) -> Callable[[str], bool]:
    """Whether a path is the notification poll of the app's Apollo endpoint."""
    prefix = re.escape(state.apollo_prefix)
    environment = "" if state.apollo_environment is not None else "/[^/]+"
    pattern = re.compile(f"{prefix}{environment}/notifications/v2")
    return lambda path: pattern.fullmatch(path) is not None


def create_asgi_app(flask_app: Flask, *, threads: int = 8) -> HeldPollApp:
    """``flask_app`` (with the extension initialised) as an ASGI app whose Apollo
    notification polls hold no thread; ``threads`` serve everything else."""
    if "grayrelease" not in flask_app.extensions:
        raise RuntimeError("call GrayRelease(app) (or init_app) before create_asgi_app(app)")
    return HeldPollApp(flask_app, threads=threads)
