"""Facts about the current request that the core records but cannot see itself."""

from __future__ import annotations

from contextvars import ContextVar

request_source: ContextVar[str | None] = ContextVar("grayrelease_request_source", default=None)
"""The address an HTTP adapter saw the request come from (``None`` outside a request: the
Python API, the CLI, the ticker). The audit trail records it with denied attempts."""
