"""The REST API blueprint: plans, their lifecycle, their audit and instances, config reads."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from grayrelease_core import (
    Client,
    ConfigRef,
    GrayReleaseError,
    LogRecord,
    NotFound,
    Plan,
    PlanQuery,
    PlanStatus,
    Unauthenticated,
    ValidationError,
)
from grayrelease_core.access import ANY, Scope
from grayrelease_core.checkpoint import Checkpoint
from grayrelease_core.lifecycle import Action
from grayrelease_core.outbox import Notification
from grayrelease_core.store import LogQuery
from grayrelease_core.wire import (
    MAX_KEY,
    MAX_NAME,
    config_keys,
    instance_to_wire,
    log_to_wire,
    logs_to_csv,
    parse_time,
    plan_to_wire,
    storable_text,
    timestamp,
)

from .access_api import register_access_routes
from .address import client_address
from .caller import actor, state
from .http import (
    MAX_ADDRESS,
    MAX_INSTANCE_ID,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    bool_param,
    error_response,
    expected_version,
    http_error_response,
    int_param,
    json_body,
    json_response,
    limit_body,
    optional_text,
    query,
    required_text,
    unexpected_error_response,
)
from .identity import bearer_token, token_matches
from .openapi import openapi_document

CONFIG_VALUE_PARAMS = frozenset(
    {
        "appName",
        "environment",
        "groupName",
        "configKey",
        "instanceId",
        "instanceIp",
        "userId",
        "labels",
    }
)
CURRENT_VALUE_PARAMS = frozenset({"appName", "environment", "groupName", "configKey"})
PLAN_LIST_PARAMS = frozenset(
    {"appName", "environment", "groupName", "status", "search", "page", "pageSize"}
)
PAGE_PARAMS = frozenset({"page", "pageSize"})
NOTIFICATION_PARAMS = frozenset({"planId", "page", "pageSize"})
MESSAGE_PARAMS = frozenset({"page", "pageSize", "unread"})
LOG_PARAMS = frozenset(
    {
        "planId",
        "actor",
        "appName",
        "environment",
        "action",
        "since",
        "until",
        "page",
        "pageSize",
        "format",
    }
)
MAX_ACTION = 32
MESSAGE_ID = re.compile(r"[1-9][0-9]{0,17}")
METRICS_PARAMS = frozenset({"since", "until", "bucket"})
LIFECYCLE = ("start", "pause", "resume", "complete")
ANY_METHOD = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def plan_response(plan: Plan, status: int = 200) -> Response:
    """The plan, with what its checks can never decide (``warnings``, empty when all is well)."""
    warnings = [warning.to_wire() for warning in state().engine.plan_warnings(plan)]
    body = {**plan_to_wire(plan), "warnings": warnings}
    return json_response(body, status, {"ETag": f'"{plan.version}"'})


def page_response(page: Any, convert: Callable[[Any], dict[str, Any]]) -> Response:
    return json_response(
        {
            "items": [convert(item) for item in page.items],
            "total": page.total,
            "page": page.page,
            "pageSize": page.page_size,
        }
    )


def create_api_blueprint(name: str = "grayrelease_api") -> Blueprint:
    """The REST API as a blueprint; ``init_app`` registers it under ``GRAYRELEASE_URL_PREFIX``."""
    api = Blueprint(name, __name__)

    @api.url_value_preprocessor
    def refuse_unstorable_path(endpoint: str | None, values: dict[str, Any] | None) -> None:
        # Every id in a path, in one place: a NUL would reach the database as a 500.
        for name, value in (values or {}).items():
            if isinstance(value, str):  # named as the OpenAPI document names it: planId
                head, *rest = name.split("_")
                storable_text(value, head + "".join(part.title() for part in rest))

    @api.before_request
    def limit_request_body() -> None:
        limit_body(request, state().max_body_bytes)

    @api.before_request
    def answer_options() -> Response | None:
        # Flask's automatic answer would also list the methods of the catch-all rule below.
        if request.method != "OPTIONS":
            return None
        allowed = _methods_of(request.path)
        if not allowed:
            raise _no_endpoint()
        implied = ["HEAD"] if "GET" in allowed else []
        return Response(status=200, headers={"Allow": ", ".join([*allowed, *implied, "OPTIONS"])})

    @api.errorhandler(GrayReleaseError)
    def core_error(error: GrayReleaseError) -> Response:
        return error_response(error)

    @api.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return http_error_response(error)

    @api.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        return unexpected_error_response(error)

    @api.get("/openapi.json")
    def openapi() -> Response:
        query(request, ())
        return json_response(openapi_document(state().url_prefix))

    @api.get("/config/value")
    def config_value() -> Response:
        settings = state()
        if settings.client_tokens:
            token = bearer_token(request)
            if token is None or token_matches(token, settings.client_tokens) is None:
                raise Unauthenticated(
                    "config reads need a client token: Authorization: Bearer <token>"
                )
        params = query(request, CONFIG_VALUE_PARAMS, repeatable=("labels",))
        ref = ConfigRef(
            required_text(params, "appName", maximum=MAX_NAME),
            required_text(params, "environment", maximum=MAX_NAME),
            optional_text(params, "groupName", maximum=MAX_NAME)
            or settings.engine.settings.default_group,
            required_text(params, "configKey", maximum=MAX_KEY),
        )
        client = Client(
            instance_id=required_text(params, "instanceId", maximum=MAX_INSTANCE_ID),
            instance_ip=optional_text(params, "instanceIp", maximum=MAX_ADDRESS)
            or client_address(request, settings.trusted_proxies)
            or "",
            user_id=optional_text(params, "userId", maximum=MAX_INSTANCE_ID),
            labels=_labels(params.get("labels", [])),
        )
        value, gray, plan_id = settings.engine.resolve(ref, client)
        return json_response({"value": value, "gray": gray, "planId": plan_id})

    @api.get("/config/current")
    def current_values() -> Response:
        who = actor()
        params = query(request, CURRENT_VALUE_PARAMS, repeatable=("configKey",))
        engine = state().engine
        app_name = required_text(params, "appName", maximum=MAX_NAME)
        environment = required_text(params, "environment", maximum=MAX_NAME)
        group_name = optional_text(params, "groupName", maximum=MAX_NAME)
        keys = config_keys(params.get("configKey", []), "configKey")
        found = engine.current_values(
            app_name,
            environment,
            group_name or engine.settings.default_group,
            keys,
            actor=who,
        )
        return json_response(
            {
                "items": [
                    {"configKey": key, "value": value, "planId": plan_id}
                    for key, value, plan_id in found
                ]
            }
        )

    @api.post("/plan")
    def create_plan() -> Response:
        query(request, ())
        who = actor()
        return plan_response(state().engine.create_plan(json_body(request), actor=who), 201)

    @api.get("/plans")
    def list_plans() -> Response:
        who = actor()
        params = query(request, PLAN_LIST_PARAMS)
        status = params.get("status")
        if status is not None and status not in PlanStatus.__members__:
            raise ValidationError("status", f"must be one of {', '.join(PlanStatus)}", value=status)
        found = PlanQuery(
            app_name=optional_text(params, "appName", maximum=MAX_NAME),
            environment=optional_text(params, "environment", maximum=MAX_NAME),
            group_name=optional_text(params, "groupName", maximum=MAX_NAME),
            status=PlanStatus(status) if status else None,
            page=int_param(params, "page", 1, maximum=MAX_PAGE),
            page_size=int_param(params, "pageSize", 20, maximum=MAX_PAGE_SIZE),
            search=optional_text(params, "search", maximum=MAX_NAME),
        )
        engine = state().engine
        engine.authorize(who, Action.VIEW, scope=scope_of(found.app_name, found.environment))
        page = engine.list_plans(found)
        last = engine.last_actions([plan.id for plan in page.items])
        return page_response(
            page, lambda plan: {**plan_to_wire(plan), "lastAction": last_action(last.get(plan.id))}
        )

    @api.get("/plan/<plan_id>")
    def get_plan(plan_id: str) -> Response:
        query(request, ())
        return plan_response(viewed(plan_id))

    @api.put("/plan/<plan_id>")
    def update_plan(plan_id: str) -> Response:
        query(request, ())
        who = actor()
        plan = state().engine.update_plan(
            plan_id, json_body(request), actor=who, expected_version=expected_version(request)
        )
        return plan_response(plan)

    @api.delete("/plan/<plan_id>")
    def delete_plan(plan_id: str) -> Response:
        query(request, ())
        who = actor()
        state().engine.delete_plan(plan_id, actor=who, expected_version=expected_version(request))
        return Response(status=204)

    def lifecycle_view(action: str) -> Callable[[str], Response]:
        def view(plan_id: str) -> Response:
            query(request, ())
            who = actor()
            body = json_body(request, optional=True)
            if not isinstance(body, dict):
                raise ValidationError("body", "must be a JSON object (or empty)")
            if body:
                raise ValidationError(sorted(body)[0], f"unknown field; {action} takes no body")
            act = getattr(state().engine, action)
            return plan_response(
                act(plan_id, actor=who, expected_version=expected_version(request))
            )

        view.__name__ = f"{action}_plan"
        return view

    for action in LIFECYCLE:
        api.add_url_rule(
            f"/plan/<plan_id>/{action}", view_func=lifecycle_view(action), methods=["POST"]
        )

    @api.post("/plan/<plan_id>/rollback")
    def rollback_plan(plan_id: str) -> Response:
        query(request, ())
        who = actor()
        body = _object_body("rollback", ("reason", "force"))
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise ValidationError("reason", "must be a string", value=type(reason).__name__)
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise ValidationError("force", "must be true or false", value=force)
        plan = state().engine.rollback(
            plan_id,
            actor=who,
            reason=reason,
            force=force,
            expected_version=expected_version(request),
        )
        return plan_response(plan)

    @api.post("/plan/<plan_id>/promote")
    def promote_plan(plan_id: str) -> Response:
        query(request, ())
        who = actor()
        body = _object_body("promote", ("full",))
        plan = state().engine.promote(
            plan_id,
            actor=who,
            full=body.get("full", False),
            expected_version=expected_version(request),
        )
        return plan_response(plan)

    @api.post("/plan/<plan_id>/metrics")
    def push_metrics(plan_id: str) -> Response:
        query(request, ())
        who = actor()
        accepted = state().engine.push_metrics(plan_id, json_body(request), actor=who)
        return json_response({"accepted": accepted}, 202)

    @api.get("/plan/<plan_id>/metrics")
    def plan_metrics(plan_id: str) -> Response:
        params = query(request, METRICS_PARAMS)
        viewed(plan_id)
        since, until = params.get("since"), params.get("until")
        metrics = state().engine.plan_metrics(
            plan_id,
            since=parse_time(since, "since") if since is not None else None,
            until=parse_time(until, "until") if until is not None else None,
            bucket_seconds=int_param(params, "bucket", 60, maximum=86_400),
        )
        return json_response(metrics.to_wire())

    @api.get("/plan/<plan_id>/logs")
    def plan_logs(plan_id: str) -> Response:
        who = actor()
        params = query(request, PAGE_PARAMS)
        engine = state().engine
        page = engine.plan_logs(
            plan_id,
            int_param(params, "page", 1, maximum=MAX_PAGE),
            int_param(params, "pageSize", 50, maximum=MAX_PAGE_SIZE),
        )
        if page.total == 0:
            engine.get_plan(plan_id)  # a 404 unless the plan exists (deleted plans keep logs)
        first = page.items[0] if page.items else None
        # A deleted plan's rows still say where it was.
        where = scope_of(first.app_name, first.environment) if first else None
        engine.authorize(who, Action.VIEW, _plan_or_none(plan_id), where)
        return page_response(page, log_to_wire)

    @api.get("/plan/<plan_id>/instances")
    def plan_instances(plan_id: str) -> Response:
        params = query(request, PAGE_PARAMS)
        engine = state().engine
        viewed(plan_id)
        page = engine.plan_instances(
            plan_id,
            int_param(params, "page", 1, maximum=MAX_PAGE),
            int_param(params, "pageSize", 50, maximum=MAX_PAGE_SIZE),
        )
        return page_response(page, instance_to_wire)

    @api.get("/logs")
    def logs() -> Response:
        who = actor()
        params = query(request, LOG_PARAMS, repeatable=("action",))
        since, until = params.get("since"), params.get("until")
        actions = [_action(value) for value in params.get("action", [])]
        found = LogQuery(
            plan_id=optional_text(params, "planId", maximum=64),
            actor=optional_text(params, "actor", maximum=MAX_NAME),
            app_name=optional_text(params, "appName", maximum=MAX_NAME),
            environment=optional_text(params, "environment", maximum=MAX_NAME),
            actions=tuple(actions) if actions else None,
            since=parse_time(since, "since") if since is not None else None,
            until=parse_time(until, "until") if until is not None else None,
            page=int_param(params, "page", 1, maximum=MAX_PAGE),
            page_size=int_param(params, "pageSize", 50, maximum=MAX_PAGE_SIZE),
        )
        form = params.get("format", "json")
        if form not in ("json", "csv"):
            raise ValidationError("format", "must be json or csv", value=form)
        engine = state().engine
        if found.plan_id is not None and (plan := _plan_or_none(found.plan_id)) is not None:
            engine.authorize(who, Action.VIEW, plan)
        else:
            engine.authorize(who, Action.VIEW, scope=scope_of(found.app_name, found.environment))
        if form == "json":
            return page_response(engine.find_logs(found), log_to_wire)
        return Response(
            stream_with_context(logs_to_csv(engine.export_logs(found))),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="grayrelease-audit.csv"'},
        )

    @api.get("/audit/verify")
    def verify_audit() -> Response:
        who = actor()
        given = query(request, ("checkpoint",), repeatable=("checkpoint",))
        checkpoints = [
            Checkpoint.from_wire(_json_param(raw, f"checkpoint[{n}]"), f"checkpoint[{n}]")
            for n, raw in enumerate(given.get("checkpoint", []))
        ]
        engine = state().engine
        engine.authorize(who, Action.AUDIT)
        return json_response(engine.verify_audit(checkpoints).to_wire())

    @api.get("/notifications")
    def notifications() -> Response:
        who = actor()
        params = query(request, NOTIFICATION_PARAMS)
        plan_id = required_text(params, "planId")
        engine = state().engine
        plan = _plan_or_none(plan_id)
        # A deleted plan's notifications: for whoever may view everything.
        engine.authorize(who, Action.VIEW, plan, None if plan else scope_of(None, None))
        page = engine.plan_notifications(
            plan_id,
            int_param(params, "page", 1, maximum=MAX_PAGE),
            int_param(params, "pageSize", 50, maximum=MAX_PAGE_SIZE),
        )
        return page_response(page, Notification.to_wire)

    @api.get("/messages")
    def messages() -> Response:
        who = actor()
        params = query(request, MESSAGE_PARAMS)
        engine = state().engine
        page = engine.messages(
            who,
            int_param(params, "page", 1, maximum=MAX_PAGE),
            int_param(params, "pageSize", 20, maximum=MAX_PAGE_SIZE),
            unread_only=bool_param(params, "unread", False),
        )
        return json_response(
            {
                "items": [message.to_wire() for message in page.items],
                "total": page.total,
                "page": page.page,
                "pageSize": page.page_size,
                "unreadCount": engine.unread_messages(who),
            }
        )

    @api.get("/messages/unread-count")
    def unread_count() -> Response:
        who = actor()
        query(request, ())
        return json_response({"unreadCount": state().engine.unread_messages(who)})

    @api.post("/messages/<message_id>/read")
    def read_message(message_id: str) -> Response:
        who = actor()
        query(request, ())
        if MESSAGE_ID.fullmatch(message_id) is None:
            raise ValidationError("messageId", "must be a message's number", value=message_id)
        return json_response(state().engine.read_message(who, int(message_id)).to_wire())

    @api.post("/plan/<plan_id>/approve")
    def approve_plan(plan_id: str) -> Response:
        query(request, ())
        who = actor()
        reason = _reason(_object_body("approve", ("reason",)))
        row = state().engine.approve(plan_id, actor=who, reason=reason)
        return json_response(decision_to_wire(row))

    @api.post("/plan/<plan_id>/reject")
    def reject_plan(plan_id: str) -> Response:
        query(request, ())
        who = actor()
        reason = _reason(_object_body("reject", ("reason",)))
        row = state().engine.reject(plan_id, actor=who, reason=reason)
        return json_response(decision_to_wire(row))

    register_access_routes(api)

    @api.route("/<path:unknown>", methods=ANY_METHOD)
    def no_such_endpoint(unknown: str) -> Response:
        # Routing errors never reach a blueprint's handlers; this rule catches them instead.
        allowed = _methods_of(request.path)
        if allowed:
            raise MethodNotAllowed(valid_methods=allowed)
        raise _no_endpoint()

    return api


def _json_param(raw: str, field: str) -> Any:
    """A query parameter that holds a JSON value (a checkpoint as `audit checkpoint` prints
    it); malformed JSON is a 400 naming the parameter."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ValidationError(field, "must be a JSON object") from None


