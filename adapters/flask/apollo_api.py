"""An Apollo-compatible config service, so an unmodified Apollo client gets gray release.

Point a client's ``apollo.config-service`` (or ``apollo.meta``) at
``{url prefix}/apollo/{environment}`` (or at ``GRAYRELEASE_APOLLO_PREFIX``; with
``GRAYRELEASE_APOLLO_ENVIRONMENT`` the endpoint serves one environment at that root with no
environment in the path, as Apollo's config service does): it reads its namespaces from here
as it would from Apollo's config service, and each answer is the namespace's values from the
config backend with the gray values of the live plans laid over them, for the clients those
plans select, by IP, label, percentage or canary step. The client's ``ip`` is its instance
id, and its address when it is one; without an ``ip``, or with one that is not an address
(a host name), the caller's address is used for IP rules, as Apollo does (through the
proxies in ``GRAYRELEASE_TRUSTED_PROXIES``). Its ``label`` is the label ``apollo.label``;
Apollo clients send no user id.

A held notification poll sleeps in its worker thread under a plain WSGI server; under
:mod:`grayrelease_adapters.flask.asgi` it holds no thread (see there).

A namespace's ``notificationId`` is the backend's revision of it plus the store's generation:
both only grow, so it grows whenever anything a client might see changes (Apollo clients
compare ids and keep the greater), and every process of the host computes the same one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping

from flask import Blueprint, Response, request
from grayrelease_adapters.apollo.client import access_signature
from werkzeug.exceptions import HTTPException

from grayrelease_core import Client, ConfigurationError, GrayReleaseError, ValidationError
from grayrelease_core.addresses import is_address
from grayrelease_core.errors import Unauthenticated

from .address import client_address
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
"""Namespaces one long poll may list (Apollo sets no bound; a poll's URL must fit a request
line, and a client asks for the namespaces it uses, rarely more than a handful)."""
RECHECK = 1.0
"""Seconds between looks at the plans while a long poll is held in a worker thread."""
SIGNATURE_SKEW_MS = 60_000
"""How far a signed request's timestamp may be from now (Apollo's own bound)."""
PROPERTIES = ".properties"
FILE_FORMATS = {
    "json": "application/json",
    "yml": "application/yaml",
    "yaml": "application/yaml",
    "xml": "application/xml",
    "txt": "text/plain",
}
"""Namespace formats other than properties, by the suffix of the name, and the content type
of their raw file (Apollo's ``ConfigFileFormat``). Such a namespace holds one key,
``content``."""
TEXT = "text/plain;charset=UTF-8"
HOLD_ENVIRON = "grayrelease.apollo.hold"
"""Set in the WSGI environ by the async layer: answer at once, and when nothing changed, say
what to wait for instead of sleeping (see :mod:`grayrelease_adapters.flask.asgi`). A client
cannot set it: it is no header (those are ``HTTP_*``)."""
HOLD_HEADER = "X-Grayrelease-Hold"


def create_apollo_blueprint(environment: str | None = None) -> Blueprint:
    """The config service's endpoints; ``init_app`` mounts them at ``GRAYRELEASE_APOLLO_PREFIX``
    (default ``{url prefix}/apollo``), under ``/{environment}`` unless ``environment`` fixes
    the one environment served.

    A blueprint of its own: this is Apollo's protocol, not the REST API, so it is not in the
    OpenAPI document.
    """
    api = Blueprint("grayrelease_apollo", __name__)
    api.register_error_handler(GrayReleaseError, error_response)
    api.register_error_handler(HTTPException, http_error_response)
    api.register_error_handler(Exception, unexpected_error_response)

    def route(rule: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        if environment is None:
            return api.get(f"/<environment>{rule}")
        return api.get(rule, defaults={"environment": environment})

    @api.before_request
    def limit_request_body() -> None:
        limit_body(request, state().max_body_bytes)

    @route("/configs/<app_id>/<cluster>/<namespace>")
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

    @route("/configfiles/json/<app_id>/<cluster>/<namespace>")
    def apollo_config_json(environment: str, app_id: str, cluster: str, namespace: str) -> Response:
        settings = state()
        view = _view(settings, environment, app_id, namespace, _known(("ip", "label")))
        if view is None:
            return Response(status=404)
        return json_response(view)

    @route("/configfiles/raw/<app_id>/<cluster>/<namespace>")
    def apollo_config_raw(environment: str, app_id: str, cluster: str, namespace: str) -> Response:
        settings = state()
        view = _view(settings, environment, app_id, namespace, _known(("ip", "label")))
        suffix = namespace.rsplit(".", 1)[-1].lower() if "." in namespace else ""
        kind = FILE_FORMATS.get(suffix)
        if kind is None:  # a properties namespace: its file
            return Response(status=404) if view is None else _properties_response(view)
        content = None if view is None else view.get("content")
        if content is None:
            return Response(status=404)
        return Response(content, content_type=f"{kind};charset=UTF-8")

    @route("/configfiles/<app_id>/<cluster>/<namespace>")
    def apollo_config_file(environment: str, app_id: str, cluster: str, namespace: str) -> Response:
        settings = state()
        view = _view(settings, environment, app_id, namespace, _known(("ip", "label")))
        return Response(status=404) if view is None else _properties_response(view)

    @route("/notifications/v2")
    def apollo_notifications(environment: str) -> Response:
        settings = state()
        params = _known(("appId", "cluster", "notifications"))
        app_id = required_text(params, "appId", maximum=MAX_NAME)
        cluster = required_text(params, "cluster", maximum=MAX_NAME)
        _authenticate(settings, app_id)
        asked = _asked(params)
        deadline = time.monotonic() + settings.apollo_hold
        while True:
            current = {name: notification_id(settings, environment, app_id, name) for name in asked}
            changed = changes(app_id, cluster, asked, current)
            if changed:
                return json_response(changed)
            if _held_elsewhere():
                return hold_response(environment, app_id, cluster, asked, settings.apollo_hold)
            left = deadline - time.monotonic()
            if left <= 0:
                return Response(status=304)
            time.sleep(min(RECHECK, left))  # the sync thread brings other processes' changes

    @route("/services/config")
    def apollo_meta(environment: str) -> Response:
        home = request.base_url.rsplit("/services/config", 1)[0] + "/"
        return json_response(
            [{"appName": "APOLLO-CONFIGSERVICE", "instanceId": "grayrelease", "homepageUrl": home}]
        )

    return api


def changes(
    app_id: str, cluster: str, asked: Mapping[str, int], current: Mapping[str, int]
) -> list[dict[str, object]]:
    """A poll's answer: the namespaces whose id grew past the client's (as Apollo, only a
    newer id is news), each with Apollo's ``messages``."""
    return [
        {
            "namespaceName": name,
            "notificationId": current[name],
            "messages": {"details": {f"{app_id}+{cluster}+{name}": current[name]}},
        }
        for name, known in asked.items()
        if current[name] > known
    ]


def hold_response(
    environment: str, app_id: str, cluster: str, asked: Mapping[str, int], hold: float
) -> Response:
    """What the async layer waits on for a poll that found nothing new (never sent as is)."""
    what = {
        "environment": environment,
        "appId": app_id,
        "cluster": cluster,
        "asked": dict(asked),
        "hold": hold,
    }
    return json_response(what, headers={HOLD_HEADER: "1"})


def _held_elsewhere() -> bool:
    return request.environ.get(HOLD_ENVIRON) is True


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
    client = _client(settings, params)  # checked even when nothing is gray: a 400 is a 400
    if not base and not plans:
        return None
    view = dict(base)
    for plan in plans:
        for ref in plan.refs:
            resolution = settings.engine.resolve(ref, client)
            if resolution.gray and resolution.value is not None:
                view[ref.config_key] = resolution.value
    return view


def _client(settings: AppState, params: Mapping[str, str]) -> Client:
    """The asking instance. Its ``ip`` names it; IP rules match the ``ip`` when it is an
    address and the caller's address otherwise (Apollo accepts any string there)."""
    address = client_address(request, settings.trusted_proxies) or ""
    ip = optional_text(params, "ip", maximum=MAX_NAME)
    if ip is not None and is_address(ip):
        address = ip
    label = optional_text(params, "label", maximum=MAX_NAME)
    return Client(
        instance_id=ip or address,
        instance_ip=address,
        labels={APOLLO_LABEL: label} if label else {},
    )


def _group_values(
    settings: AppState, environment: str, app_id: str, group: str
) -> tuple[Mapping[str, str], int]:
    backend = settings.engine.backend
    values_of = getattr(backend, "group_values", None)
    if values_of is None:
        raise ConfigurationError(
            f"the {backend.name} backend cannot list a namespace, so it cannot serve Apollo "
            "clients; the apollo, sql and memory backends can"
        )
    values, revision = values_of(app_id, environment, group)
    return values, int(revision)


def notification_id(settings: AppState, environment: str, app_id: str, namespace: str) -> int:
    """The namespace's id: the backend's revision of it plus the store's generation."""
    _base, revision = _group_values(settings, environment, app_id, _namespace(namespace))
    return revision + settings.engine.generation


def _release_key(view: Mapping[str, str]) -> str:
    text = json.dumps(view, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _properties_response(view: Mapping[str, str]) -> Response:
    return Response(properties_text(view), content_type=TEXT)


def properties_text(view: Mapping[str, str]) -> str:
    """The namespace as a ``.properties`` file, written as ``java.util.Properties.store``
    writes to a character stream (Apollo's ``PropertiesUtil.toString``, without the date
    comment), one ``key=value`` line each, keys sorted so that the file is stable."""
    return "".join(
        f"{_escape(key, key=True)}={_escape(value, key=False)}\n"
        for key, value in sorted(view.items())
    )


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}


def _escape(text: str, *, key: bool) -> str:
    """``Properties.saveConvert`` for a writer: backslash, tab, newlines, form feed and
    ``=:#!`` escaped; spaces escaped in a key, and at the start of a value; other characters
    (Chinese included) written as they are."""
    out = []
    for position, char in enumerate(text):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char in "=:#!":
            out.append("\\" + char)
        elif char == " " and (key or position == 0):
            out.append("\\ ")
        else:
            out.append(char)
    return "".join(out)


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
    need a client token, an app without an access key cannot be read here.

    The signature covers the path and query. Apollo's server sees the path from its root;
    some clients (``apollo-client-python``, ``apollo-python-client``) sign the path after the
    URL they were given. Where the endpoint serves one environment at a root of its own
    (``GRAYRELEASE_APOLLO_ENVIRONMENT``) that is the path after the root, and both are
    accepted. Where the environment is in the path, only the full path is: a signature of
    the path after it would not cover the environment, and a request seen in one could be
    replayed in another with the same app's key."""
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
    given = request.headers.get("Authorization", "").encode()
    query_string = request.query_string.decode("latin-1")
    for path in _signed_paths(settings):
        quoted = urllib.parse.quote(path)
        signed = f"{quoted}?{query_string}" if query_string else quoted
        expected = f"Apollo {app_id}:{access_signature(secret, timestamp, signed)}"
        if hmac.compare_digest(given, expected.encode()):
            return
    raise Unauthenticated(f"the request is not signed with {app_id}'s access key")


def _signed_paths(settings: AppState) -> list[str]:
    """The paths a client may have signed: from the server's root, and, where the endpoint
    serves one environment, from the endpoint's root."""
    full = request.script_root + request.path
    root = request.script_root + settings.apollo_prefix
    if settings.apollo_environment is not None and root and full.startswith(root + "/"):
        return [full, full[len(root) :]]
    return [full]


def _not_found(app_id: str, cluster: str, namespace: str) -> Response:
    return json_response(
        {
            "status": 404,
            "message": f"Could not load config for {app_id}+{cluster}+{namespace}",
        },
        404,
    )
