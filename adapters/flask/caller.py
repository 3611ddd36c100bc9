"""Who is calling, and the app state serving the call (shared by the API's modules)."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from flask import current_app, g, request

from grayrelease_core import PermissionDenied, Unauthenticated
from grayrelease_core.access import is_reserved
from grayrelease_core.context import request_source, request_token_scope

from .state import AppState


def state() -> AppState:
    extension = current_app.extensions["grayrelease"]
    result: AppState = extension.state()
    return result


def actor() -> str:
    """The caller's name from ``grayrelease_identify``, or a 401."""
    if "grayrelease_source" not in g:  # for the audit trail; reset when the request ends
        g.grayrelease_source = request_source.set(request.remote_addr)
    engine = state().engine
    name = engine.plugin_manager.hook.grayrelease_identify(request=request)
    if not name:
        raise Unauthenticated(
            "this request needs an identity: send Authorization: Bearer <token> with a token "
            "from GRAYRELEASE_TOKENS or one made with POST /tokens"
        )
    if is_reserved(str(name)):
        # Whoever answered the identify hook, nobody passes for the engine itself.
        raise PermissionDenied(
            f"the name {name!r} is reserved for the engine itself and cannot act over HTTP",
            details={"reason": "reserved-actor"},
        )
    return str(name)


REQUEST_VARS: tuple[tuple[str, ContextVar[Any]], ...] = (
    ("grayrelease_source", request_source),
    ("grayrelease_scope", request_token_scope),
)
"""The ``g`` name under which each per-request ContextVar's reset token is kept."""


def forget_request(error: BaseException | None = None) -> None:
    """Clear who called, whatever path the request took (registered on the app, so it runs
    for the host's routes too: the demo's config API identifies callers with our hooks).

    A server thread serves request after request in one context, so a value left behind
    would be the next request's: a read-only token's scope refusing the admin's writes.
    """
    for name, var in REQUEST_VARS:
        token: Token[Any] | None = g.pop(name, None)
        try:
            if token is not None:
                var.reset(token)
        except (ValueError, RuntimeError):  # set in another context: clear it outright
            pass
        var.set(None)


def start_request() -> None:
    """Begin every request with no identity, even if a teardown was skipped before it."""
    for _, var in REQUEST_VARS:
        var.set(None)
