"""Names in a config center built from a ref: templates such as ``{appName}-{environment}``.

Shared by the Nacos and Apollo settings, so both accept the same placeholders and word the
same errors.
"""

from __future__ import annotations

import string
from typing import Any

from grayrelease_core import ConfigRef, ValidationError

PLACEHOLDERS = frozenset({"appName", "environment", "groupName"})


def ref_template(value: Any, field: str, *, allow_empty: bool = False) -> str:
    """``value`` checked as a template naming only the known placeholders."""
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ValidationError(field, "must be a text, with {appName} / {environment} / {groupName}")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValidationError(field, f"is not a valid template: {exc}", value=value) from None
    unknown = sorted(names - PLACEHOLDERS)
    if unknown:
        raise ValidationError(
            field,
            f"names {{{unknown[0]}}}; the placeholders are {{appName}}, {{environment}} and "
            "{groupName}",
            value=value,
        )
    return value


def fill(template: str, ref: ConfigRef) -> str:
    """The template with ``ref``'s names put in."""
    return template.format_map(
        {"appName": ref.app_name, "environment": ref.environment, "groupName": ref.group_name}
    )
