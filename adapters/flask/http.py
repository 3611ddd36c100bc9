"""Reading requests and writing responses: strict parameters, JSON bodies, JSON errors."""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Collection, Mapping
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from flask import Request, Response, has_request_context
from flask import request as current_request
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
from grayrelease_core.errors import PayloadTooLarge, TooManyRequests, UnsupportedMediaType
from grayrelease_core.wire import MAX_KEYS, storable_text

log = logging.getLogger("grayrelease.http")

MAX_QUERY_FIELDS = MAX_KEYS + 56
"""Room for ``GET /config/current`` with a whole plan's keys; a bound against a query that
only costs parsing."""
MAX_PAGE = 1_000_000
MAX_PAGE_SIZE = 200
MAX_INSTANCE_ID = 256
"""Longest instance id or user id a config read accepts."""
MAX_ADDRESS = 64
"""Longest ``instanceIp`` a config read accepts."""
ETAG = r'(W/)?("[0-9]{1,9}"|[0-9]{1,9})'
"""An ``If-Match`` value: the plan's ETag ``"3"``, weak or bare; the OpenAPI document's pattern."""
WHOLE_NUMBER = re.compile(r"-?[0-9]+")

STATUS: dict[type[GrayReleaseError], int] = {
    ValidationError: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    InvalidTransition: 409,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    TooManyRequests: 429,
    BackendError: 502,
    ConfigurationError: 500,
}


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response; non-ASCII (Chinese plan names) is sent as UTF-8, not escaped."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body, status=status, headers=dict(headers or {}), mimetype="application/json")


def error_response(error: GrayReleaseError) -> Response:
    status = next((code for cls, code in STATUS.items() if isinstance(error, cls)), 500)
    headers = {"WWW-Authenticate": 'Bearer realm="grayrelease"'} if status == 401 else {}
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    return json_response({"error": error.to_dict()}, status, headers)


def http_error_response(error: HTTPException) -> Response:
    """Werkzeug's errors (unknown route, wrong method, huge body) in our error shape."""
    if isinstance(error, RequestEntityTooLarge):
        # Werkzeug stopped reading a chunked body at the limit set by limit_body.
        limit = current_request.max_content_length if has_request_context() else None
        return error_response(too_large(limit))
    if (error.code or 500) >= 500:
        # Flask reports an exception raised inside an error handler as InternalServerError.
        return unexpected_error_response(getattr(error, "original_exception", None) or error)
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

    Parameters in ``repeatable`` come back as lists; the others as single strings. Parsed
    straight from ``QUERY_STRING`` (as Werkzeug would, invalid UTF-8 replaced): building
    ``request.args`` costs a config read more than the whole rest of its checks.
    """
    raw = request.environ.get("QUERY_STRING", "")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise ValidationError("query", f"has more than {MAX_QUERY_FIELDS} parameters") from None
    values: dict[str, Any] = {}
    for name, value in pairs:
        storable_text(value, name)
        if name not in allowed:
            unknown = sorted({n for n, _ in pairs if n not in allowed})
            raise ValidationError(
                name,
                f"unknown query parameter; allowed: {', '.join(sorted(allowed))}",
                details={"unknown": unknown},
            )
        if name in repeatable:
            values.setdefault(name, []).append(value)
        elif name in values:
            raise ValidationError(name, "is given more than once")
        else:
            values[name] = value
    return values


def optional_text(
    values: Mapping[str, Any], name: str, *, maximum: int | None = None
) -> str | None:
    """A parameter of at most ``maximum`` characters as sent, trimmed; blank counts as absent."""
    value = values.get(name)
    if value is None:
        return None
    text = str(value)
    if maximum is not None and len(text) > maximum:
        raise ValidationError(name, f"must be at most {maximum} characters", value=len(text))
    if any(ch < " " for ch in text):
        raise ValidationError(name, "must not contain control characters")
    return text.strip() or None


def required_text(values: Mapping[str, Any], name: str, *, maximum: int | None = None) -> str:
    text = optional_text(values, name, maximum=maximum)
    if text is None:
        raise ValidationError(name, "is required")
    return text


def int_param(values: Mapping[str, Any], name: str, default: int, *, maximum: int) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    # int() would also take "+5", "1_0" and non-ASCII digits, which the document does not allow.
    if WHOLE_NUMBER.fullmatch(raw) is None:
        raise ValidationError(name, "must be a whole number", value=raw)
    try:
        number = int(raw)
    except ValueError:  # more digits than int() converts: out of range all the same
        number = maximum + 1
    if number < 1 or number > maximum:
        raise ValidationError(name, f"must be from 1 to {maximum}", value=number)
    return number


def bool_param(values: Mapping[str, Any], name: str, default: bool) -> bool:
    raw = values.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise ValidationError(name, "must be true or false", value=raw)
    return bool(raw == "true")


def limit_body(request: Request, limit: int) -> None:
    """Refuse a body over ``limit`` bytes before reading any of it, and make sure a body
    without a length (chunked) is not read past the limit either (Werkzeug then raises
    ``RequestEntityTooLarge``, answered as the same 413).

    Every blueprint calls this before its views, for every method: a body nobody reads
    still costs the server its transfer.
    """
    environ = request.environ
    length = environ.get("CONTENT_LENGTH")
    if not length and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return  # no body: a config read, the hot path, stops here
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    if not length and environ.get("wsgi.input_terminated") and "stream" not in vars(request):
        # A chunked body on a server that streams it (uvicorn): read one byte past the
        # limit, or a body just over it would be cut at the limit and read as if whole.
        # Then it is a body of known length, as waitress makes every chunked body.
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise too_large(limit)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        vars(request).pop("content_length", None)  # a cached None


def too_large(limit: int | None) -> PayloadTooLarge:
    stated = f"{limit} bytes" if limit is not None else "the configured size"
    return PayloadTooLarge(
        f"the request body is larger than {stated} (GRAYRELEASE_MAX_BODY_BYTES)",
        details={"field": "body", "limit": limit},
    )


def require_json(request: Request) -> None:
    """A 415 unless the body is declared ``application/json`` (a form or ``text/plain``
    body is what a cross-site page can make a browser send without asking)."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            "send the body as Content-Type: application/json",
            details={"contentType": request.mimetype or None},
        )


def json_body(request: Request, *, optional: bool = False) -> Any:
    """The request body as JSON; malformed JSON is a 400 naming ``body``."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        if optional:
            return {}
        raise ValidationError("body", "is required (a JSON object)")
    try:
        body = json.loads(
            raw.decode("utf-8-sig"), parse_constant=_no_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError:
        raise ValidationError("body", "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            "body", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ValidationError("body", "is nested too deeply") from None
    except ValueError:  # an integer longer than int() converts (sys.get_int_max_str_digits)
        raise ValidationError("body", "has a number with too many digits") from None
    try:
        # A lone surrogate escape ("\ud800") is valid JSON but no text: no store or reply takes it.
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValidationError("body", "has a \\u escape that is not a Unicode character") from None
    return body


def _no_constant(name: str) -> NoReturn:
    raise ValidationError("body", f"is not valid JSON ({name} is not a JSON number)")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValidationError("body", "has a number too large for a double", value=text[:40])
    return number


def expected_version(request: Request) -> int | None:
    """``If-Match: "3"`` (the plan's ETag) as the version the client expects, or ``None``."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    if re.fullmatch(ETAG, header) is None:
        raise ValidationError("If-Match", 'must be a plan ETag such as "3"', value=header)
    return int(header.removeprefix("W/").strip('"'))
