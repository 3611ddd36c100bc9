"""What the group-robot channels (``dingtalk``, ``wecom``) share.

Both robots take a JSON POST to a webhook whose query holds the credential, and answer HTTP
200 with ``{"errcode": ..., "errmsg": ...}``. Here: the body's encoding and cutting, the POST
(no redirects, so the credential stays with the robot), the reading of the answer, and the
validation of the settings both channels have (webhook URL or credential and base URL,
timeout, link label). Each channel keeps its own message formats and error codes.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from grayrelease_core import ValidationError
from grayrelease_core.notify import DeliveryError

MAX_TIMEOUT = 60.0
TRUNCATED = "\n\n…"
"""Ends a text that was cut to fit."""
DEFAULT_LINK_TITLE = "查看计划"

_MAX_ANSWER = 64 * 1024
_SNIPPET = 200
_CREDENTIAL = re.compile(r"[A-Za-z0-9_-]+")
_ONE_LINE = re.compile(r"[^\r\n\0]+")


# --- the body --------------------------------------------------------------------------------


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``max_bytes``."""
    # A cut inside a character leaves an incomplete sequence at the end only; drop it.
    return text.encode()[: max(max_bytes, 0)].decode(errors="ignore")


def json_body(body: Mapping[str, Any]) -> bytes:
    """``body`` as compact JSON in UTF-8."""
    # Raw UTF-8, not \uXXXX escapes: a Chinese character costs 3 bytes of the limit, not 6.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# --- posting ---------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def webhook_opener() -> urllib.request.OpenerDirector:
    """An opener that does not follow redirects: a robot answers itself, and a redirect
    would carry the URL's credential elsewhere."""
    return urllib.request.build_opener(_NoRedirect)


def post_json(
    service: str,
    opener: urllib.request.OpenerDirector,
    url: str,
    body: bytes,
    timeout: float,
    content_type: str = "application/json;charset=utf-8",
) -> tuple[int, str, float | None, bytes]:
    """POST ``body``; the answer's status, reason, ``Retry-After`` seconds and body.

    :raises DeliveryError: retryable, when the service could not be reached or did not answer
        in time (its message never holds the URL, which holds the credential).
    """
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    timed_out = f"{service}: no answer within {timeout:g} s"
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.reason, None, response.read(_MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                answer = exc.read(_MAX_ANSWER)
            except OSError:
                answer = b""
            return exc.code, str(exc.reason), _retry_after(exc.headers.get("Retry-After")), answer
    except TimeoutError as exc:
        raise DeliveryError(timed_out, retryable=True) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise DeliveryError(timed_out, retryable=True) from exc
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise DeliveryError(
                f"{service}: the server's certificate is not trusted: {exc.reason}",
                retryable=False,
            ) from exc
        raise DeliveryError(f"{service}: cannot connect: {exc.reason}", retryable=True) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(
            f"{service}: connection failed: {type(exc).__name__}: {exc}", retryable=True
        ) from exc


# --- the answer ------------------------------------------------------------------------------


def robot_answer(
    service: str, status: int, reason: str, retry_after: float | None, body: bytes
) -> tuple[int, str]:
    """``errcode`` and ``errmsg`` of a robot's answer.

    :raises DeliveryError: the answer is not HTTP 200 (the robots always answer 200, so this
        is a gateway or a wrong base URL: retryable when 5xx or 429) or not a robot's JSON.
    """
    if status != 200:
        raise DeliveryError(
            f"{service}: HTTP {status} {reason}: {_snippet(body)}",
            retryable=status >= 500 or status == 429,
            retry_after=retry_after,
        )
    try:
        answer = json.loads(body)
        errcode = answer["errcode"]
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            raise TypeError(errcode)
    except (ValueError, TypeError, KeyError) as exc:
        raise DeliveryError(
            f"{service}: the answer is not a robot's: {_snippet(body)}", retryable=False
        ) from exc
    return errcode, str(answer.get("errmsg", ""))


def _retry_after(value: str | None) -> float | None:
    if value is not None and value.strip().isdigit():
        return float(value.strip())
    return None


def _snippet(body: bytes) -> str:
    text = " ".join(body[:_SNIPPET].decode(errors="replace").split())
    if not text:
        return "(empty body)"
    return text + ("…" if len(body) > _SNIPPET else "")


# --- validating settings ---------------------------------------------------------------------


def robot_webhook(
    data: Mapping[str, Any], field: str, *, param: str, default_base: str, path: str
) -> tuple[str, str]:
    """The send endpoint (no query) and the credential, from ``webhook_url`` (the full URL,
    whose query is ``{param}=...``) or from ``param`` and ``base_url``."""
    example = f"{default_base}{path}?{param}=..."
    if "webhook_url" in data:
        for other in (param, "base_url"):
            if other in data:
                raise ValidationError(
                    f"{field}.{other}", f"give either webhook_url or {param}, not both"
                )
        return _webhook_url(data["webhook_url"], f"{field}.webhook_url", param, example)
    if param not in data:
        raise ValidationError(
            f"{field}.webhook_url", f"is required: the robot's URL ({example}), or give {param}"
        )
    credential = data[param]
    if not isinstance(credential, str) or not _CREDENTIAL.fullmatch(credential.strip()):
        # A credential: never echoed.
        raise ValidationError(
            f"{field}.{param}", "must be the robot's credential: letters, digits, - and _"
        )
    base = _base_url(data.get("base_url", default_base), f"{field}.base_url", default_base)
    return base + path, credential.strip()


def link_label(value: Any, field: str) -> str:
    """The label of the link to the plan: one short line."""
    if not isinstance(value, str) or not _ONE_LINE.fullmatch(value.strip()) or len(value) > 40:
        raise ValidationError(field, "must be a label of 1 to 40 characters on one line")
    return value.strip()


def _webhook_url(value: Any, field: str, param: str, example: str) -> tuple[str, str]:
    # The URL holds the credential: never echoed.
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, f"must be the robot's URL, like {example}")
    parts = urllib.parse.urlsplit(value.strip())
    _check_server(parts, field)
    try:
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        query = []
    names = [name for name, _ in query]
    if names != [param]:
        extra = sorted(set(names) - {param})
        raise ValidationError(
            field,
            f"must have only {param}= in its query (found {', '.join(extra)})"
            if extra
            else f"has no {param}=; it must be the robot's URL, like {example}",
        )
    credential = query[0][1].strip()
    if not _CREDENTIAL.fullmatch(credential):
        raise ValidationError(field, f"has a malformed {param}: letters, digits, - and _ only")
    endpoint = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return endpoint, credential


def _base_url(value: Any, field: str, default: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, f"must be the service's base URL, like {default}")
    url = value.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    _check_server(parts, field)
    if parts.query:
        raise ValidationError(field, "must not have a query", value=value)
    return url


def _check_server(parts: urllib.parse.SplitResult, field: str) -> None:
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(field, "must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(field, "must not hold a user name or password")
    if parts.fragment:
        raise ValidationError(field, "must not have a fragment")
    try:
        parts.port  # noqa: B018 - a bad port raises only when read
    except ValueError as exc:
        raise ValidationError(field, "has an invalid port") from exc
