"""One HTTP exchange with a config center's server, shared by the Nacos and Apollo clients.

An answer of any status comes back as an ``Answer`` for the caller to judge (each service
words its errors differently); only a transport failure (refused, reset, timed out) is raised,
as a ``BackendError`` naming the server, what was being done and why.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import NamedTuple

from grayrelease_core import BackendError

MAX_ANSWER = 16 * 1024 * 1024
"""The largest answer read (a config is far smaller; a runaway one is cut off)."""


class Answer(NamedTuple):
    status: int
    body: str
    headers: Mapping[str, str]


class ServiceError(NamedTuple):
    """How a client names its server in errors: ``Nacos at http://...``."""

    service: str
    server: str

    def __call__(self, what: str, cause: str) -> BackendError:
        return BackendError(
            f"{self.service} at {self.server}: {what} failed: {cause}",
            details={"server": self.server},
        )


def exchange(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    *,
    timeout: float,
    what: str,
    error: ServiceError,
) -> Answer:
    """Send ``request``; the answer whatever its status, or a ``BackendError``."""
    try:
        with opener.open(request, timeout=timeout) as response:
            return Answer(response.status, _text(response.read(MAX_ANSWER)), _headers(response))
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                text = _text(exc.read(MAX_ANSWER))
            except OSError:
                text = ""
            return Answer(exc.code, text, _headers(exc))
    except TimeoutError as exc:
        raise error(what, f"no answer within {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise error(what, "no answer in time") from exc
        raise error(what, f"cannot connect: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise error(what, f"connection failed: {type(exc).__name__}: {exc}") from exc


def _headers(response: http.client.HTTPResponse | urllib.error.HTTPError) -> dict[str, str]:
    return dict(response.headers.items()) if response.headers is not None else {}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
