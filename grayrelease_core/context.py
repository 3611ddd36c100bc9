"""Facts about the current request that the core records but cannot see itself."""

from __future__ import annotations

from contextvars import ContextVar

request_source: ContextVar[str | None] = ContextVar("grayrelease_request_source", default=None)
"""The address an HTTP adapter saw the request come from (``None`` outside a request: the
Python API, the CLI, the ticker). The audit trail records it with denied attempts."""

request_token_scope: ContextVar[str | None] = ContextVar(
    "grayrelease_request_token_scope", default=None
)
"""The scope of the API token the request came with (``read``, ``write``, ``release``), or
``None`` when it came with none (a configured token, the host's own login, Python, the CLI)."""
