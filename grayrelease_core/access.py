"""Who may do what: grants of roles per app and environment, API tokens, approval settings.

The rules that turn grants into yes or no live in the ``auth`` plugin
(``grayrelease_plugins.auth.roles``) on ``grayrelease_authorize``; the core keeps the grants
and tokens (in the plan store, audited like plan actions) and enforces a token's scope.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from .errors import ValidationError
from .lifecycle import Action
from .rules import rules_object, string_list
from .wire import name_field

ROLES = ("viewer", "editor", "releaser", "admin")
ANY = "*"
"""A grant's app or environment that covers them all."""
TOKEN_SCOPES = ("read", "write", "release")
SCOPE_ACTIONS: Mapping[str, frozenset[Action] | None] = {
    "read": frozenset({Action.VIEW}),
    "write": frozenset(
        {
            Action.VIEW,
            Action.CREATE,
            Action.UPDATE,
            Action.DELETE,
            Action.REPORT,
            Action.WRITE_CONFIG,
        }
    ),
    "release": None,
}
"""What a token of each scope may be used for (``None``: whatever its actor may do)."""
MAX_TOKEN_DAYS = 366
SYSTEM_ACTOR = "system"
"""The name the engine's own ticker acts under."""
RESERVED_ACTORS = frozenset({SYSTEM_ACTOR})
"""Names no token, grant, identity or session may carry (compared ignoring case), so that
nobody can pass for the engine in the audit trail or in a plugin's rules."""


@attrs.frozen
class Scope:
    """The app and environment an action touches (``*`` for all of them)."""

    app_name: str
    environment: str


@attrs.frozen
class Grant:
    """``actor`` holds ``role`` for ``app_name`` / ``environment`` (``*`` allowed)."""

    actor: str
    role: str
    app_name: str
    environment: str
    granted_by: str = ""
    granted_at: datetime | None = None
    id: int | None = None

    def covers(self, scope: Scope) -> bool:
        return self.app_name in (ANY, scope.app_name) and self.environment in (
            ANY,
            scope.environment,
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "actor": self.actor,
            "role": self.role,
            "appName": self.app_name,
            "environment": self.environment,
            "grantedBy": self.granted_by,
            "grantedAt": self.granted_at.isoformat() if self.granted_at else None,
        }


@attrs.frozen
class ApiToken:
    """A bearer token of ``actor``, limited to ``scope``, valid until ``expires_at``; only
    its SHA-256 is stored."""

    id: str
    actor: str
    scope: str
    token_hash: str = attrs.field(repr=False)
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    name: str = ""

    def valid_at(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "actor": self.actor,
            "scope": self.scope,
            "name": self.name,
            "createdBy": self.created_by,
            "createdAt": self.created_at.isoformat(),
            "expiresAt": self.expires_at.isoformat(),
            "revokedAt": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@attrs.frozen
class ConsoleSession:
    """A console login, kept in the store so that logging out ends it for every process: the
    signed cookie names the session, and a cookie whose session ended is refused."""

    id: str
    actor: str
    created_at: datetime
    expires_at: datetime
    token_id: str | None = None
    """The stored token logged in with (its scope then limits the session), or ``None``."""
    ended_at: datetime | None = None

    def active_at(self, now: datetime) -> bool:
        return self.ended_at is None and now < self.expires_at


def token_hash(token: str) -> str:
    """What is stored of a token: a token is random and long, so a plain SHA-256 is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def scope_allows(scope: str | None, action: Action) -> bool:
    """Whether a token of ``scope`` may be used for ``action`` (``None``: not a token)."""
    if scope is None:
        return True
    allowed = SCOPE_ACTIONS[scope]
    return allowed is None or action in allowed


@attrs.frozen
class AuthSettings:
    """The ``auth`` settings section. Present, it turns on roles: every action needs a grant."""

    enabled: bool = False
    admins: frozenset[str] = frozenset()
    """Actors who are admins everywhere (the first admin, before any grant exists)."""
    approval_environments: frozenset[str] = frozenset()
    """Environments where a plan needs another releaser's approval to start and complete."""


def parse_auth_settings(settings_sections: Mapping[str, Mapping[str, Any]]) -> AuthSettings:
    if "auth" not in settings_sections:
        return AuthSettings()
    field = "settings.auth"
    data = rules_object(
        settings_sections["auth"],
        allowed=("admins", "approval_environments"),
        required=(),
        field=field,
    )
    admins = string_list(data.get("admins", []), f"{field}.admins", allow_empty=True)
    environments = string_list(
        data.get("approval_environments", []),
        f"{field}.approval_environments",
        allow_empty=True,
    )
    return AuthSettings(True, frozenset(admins), frozenset(environments))


def check_role(value: Any, field: str = "role") -> str:
    if value not in ROLES:
        raise ValidationError(field, f"must be one of {', '.join(ROLES)}", value=value)
    return str(value)


def is_reserved(name: str) -> bool:
    """Whether ``name`` is one of the engine's own (``system``, in any case)."""
    return name.strip().casefold() in RESERVED_ACTORS


def actor_field(value: Any, field: str) -> str:
    """An actor name someone is given (a grant's, a token's): a name, and not a reserved one."""
    name = name_field(value, field)
    if is_reserved(name):
        raise ValidationError(field, f"{name!r} is reserved for the engine itself", value=name)
    return name
