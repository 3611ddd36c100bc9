"""The OpenAPI 3.1 document of the REST API, built from the same limits the code enforces."""

from __future__ import annotations

from functools import cache
from typing import Any

from grayrelease_core.access import MAX_TOKEN_DAYS, ROLES, TOKEN_SCOPES
from grayrelease_core.checks import DIRECTIONS, MAX_CHECKS, MAX_QUERY, MAX_WINDOW_MINUTES, MEASURES
from grayrelease_core.models import ItemStatus, PlanStatus
from grayrelease_core.routing import EVENT_SEVERITY, MAX_RECIPIENT, MAX_RECIPIENTS
from grayrelease_core.samples import MAX_SAMPLES
from grayrelease_core.wire import MAX_DESCRIPTION, MAX_KEY, MAX_KEYS, MAX_NAME, MAX_VALUE

from .http import ETAG, MAX_ADDRESS, MAX_INSTANCE_ID, MAX_PAGE, MAX_PAGE_SIZE

VERSION = "0.1.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _ref("Error")
ERRORS = {
    "400": _json(ERROR, "Invalid input; details.field names the field"),
    "401": _json(ERROR, "No valid identity (Authorization: Bearer <token>)"),
    "403": _json(ERROR, "The actor may not do this"),
    "413": _json(ERROR, "The body is over GRAYRELEASE_MAX_BODY_BYTES; details.limit says it"),
}
NOT_FOUND = {"404": _json(ERROR, "No such plan")}
CONFLICT = {"409": _json(ERROR, "Not allowed in the plan's state, or the plan changed meanwhile")}
BACKEND = {"502": _json(ERROR, "The config backend failed; nothing was changed")}

SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""What ``str.strip()`` removes, as a character class Python and ECMA-262 read alike.

Their ``\\s`` differ (U+001C is a space to Python only), and a pattern must mean to the fuzzer,
to clients and to the code the same thing.
"""
LINE = rf"^[^\x00-\x1f]*[^\x00-\x1f{SPACE}][^\x00-\x1f]*$"
"""One line with something besides spaces: names and keys are trimmed, blank ones refused."""
NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": LINE}
ONE_LINE = r"^[^\x00-\x1f]*$"
"""No control characters (query parameters end up in the database and in logs)."""
NO_NUL = r"^[^\x00]*$"
"""Free text: anything but NUL, which no supported database stores alike (refused with 400)."""
LABEL = f"[^=,\\x00]*[^=,\\x00{SPACE}][^=,\\x00]*=[^,\\x00]*"
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
CONFIG_VALUE = {"type": ["string", "number", "boolean"], "maxLength": MAX_VALUE}

PLAN_ID = {
    "name": "planId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "pattern": NO_NUL},
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The plan's ETag; the action fails with 409 if the plan changed since.",
    "schema": {"type": "string", "pattern": f"^{ETAG}$"},
}
PAGE = [
    {
        "name": "page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    },
    {
        "name": "pageSize",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    },
]


SUPPORTED_YEAR = "^(19[7-9][0-9]|[2-8][0-9]{3}|9000)-"
"""A time's year from 1970 to 9000 (``wire.MIN_YEAR`` and ``MAX_YEAR``)."""


def _page_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "total", "page", "pageSize"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "total": {"type": "integer", "minimum": 0},
            "page": {"type": "integer", "minimum": 1},
            "pageSize": {"type": "integer", "minimum": 1},
        },
    }


def _plan_fields() -> dict[str, Any]:
    return {
        "planName": NAME,
        "appName": NAME,
        "environment": NAME,
        "groupName": NAME,
        "configKeys": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_KEYS,
            "uniqueItems": True,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_KEY, "pattern": LINE},
        },
        "grayStrategy": {
            "type": "string",
            "minLength": 1,
            "description": "IP_WHITELIST, USER_WHITELIST, PERCENTAGE, CANARY, LABEL or a plugin's",
        },
        "grayRules": {"type": "object", "description": "The strategy's rules (docs/concepts.md)"},
        "description": {
            "type": ["string", "null"],
            "maxLength": MAX_DESCRIPTION,
            "pattern": NO_NUL,
        },
        "grayValues": {"type": "object", "additionalProperties": CONFIG_VALUE},
        "autoRollback": {
            "oneOf": [
                _ref("AutoRollback"),
                {"type": "array", "minItems": 1, "maxItems": MAX_CHECKS, "items": _ref("Check")},
                {"type": "null"},
            ],
            "description": "The checks the ticker judges the plan by (docs/judge.md)",
        },
        "notify": {
            "oneOf": [_ref("Notify"), {"type": "null"}],
            "description": "Who hears of this plan's events, over the installation's default "
            "(docs/notifications/README.md)",
        },
        "startAt": {
            "type": ["string", "null"],
            "format": "date-time",
            "pattern": SUPPORTED_YEAR,
            "description": "Start this DRAFT plan automatically at this time (with its zone; "
            "years 1970 to 9000). Setting it takes the releaser role (schedule-start)",
        },
    }


