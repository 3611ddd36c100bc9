"""Who is calling: the ``grayrelease_identify`` hook, with bearer tokens as the last word."""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from typing import Any

from flask import g

from grayrelease_core import GrayRelease, hookimpl
from grayrelease_core.context import request_token_scope

STORED_PREFIX = "grt_"
"""Tokens made by ``POST /tokens`` start with this; configured ones are looked up first."""


def bearer_token(request: Any) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    scheme, _, token = str(request.headers.get("Authorization", "")).partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_matches(token: str, known: Collection[str]) -> str | None:
    """The entry of ``known`` equal to ``token``, compared in constant time."""
    found = None
    for candidate in known:
        if hmac.compare_digest(candidate.encode(), token.encode()):
            found = candidate
    return found


class BearerTokenIdentity:
    """``GRAYRELEASE_TOKENS = {"token": "actor"}``: a bearer token names its actor."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = dict(tokens)

    @hookimpl(trylast=True)
    def grayrelease_identify(self, request: Any) -> str | None:
        token = bearer_token(request)
        if token is None:
            return None
        match = token_matches(token, self._tokens)
        return self._tokens[match] if match is not None else None


class StoredTokenIdentity:
    """Tokens made with ``POST /tokens`` or ``grayrelease token create``: found by their hash,
    valid until they expire or are revoked, and limited to their scope for this request."""

    def __init__(self, engine: GrayRelease) -> None:
        self._engine = engine

    @hookimpl(trylast=True)
    def grayrelease_identify(self, request: Any) -> str | None:
        token = bearer_token(request)
        if token is None or not token.startswith(STORED_PREFIX):
            return None
        found = self._engine.identify_token(token)
        if found is None:
            return None
        if "grayrelease_scope" not in g:  # reset when the request ends (see api.py)
            g.grayrelease_scope = request_token_scope.set(found.scope)
        return found.actor
