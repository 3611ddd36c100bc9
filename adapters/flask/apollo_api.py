"""An Apollo-compatible config service, so an unmodified Apollo client gets gray release.

Point a client's ``apollo.config-service`` (or ``apollo.meta``) at
``{url prefix}/apollo/{environment}``: it reads its namespaces from here as it would from
Apollo's config service, and each answer is the namespace's values from the config backend
with the gray values of the live plans laid over them, for the clients those plans select, by
IP, label, percentage or canary step. The client's ``ip`` is its instance id and address,
its ``label`` the label ``apollo.label``; Apollo clients send no user id.

A namespace's ``notificationId`` is the backend's revision of it plus the store's generation:
both only grow, so it grows whenever anything a client might see changes (Apollo clients
compare ids and keep the greater), and every process of the host computes the same one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
import urllib.parse
from collections.abc import Mapping

from flask import Blueprint, Response, request
from grayrelease_adapters.apollo.client import access_signature
from werkzeug.exceptions import HTTPException

from grayrelease_core import Client, ConfigurationError, GrayReleaseError, ValidationError
from grayrelease_core.errors import Unauthenticated

from .caller import state
from .http import (
    error_response,
    http_error_response,
    json_response,
    limit_body,
    optional_text,
    required_text,
    unexpected_error_response,
)
from .state import AppState

APOLLO_LABEL = "apollo.label"
"""The label an Apollo client's ``label`` parameter becomes, for LABEL plans."""
MAX_NAME = 128
MAX_NOTIFICATIONS = 100
"""Namespaces one long poll may list."""
RECHECK = 1.0
"""Seconds between looks at the plans while a long poll is held."""
SIGNATURE_SKEW_MS = 60_000
"""How far a signed request's timestamp may be from now (Apollo's own bound)."""
PROPERTIES = ".properties"


def create_apollo_blueprint() -> Blueprint:
    """The config service's endpoints; ``init_app`` mounts them at ``{url prefix}/apollo``.

    A blueprint of its own: this is Apollo's protocol, not the REST API, so it is not in the
    OpenAPI document.
    """
    api = Blueprint("grayrelease_apollo", __name__)
    api.register_error_handler(GrayReleaseError, error_response)
    api.register_error_handler(HTTPException, http_error_response)
    api.register_error_handler(Exception, unexpected_error_response)

    @api.before_request
    def limit_request_body() -> None:
        limit_body(request, state().max_body_bytes)

    @api.get("/<environment>/configs/<app_id>/<cluster>/<namespace>")
    def apollo_config(environment: str, app_id: str, cluster: str, namespace: str) -> Response:
        settings = state()
        params = _known(("releaseKey", "ip", "label"))
        view = _view(settings, environment, app_id, namespace, params)
        if view is None:
            return _not_found(app_id, cluster, namespace)
        release_key = _release_key(view)
        if params.get("releaseKey") == release_key:
            return Response(status=304)
        return json_response(
            {
                "appId": app_id,
                "cluster": cluster,
                "namespaceName": namespace,
                "configurations": view,
                "releaseKey": release_key,
            }
        )

    @api.get("/<environment>/configfiles/json/<app_id>/<cluster>/<namespace>")
    def apollo_config_json(environment: str, app_id: str, cluster: str, namespace: str) -> Response:
        settings = state()
        params = _known(("ip", "label"))
        view = _view(settings, environment, app_id, namespace, params)
        if view is None:
            return _not_found(app_id, cluster, namespace)
        return json_response(view)

    @api.get("/<environment>/notifications/v2")
    def apollo_notifications(environment: str) -> Response:
        settings = state()
        params = _known(("appId", "cluster", "notifications"))
        app_id = required_text(params, "appId", maximum=MAX_NAME)
        required_text(params, "cluster", maximum=MAX_NAME)
        _authenticate(settings, app_id)
        asked = _asked(params)
        deadline = time.monotonic() + settings.apollo_hold
        while True:
            changed = []
            for name, client_id in asked.items():
                current = _notification_id(settings, environment, app_id, name)
                if current > client_id:  # as Apollo: only a newer id is news
                    changed.append(
                        {
                            "namespaceName": name,
                            "notificationId": current,
                            "messages": {
                                "details": {f"{app_id}+{params['cluster']}+{name}": current}
                            },
                        }
                    )
            if changed:
                return json_response(changed)
            left = deadline - time.monotonic()
            if left <= 0:
                return Response(status=304)
            time.sleep(min(RECHECK, left))  # the sync thread brings other processes' changes

    @api.get("/<environment>/services/config")
    def apollo_meta(environment: str) -> Response:
        home = request.base_url.rsplit("/services/config", 1)[0] + "/"
        return json_response(
            [{"appName": "APOLLO-CONFIGSERVICE", "instanceId": "grayrelease", "homepageUrl": home}]
        )

    return api