def _access_schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    grant_fields = {
        "actor": NAME,
        "role": {"type": "string", "enum": list(ROLES)},
        "appName": {**NAME, "description": "An app, or * for all"},
        "environment": {**NAME, "description": "An environment, or * for all"},
    }
    token = {
        "id": {"type": "string"},
        "actor": {"type": "string"},
        "scope": {"type": "string", "enum": list(TOKEN_SCOPES)},
        "name": {"type": "string"},
        "createdBy": {"type": "string"},
        "createdAt": time,
        "expiresAt": time,
        "revokedAt": {"type": ["string", "null"], "format": "date-time"},
    }
    return {
        "Approval": {
            "type": "object",
            "properties": {"reason": {"type": "string", "maxLength": 2000, "pattern": NO_NUL}},
            "additionalProperties": False,
        },
        "Rejection": {
            "type": "object",
            "required": ["reason"],
            "properties": {
                "reason": {
                    "type": "string",
                    "maxLength": 2000,
                    "pattern": f"^[^\\x00]*[^\\x00{SPACE}][^\\x00]*$",
                }
            },
            "additionalProperties": False,
        },
        "Decision": {
            "type": "object",
            "required": ["planId", "decision", "stage", "version", "actor", "at", "reason"],
            "properties": {
                "planId": {"type": "string"},
                "decision": {"type": "string", "enum": ["APPROVED", "REJECTED"]},
                "stage": {"type": "string", "enum": ["start", "complete"]},
                "version": {"type": "integer", "minimum": 1},
                "actor": {"type": "string"},
                "at": time,
                "reason": {"type": "string"},
            },
        },
        "GrantCreate": {
            "type": "object",
            "required": list(grant_fields),
            "properties": grant_fields,
            "additionalProperties": False,
        },
        "Grant": {
            "type": "object",
            "required": ["id", *grant_fields],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                **grant_fields,
                "grantedBy": {"type": "string"},
                "grantedAt": time,
            },
        },
        "GrantList": {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": _ref("Grant")}},
        },
        "TokenCreate": {
            "type": "object",
            "required": ["scope"],
            "properties": {
                "actor": {**NAME, "description": "Whose token (default: the caller's own)"},
                "scope": token["scope"],
                "days": {"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_DAYS},
                "name": {"type": "string", "maxLength": 128, "pattern": "^[^\\x00-\\x1f]*$"},
            },
            "additionalProperties": False,
        },
        "Token": {"type": "object", "required": ["id", "actor", "scope"], "properties": token},
        "TokenCreated": {
            "type": "object",
            "required": ["id", "token"],
            "properties": {
                **token,
                "token": {"type": "string", "description": "The secret, shown only now"},
            },
        },
        "Login": {
            "type": "object",
            "required": ["token"],
            "properties": {"token": {"type": "string", "minLength": 1}},
            "additionalProperties": False,
        },
        "Session": {
            "type": "object",
            "required": ["actor", "csrfToken"],
            "properties": {"actor": {"type": "string"}, "csrfToken": {"type": "string"}},
        },
        "TokenList": {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": _ref("Token")}},
        },
    }


def _notification_schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    severity = {"type": "string", "enum": ["info", "warning", "critical"]}
    names = {"type": "array", "uniqueItems": True, "items": {"type": "string"}}
    recipient = {"type": "string", "minLength": 1, "maxLength": MAX_RECIPIENT, "pattern": LINE}
    return {
        "Notify": {
            "type": "object",
            "description": "Channels must be configured ones, events known ones, recipients "
            "what each channel takes (addresses, phone numbers, user names).",
            "properties": {
                "channels": names,
                "events": {**names, "items": {"type": "string", "enum": list(EVENT_SEVERITY)}},
                "recipients": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "maxItems": MAX_RECIPIENTS,
                        "items": recipient,
                    },
                },
                "minSeverity": {"type": "object", "additionalProperties": severity},
            },
            "additionalProperties": False,
        },
        "Notification": {
            "type": "object",
            "required": ["id", "planId", "event", "channel", "state", "attempts", "history"],
            "properties": {
                "id": {"type": "string"},
                "planId": {"type": "string"},
                "event": {"type": "string"},
                "channel": {"type": "string"},
                "recipients": {"type": "array", "items": {"type": "string"}},
                "severity": severity,
                "title": {"type": "string"},
                "state": {
                    "type": "string",
                    "enum": ["PENDING", "SENDING", "DELIVERED", "FAILED"],
                },
                "attempts": {"type": "integer", "minimum": 0},
                "createdAt": time,
                "nextAttemptAt": nullable_time,
                "deliveredAt": nullable_time,
                "lastError": {"type": "string"},
                "history": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "number": {"type": "integer", "minimum": 1},
                            "at": time,
                            "delivered": {"type": "boolean"},
                            "retryable": {"type": "boolean"},
                            "error": {"type": "string"},
                            "durationMs": {"type": "integer", "minimum": 0},
                        },
                    },
                },
            },
        },
        "NotificationPage": _page_of("Notification"),
        "Message": {
            "type": "object",
            "required": ["id", "planId", "event", "title", "body", "read", "createdAt"],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "planId": {"type": "string"},
                "event": {"type": "string"},
                "severity": severity,
                "title": {"type": "string"},
                "body": {"type": "string", "description": "Markdown"},
                "link": {"type": ["string", "null"]},
                "createdAt": time,
                "readAt": nullable_time,
                "read": {"type": "boolean"},
            },
        },
        "MessagePage": {
            **_page_of("Message"),
            "required": ["items", "total", "page", "pageSize", "unreadCount"],
            "properties": {
                **_page_of("Message")["properties"],
                "unreadCount": {"type": "integer", "minimum": 0},
            },
        },
        "UnreadCount": {
            "type": "object",
            "required": ["unreadCount"],
            "properties": {"unreadCount": {"type": "integer", "minimum": 0}},
        },
    }