def _action(value: str) -> str:
    """An audit action to filter by: ASCII letters, digits and ``_``, as the document says
    (``_`` alone is a valid filter that matches nothing)."""
    text = value.strip()
    if not 0 < len(text) <= MAX_ACTION or not all(ch in ACTION_CHARACTERS for ch in text):
        raise ValidationError("action", "must be an audit action such as ROLLED_BACK", value=value)
    return text


ACTION_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_")


def viewed(plan_id: str) -> Plan:
    """The plan, once the caller may view it (a 404 before a 403: ids are not secrets)."""
    who = actor()
    engine = state().engine
    plan = engine.get_plan(plan_id)
    engine.authorize(who, Action.VIEW, plan)
    return plan


def _plan_or_none(plan_id: str) -> Plan | None:
    try:
        return state().engine.get_plan(plan_id)
    except NotFound:
        return None


def scope_of(app_name: str | None, environment: str | None) -> Scope:
    """The scope a list spans: a filter's app and environment, or all of them."""
    return Scope(app_name or ANY, environment or ANY)


def decision_to_wire(row: LogRecord) -> dict[str, Any]:
    details = row.details or {}
    return {
        "planId": row.plan_id,
        "decision": row.action,
        "stage": details.get("stage"),
        "version": details.get("version"),
        "actor": row.actor,
        "at": timestamp(row.at),
        "reason": row.message,
    }