def _known(names: tuple[str, ...]) -> dict[str, str]:
    """The parameters this endpoint reads. Others (``dataCenter``, ``messages``, what a newer
    client adds) are ignored, as Apollo's config service ignores them."""
    return {name: request.args[name] for name in names if name in request.args}


def _view(
    settings: AppState,
    environment: str,
    app_id: str,
    namespace: str,
    params: Mapping[str, str],
) -> dict[str, str] | None:
    """What this client sees of the namespace; ``None`` when there is nothing at all."""
    _authenticate(settings, app_id)
    group = _namespace(namespace)
    base, _revision = _group_values(settings, environment, app_id, group)
    plans = settings.engine.live_plans_in(app_id, environment, group)
    if not base and not plans:
        return None
    view = dict(base)
    client = _client(params)
    if client is not None:
        for plan in plans:
            for ref in plan.refs:
                resolution = settings.engine.resolve(ref, client)
                if resolution.gray and resolution.value is not None:
                    view[ref.config_key] = resolution.value
    return view


def _client(params: Mapping[str, str]) -> Client | None:
    """The asking instance, known by its address; without one, nobody is in a gray set."""
    ip = optional_text(params, "ip", maximum=64)
    if ip is None:
        return None
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise ValidationError("ip", "must be an IPv4 or IPv6 address", value=ip) from None
    label = optional_text(params, "label", maximum=MAX_NAME)
    return Client(instance_id=ip, instance_ip=ip, labels={APOLLO_LABEL: label} if label else {})


def _group_values(
    settings: AppState, environment: str, app_id: str, group: str
) -> tuple[Mapping[str, str], int]:
    backend = settings.engine.backend
    values_of = getattr(backend, "group_values", None)
    if values_of is None:
        raise ConfigurationError(
            f"the {backend.name} backend cannot list a namespace, so it cannot serve Apollo "
            "clients; the apollo and memory backends can"
        )
    values, revision = values_of(app_id, environment, group)
    return values, int(revision)


def _notification_id(settings: AppState, environment: str, app_id: str, namespace: str) -> int:
    _base, revision = _group_values(settings, environment, app_id, _namespace(namespace))
    return revision + settings.engine.generation


def _release_key(view: Mapping[str, str]) -> str:
    text = json.dumps(view, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _asked(params: Mapping[str, str]) -> dict[str, int]:
    raw = required_text(params, "notifications")
    try:
        listed = json.loads(raw)
    except ValueError:
        raise ValidationError("notifications", "must be a JSON list", value=raw[:100]) from None
    if not isinstance(listed, list) or not 0 < len(listed) <= MAX_NOTIFICATIONS:
        raise ValidationError(
            "notifications", f"must list 1 to {MAX_NOTIFICATIONS} namespaces", value=raw[:100]
        )
    asked = {}
    for entry in listed:
        name = entry.get("namespaceName") if isinstance(entry, dict) else None
        notification_id = entry.get("notificationId") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise ValidationError("notifications", "each entry needs a namespaceName")
        if isinstance(notification_id, bool) or not isinstance(notification_id, int):
            raise ValidationError("notifications", "each entry needs a whole notificationId")
        asked[name] = notification_id
    return asked


def _namespace(name: str) -> str:
    """Apollo drops the ``.properties`` of a properties namespace's name."""
    if name.lower().endswith(PROPERTIES):
        return name[: -len(PROPERTIES)]
    return name


def _authenticate(settings: AppState, app_id: str) -> None:
    """Apollo's access keys: a signed request for an app that has one. Where config reads
    need a client token, an app without an access key cannot be read here."""
    secret = settings.apollo_access_keys.get(app_id)
    if secret is None:
        if settings.client_tokens:
            raise Unauthenticated(
                f"config reads need credentials; give {app_id} an Apollo access key "
                "(GRAYRELEASE_APOLLO_ACCESS_KEYS)"
            )
        return
    timestamp = request.headers.get("Timestamp", "")
    # Apollo's wall-clock bound: the client stamps with its clock, as Apollo's server checks.
    now_ms = int(time.time() * 1000)
    if not timestamp.isdigit() or abs(now_ms - int(timestamp)) > SIGNATURE_SKEW_MS:
        raise Unauthenticated("the request's Timestamp is missing or too far from now")
    # What the client signed: the raw path of the URL it asked for, and its query.
    path = urllib.parse.quote(request.script_root + request.path)
    query_string = request.query_string.decode("latin-1")
    signed = f"{path}?{query_string}" if query_string else path
    expected = f"Apollo {app_id}:{access_signature(secret, timestamp, signed)}"
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthenticated(f"the request is not signed with {app_id}'s access key")


def _not_found(app_id: str, cluster: str, namespace: str) -> Response:
    return json_response(
        {
            "status": 404,
            "message": f"Could not load config for {app_id}+{cluster}+{namespace}",
        },
        404,
    )