def _analysis_schemas() -> dict[str, Any]:
    number = {"type": "number", "minimum": -1e15, "maximum": 1e15}
    minutes = {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_MINUTES}
    query_text = {"type": "string", "minLength": 1, "maxLength": MAX_QUERY, "pattern": r"\S"}
    count = {"type": "number", "minimum": 0, "maximum": 1e15}
    sample = {
        "type": "object",
        "required": ["instanceId", "metric"],
        "anyOf": [{"required": ["value"]}, {"required": ["events", "total"]}],
        "properties": {
            "instanceId": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_INSTANCE_ID,
                "pattern": LINE,
            },
            "metric": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": LINE},
            "value": number,
            "gray": {
                "type": "boolean",
                "description": "Omit to count the instance as gray when it is recorded as such",
            },
            "timestamp": {
                "type": ["string", "number"],
                "description": "ISO 8601 with its zone, or Unix seconds; default now",
            },
            "events": {
                **count,
                "description": "Counted sample (rate checks): errors since the instance's "
                "last sample, at most total",
            },
            "total": {**count, "description": "Requests since the instance's last sample"},
        },
        "additionalProperties": False,
    }
    point = {
        "type": "object",
        "required": ["at", "mean", "count"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "mean": {"type": "number"},
            "count": {"type": "integer", "minimum": 1},
        },
    }
    return {
        "Check": {
            "type": "object",
            "required": ["metric"],
            "properties": {
                "metric": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"\S"},
                "source": {"type": "string", "minLength": 1},
                "threshold": {**number, "description": "Absolute: the gray mean's limit"},
                "maxIncrease": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 100,
                    "description": "Relative: allowed increase over the baseline (0.1 = 10%)",
                },
                "direction": {"type": "string", "enum": list(DIRECTIONS)},
                "window": minutes,
                "minSamples": {"type": "integer", "minimum": 1, "maximum": 10**6},
                "critical": {"type": "boolean"},
                "query": query_text,
                "baselineQuery": query_text,
                "totalQuery": {
                    **query_text,
                    "description": "Rate checks on a query source: the gray group's totals "
                    "per instance (query counts the events)",
                },
                "baselineTotalQuery": query_text,
                "measure": {
                    "type": "string",
                    "enum": list(MEASURES),
                    "description": "value: one number per instance, a rank test; rate: "
                    "events of totals (errors of requests), a sequential test on the counts",
                },
            },
            "additionalProperties": False,
        },
        "AutoRollback": {
            "type": "object",
            "required": ["checks"],
            "properties": {
                "checks": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_CHECKS,
                    "items": _ref("Check"),
                },
                "failureThreshold": {"type": "integer", "minimum": 1, "maximum": 1000},
                "interval": minutes,
                "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
            },
            "additionalProperties": False,
        },
        "Promote": {
            "type": "object",
            "properties": {"full": {"type": "boolean", "description": "Go to 100% at once"}},
            "additionalProperties": False,
        },
        "Samples": {
            "type": "object",
            "required": ["samples"],
            "properties": {
                "samples": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_SAMPLES,
                    "items": sample,
                }
            },
            "additionalProperties": False,
        },
        "Accepted": {
            "type": "object",
            "required": ["accepted"],
            "properties": {"accepted": {"type": "integer", "minimum": 1}},
        },
        "PlanMetrics": {
            "type": "object",
            "required": [
                "planId",
                "since",
                "until",
                "bucketSeconds",
                "series",
                "verdicts",
                "steps",
                "truncated",
            ],
            "properties": {
                "planId": {"type": "string"},
                "since": {"type": "string", "format": "date-time"},
                "until": {"type": "string", "format": "date-time"},
                "bucketSeconds": {"type": "integer"},
                "series": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["metric", "gray", "baseline"],
                        "properties": {
                            "metric": {"type": "string"},
                            "gray": {"type": "array", "items": point},
                            "baseline": {"type": "array", "items": point},
                        },
                    },
                },
                "verdicts": {"type": "array", "items": {"type": "object"}},
                "steps": {"type": "array", "items": {"type": "object"}},
                "truncated": {"type": "boolean"},
            },
        },
    }


