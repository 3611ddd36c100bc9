"""The OpenAPI 3.1 document of the REST API, built from the same limits the code enforces."""

from __future__ import annotations

from functools import cache
from typing import Any

from grayrelease_core.models import ItemStatus, PlanStatus
from grayrelease_core.wire import MAX_DESCRIPTION, MAX_KEY, MAX_KEYS, MAX_NAME, MAX_VALUE

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
}
NOT_FOUND = {"404": _json(ERROR, "No such plan")}
CONFLICT = {"409": _json(ERROR, "Not allowed in the plan's state, or the plan changed meanwhile")}
BACKEND = {"502": _json(ERROR, "The config backend failed; nothing was changed")}

NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
CONFIG_VALUE = {"type": ["string", "number", "boolean"], "maxLength": MAX_VALUE}

PLAN_ID = {
    "name": "planId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The plan's ETag; the action fails with 409 if the plan changed since.",
    "schema": {"type": "string", "pattern": '^(W/)?"?[0-9]{1,9}"?$'},
}
PAGE = [
    {
        "name": "page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000000},
    },
    {
        "name": "pageSize",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
    },
]


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
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_KEY},
        },
        "grayStrategy": {
            "type": "string",
            "description": "IP_WHITELIST, USER_WHITELIST, PERCENTAGE, CANARY, LABEL or a plugin's",
        },
        "grayRules": {"type": "object", "description": "The strategy's rules (docs/concepts.md)"},
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
        "grayValues": {"type": "object", "additionalProperties": CONFIG_VALUE},
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
                "reason": {"type": "string", "maxLength": 2000},
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
                    },
                },
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
                "planId": {"type": "string"},
                "action": {"type": "string"},
                "actor": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
                "statusBefore": {"type": ["string", "null"]},
                "statusAfter": {"type": ["string", "null"]},
                "message": {"type": "string"},
                "before": {"type": ["object", "null"]},
                "after": {"type": ["object", "null"]},
            },
        },
        "LogPage": _page_of("LogEntry"),
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
        "ConfigValue": {
            "type": "object",
            "required": ["value", "gray", "planId"],
            "properties": {
                "value": nullable_text,
                "gray": {"type": "boolean"},
                "planId": nullable_text,
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
    text: dict[str, Any] = {"minLength": 1, "maxLength": MAX_NAME}
    return {
        "/plan": {
            "post": {
                "summary": "Create a DRAFT plan (the spec's body, plus grayValues)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("PlanCreate")}},
                },
                "responses": {"201": _json(_ref("Plan"), "The new plan"), **ERRORS},
            }
        },
        "/plans": {
            "get": {
                "summary": "List plans, newest first",
                "parameters": [
                    _query("appName", "Only this app", **text),
                    _query("environment", "Only this environment", **text),
                    _query("groupName", "Only this group", **text),
                    _query("status", "Only this status", enum=[s.value for s in PlanStatus]),
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
                    "content": {"application/json": {"schema": _ref("PlanUpdate")}},
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
        "/config/value": {
            "get": {
                "summary": "The value this client instance gets: gray or original",
                "security": [{}, {"bearerAuth": []}],
                "parameters": [
                    _query("appName", "The app", required=True, **text),
                    _query("environment", "The environment", required=True, **text),
                    _query("groupName", "The group (default: the default group)", **text),
                    _query("configKey", "The key", required=True, minLength=1, maxLength=MAX_KEY),
                    _query(
                        "instanceId",
                        "The asking instance",
                        required=True,
                        minLength=1,
                        maxLength=256,
                    ),
                    _query("instanceIp", "Its address (default: the caller's)", maxLength=64),
                    _query(
                        "userId",
                        "The end user, for USER_WHITELIST and userId stickiness",
                        maxLength=256,
                    ),
                    {
                        "name": "labels",
                        "in": "query",
                        "description": "name=value pairs, repeated or comma-separated",
                        "schema": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[^=,]+=[^,]*$"},
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
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [{}],
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
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
