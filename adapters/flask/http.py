"""Reading requests and writing responses: strict parameters, JSON bodies, JSON errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any

from flask import Request, Response
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from grayrelease_core import (
    BackendError,
    ConfigurationError,
    Conflict,
    GrayReleaseError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationError,
)

log = logging.getLogger("grayrelease.http")

STATUS: dict[type[GrayReleaseError], int] = {
    ValidationError: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    InvalidTransition: 409,
    Conflict: 409,
    BackendError: 502,
    ConfigurationError: 500,
}


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response; non-ASCII (Chinese plan names) is sent as UTF-8, not escaped."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, headers=dict(headers or {}), mimetype="application/json")


def error_response(error: GrayReleaseError) -> Response:
    status = next((code for cls, code in STATUS.items() if isinstance(error, cls)), 500)
    headers = {"WWW-Authenticate": 'Bearer realm="grayrelease"'} if status == 401 else {}
    return json_response({"error": error.to_dict()}, status, headers)


def http_error_response(error: HTTPException) -> Response:
    """Werkzeug's errors (unknown route, wrong method, huge body) in our error shape."""
    if isinstance(error, RequestEntityTooLarge):
        return error_response(ValidationError("body", "is larger than the allowed request size"))
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.code or 0, "BAD_REQUEST")
    status = error.code if error.code in (404, 405) else 400
    payload = {"error": {"code": code, "message": error.description or error.name, "details": {}}}
    allowed = getattr(error, "valid_methods", None)
    headers = {"Allow": ", ".join(allowed)} if allowed else {}
    return json_response(payload, status, headers)


def unexpected_error_response(error: Exception) -> Response:
    """A bug or an outage: logged with its traceback, answered without one."""
    log.exception("grayrelease: unexpected error while serving a request", exc_info=error)
    payload = {
        "error": {
            "code": "INTERNAL_ERROR",
            "message": "the server failed to handle the request; the error was logged",
            "details": {},
        }
    }
    return json_response(payload, 500)


def query(
    request: Request, allowed: Collection[str], *, repeatable: Collection[str] = ()
) -> dict[str, Any]:
    """The query parameters, refusing unknown and repeated ones by name.

    Parameters in ``repeatable`` come back as lists; the others as single strings.
    """
    args = request.args
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValidationError(
            unknown[0],
            f"unknown query parameter; allowed: {', '.join(sorted(allowed))}",
            details={"unknown": unknown},
        )
    values: dict[str, Any] = {}
    for name in args:
        items = args.getlist(name)
        if name in repeatable:
            values[name] = items
        elif len(items) > 1:
            raise ValidationError(name, "is given more than once")
        else:
            values[name] = items[0]
    return values


def required_text(values: Mapping[str, Any], name: str) -> str:
    value = values.get(name)
    if value is None or not str(value).strip():
        raise ValidationError(name, "is required")
    return str(value).strip()


def int_param(values: Mapping[str, Any], name: str, default: int, *, maximum: int) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ValidationError(name, "must be a whole number", value=raw) from None
    if number < 1 or number > maximum:
        raise ValidationError(name, f"must be from 1 to {maximum}", value=number)
    return number


def json_body(request: Request, *, optional: bool = False) -> Any:
    """The request body as JSON; malformed JSON is a 400 naming ``body``."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        if optional:
            return {}
        raise ValidationError("body", "is required (a JSON object)")
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ValidationError("body", "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            "body", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ValidationError("body", "is nested too deeply") from None


def expected_version(request: Request) -> int | None:
    """``If-Match: "3"`` (the plan's ETag) as the version the client expects, or ``None``."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    text = header.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 9:
        raise ValidationError("If-Match", 'must be a plan ETag such as "3"', value=header)
    return int(text)