def _schemas() -> dict[str, Any]:
    nullable_text = {"type": ["string", "null"]}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {"type": "object"},
                    },
                }
            },
        },
        "PlanCreate": {
            "type": "object",
            "required": [
                "planName",
                "appName",
                "environment",
                "configKeys",
                "grayStrategy",
                "grayRules",
            ],
            "properties": _plan_fields(),
            "additionalProperties": False,
        },
        "PlanUpdate": {
            "type": "object",
            "properties": _plan_fields(),
            "additionalProperties": False,
        },
        "Rollback": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "maxLength": 2000, "pattern": NO_NUL},
                "force": {
                    "type": "boolean",
                    "description": "Roll back a completed plan despite drift",
                },
            },
            "additionalProperties": False,
        },
        "Plan": {
            "type": "object",
            "required": [
                "planId",
                "planName",
                "appName",
                "environment",
                "groupName",
                "configKeys",
                "grayStrategy",
                "grayRules",
                "grayValues",
                "status",
                "progress",
                "items",
                "description",
                "createdBy",
                "updatedBy",
                "createdAt",
                "updatedAt",
                "startedAt",
                "finishedAt",
                "version",
            ],
            "properties": {
                "planId": {"type": "string"},
                "planName": {"type": "string"},
                "appName": {"type": "string"},
                "environment": {"type": "string"},
                "groupName": {"type": "string"},
                "configKeys": {"type": "array", "items": {"type": "string"}},
                "grayStrategy": {"type": "string"},
                "grayRules": {"type": "object"},
                "grayValues": {"type": "object", "additionalProperties": {"type": "string"}},
                "status": {"type": "string", "enum": [s.value for s in PlanStatus]},
                "progress": {
                    "type": "object",
                    "required": ["percentage", "step", "nextStepAt"],
                    "properties": {
                        "percentage": {"type": "number", "minimum": 0, "maximum": 100},
                        "step": {"type": "integer", "minimum": 0},
                        "nextStepAt": NULLABLE_TIME,
                        "analyses": {"type": "integer", "minimum": 0},
                        "failedAnalyses": {"type": "integer", "minimum": 0},
                        "lastAnalysisAt": NULLABLE_TIME,
                        "topReachedAt": NULLABLE_TIME,
                        "stageStartedAt": {
                            **NULLABLE_TIME,
                            "description": "When the current percentage took effect: a look "
                            "judges only samples taken since",
                        },
                        "lastPassedAt": {
                            **NULLABLE_TIME,
                            "description": "The last passed analysis: a plan with checks "
                            "steps or completes only after one in its current stage",
                        },
                    },
                },
                "warnings": {
                    "type": "array",
                    "description": "What the plan's checks can never decide (they would hold "
                    "it for good); empty when all is well",
                    "items": {
                        "type": "object",
                        "required": ["code", "field", "message", "params"],
                        "properties": {
                            "code": {"type": "string", "enum": ["FEW_CANARIES", "NO_COMPLETION"]},
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                            "params": {"type": "object"},
                        },
                    },
                },
                "autoRollback": {"oneOf": [_ref("AutoRollback"), {"type": "null"}]},
                "notify": {"oneOf": [_ref("Notify"), {"type": "null"}]},
                "startAt": NULLABLE_TIME,
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "configKey",
                            "grayValue",
                            "originalValue",
                            "originalPresent",
                            "status",
                        ],
                        "properties": {
                            "configKey": {"type": "string"},
                            "grayValue": nullable_text,
                            "originalValue": nullable_text,
                            "originalPresent": {"type": "boolean"},
                            "status": {"type": "string", "enum": [s.value for s in ItemStatus]},
                        },
                    },
                },
                "description": {"type": "string"},
                "createdBy": {"type": "string"},
                "updatedBy": {"type": "string"},
                "createdAt": NULLABLE_TIME,
                "updatedAt": NULLABLE_TIME,
                "startedAt": NULLABLE_TIME,
                "finishedAt": NULLABLE_TIME,
                "version": {"type": "integer", "minimum": 1},
                "pendingAction": {
                    "description": "A completion or rollback under way: recorded before it "
                    "writes to the config backend, cleared when it commits or is undone. "
                    "While it is open other actions on the plan get 409 CONFLICT, and "
                    "recovery finishes it if its process stopped (null: none)",
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["action", "actor", "since", "direction", "configKeys"],
                            "properties": {
                                "action": {"type": "string"},
                                "actor": {"type": "string"},
                                "since": {"type": "string", "format": "date-time"},
                                "direction": {"type": "string", "enum": ["FORWARD", "BACK"]},
                                "configKeys": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        {"type": "null"},
                    ],
                },
                "lastAction": {
                    "description": "In GET /plans only: the newest audit row that is not a "
                    "refused attempt (null: none)",
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["action", "actor", "at"],
                            "properties": {
                                "action": {"type": "string"},
                                "actor": {"type": "string"},
                                "at": {"type": "string", "format": "date-time"},
                            },
                        },
                        {"type": "null"},
                    ],
                },
            },
        },
        "PlanPage": _page_of("Plan"),
        "LogEntry": {
            "type": "object",
            "required": [
                "id",
                "planId",
                "action",
                "actor",
                "at",
                "statusBefore",
                "statusAfter",
                "message",
                "before",
                "after",
            ],
            "properties": {
                "id": {"type": "integer"},
                "seq": {"type": ["integer", "null"], "description": "Place in the audit chain"},
                "planId": {"type": "string"},
                "appName": {"type": ["string", "null"]},
                "environment": {"type": ["string", "null"]},
                "action": {"type": "string"},
                "actor": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
                "statusBefore": {"type": ["string", "null"]},
                "statusAfter": {"type": ["string", "null"]},
                "message": {"type": "string"},
                "details": {"type": ["object", "null"]},
                "before": {"type": ["object", "null"]},
                "after": {"type": ["object", "null"]},
            },
        },
        "LogPage": _page_of("LogEntry"),
        "AuditReport": {
            "type": "object",
            "required": ["ok", "rows", "checkedAt", "firstBreak"],
            "properties": {
                "ok": {"type": "boolean"},
                "rows": {"type": "integer", "minimum": 0},
                "checkedAt": {"type": "string", "format": "date-time"},
                "firstBreak": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["problem", "logId", "seq", "detail"],
                            "properties": {
                                "problem": {
                                    "type": "string",
                                    "enum": ["altered", "deleted", "inserted"],
                                },
                                "logId": {"type": ["integer", "null"]},
                                "seq": {"type": ["integer", "null"]},
                                "detail": {"type": "string"},
                            },
                        },
                    ]
                },
                "checkpoints": {
                    "type": "array",
                    "description": "Only when checkpoints were given: how each held",
                    "items": {
                        "type": "object",
                        "required": ["checkpoint", "ok", "problem", "detail"],
                        "properties": {
                            "checkpoint": _ref("Checkpoint"),
                            "ok": {"type": "boolean"},
                            "problem": {
                                "type": ["string", "null"],
                                "enum": ["deleted", "altered", "signature", None],
                            },
                            "detail": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Checkpoint": {
            "type": "object",
            "required": ["seq", "rowHash", "at", "signature"],
            "properties": {
                "seq": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                "rowHash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "at": {
                    "type": "string",
                    "format": "date-time",
                    "pattern": "^(19[7-9][0-9]|[2-8][0-9]{3})-",  # the years 1970-8999
                },
                "signature": {"type": ["string", "null"]},
            },
        },
        "Instance": {
            "type": "object",
            "required": ["planId", "instanceId", "instanceIp", "firstSeen", "lastSeen", "hits"],
            "properties": {
                "planId": {"type": "string"},
                "instanceId": {"type": "string"},
                "instanceIp": {"type": "string"},
                "firstSeen": {"type": "string", "format": "date-time"},
                "lastSeen": {"type": "string", "format": "date-time"},
                "hits": {"type": "integer", "minimum": 1},
            },
        },
        "InstancePage": _page_of("Instance"),
        **_analysis_schemas(),
        **_notification_schemas(),
        **_access_schemas(),
        "ConfigValue": {
            "type": "object",
            "required": ["value", "gray", "planId"],
            "properties": {
                "value": nullable_text,
                "gray": {"type": "boolean"},
                "planId": nullable_text,
            },
        },
        "CurrentValues": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["configKey", "value", "planId"],
                        "properties": {
                            "configKey": {"type": "string"},
                            "value": nullable_text,
                            "planId": nullable_text,
                        },
                    },
                }
            },
        },
    }


