"""Who is calling: the ``grayrelease_identify`` hook, with bearer tokens as the last word."""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from typing import Any

from grayrelease_core import hookimpl


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