def _reason(body: dict[str, Any]) -> str:
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ValidationError("reason", "must be a string", value=type(reason).__name__)
    return reason


def _object_body(action: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """An optional JSON object body with only ``fields``."""
    body = json_body(request, optional=True)
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object (or empty)")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ValidationError(unknown[0], f"unknown field; {action} takes {' and '.join(fields)}")
    return body


def _no_endpoint() -> NotFound:
    return NotFound(f"no endpoint {request.path}; see {state().url_prefix}/openapi.json")


def _methods_of(path: str) -> list[str]:
    """The methods that other rules of the app serve at ``path``."""
    urls = current_app.url_map.bind("")
    allowed = []
    for method in ANY_METHOD:
        try:
            endpoint, _ = urls.match(path, method=method)
        except HTTPException:
            continue
        if not str(endpoint).endswith(".no_such_endpoint"):
            allowed.append(method)
    return allowed


def last_action(row: LogRecord | None) -> dict[str, Any] | None:
    """The short form of a plan's last audit row that a plan list shows."""
    if row is None:
        return None
    return {"action": row.action, "actor": row.actor, "at": timestamp(row.at)}


def _labels(pairs: list[str]) -> dict[str, str]:
    """``labels=zone=hz-a&labels=version=2.1.0`` (or ``labels=zone=hz-a,version=2.1.0``)."""
    labels: dict[str, str] = {}
    for raw in pairs:
        for pair in raw.split(","):
            name, sep, value = pair.partition("=")
            if not sep or not name.strip():
                raise ValidationError("labels", "must be name=value pairs", value=pair)
            labels[name.strip()] = value.strip()
    return labels