def _query(name: str, description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def _examples(**bodies: dict[str, Any]) -> dict[str, Any]:
    return {name: {"value": body} for name, body in bodies.items()}


PLAN_EXAMPLES = _examples(
    ipWhitelist={
        "planName": "数据库配置灰度发布",
        "appName": "demo-app",
        "environment": "prod",
        "groupName": "database",
        "configKeys": ["database.url", "database.username"],
        "grayStrategy": "IP_WHITELIST",
        "grayRules": {"ipWhitelist": ["192.168.1.100", "192.168.1.101"]},
        "description": "数据库配置优化",
        "grayValues": {
            "database.url": "jdbc:mysql://db-new:3306/demo",
            "database.username": "app2",
        },
    },
    percentage={
        "planName": "新功能开关灰度",
        "appName": "order-service",
        "environment": "prod",
        "configKeys": ["feature.newPayment.enabled"],
        "grayStrategy": "PERCENTAGE",
        "grayRules": {"percentage": 10},
        "grayValues": {"feature.newPayment.enabled": True},
    },
    canary={
        "planName": "缓存配置金丝雀发布",
        "appName": "cache-service",
        "environment": "prod",
        "configKeys": ["redis.cluster.nodes"],
        "grayStrategy": "CANARY",
        "grayRules": {
            "canary": {
                "canaryInstances": ["192.168.1.200"],
                "stepPercentage": 20,
                "stepInterval": 30,
            }
        },
        "grayValues": {"redis.cluster.nodes": "a:6379,b:6379"},
    },
)
"""The spec's three plans: request bodies a client can copy (and the fuzzer starts from)."""


def _path(name: str, pattern: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": pattern},
    }


def _decision(summary: str, body: str, required: bool) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [PLAN_ID],
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": _ref(body)}},
        },
        "responses": {
            "200": _json(_ref("Decision"), "The decision, as recorded in the audit trail"),
            **ERRORS,
            **NOT_FOUND,
            **CONFLICT,
        },
    }


