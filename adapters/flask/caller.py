"""Who is calling, and the app state serving the call (shared by the API's modules)."""

from __future__ import annotations

from flask import current_app, g, request

from grayrelease_core import PermissionDenied, Unauthenticated
from grayrelease_core.access import is_reserved
from grayrelease_core.context import request_source

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
