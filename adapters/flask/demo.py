"""The demo config center behind ``grayrelease serve``: a tiny host with gray release mounted.

The host's own config API (``PUT``/``GET /api/config/item``) writes and reads the config
backend (``--backend``: the ``sql`` table by default, or ``memory``, or any backend plugin);
the gray-release REST API sits beside it under ``/api/gray-release``, and the
Apollo-compatible endpoint under ``/api/gray-release/apollo/{environment}``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException

from grayrelease_core import ConfigRef, GrayReleaseError, ValidationError
from grayrelease_core.access import Scope
from grayrelease_core.lifecycle import Action
from grayrelease_core.wire import MAX_KEY, config_value, name_field, storable_text

from . import caller
from .extension import GrayRelease
from .http import (
    error_response,
    http_error_response,
    json_body,
    json_response,
    limit_body,
    query,
    required_text,
    unexpected_error_response,
)

EXAMPLE_VALUES: dict[ConfigRef, str] = {
    ConfigRef("demo-app", "prod", "database", "database.url"): "jdbc:mysql://db-old:3306/demo",
    ConfigRef("demo-app", "prod", "database", "database.username"): "app",
    ConfigRef("user-service", "prod", "default", "database.maxPoolSize"): "20",
    ConfigRef("user-service", "prod", "default", "database.connectionTimeout"): "3000",
    ConfigRef("order-service", "prod", "default", "feature.newPayment.enabled"): "false",
    ConfigRef("cache-service", "prod", "default", "redis.cluster.nodes"): "10.0.0.1:6379",
}
"""Values the spec's scenarios start from."""

ITEM_FIELDS = ("appName", "environment", "groupName", "configKey")
ADMIN = "admin"


def _with_admin(settings: Mapping[str, Any]) -> dict[str, Any]:
    auth = settings.get("auth", {})
    if not isinstance(auth, Mapping):
        raise ValidationError("settings.auth", "must be an object")
    admins = auth.get("admins", [])
    if not isinstance(admins, list):
        raise ValidationError("settings.auth.admins", "must be a list of actors")
    return {
        **settings,
        "auth": {**auth, "admins": [*admins, ADMIN] if ADMIN not in admins else admins},
    }


def create_demo_app(
    database_url: str,
    admin_token: str,
    *,
    backend: str = "sql",
    settings: Mapping[str, Any] | None = None,
    load_examples: bool = False,
    cache_ttl: float | None = None,
    hit_flush_interval: float | None = None,
) -> Flask:
    """A Flask app with the extension on ``backend`` and a config API of its own.

    ``settings`` are more engine settings (``--settings``: channels, a backend's section);
    the admin is always among ``auth.admins``.

    ``cache_ttl`` and ``hit_flush_interval`` (seconds) override the extension's defaults.
    """
    app = Flask("grayrelease_demo")
    app.config.update(
        GRAYRELEASE_DATABASE_URL=database_url,
        GRAYRELEASE_BACKEND=backend,
        GRAYRELEASE_TOKENS={admin_token: ADMIN},
        # Roles on: the generated token's actor is the admin, who grants the others.
        GRAYRELEASE_SETTINGS=_with_admin(settings or {}),
        # One process: a key of its own is enough, and sessions end when it stops.
        GRAYRELEASE_SESSION_SECRET=secrets.token_urlsafe(32),
    )
    if cache_ttl is not None:
        app.config["GRAYRELEASE_CACHE_TTL"] = cache_ttl
    if hit_flush_interval is not None:
        app.config["GRAYRELEASE_HIT_FLUSH_INTERVAL"] = hit_flush_interval
    extension = GrayRelease(app)
    app.register_blueprint(_config_api(extension))
    if load_examples:
        values = extension.state(app).engine.backend
        for ref, value in EXAMPLE_VALUES.items():
            if values.get(ref) is None:
                values.publish(ref, value, actor="examples")
    return app


def _config_api(extension: GrayRelease) -> Blueprint:
    api = Blueprint("demo_config", __name__, url_prefix="/api/config")

    @api.errorhandler(GrayReleaseError)
    def core_error(error: GrayReleaseError) -> Response:
        return error_response(error)

    @api.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return http_error_response(error)

    @api.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        return unexpected_error_response(error)

    @api.before_request
    def limit_request_body() -> None:
        limit_body(request, extension.state().max_body_bytes)

    @api.get("/item")
    def get_item() -> Response:
        params = query(request, ITEM_FIELDS)
        app_name, environment, group_name, key = (required_text(params, n) for n in ITEM_FIELDS)
        ref = ConfigRef(app_name, environment, group_name, key)
        return json_response({"value": extension.engine.backend.get(ref)})

    @api.put("/item")
    def put_item() -> Response:
        query(request, ())
        engine = extension.engine
        actor = caller.actor()  # the API's own check: 401 with no identity, reserved names refused
        body = json_body(request)
        if not isinstance(body, dict):
            raise ValidationError("body", "must be a JSON object")
        unknown = sorted(set(body) - {*ITEM_FIELDS, "value"})
        if unknown:
            raise ValidationError(unknown[0], "unknown field")
        app_name, environment, group_name = (name_field(body.get(n), n) for n in ITEM_FIELDS[:3])
        key = body.get("configKey")
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
            raise ValidationError("configKey", f"must be a string of 1 to {MAX_KEY} characters")
        storable_text(key, "configKey")
        if "value" not in body:
            raise ValidationError("value", "is required")
        # Writing a value is an edit of that app's config: the editor role there, and a
        # token of write scope at least.
        engine.authorize(actor, Action.WRITE_CONFIG, scope=Scope(app_name, environment))
        ref = ConfigRef(app_name, environment, group_name, key.strip())
        value = config_value(body["value"], "value")
        engine.backend.publish(ref, value, actor=actor)
        return json_response({"value": value})

    return api
