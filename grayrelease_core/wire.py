"""The camelCase wire format of the spec, in one place: request bodies in, plans out."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from .errors import ValidationError
from .models import InstanceRecord, LogRecord, Plan

MAX_NAME = 128
MAX_KEY = 256
MAX_KEYS = 200
MAX_DESCRIPTION = 2000
MIN_YEAR, MAX_YEAR = 1970, 9000
"""Times a request may name (a plan's startAt, a sample's timestamp, a chart's range)."""
MAX_VALUE = 1024 * 1024
"""Longest accepted config value, in characters."""

EDITABLE_FIELDS = (
    "planName",
    "appName",
    "environment",
    "groupName",
    "configKeys",
    "grayStrategy",
    "grayRules",
    "description",
    "grayValues",
    "autoRollback",
    "notify",
    "startAt",
)
REQUIRED_ON_CREATE = (
    "planName",
    "appName",
    "environment",
    "configKeys",
    "grayStrategy",
    "grayRules",
)


@attrs.frozen
class PlanDraft:
    """A checked create or update body, still in the caller's terms; rules unvalidated."""

    fields: Mapping[str, Any]
    """Only the fields the body gave, converted to Python values."""


def parse_plan_body(body: Any, *, creating: bool) -> PlanDraft:
    """Check a ``POST /plan`` (``creating``) or ``PUT /plan/{id}`` body field by field.

    The strategy's rules are checked later by the strategy itself, since only it knows them.
    """
    if not isinstance(body, Mapping):
        raise ValidationError("body", "must be a JSON object", value=type(body).__name__)
    require_storable(body, "")
    unknown = sorted(str(key) for key in body if key not in EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(
            unknown[0],
            f"unknown field; allowed fields are {', '.join(EDITABLE_FIELDS)}",
            details={"unknown": unknown},
        )
    if creating:
        for name in REQUIRED_ON_CREATE:
            if name not in body:
                raise ValidationError(name, "is required")
    fields: dict[str, Any] = {}
    for name in ("planName", "appName", "environment", "groupName"):
        if name in body:
            fields[name] = name_field(body[name], name)
    if "configKeys" in body:
        fields["configKeys"] = config_keys(body["configKeys"])
    if "grayStrategy" in body:
        strategy = body["grayStrategy"]
        if not isinstance(strategy, str) or not strategy:
            raise ValidationError("grayStrategy", "must be a strategy name", value=strategy)
        fields["grayStrategy"] = strategy
    if "grayRules" in body:
        fields["grayRules"] = body["grayRules"]
    if "description" in body:
        fields["description"] = description(body["description"])
    if "grayValues" in body:
        fields["grayValues"] = gray_values(body["grayValues"])
    if "autoRollback" in body:
        fields["autoRollback"] = body["autoRollback"]  # checked by the engine with its sources
    if "notify" in body:
        fields["notify"] = body["notify"]  # checked by the engine with its channels
    if "startAt" in body:
        fields["startAt"] = (
            None if body["startAt"] is None else parse_time(body["startAt"], "startAt")
        )
    return PlanDraft(fields)


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 time that names its zone (``2026-11-26T08:00:00Z``, ``...+08:00``), in UTC."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValidationError(field, "must be an ISO 8601 time such as 2026-11-26T08:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(
            field, "must be an ISO 8601 time such as 2026-11-26T08:00:00Z", value=value
        ) from None
    if parsed.tzinfo is None:
        raise ValidationError(field, "must name its time zone (Z or +08:00)", value=value)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:  # far ends overflow datetime arithmetic
        raise ValidationError(field, f"must be in the years {MIN_YEAR} to {MAX_YEAR}", value=value)
    return parsed.astimezone(UTC)


def require_storable(value: Any, field: str) -> None:
    """Refuse text some supported database cannot store, naming where it is: a NUL character
    (PostgreSQL refuses it in text) or a lone surrogate (``"\\ud800"`` in JSON; no driver
    encodes it). Refused on every database alike, so a plan that works on SQLite works on
    PostgreSQL. Objects are walked: ``field`` ``""`` names their keys alone
    (``grayValues.database.url``)."""
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            storable_text(item, where or "body")
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                name = str(key)
                storable_text(name, where or "body")
                stack.append((f"{where}.{name}" if where else name, inner))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{n}]", inner) for n, inner in enumerate(item))


def storable_text(text: str, field: str) -> str:
    """``text`` if every supported database can store it, else a ``ValidationError``."""
    if "\x00" in text:
        raise ValidationError(field, "must not contain a NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            field, "contains text that is not valid Unicode (a lone surrogate)"
        ) from None
    return text


def name_field(value: Any, field: str) -> str:
    """A non-blank single-line name of at most ``MAX_NAME`` characters, trimmed.

    Length and characters are checked as sent, so that a JSON Schema can state the rule.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string", value=value)
    if len(value) > MAX_NAME:
        raise ValidationError(field, f"must be at most {MAX_NAME} characters", value=len(value))
    if any(ch < " " for ch in value):
        raise ValidationError(field, "must not contain control characters")
    return value.strip()


def config_keys(value: Any, field: str = "configKeys") -> tuple[str, ...]:
    """1 to ``MAX_KEYS`` distinct keys, each a non-blank line of at most ``MAX_KEY`` characters.
    ``field`` names them in errors (a query's repeated ``configKey``, say)."""
    if not isinstance(value, list):
        raise ValidationError(field, "must be a list of config keys", value=type(value).__name__)
    if not value:
        raise ValidationError(field, "must name at least one config key")
    if len(value) > MAX_KEYS:
        raise ValidationError(field, f"must name at most {MAX_KEYS} keys", value=len(value))
    keys: list[str] = []
    for index, key in enumerate(value):
        item = f"{field}[{index}]"
        if not isinstance(key, str) or not key.strip():
            raise ValidationError(item, "must be a non-empty string", value=key)
        if len(key) > MAX_KEY or any(ch < " " for ch in key):
            raise ValidationError(item, f"must be one line of at most {MAX_KEY} characters")
        key = key.strip()
        if key in keys:
            raise ValidationError(item, "is listed twice", value=key)
        keys.append(key)
    return tuple(keys)


def description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise ValidationError(
            "description", f"must be a string of at most {MAX_DESCRIPTION} characters"
        )
    return value


def gray_values(value: Any) -> dict[str, str]:
    """``{configKey: value}``; scalars become the text a config file would hold."""
    if not isinstance(value, Mapping):
        raise ValidationError(
            "grayValues", "must be an object of configKey: value", value=type(value).__name__
        )
    return {str(key): config_value(item, f"grayValues.{key}") for key, item in value.items()}


def config_value(value: Any, field: str) -> str:
    """A config value as text: strings as given, ``true``/``false``, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if not isinstance(value, str):
        raise ValidationError(
            field,
            "must be a string, number or boolean (config values are text)",
            value=type(value).__name__,
        )
    if len(value) > MAX_VALUE:
        raise ValidationError(field, f"must be at most {MAX_VALUE} characters", value=len(value))
    return storable_text(value, field)


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, or ``None``."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_to_wire(plan: Plan) -> dict[str, Any]:
    """The plan as the API answers it (and as the audit log records it)."""
    return {
        "planId": plan.id,
        "planName": plan.name,
        "appName": plan.app_name,
        "environment": plan.environment,
        "groupName": plan.group_name,
        "configKeys": list(plan.config_keys),
        "grayStrategy": plan.strategy,
        "grayRules": json.loads(json.dumps(plan.rules)),
        "grayValues": {
            item.config_key: item.gray_value for item in plan.items if item.gray_value is not None
        },
        "status": plan.status.value,
        "progress": {
            "percentage": plan.progress.percentage,
            "step": plan.progress.step,
            "nextStepAt": timestamp(plan.progress.next_step_at),
            "analyses": plan.progress.analyses,
            "failedAnalyses": plan.progress.failures,
            "lastAnalysisAt": timestamp(plan.progress.analyzed_at),
            "topReachedAt": timestamp(plan.progress.top_reached_at),
            "stageStartedAt": timestamp(plan.progress.stage_started_at),
            "lastPassedAt": timestamp(plan.progress.passed_at),
        },
        "autoRollback": plan.auto_rollback.to_wire() if plan.auto_rollback else None,
        "notify": plan.notify.to_wire() if plan.notify else None,
        "startAt": timestamp(plan.start_at),
        "items": [
            {
                "configKey": item.config_key,
                "grayValue": item.gray_value,
                "originalValue": item.original_value,
                "originalPresent": item.original_present,
                "status": item.status.value,
            }
            for item in plan.items
        ],
        "description": plan.description,
        "createdBy": plan.created_by,
        "updatedBy": plan.updated_by,
        "createdAt": timestamp(plan.created_at),
        "updatedAt": timestamp(plan.updated_at),
        "startedAt": timestamp(plan.started_at),
        "finishedAt": timestamp(plan.finished_at),
        "version": plan.version,
        "pendingAction": plan.intent.to_wire() if plan.intent is not None else None,
    }


def log_to_wire(log: LogRecord) -> dict[str, Any]:
    return {
        "id": log.id,
        "seq": log.seq,
        "planId": log.plan_id,
        "appName": log.app_name,
        "environment": log.environment,
        "action": log.action,
        "actor": log.actor,
        "at": timestamp(log.at),
        "statusBefore": log.status_before.value if log.status_before else None,
        "statusAfter": log.status_after.value if log.status_after else None,
        "message": log.message,
        "details": log.details,
        "before": log.before,
        "after": log.after,
    }


def instance_to_wire(record: InstanceRecord) -> dict[str, Any]:
    return {
        "planId": record.plan_id,
        "instanceId": record.instance_id,
        "instanceIp": record.instance_ip,
        "firstSeen": timestamp(record.first_seen),
        "lastSeen": timestamp(record.last_seen),
        "hits": record.hits,
    }


CSV_COLUMNS = (
    "id",
    "seq",
    "at",
    "actor",
    "action",
    "planId",
    "appName",
    "environment",
    "statusBefore",
    "statusAfter",
    "message",
    "details",
    "before",
    "after",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def logs_to_csv(logs: Iterable[LogRecord]) -> Iterator[str]:
    """The audit rows as CSV text, a header then one line per row (JSON in the structured
    columns). A cell that a spreadsheet would run as a formula starts with ``'``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: Iterable[Any]) -> str:
        writer.writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(CSV_COLUMNS)
    for log in logs:
        wire = log_to_wire(log)
        yield line(_cell(wire[name]) for name in CSV_COLUMNS)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
