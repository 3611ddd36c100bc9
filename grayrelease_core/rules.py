"""Checks shared by the strategies' rule validators; each error names the field it is about."""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection, Mapping
from typing import Any

from .errors import ValidationError

RULES = "grayRules"
STICKINESS_FIELDS = ("instanceId", "instanceIp", "userId")


def rules_object(
    rules: Any, allowed: Collection[str], required: Collection[str], field: str = RULES
) -> dict[str, Any]:
    """``rules`` (found at ``field``) as a dict: an object with known fields only."""
    if not isinstance(rules, Mapping):
        raise ValidationError(field, "must be a JSON object", value=type(rules).__name__)
    unknown = sorted(str(key) for key in rules if key not in allowed)
    if unknown:
        raise ValidationError(
            f"{field}.{unknown[0]}",
            f"unknown field; allowed fields are {', '.join(sorted(allowed))}",
            details={"unknown": unknown},
        )
    for name in required:
        if name not in rules:
            raise ValidationError(f"{field}.{name}", "is required")
    return dict(rules)


MAX_LIST = 10_000
"""Longest list a rule may hold (a longer whitelist belongs in CIDR blocks or labels)."""


def string_list(value: Any, field: str, *, allow_empty: bool = False) -> list[str]:
    """A list of distinct non-blank strings, trimmed, in the given order."""
    if not isinstance(value, list | tuple):
        raise ValidationError(field, "must be a list of strings", value=type(value).__name__)
    if not value and not allow_empty:
        raise ValidationError(field, "must not be empty")
    if len(value) > MAX_LIST:
        raise ValidationError(field, f"must list at most {MAX_LIST} entries", value=len(value))
    seen: dict[str, None] = {}
    for index, entry in enumerate(value):
        if not isinstance(entry, str) or not entry.strip():
            raise ValidationError(f"{field}[{index}]", "must be a non-empty string", value=entry)
        seen.setdefault(entry.strip(), None)
    return list(seen)


def percentage(value: Any, field: str, *, allow_zero: bool = True) -> float:
    """A number from 0 to 100 with at most two decimals (0.01% is one bucket)."""
    # Compared before float(): a 400-digit integer would overflow it; NaN fails the comparison.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ValidationError(field, "must be a number from 0 to 100", value=value)
    number = float(value)
    if not allow_zero and number == 0:
        raise ValidationError(field, "must be greater than 0", value=value)
    if abs(number * 100 - round(number * 100)) > 1e-6:
        raise ValidationError(field, "allows at most two decimals (0.01% steps)", value=value)
    return round(number, 2)


def positive_int(value: Any, field: str, *, maximum: int | None = None) -> int:
    """A whole number of at least 1 (and at most ``maximum``)."""
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:  # int() of inf or NaN would raise
        raise ValidationError(field, "must be a whole number", value=value)
    number = int(value)
    if number < 1:
        raise ValidationError(field, "must be at least 1", value=value)
    if maximum is not None and number > maximum:
        raise ValidationError(field, f"must be at most {maximum}", value=value)
    return number


def stickiness(value: Any, field: str) -> str:
    """Which client attribute is hashed: ``instanceId`` (default), ``instanceIp`` or ``userId``."""
    if value not in STICKINESS_FIELDS:
        raise ValidationError(field, f"must be one of {', '.join(STICKINESS_FIELDS)}", value=value)
    return str(value)


def salt(value: Any, field: str) -> str:
    """A non-empty hash salt of at most 128 characters."""
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ValidationError(field, "must be a string of 1 to 128 characters", value=value)
    return value


# --- plugin settings ------------------------------------------------------------------------


def seconds(value: Any, field: str, maximum: float) -> float:
    """A duration above 0 and at most ``maximum`` seconds (a timeout, a step)."""
    # Compared before float(): NaN fails the comparison, a huge integer never reaches float().
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= maximum:
        raise ValidationError(
            field, f"must be a number of seconds above 0 and at most {maximum:g}", value=value
        )
    return float(value)


def service_url(value: Any, field: str, example: str, *, path_query: bool = False) -> str:
    """The http(s) base URL of a service, without a trailing slash: a host, a valid port, no
    credentials (they belong in their own settings) and no fragment; no query unless
    ``path_query``."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, f"must be the service's URL, like {example}")
    url = value.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(field, "must be an http or https URL with a host", value=value)
    if parts.username is not None or parts.password is not None:
        raise ValidationError(field, "must not hold a user name or password")
    if parts.fragment or (parts.query and not path_query):
        raise ValidationError(field, "must not have a query or fragment", value=value)
    try:
        parts.port  # noqa: B018 - a bad port raises only when read
    except ValueError as exc:
        raise ValidationError(field, "has an invalid port", value=value) from exc
    return url
