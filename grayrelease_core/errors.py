"""The one error hierarchy of grayrelease.

Every error carries a stable ``code`` (what a program switches on), a ``message`` a person
can act on, and ``details`` (JSON-safe facts such as the field name). The HTTP layer maps
the classes to status codes once; nothing else needs to know about HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class GrayReleaseError(Exception):
    """Base of every error the library raises on purpose."""

    code: ClassVar[str] = "GRAY_RELEASE_ERROR"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The error as the wire body's ``error`` object."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationError(GrayReleaseError):
    """Input (a request body, a rule, a setting) is malformed; ``details["field"]`` names it."""

    code: ClassVar[str] = "VALIDATION_ERROR"

    def __init__(
        self,
        field: str,
        problem: str,
        *,
        value: Any = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        merged: dict[str, Any] = {"field": field, "problem": problem}
        if value is not None:
            merged["value"] = value if _json_scalar(value) else repr(value)
        merged.update(details or {})
        super().__init__(f"{field}: {problem}", details=merged)
        self.field = field
        self.problem = problem


class NotFound(GrayReleaseError):
    """The plan (or other object) named does not exist."""

    code: ClassVar[str] = "NOT_FOUND"


class InvalidTransition(GrayReleaseError):
    """The action is not allowed in the plan's current state."""

    code: ClassVar[str] = "INVALID_TRANSITION"


class Conflict(GrayReleaseError):
    """The action collides with other state: a stale version, an overlapping plan, drift."""

    code: ClassVar[str] = "CONFLICT"


class Unauthenticated(GrayReleaseError):
    """No valid identity came with a request that needs one."""

    code: ClassVar[str] = "UNAUTHENTICATED"


class PermissionDenied(GrayReleaseError):
    """The actor may not perform the action."""

    code: ClassVar[str] = "PERMISSION_DENIED"


class BackendError(GrayReleaseError):
    """The config backend failed to read or publish a value."""

    code: ClassVar[str] = "BACKEND_ERROR"


class ConfigurationError(GrayReleaseError):
    """The installation itself is inconsistent (for example two plugins claim one name)."""

    code: ClassVar[str] = "CONFIGURATION_ERROR"


class PayloadTooLarge(GrayReleaseError):
    """A request body is over the size limit; refused before it is read."""

    code: ClassVar[str] = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(GrayReleaseError):
    """A request body is not of the content type the endpoint takes."""

    code: ClassVar[str] = "UNSUPPORTED_MEDIA_TYPE"


class TooManyRequests(GrayReleaseError):
    """The caller failed too often: asked to wait ``retry_after`` seconds before the next try."""

    code: ClassVar[str] = "TOO_MANY_REQUESTS"

    def __init__(
        self, message: str, *, retry_after: int, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, details={"retryAfter": retry_after, **(details or {})})
        self.retry_after = retry_after


def _json_scalar(value: Any) -> bool:
    return (
        isinstance(value, str | int | float | bool)
        or value is None
        or (
            isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value)
        )
    )
