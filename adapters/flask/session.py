"""The browser's session: a login cookie for the console, with CSRF protection.

``POST /session`` with a token (one of ``GRAYRELEASE_TOKENS``, or one made with
``POST /tokens``) sets a signed cookie that is ``HttpOnly``, ``SameSite=Lax`` and ``Secure``
when the request came over HTTPS. The cookie carries a CSRF token, answered once at login and
by ``GET /session``: every state-changing request the cookie authenticates must send it back
in ``X-CSRF-Token``. A request with ``Authorization: Bearer`` is not a browser's and needs no
CSRF token; a host's own login (``grayrelease_identify``) is the host's to protect.

Logging in is guarded too (login CSRF: a page elsewhere logging the browser in as its author):
``POST /session`` takes only ``application/json`` (which a cross-site form cannot send) from
the console's own origin (``Origin`` and ``Sec-Fetch-Site`` when the browser sends them).
Each session is a row in the store, so ``DELETE /session`` ends every copy of its cookie in
every process on the database. Wrong tokens slow their source down (see ``throttle``).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any

import attrs
from flask import Blueprint, Response, g, request
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from grayrelease_core import (
    Clock,
    GrayRelease,
    PermissionDenied,
    Unauthenticated,
    ValidationError,
    hookimpl,
)
from grayrelease_core.context import request_token_scope
from grayrelease_core.errors import TooManyRequests

from .caller import state
from .http import json_body, json_response, query, require_json
from .identity import STORED_PREFIX, bearer_token, token_matches
from .throttle import LoginThrottle

COOKIE = "grayrelease_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@attrs.frozen
class SessionKeys:
    """How sessions are signed and how long they last (from the app's config)."""

    serializer: URLSafeTimedSerializer
    lifetime: timedelta


def session_keys(secret: str | bytes, hours: float, clock: Clock) -> SessionKeys:
    """Keys whose signatures are stamped by ``clock`` (the engine's), not the wall clock."""

    class ClockSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock.now().timestamp())

    serializer = URLSafeTimedSerializer(secret, salt="grayrelease-session", signer=ClockSigner)
    return SessionKeys(serializer, timedelta(hours=hours))


class SessionIdentity:
    """Names the actor of a request that carries the session cookie (and no bearer token),
    after checking the CSRF token of a state-changing one."""

    def __init__(self, engine: GrayRelease, keys: SessionKeys) -> None:
        self._engine = engine
        self._keys = keys

    @hookimpl(trylast=True)
    def grayrelease_identify(self, request: Any) -> str | None:
        if bearer_token(request) is not None:
            return None
        session = read_session(request, self._keys, self._engine)
        if session is None:
            return None
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), str(session["csrf"]).encode()):
                raise PermissionDenied(
                    f"a browser session's {request.method} needs the {CSRF_HEADER} header "
                    "from GET /session",
                    details={"reason": "csrf"},
                )
        token_id = session.get("token")
        if token_id is not None:  # a stored token's session ends with the token
            token = self._engine.get_token(token_id)
            if token is None or not token.valid_at(self._engine.clock.now()):
                return None
            if "grayrelease_scope" not in g:
                g.grayrelease_scope = request_token_scope.set(token.scope)
        return str(session["actor"])


def signed_session(request: Any, keys: SessionKeys) -> dict[str, Any] | None:
    """The cookie's content if its signature holds and it has not aged out (whether its
    session has ended is the store's to say: see ``read_session``)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = keys.serializer.loads(raw, max_age=int(keys.lifetime.total_seconds()))
    except BadSignature:
        return None
    wanted = ("actor", "csrf", "sid")
    return data if isinstance(data, dict) and all(k in data for k in wanted) else None


def read_session(request: Any, keys: SessionKeys, engine: GrayRelease) -> dict[str, Any] | None:
    """The cookie's session if it is still open in the store (a logout in any process, or
    a cookie from before sessions were stored, makes it ``None``)."""
    data = signed_session(request, keys)
    if data is None or not isinstance(data["sid"], str):
        return None
    stored = engine.active_session(data["sid"])
    if stored is None or stored.actor != data["actor"]:
        return None
    return {**data, "token": stored.token_id}


def register_session_routes(
    api: Blueprint, keys: SessionKeys, tokens: dict[str, str], throttle: LoginThrottle
) -> None:
    @api.post("/session")
    def login() -> Response:
        query(request, ())
        same_origin(request)
        require_json(request)
        engine = state().engine
        body = json_body(request)
        if not isinstance(body, dict) or set(body) != {"token"}:
            raise ValidationError("token", 'send {"token": "..."}: an API token to log in with')
        secret = body["token"]
        if not isinstance(secret, str) or not secret:
            raise ValidationError("token", "must be a token", value=type(secret).__name__)
        source = request.remote_addr or ""
        waiting = throttle.attempt(source)
        if waiting is not None:
            seconds, first = waiting
            if first:  # one audit row per wait, so a flood of refusals cannot flood the trail
                engine.record_refused_login(
                    source, "console logins from this address are throttled", retryAfter=seconds
                )
            raise TooManyRequests(
                f"too many wrong tokens from this address; try again in {seconds} s",
                retry_after=seconds,
            )
        try:
            actor, token_id = _who(secret, tokens)
        except Unauthenticated as refused:  # already counted by attempt()
            engine.record_refused_login(source, refused.message)
            raise
        throttle.succeeded(source)
        session = engine.open_session(actor, token_id, keys.lifetime)
        csrf = secrets.token_urlsafe(24)
        cookie = keys.serializer.dumps({"actor": actor, "csrf": csrf, "sid": session.id})
        answer = json_response({"actor": actor, "csrfToken": csrf}, 201)
        answer.set_cookie(
            COOKIE,
            cookie,
            max_age=int(keys.lifetime.total_seconds()),
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
            path="/",
        )
        return answer

    @api.get("/session")
    def whoami() -> Response:
        query(request, ())
        session = read_session(request, keys, state().engine)
        if session is None:
            raise Unauthenticated("no session: log in with POST /session")
        return json_response({"actor": session["actor"], "csrfToken": session["csrf"]})

    @api.delete("/session")
    def logout() -> Response:
        query(request, ())
        signed = signed_session(request, keys)
        if signed is not None and isinstance(signed["sid"], str):
            state().engine.end_session(signed["sid"])
        answer = Response(status=204)
        answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax")
        return answer


def same_origin(request: Any) -> None:
    """A 403 for a login another site's page started: ``Sec-Fetch-Site`` other than
    ``same-origin`` or ``none`` (typed in the address bar), or an ``Origin`` that is not this
    server's. A request with neither header (curl, a script) is not a browser's and passes."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise PermissionDenied(
            f"a login must come from the console's own page, not a {site} one",
            details={"reason": "cross-site", "secFetchSite": site},
        )
    origin = request.headers.get("Origin")
    if origin is not None:
        own = f"{request.scheme}://{request.host}"
        if origin.lower() != own.lower():
            raise PermissionDenied(
                f"a login must come from this server's origin ({own}), not {origin}",
                details={"reason": "cross-origin", "origin": origin[:200]},
            )


def _who(secret: str, tokens: dict[str, str]) -> tuple[str, str | None]:
    """The actor a token names (and a stored token's id), or a 401."""
    match = token_matches(secret, tokens)
    if match is not None:
        return tokens[match], None
    if secret.startswith(STORED_PREFIX):
        found = state().engine.identify_token(secret)
        if found is not None:
            return found.actor, found.id
    raise Unauthenticated("that token is unknown, expired or revoked")
