"""The browser's session: a login cookie for the console, with CSRF protection.

``POST /session`` with a token (one of ``GRAYRELEASE_TOKENS``, or one made with
``POST /tokens``) sets a signed cookie that is ``HttpOnly``, ``SameSite=Lax`` and ``Secure``
when the request came over HTTPS. The cookie carries a CSRF token, answered once at login and
by ``GET /session``: every state-changing request the cookie authenticates must send it back
in ``X-CSRF-Token``. A request with ``Authorization: Bearer`` is not a browser's and needs no
CSRF token; a host's own login (``grayrelease_identify``) is the host's to protect.
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

from .caller import state
from .http import json_body, json_response, query
from .identity import STORED_PREFIX, bearer_token, token_matches

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
        session = read_session(request, self._keys)
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


def read_session(request: Any, keys: SessionKeys) -> dict[str, Any] | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = keys.serializer.loads(raw, max_age=int(keys.lifetime.total_seconds()))
    except BadSignature:
        return None
    return data if isinstance(data, dict) and "actor" in data and "csrf" in data else None


def register_session_routes(api: Blueprint, keys: SessionKeys, tokens: dict[str, str]) -> None:
    @api.post("/session")
    def login() -> Response:
        query(request, ())
        body = json_body(request)
        if not isinstance(body, dict) or set(body) != {"token"}:
            raise ValidationError("token", 'send {"token": "..."}: an API token to log in with')
        secret = body["token"]
        if not isinstance(secret, str) or not secret:
            raise ValidationError("token", "must be a token", value=type(secret).__name__)
        actor, token_id = _who(secret, tokens)
        csrf = secrets.token_urlsafe(24)
        cookie = keys.serializer.dumps({"actor": actor, "csrf": csrf, "token": token_id})
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
        session = read_session(request, keys)
        if session is None:
            raise Unauthenticated("no session: log in with POST /session")
        return json_response({"actor": session["actor"], "csrfToken": session["csrf"]})

    @api.delete("/session")
    def logout() -> Response:
        query(request, ())
        answer = Response(status=204)
        answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax")
        return answer


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