def _plan_action(summary: str, *, body: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [PLAN_ID, IF_MATCH],
        "responses": {
            "200": _json(_ref("Plan"), "The plan after the action"),
            **ERRORS,
            **NOT_FOUND,
            **CONFLICT,
            **BACKEND,
        },
    }
    if body:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _paths() -> dict[str, Any]:
    # Query text is trimmed: a blank required parameter is missing, a blank optional one absent.
    text: dict[str, Any] = {"minLength": 1, "maxLength": MAX_NAME, "pattern": LINE}
    optional: dict[str, Any] = {"maxLength": MAX_NAME, "pattern": ONE_LINE}
    return {
        "/plan": {
            "post": {
                "summary": "Create a DRAFT plan (the spec's body, plus grayValues)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("PlanCreate"),
                            "examples": PLAN_EXAMPLES,
                        }
                    },
                },
                "responses": {"201": _json(_ref("Plan"), "The new plan"), **ERRORS},
            }
        },
        "/plans": {
            "get": {
                "summary": "List plans, newest first",
                "parameters": [
                    _query("appName", "Only this app (blank: any)", **optional),
                    _query("environment", "Only this environment (blank: any)", **optional),
                    _query("groupName", "Only this group (blank: any)", **optional),
                    _query("status", "Only this status", enum=[s.value for s in PlanStatus]),
                    _query(
                        "search",
                        "Only plans whose name, id, description, app, environment, group, "
                        "author or a config key contains this, ignoring case (blank: any)",
                        **optional,
                    ),
                    *PAGE,
                ],
                "responses": {"200": _json(_ref("PlanPage"), "A page of plans"), **ERRORS},
            }
        },
        "/plan/{planId}": {
            "get": {
                "summary": "One plan",
                "parameters": [PLAN_ID],
                "responses": {"200": _json(_ref("Plan"), "The plan"), **ERRORS, **NOT_FOUND},
            },
            "put": {
                "summary": "Change a DRAFT plan; fields not sent keep their values",
                "parameters": [PLAN_ID, IF_MATCH],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("PlanUpdate"),
                            "examples": _examples(
                                describe={"description": "数据库配置优化 v2"},
                                widen={"grayRules": {"ipWhitelist": ["192.168.1.0/24"]}},
                            ),
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("Plan"), "The changed plan"),
                    **ERRORS,
                    **NOT_FOUND,
                    **CONFLICT,
                },
            },
            "delete": {
                "summary": "Delete a DRAFT plan (its audit rows stay)",
                "parameters": [PLAN_ID, IF_MATCH],
                "responses": {"204": {"description": "Deleted"}, **ERRORS, **NOT_FOUND, **CONFLICT},
            },
        },
        "/plan/{planId}/start": {
            "post": _plan_action("DRAFT -> ACTIVE: snapshot originals, serve the gray set")
        },
        "/plan/{planId}/pause": {"post": _plan_action("ACTIVE -> PAUSED: no new instance joins")},
        "/plan/{planId}/resume": {"post": _plan_action("PAUSED -> ACTIVE")},
        "/plan/{planId}/complete": {
            "post": _plan_action("Publish the gray values to everyone, all or none")
        },
        "/plan/{planId}/rollback": {
            "post": _plan_action("Everyone gets the original values at once", body="Rollback")
        },
        "/plan/{planId}/promote": {
            "post": _plan_action(
                "Widen an ACTIVE plan now: one canary step, or full to 100%", body="Promote"
            )
        },
        "/plan/{planId}/metrics": {
            "post": {
                "summary": "Report metric samples of a live plan's instances (push source)",
                "parameters": [PLAN_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Samples")}},
                },
                "responses": {
                    "202": _json(_ref("Accepted"), "Stored"),
                    **ERRORS,
                    **NOT_FOUND,
                    **CONFLICT,
                },
            },
            "get": {
                "summary": "Gray and baseline series of pushed samples, and every verdict",
                "parameters": [
                    PLAN_ID,
                    _query(
                        "since",
                        "Start (ISO 8601 with zone; default 6 h back). Must come before until, "
                        "at most 31 days before it (400 otherwise)",
                        format="date-time",
                        pattern=SUPPORTED_YEAR,
                    ),
                    _query(
                        "until",
                        "End (ISO 8601 with zone; default now + 5 min)",
                        format="date-time",
                        pattern=SUPPORTED_YEAR,
                    ),
                    {
                        "name": "bucket",
                        "in": "query",
                        "description": "Seconds per point",
                        "schema": {"type": "integer", "minimum": 10, "maximum": 86_400},
                    },
                ],
                "responses": {
                    "200": _json(_ref("PlanMetrics"), "The charts' data"),
                    **ERRORS,
                    **NOT_FOUND,
                },
            },
        },
        "/plan/{planId}/logs": {
            "get": {
                "summary": "The plan's audit trail, oldest first",
                "parameters": [PLAN_ID, *PAGE],
                "responses": {
                    "200": _json(_ref("LogPage"), "A page of audit rows"),
                    **ERRORS,
                    **NOT_FOUND,
                },
            }
        },
        "/plan/{planId}/instances": {
            "get": {
                "summary": "Instances that received the plan's gray value",
                "parameters": [PLAN_ID, *PAGE],
                "responses": {
                    "200": _json(_ref("InstancePage"), "A page of instances"),
                    **ERRORS,
                    **NOT_FOUND,
                },
            }
        },
        "/logs": {
            "get": {
                "summary": "The whole audit trail, newest first; format=csv exports every "
                "matching row",
                "parameters": [
                    _query("planId", "One plan's rows", **{**optional, "maxLength": 64}),
                    _query("actor", "Who acted", **optional),
                    _query("appName", "The app", **optional),
                    _query("environment", "The environment", **optional),
                    {
                        "name": "action",
                        "in": "query",
                        "description": "Only these actions (repeat the parameter)",
                        "schema": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,32}$"},
                        },
                        "style": "form",
                        "explode": True,
                    },
                    _query(
                        "since",
                        "Rows at or after this time",
                        format="date-time",
                        pattern=SUPPORTED_YEAR,
                    ),
                    _query(
                        "until", "Rows before this time", format="date-time", pattern=SUPPORTED_YEAR
                    ),
                    *PAGE,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["json", "csv"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "A page of audit rows, or all of them as CSV",
                        "content": {
                            "application/json": {"schema": _ref("LogPage")},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **ERRORS,
                },
            }
        },
        "/audit/verify": {
            "get": {
                "summary": "Check the audit chain: the first row altered, deleted or inserted "
                "around the store, and the checkpoints given",
                "parameters": [
                    {
                        "name": "checkpoint",
                        "in": "query",
                        "required": False,
                        "description": "A checkpoint as `grayrelease audit checkpoint` prints "
                        "it, as JSON (repeatable): the report fails if the chain no longer "
                        "holds it",
                        "content": {"application/json": {"schema": _ref("Checkpoint")}},
                    }
                ],
                "responses": {"200": _json(_ref("AuditReport"), "The report"), **ERRORS},
            }
        },
        "/plan/{planId}/approve": {
            "post": _decision(
                "Approve the plan's start (a DRAFT) or its completion (live)", "Approval", False
            )
        },
        "/plan/{planId}/reject": {
            "post": _decision(
                "Reject the plan's start or completion, with a reason", "Rejection", True
            )
        },
        "/grants": {
            "get": {
                "summary": "Grants, filtered (takes the admin role in the filters' scope)",
                "parameters": [
                    _query("actor", "Whose grants", **optional),
                    _query("appName", "Only grants naming this app (or *)", **optional),
                    _query("environment", "Only grants naming this environment (or *)", **optional),
                ],
                "responses": {"200": _json(_ref("GrantList"), "The grants"), **ERRORS},
            },
            "post": {
                "summary": "Grant a role for an app and an environment",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("GrantCreate")}},
                },
                "responses": {
                    "201": _json(_ref("Grant"), "The grant"),
                    **ERRORS,
                    "409": _json(ERROR, "The actor already holds it"),
                },
            },
        },
        "/grants/{grantId}": {
            "delete": {
                "summary": "Revoke a grant",
                "parameters": [_path("grantId", "^[1-9][0-9]{0,17}$")],
                "responses": {
                    "204": {"description": "Revoked"},
                    **ERRORS,
                    "404": _json(ERROR, "No such grant"),
                },
            }
        },
        "/tokens": {
            "get": {
                "summary": "API tokens of an actor (the caller's own by default)",
                "parameters": [_query("actor", "Whose tokens", **optional)],
                "responses": {"200": _json(_ref("TokenList"), "The tokens"), **ERRORS},
            },
            "post": {
                "summary": "Make an API token; its secret is answered once and stored hashed",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("TokenCreate")}},
                },
                "responses": {"201": _json(_ref("TokenCreated"), "The token"), **ERRORS},
            },
        },
        "/tokens/{tokenId}": {
            "delete": {
                "summary": "Revoke an API token",
                "parameters": [_path("tokenId", "^[0-9a-f]{16}$")],
                "responses": {
                    "204": {"description": "Revoked"},
                    **ERRORS,
                    "404": _json(ERROR, "No such token"),
                },
            }
        },
        "/session": {
            "post": {
                "summary": "Log a browser in with a token: sets the HttpOnly session cookie",
                "security": [{}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Login")}},
                },
                "responses": {
                    "201": _json(_ref("Session"), "The actor and the CSRF token"),
                    "400": ERRORS["400"],
                    "401": ERRORS["401"],
                    "403": _json(
                        ERROR,
                        "Sent from another site (Origin or Sec-Fetch-Site); details.reason "
                        "says which",
                    ),
                    "413": ERRORS["413"],
                    "415": _json(ERROR, "The body is not declared application/json"),
                    "429": {
                        **_json(ERROR, "Too many wrong tokens from this address lately"),
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds to wait before the next try",
                                "schema": {"type": "integer", "minimum": 1},
                            }
                        },
                    },
                },
            },
            "get": {
                "summary": "The session's actor and CSRF token",
                "security": [{}],
                "responses": {"200": _json(_ref("Session"), "The session"), "401": ERRORS["401"]},
            },
            "delete": {
                "summary": "Log out: ends the session in the store (every copy of the cookie) "
                "and clears the cookie",
                "security": [{}],
                "responses": {"204": {"description": "Logged out"}},
            },
        },
        "/notifications": {
            "get": {
                "summary": "A plan's notifications, newest first, with their delivery state",
                "parameters": [
                    _query("planId", "The plan", required=True, **{**text, "maxLength": 64}),
                    *PAGE,
                ],
                "responses": {
                    "200": _json(_ref("NotificationPage"), "A page of notifications"),
                    **ERRORS,
                    **NOT_FOUND,
                },
            }
        },
        "/messages": {
            "get": {
                "summary": "The caller's in-system messages, unread first, then newest first",
                "parameters": [
                    *PAGE,
                    {
                        "name": "unread",
                        "in": "query",
                        "description": "Only unread messages",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "responses": {
                    "200": _json(_ref("MessagePage"), "A page of messages and the unread count"),
                    **ERRORS,
                },
            }
        },
        "/messages/unread-count": {
            "get": {
                "summary": "How many of the caller's messages are unread (the console's badge)",
                "responses": {"200": _json(_ref("UnreadCount"), "The count"), **ERRORS},
            }
        },
        "/messages/{messageId}/read": {
            "post": {
                "summary": "Mark one of the caller's messages read",
                "parameters": [
                    {
                        "name": "messageId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
                    }
                ],
                "responses": {
                    "200": _json(_ref("Message"), "The message, read"),
                    **ERRORS,
                    "404": _json(ERROR, "No such message of the caller's"),
                },
            }
        },
        "/config/value": {
            "get": {
                "summary": "The value this client instance gets: gray or original",
                "security": [{}, {"bearerAuth": []}],
                "parameters": [
                    _query("appName", "The app", required=True, **text),
                    _query("environment", "The environment", required=True, **text),
                    _query("groupName", "The group (blank: the default group)", **optional),
                    _query("configKey", "The key", required=True, **{**text, "maxLength": MAX_KEY}),
                    _query(
                        "instanceId",
                        "The asking instance",
                        required=True,
                        **{**text, "maxLength": MAX_INSTANCE_ID},
                    ),
                    _query(
                        "instanceIp",
                        "Its address (blank: the caller's)",
                        **{**optional, "maxLength": MAX_ADDRESS},
                    ),
                    _query(
                        "userId",
                        "The end user, for USER_WHITELIST and userId stickiness",
                        **{**optional, "maxLength": MAX_INSTANCE_ID},
                    ),
                    {
                        "name": "labels",
                        "in": "query",
                        "description": "name=value pairs, repeated or comma-separated",
                        "schema": {
                            "type": "array",
                            "items": {"type": "string", "pattern": f"^{LABEL}(,{LABEL})*$"},
                        },
                        "style": "form",
                        "explode": True,
                    },
                ],
                "responses": {
                    "200": _json(_ref("ConfigValue"), "The value to use"),
                    "400": ERRORS["400"],
                    "401": ERRORS["401"],
                },
            }
        },
        "/config/current": {
            "get": {
                "summary": "What the config backend holds for these keys now, and which live "
                "plan releases each: for operators, it records no instance and serves no "
                "gray value",
                "parameters": [
                    _query("appName", "The app", required=True, **text),
                    _query("environment", "The environment", required=True, **text),
                    _query("groupName", "The group (blank: the default group)", **optional),
                    {
                        "name": "configKey",
                        "in": "query",
                        "required": True,
                        "description": f"A key; repeat it for up to {MAX_KEYS} keys, each once",
                        "schema": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_KEYS,
                            "uniqueItems": True,
                            "items": {"type": "string", **text, "maxLength": MAX_KEY},
                        },
                        "style": "form",
                        "explode": True,
                    },
                ],
                "responses": {
                    "200": _json(_ref("CurrentValues"), "Each key's current value"),
                    **ERRORS,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [{}],
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
                    "400": ERRORS["400"],
                },
            }
        },
    }


@cache
def openapi_document(url_prefix: str) -> dict[str, Any]:
    """The document for an API mounted at ``url_prefix``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "grayrelease",
            "version": VERSION,
            "description": "Gray (canary) release of configuration. Errors: "
            '{"error": {"code", "message", "details"}}.',
        },
        "servers": [{"url": url_prefix or "/"}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
