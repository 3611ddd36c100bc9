"""A loopback Apollo 2.x: the portal's Open API and one env's config service, strict as the real.

An HTTP server on 127.0.0.1 in a thread, used as a context manager::

    with FakeApollo(tokens={"t0k3n": ["demo-app"]}, hold=0.5) as apollo:
        apollo.create_namespace("DEV", "demo-app", "default", "application")
        apollo.set_item("DEV", "demo-app", "default", "application", "ratio", "10")
        apollo.release("DEV", "demo-app", "default", "application")
        apollo.base_url  # the portal, the config service and the meta server all live here

Client code written against it must work unchanged against a real Apollo, so the fake follows
the server's source (portal ``openapi`` controllers and services, admin service ``ItemController``
and ``ReleaseController``, biz ``ItemService``/``ReleaseService``, config service
``ConfigController``, ``ConfigFileController``, ``NotificationControllerV2``,
``ClientAuthenticationFilter``, ``AccessKeyUtil``, common ``GlobalDefaultExceptionHandler``):

* Errors raised in Apollo's code answer ``{"status","message","timestamp","exception"}``.
  Those the admin service raised come through the portal re-parsed by Gson, so their ``status``
  is a float (``404.0``). ``response.sendError`` (401 of the Open API, 400/401 of the access-key
  filter, 404 of ``/configs``) answers Spring Boot's page ``{"timestamp","status","error",
  "path"}`` without a message. A wrong method or a non-JSON body is **400**, not 405/415: Apollo's
  handler maps ``HttpRequestMethodNotSupportedException`` and ``HttpMediaTypeException`` to 400.
  A missing ``@RequestParam``, an unreadable body and an unknown env are 500.
* The Open API checks ``Authorization: <token>`` (else 401), then reads the body, then the
  consumer's permission for writes and releases (403 ``Access is denied``); reads are open to any
  valid token, as in Apollo (no ``@PreAuthorize`` on GETs). Blank means empty (``""``/absent),
  as ``StringUtils.isContainEmpty``; a key of spaces is accepted. Limits: key 128, value 20000,
  item comment 256 (400); a release title over 64 or comment over 256 characters breaks the
  ``Release`` table's columns (500, as MySQL in strict mode). An item without ``value`` or a
  ``createIfNotExists`` creation without ``dataChangeCreatedBy`` is a NOT NULL column: 500.
  ``GET .../releases/latest`` with no release answers 200 with an empty body (the controller
  returns null). Rollback abandons the named release (even an older one) and needs two active.
* Namespaces ``x.json``/``x.yaml`` are kept as Apollo keeps them: ordinary items (the portal puts
  the text in the ``content`` item), ``format`` from the suffix, ``/configfiles/raw`` serves it.
* The config service serves ``config_env`` only: cluster, then ``dataCenter``, then ``default``;
  ``.properties`` is stripped and the name matched case-insensitively against the app's
  namespaces. Notification ids are the env's release-message ids (one sequence for all
  namespaces); a poll answers at once when a watched key's latest id is above the client's
  (``-1`` with nothing released waits), else holds ``hold`` seconds and answers 304.
* JSON is written as Gson writes it: nulls left out, ``<>&='`` escaped as ``\\u003c`` and so on.

Not imitated: public/associated namespaces, gray branches, namespace locks, item-count limits,
the encoded-key (``encodeItems``) and app/cluster management endpoints, rate limits, the
incremental sync, MySQL's case-insensitive lookups (the fake matches exactly in the portal).
``fail()``/``hang()`` of ``LoopbackServer`` break the whole server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message as Headers
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

from grayrelease_core import Clock, SystemClock

from .loopback import LoopbackServer

DEFAULT_CLUSTER = "default"
KEY_LIMIT = 128
VALUE_LIMIT = 20000
COMMENT_LIMIT = 256
TITLE_LIMIT = 64
"""``Release.Name`` is ``varchar(64)``."""
RELEASE_COMMENT_LIMIT = 256
TIME_TOLERANCE_MS = 60_000
"""``apollo.access-key.auth-time-diff-tolerance``: 60 s by default."""
FORMATS = ("properties", "xml", "json", "yml", "yaml", "txt")
_JSON = "application/json;charset=UTF-8"
_TEXT = "text/plain;charset=UTF-8"
_APOLLO = "com.ctrip.framework.apollo.common.exception."
_SPRING = "org.springframework."
_NO_BODY = "Required request body is missing"
_DB_ERROR = (
    "could not execute statement; SQL [n/a]; nested exception is "
    "org.hibernate.exception.DataException: could not execute statement"
)
_JAVA_LONG = re.compile(r"[+-]?[0-9]{1,18}")
_GSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "=": "\\u003d", "'": "\\u0027"}
_RAW_TYPES = {
    "json": _JSON,
    "xml": "application/xml;charset=UTF-8",
    "yml": "application/yaml;charset=UTF-8",
    "yaml": "application/yaml;charset=UTF-8",
}
_PROPERTY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}


class Seen(NamedTuple):
    """A request the fake received (whatever became of it)."""

    method: str
    path: str
    """As sent, still percent-encoded, without the query."""
    query: dict[str, str]
    headers: dict[str, str]
    body: str


class Release(NamedTuple):
    """One release of a namespace in one env, as the config DB keeps it."""

    id: int
    app_id: str
    cluster: str
    namespace: str
    title: str
    comment: str | None
    released_by: str
    configurations: dict[str, str]
    release_key: str
    created: datetime
    abandoned: bool = False


@dataclass
class _Item:
    key: str
    value: str
    comment: str | None
    type: int
    created_by: str
    modified_by: str
    created: datetime
    modified: datetime


@dataclass
class _Namespace:
    created: datetime
    items: dict[str, _Item] = field(default_factory=dict)
    """In line order: an update keeps its place, a new key goes last."""


class _Answer(NamedTuple):
    status: int
    body: str | None = None
    content_type: str | None = _JSON


class _Failure(Exception):
    """What Apollo's ``GlobalDefaultExceptionHandler`` turns into JSON."""

    def __init__(
        self, status: int, message: str | None, exception: str, forwarded: bool = False
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.exception = status, message, exception
        self.forwarded = forwarded
        """Raised by the admin service: its body reaches the client through Gson."""


class _ErrorPage(Exception):
    """``response.sendError``: Spring Boot's error page, with no message (Boot 2.5+)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Request(NamedTuple):
    method: str
    raw_path: str
    raw_query: str
    parts: list[str]
    """The path's segments, percent-decoded."""
    query: dict[str, str]
    headers: Headers
    body: bytes


class _Where(NamedTuple):
    """A namespace: env (upper case), app, cluster and name."""

    env: str
    app: str
    cluster: str
    name: str

    @property
    def message_key(self) -> str:
        """``ReleaseMessageKeyGenerator``: ``app+cluster+namespace``."""
        return f"{self.app}+{self.cluster}+{self.name}"

    def missing(self) -> str:
        names = f"appId:{self.app} clusterName:{self.cluster} namespaceName:{self.name}"
        return f"namespace not found for {names}"


def _bad(message: str, forwarded: bool = False) -> _Failure:
    return _Failure(400, message, _APOLLO + "BadRequestException", forwarded)


def _not_found(message: str) -> _Failure:
    return _Failure(404, message, _APOLLO + "NotFoundException", forwarded=True)


def _server_error(message: str | None, exception: str, forwarded: bool = False) -> _Failure:
    return _Failure(500, message, exception, forwarded)


def _db_error() -> _Failure:
    return _server_error(_DB_ERROR, _SPRING + "dao.DataIntegrityViolationException", True)


def _denied(message: str = "Access is denied") -> _Failure:
    return _Failure(403, message, _SPRING + "security.access.AccessDeniedException")


def _mismatch(java_type: str, cause: str) -> _Failure:
    """A ``@PathVariable``/``@RequestParam`` that Spring cannot convert."""
    message = f"Failed to convert value of type 'java.lang.String' to required type '{java_type}'"
    exception = _SPRING + "web.method.annotation.MethodArgumentTypeMismatchException"
    return _server_error(f"{message}; nested exception is {cause}", exception)


_DONE = _Answer(200, None, None)
"""What a ``void`` controller method answers: 200, no body."""


class FakeApollo(LoopbackServer):
    """The Open API of an Apollo portal plus the config and meta service of ``config_env``."""

    methods = ("GET", "POST", "PUT", "DELETE", "PATCH")

    def __init__(
        self,
        *,
        tokens: Mapping[str, Iterable[str]],
        users: Iterable[str] = ("apollo",),
        config_env: str = "DEV",
        clock: Clock | None = None,
        hold: float = 60.0,
        access_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.tokens = {token: frozenset(apps) for token, apps in tokens.items()}
        """Consumer token -> the apps it may modify and release."""
        self.users = frozenset(users)
        self.config_env = config_env.strip().upper()
        self.clock: Clock = clock or SystemClock()
        self.hold = hold
        """Seconds a long poll waits for a change before its 304 (real seconds)."""
        self.access_keys = dict(access_keys or {})
        self.requests: list[Seen] = []
        """Every request received, in order."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._envs = {self.config_env}
        self._namespaces: dict[_Where, _Namespace] = {}
        self._releases: dict[str, list[Release]] = {}
        """Each env's releases, by id - 1 (ids count per env, as each env has its own DB)."""
        self._message_ids: dict[str, int] = {}
        self._latest: dict[str, int] = {}
        """The config env's latest release-message id by message key."""
        self._log: list[tuple[int, str]] = []
        """The config env's release messages, in order."""
        self._stopping = False
        super().__init__()

    # --- what a test does and looks at ---------------------------------------------------------

    def create_namespace(self, env: str, app_id: str, cluster: str, namespace: str) -> None:
        """Create an app's namespace in a cluster of an env; the env joins the portal's envs."""
        where = _Where(env.strip().upper(), app_id, cluster, namespace)
        with self._lock:
            self._envs.add(where.env)
            self._namespaces.setdefault(where, _Namespace(self._now()))

    def set_item(
        self,
        env: str,
        app_id: str,
        cluster: str,
        namespace: str,
        key: str,
        value: str,
        comment: str = "",
    ) -> None:
        """An unreleased edit, as made in the portal by ``apollo``."""
        with self._lock:
            items = self._known(env, app_id, cluster, namespace).items
            now, old = self._now(), items.get(key)
            created, by = (old.created, old.created_by) if old else (now, "apollo")
            items[key] = _Item(key, value, comment or None, 0, by, "apollo", created, now)

    def remove_item(self, env: str, app_id: str, cluster: str, namespace: str, key: str) -> None:
        """An unreleased deletion, as made in the portal."""
        with self._lock:
            self._known(env, app_id, cluster, namespace).items.pop(key, None)

    def release(
        self,
        env: str,
        app_id: str,
        cluster: str,
        namespace: str,
        title: str = "",
        by: str = "apollo",
    ) -> int:
        """Release the namespace's items as they are now; returns the release id."""
        with self._changed:
            self._known(env, app_id, cluster, namespace)
            title = title or f"{self._now():%Y%m%d%H%M%S}-release"
            where = _Where(env.strip().upper(), app_id, cluster, namespace)
            return self._publish(where, title, None, by).id

    def items(self, env: str, app_id: str, cluster: str, namespace: str) -> dict[str, str]:
        """The namespace's items as they are now, released or not."""
        with self._lock:
            items = self._known(env, app_id, cluster, namespace).items
            return {key: item.value for key, item in items.items()}

    def released(
        self, env: str, app_id: str, cluster: str, namespace: str
    ) -> dict[str, str] | None:
        """The configurations of the latest active release, or None."""
        with self._lock:
            latest = self._latest_release(_Where(env.strip().upper(), app_id, cluster, namespace))
            return dict(latest.configurations) if latest else None

    def releases(self, env: str, app_id: str, cluster: str, namespace: str) -> list[Release]:
        """Every release of the namespace, oldest first, abandoned ones included."""
        where = _Where(env.strip().upper(), app_id, cluster, namespace)
        with self._lock:
            return [r for r in self._releases.get(where.env, []) if _where(where.env, r) == where]

    def notification_id(self, app_id: str, cluster: str, namespace: str) -> int:
        """The latest release-message id of ``app+cluster+namespace`` in ``config_env``, or -1."""
        with self._lock:
            return self._latest.get(f"{app_id}+{cluster}+{namespace}", -1)

    # --- state, under the lock -----------------------------------------------------------------

    def _now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    def _known(self, env: str, app_id: str, cluster: str, namespace: str) -> _Namespace:
        where = _Where(env.strip().upper(), app_id, cluster, namespace)
        found = self._namespaces.get(where)
        if found is None:
            raise LookupError(where.missing())
        return found

    def _latest_release(self, where: _Where) -> Release | None:
        for release in reversed(self._releases.get(where.env, [])):
            if _where(where.env, release) == where and not release.abandoned:
                return release
        return None

    def _publish(self, where: _Where, title: str, comment: str | None, by: str) -> Release:
        """The admin service's release: the items with a key, then a release message."""
        items = self._namespaces[where].items
        releases = self._releases.setdefault(where.env, [])
        now = self._now()
        configurations = {key: item.value for key, item in items.items() if key}
        release_key = f"{now:%Y%m%d%H%M%S}-{secrets.token_hex(10)}"  # as UniqueKeyGenerator
        release = Release(
            len(releases) + 1, *where[1:], title, comment, by, configurations, release_key, now
        )
        releases.append(release)
        self._send_message(where)
        return release

    def _send_message(self, where: _Where) -> None:
        """A ``ReleaseMessage``: the env's next id; in the config env it wakes the long polls."""
        self._message_ids[where.env] = message_id = self._message_ids.get(where.env, 0) + 1
        if where.env == self.config_env:
            self._latest[where.message_key] = message_id
            self._log.append((message_id, where.message_key))
            self._changed.notify_all()

    def _closing(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    # --- one request ---------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        raw_path, _, raw_query = handler.path.partition("?")
        length = handler.headers.get("Content-Length") or "0"
        body = handler.rfile.read(int(length) if length.isdigit() else 0)
        query = dict(reversed(urllib.parse.parse_qsl(raw_query, keep_blank_values=True)))
        text = body.decode("utf-8", "replace")
        with self._lock:
            headers = dict(handler.headers.items())
            self.requests.append(Seen(handler.command, raw_path, query, headers, text))
        if self.hold_if_hanging():
            handler.close_connection = True
            return
        broken = self.fault_page()
        if broken is not None:
            _send(handler, _Answer(broken[0], broken[1], "text/html"))
            return
        parts = [urllib.parse.unquote(part) for part in raw_path.split("/")[1:]]
        request = _Request(
            handler.command, raw_path, raw_query, parts, query, handler.headers, body
        )
        try:
            answer = self._route(request)
        except _Failure as failure:
            answer = self._apollo_error(failure)
        except _ErrorPage as page:
            answer = self._error_page(page.status, raw_path)
        _send(handler, answer)

    def _route(self, request: _Request) -> _Answer:
        parts = request.parts
        if "%2f" in request.raw_path.lower():
            raise _ErrorPage(400)  # Tomcat refuses encoded slashes
        if parts[:2] == ["openapi", "v1"]:
            return self._portal(request, parts[2:])
        if parts[0] in ("configs", "configfiles") or parts[:2] == ["notifications", "v2"]:
            self._check_access_key(request)
            return self._config_service(request)
        if parts == ["services", "config"]:
            service = {
                "appName": "APOLLO-CONFIGSERVICE",
                "instanceId": f"{self.address}:apollo-configservice",
                "homepageUrl": f"{self.base_url}/",
            }
            return _Answer(200, _gson([service]))
        raise _ErrorPage(404)

    def _apollo_error(self, failure: _Failure) -> _Answer:
        """``GlobalDefaultExceptionHandler``; a body from the admin service went through Gson."""
        status: float = float(failure.status) if failure.forwarded else failure.status
        moment = self._now().replace(tzinfo=None).isoformat(timespec="milliseconds")
        body = {"status": status, "message": failure.message, "timestamp": moment}
        return _Answer(failure.status, _gson({**body, "exception": failure.exception}))

    def _error_page(self, status: int, path: str) -> _Answer:
        page = {"timestamp": _gson_date(self._now()), "status": status}
        return _Answer(status, _gson({**page, "error": HTTPStatus(status).phrase, "path": path}))

    # --- portal Open API -----------------------------------------------------------------------

    def _portal(self, request: _Request, parts: list[str]) -> _Answer:
        apps = self.tokens.get(request.headers.get("Authorization") or "")
        if apps is None:
            raise _ErrorPage(401)  # ConsumerAuthenticationFilter
        if len(parts) == 5 and parts[0::2] == ["envs", "releases", "rollback"]:
            _allow(request, "PUT")
            return self._rollback(request, apps, parts[1], parts[3])
        if len(parts) < 8 or parts[0:8:2] != ["envs", "apps", "clusters", "namespaces"]:
            raise _ErrorPage(404)
        where, rest = _Where(parts[1], parts[3], parts[5], parts[7]), parts[8:]
        if not rest:
            _allow(request, "GET")
            with self._lock:
                return _Answer(200, _gson(_namespace_dto(where, self._portal_namespace(where))))
        if rest == ["items"]:
            _allow(request, "GET", "POST")
            if request.method == "GET":
                return self._item_page(request, where)
            return self._create_item(request, apps, where)
        if len(rest) == 2 and rest[0] == "items" and rest[1]:
            _allow(request, "GET", "PUT", "DELETE")
            if request.method == "GET":
                with self._lock:
                    return _Answer(200, _gson(_item_dto(self._portal_item(where, rest[1]))))
            if request.method == "PUT":
                return self._update_item(request, apps, where, rest[1])
            return self._delete_item(request, apps, where, rest[1])
        if rest == ["releases"]:
            _allow(request, "POST")
            return self._create_release(request, apps, where)
        if rest == ["releases", "latest"]:
            _allow(request, "GET")
            with self._lock:
                latest = self._latest_release(where._replace(env=self._env(where.env)))
                return _Answer(200, _gson(_release_dto(latest))) if latest else _DONE
        raise _ErrorPage(404)

    def _env(self, name: str) -> str:
        """``Env.valueOf``: trimmed, upper-cased, and one the portal knows."""
        env = name.strip().upper()
        if env not in self._envs:
            raise _server_error(f"{env} not exist", "java.lang.IllegalArgumentException")
        return env

    def _portal_namespace(self, where: _Where) -> _Namespace:
        found = self._namespaces.get(where._replace(env=self._env(where.env)))
        if found is None:
            raise _not_found(where.missing())
        return found

    def _portal_item(self, where: _Where, key: str) -> _Item:
        item = self._portal_namespace(where).items.get(key)
        if item is None:
            found_for = where.missing().removeprefix("namespace not found for ")
            raise _not_found(f"item not found for {found_for} itemKey:{key}")
        return item

    def _item_page(self, request: _Request, where: _Where) -> _Answer:
        page, size = _int_param(request, "page", "0"), _int_param(request, "size", "50")
        if page < 0:
            raise _bad("findItemsByNamespace.page: page should be positive or 0")
        if size <= 0:
            raise _bad("findItemsByNamespace.size: size should be positive number")
        with self._lock:
            items = list(self._portal_namespace(where).items.values())
        content = [_item_dto(item) for item in items[page * size : (page + 1) * size]]
        return _Answer(
            200, _gson({"page": page, "size": size, "total": len(items), "content": content})
        )

    def _user(self, user: str | None, message: str) -> None:
        if user not in self.users:
            raise _bad(message)

    def _create_item(self, request: _Request, apps: frozenset[str], where: _Where) -> _Answer:
        body = _json_body(request)
        if where.app not in apps:
            raise _denied()
        key, by = _string(body, "key"), _string(body, "dataChangeCreatedBy")
        if not key or not by:
            raise _bad("key and dataChangeCreatedBy should not be null or empty")
        self._user(by, f"User {by} doesn't exist!")
        comment = _check_comment(body)
        with self._lock:
            return _Answer(200, _gson(_item_dto(self._add_item(where, key, body, by, comment))))

    def _add_item(
        self, where: _Where, key: str, body: Mapping[str, Any], by: str | None, comment: str | None
    ) -> _Item:
        """The portal's ``ItemService.createItem``, then the admin service's ``create``."""
        items = self._portal_namespace(where).items
        if key in items:
            raise _bad(f"item already exists for itemKey:{key}", forwarded=True)
        value, item_type = _checked_value(body, key)
        if by is None:
            raise _db_error()  # DataChange_CreatedBy is NOT NULL
        now = self._now()
        items[key] = _Item(key, value, comment, item_type, by, by, now, now)
        return items[key]

    def _update_item(
        self, request: _Request, apps: frozenset[str], where: _Where, key: str
    ) -> _Answer:
        body = _json_body(request)
        given = request.query.get("createIfNotExists", "")
        if given.lower() not in ("", "true", "on", "yes", "1", "false", "off", "no", "0"):
            cause = f"java.lang.IllegalArgumentException: Invalid boolean value [{given}]"
            raise _mismatch("boolean", cause)  # Spring's StringToBooleanConverter
        create = given.lower() in ("true", "on", "yes", "1")
        if where.app not in apps:
            raise _denied()
        body_key, by = _string(body, "key"), _string(body, "dataChangeLastModifiedBy")
        if not body_key or not by:
            raise _bad("key and dataChangeLastModifiedBy can not be empty")
        if body_key != key:
            raise _bad("Key in path and payload is not consistent")
        self._user(by, "user(dataChangeLastModifiedBy) not exists")
        comment = _check_comment(body)
        if not 0 <= _integer(body, "type") <= 3:
            raise _server_error(None, "java.lang.IllegalArgumentException")
        with self._lock:
            try:
                item = self._portal_item(where, key)
            except _Failure as missing:
                if not create or missing.status != 404:
                    raise
                # createOrUpdateItem: the 404 turns into a creation by dataChangeCreatedBy
                self._add_item(where, key, body, _string(body, "dataChangeCreatedBy"), comment)
                return _DONE
            item.value, item.type = _checked_value(body, key)
            item.comment, item.modified_by, item.modified = comment, by, self._now()
        return _DONE

    def _delete_item(
        self, request: _Request, apps: frozenset[str], where: _Where, key: str
    ) -> _Answer:
        operator = _required(request, "operator")
        if where.app not in apps:
            raise _denied()
        self._user(operator, "user(operator) not exists")
        with self._lock:
            self._portal_item(where, key)
            del self._portal_namespace(where).items[key]
        return _DONE

    def _create_release(self, request: _Request, apps: frozenset[str], where: _Where) -> _Answer:
        body = _json_body(request)
        if where.app not in apps:
            raise _denied()
        title, by = _string(body, "releaseTitle"), _string(body, "releasedBy")
        if not title or not by:
            raise _bad("Params(releaseTitle and releasedBy) can not be empty")
        self._user(by, f"user not exists for userName:{by}")
        comment = _string(body, "releaseComment")
        with self._changed:
            self._portal_namespace(where)
            if len(title) > TITLE_LIMIT or len(comment or "") > RELEASE_COMMENT_LIMIT:
                raise _db_error()  # the Release table's Name and Comment columns
            release = self._publish(where._replace(env=self._env(where.env)), title, comment, by)
            return _Answer(200, _gson(_release_dto(release)))

    def _rollback(self, request: _Request, apps: frozenset[str], env: str, raw_id: str) -> _Answer:
        if not _JAVA_LONG.fullmatch(raw_id):
            cause = f'java.lang.NumberFormatException: For input string: "{raw_id}"'
            raise _mismatch("long", cause)
        operator = _required(request, "operator")
        if not operator:
            raise _bad("Param operator can not be empty")
        self._user(operator, f"user not exists for userName:{operator}")
        with self._changed:
            env = self._env(env)
            releases = self._releases.get(env, [])
            if not 0 < int(raw_id) <= len(releases):
                raise _bad("release not found")
            release = releases[int(raw_id) - 1]
            if release.app_id not in apps:
                raise _denied("Forbidden operation. you don't have release permission")
            if release.abandoned:
                raise _bad("release is not active", forwarded=True)
            where = _where(env, release)
            if len([r for r in releases if _where(env, r) == where and not r.abandoned]) < 2:
                message = "Can't rollback namespace(appId={}, clusterName={}, namespaceName={}) "
                message += "because there is only one active release"
                raise _bad(message.format(*where[1:]), forwarded=True)
            releases[release.id - 1] = release._replace(abandoned=True)
            self._send_message(where)
        return _DONE

    # --- config service ------------------------------------------------------------------------

    def _check_access_key(self, request: _Request) -> None:
        """``ClientAuthenticationFilter``: the app's secret, when it has one, must sign the call."""
        parts = request.parts
        if parts[0] == "notifications":
            app = request.query.get("appId")
        else:  # AccessKeyUtil: the segment after /configs/, /configfiles/json/ or /configfiles/
            start = 2 if parts[:2] == ["configfiles", "json"] else 1
            app = parts[start] if len(parts) > start + 1 else None
        if app is None or not app.strip():
            raise _ErrorPage(400)  # InvalidAppId
        secret = self.access_keys.get(app)
        if secret is None:
            return
        timestamp = request.headers.get("Timestamp")
        sent = int(timestamp) if timestamp and _JAVA_LONG.fullmatch(timestamp) else 0
        if not abs(self.clock.now().timestamp() * 1000 - sent) < TIME_TOLERANCE_MS:
            raise _ErrorPage(401)  # RequestTimeTooSkewed
        fields = (request.headers.get("Authorization") or "").split(":")
        path = request.raw_path + (f"?{request.raw_query}" if request.raw_query else "")
        if len(fields) < 2 or fields[1] != apollo_signature(str(timestamp), path, secret):
            raise _ErrorPage(401)

    def _config_service(self, request: _Request) -> _Answer:
        parts = request.parts
        if parts == ["notifications", "v2"]:
            _allow(request, "GET")
            return self._poll(request)
        files = parts[0] == "configfiles" and len(parts) == 5
        kind = parts[1] if files and parts[1] in ("json", "raw") else ""
        where = parts[2:] if kind else parts[1:]
        if len(where) != 3 or not all(where):
            raise _ErrorPage(404)
        _allow(request, "GET")
        app, cluster, asked = where
        name = self._normalize(app, _strip_properties(asked))
        with self._lock:
            release = self._find_release(app, cluster, name, request.query.get("dataCenter"))
        if release is None:
            raise _ErrorPage(404)
        configurations = release.configurations
        if parts[0] == "configs":
            if release.release_key == request.query.get("releaseKey", "-1"):
                return _Answer(304)
            config = {"appId": app, "cluster": release.cluster, "namespaceName": asked}
            return _Answer(
                200,
                _gson(
                    {**config, "configurations": configurations, "releaseKey": release.release_key}
                ),
            )
        if kind == "json":
            return _Answer(200, _gson(configurations))
        if kind == "raw" and _format_of(name) != "properties":
            content = configurations.get("content")
            if content is None:
                return _Answer(404, None, None)
            return _Answer(200, content, _RAW_TYPES.get(_format_of(asked), _TEXT))
        return _Answer(200, _properties_text(configurations), _TEXT)

    def _normalize(self, app: str, name: str) -> str:
        """``NamespaceUtil.normalizeNamespace``: the app's namespace of that name, in any case."""
        with self._lock:
            for where in self._namespaces:
                mine = (where.env, where.app) == (self.config_env, app)
                if mine and where.name.lower() == name.lower():
                    return where.name
        return name

    def _find_release(
        self, app: str, cluster: str, name: str, data_center: str | None
    ) -> Release | None:
        """``AbstractConfigService.loadConfig``: the cluster, the data center, then default."""
        for key in _watch_keys(app, cluster, name, data_center):
            where = _Where(self.config_env, *key.split("+", 2))
            release = self._latest_release(where)
            if release is not None:
                return release
        return None

    def _poll(self, request: _Request) -> _Answer:
        """``NotificationControllerV2``: answer at once when behind, else hold for a release."""
        app, cluster = _required(request, "appId"), _required(request, "cluster")
        raw = _required(request, "notifications")
        listening: dict[str, tuple[str, int]] = {}
        """Normalized name -> (the client's name without .properties, its notification id)."""
        for given, client_id in _notifications(raw):
            original = _strip_properties(given)
            name = self._normalize(app, original)
            if name not in listening or listening[name][1] >= client_id:
                listening[name] = (original, client_id)
        if not listening:
            raise _bad(f"invalid notifications format:{raw}")
        data_center = request.query.get("dataCenter")
        watched = {name: _watch_keys(app, cluster, name, data_center) for name in listening}
        deadline = time.monotonic() + self.hold
        news = []
        with self._changed:
            for name, (original, client_id) in listening.items():
                details = {key: self._latest[key] for key in watched[name] if key in self._latest}
                if max(details.values(), default=-1) > client_id:
                    latest = max(details.values())
                    news.append({"namespaceName": original, "notificationId": latest})
                    news[-1]["messages"] = {"details": details}
            seen = len(self._log)
            # The deferred results are keyed case-insensitively.
            keys = {key.lower() for keys in watched.values() for key in keys}
            while not news and not self._stopping and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
                for message_id, key in self._log[seen:]:
                    if key.lower() in keys:
                        changed = key.split("+")[2]
                        original = listening[changed][0] if changed in listening else changed
                        news = [{"namespaceName": original, "notificationId": message_id}]
                        news[0]["messages"] = {"details": {key: message_id}}
                        break
                seen = len(self._log)
        return _Answer(200, _gson(news)) if news else _Answer(304)


# --- helpers -------------------------------------------------------------------------------------


def apollo_signature(timestamp: str, path_with_query: str, secret: str) -> str:
    """``Signature.signature``: base64 of HMAC-SHA1 over ``timestamp + "\\n" + pathWithQuery``."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{path_with_query}".encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


def _where(env: str, release: Release) -> _Where:
    return _Where(env, release.app_id, release.cluster, release.namespace)


def _allow(request: _Request, *methods: str) -> None:
    if request.method not in methods:
        message = f"Request method '{request.method}' not supported"
        raise _Failure(400, message, _SPRING + "web.HttpRequestMethodNotSupportedException")


def _required(request: _Request, name: str) -> str:
    value = request.query.get(name)
    if value is None:
        message = f"Required request parameter '{name}' for method parameter type String"
        exception = _SPRING + "web.bind.MissingServletRequestParameterException"
        raise _server_error(f"{message} is not present", exception)
    return value


def _int_param(request: _Request, name: str, default: str) -> int:
    value = request.query.get(name) or default
    if not _JAVA_LONG.fullmatch(value):
        raise _mismatch("int", f'java.lang.NumberFormatException: For input string: "{value}"')
    return int(value)


def _unreadable(detail: str) -> _Failure:
    return _server_error(detail, _SPRING + "http.converter.HttpMessageNotReadableException")


def _json_body(request: _Request) -> dict[str, Any]:
    """What ``GsonHttpMessageConverter`` makes of a ``@RequestBody``."""
    content_type = request.headers.get("Content-Type")
    media = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if content_type is None and not request.body:
        raise _unreadable(_NO_BODY)
    if media != "application/json" and not re.fullmatch(r"application/[^/]*\+json", media):
        message = f"Content type '{content_type or media}' not supported"
        raise _Failure(400, message, _SPRING + "web.HttpMediaTypeNotSupportedException")
    try:
        value = json.loads(request.body.decode(request.headers.get_content_charset("utf-8")))
    except (ValueError, LookupError) as error:
        raise _unreadable(
            f"JSON parse error: {error}" if request.body.strip() else _NO_BODY
        ) from None
    if value is None:
        raise _unreadable(_NO_BODY)
    if not isinstance(value, dict):
        raise _unreadable("JSON parse error: Expected BEGIN_OBJECT")
    return value


def _string(body: Mapping[str, Any], name: str) -> str | None:
    """A ``String`` field as Gson reads it: numbers and booleans turn into their text."""
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        raise _unreadable(f"JSON parse error: Expected a string but was {type(value).__name__}")
    return json.dumps(value)


def _integer(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _JAVA_LONG.fullmatch(value):
        return int(value)
    raise _unreadable(f"JSON parse error: Expected an int but was {value!r}")


def _check_comment(body: Mapping[str, Any]) -> str | None:
    comment = _string(body, "comment")
    if comment and len(comment) > COMMENT_LIMIT:
        raise _bad(f"Comment length should not exceed {COMMENT_LIMIT} characters")
    return comment


def _checked_value(body: Mapping[str, Any], key: str) -> tuple[str, int]:
    """The admin service's checks on save (``ItemService``), then the NOT NULL value column."""
    value, item_type = _string(body, "value"), _integer(body, "type")
    if len(key) > KEY_LIMIT:
        raise _bad(f"key too long. length limit:{KEY_LIMIT}", forwarded=True)
    if not 0 <= item_type <= 3:
        raise _bad("type is invalid. type should be in [0, 3]. ", forwarded=True)
    if value and len(value) > VALUE_LIMIT:
        raise _bad(f"value too long. length limit:{VALUE_LIMIT}", forwarded=True)
    if value is None:
        raise _db_error()
    return value, item_type


def _notifications(raw: str) -> list[tuple[str, int]]:
    """``[{"namespaceName","notificationId"}]`` as Gson reads it; nameless entries are skipped."""
    try:
        entries = json.loads(raw)
        if not isinstance(entries, list) or not entries:
            raise ValueError(raw)
        read = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise ValueError(raw)
            name, number = entry.get("namespaceName"), entry.get("notificationId", 0)
            if isinstance(number, bool) or not isinstance(number, (int, str)):
                raise ValueError(raw)
            if name and isinstance(name, str):
                read.append((name, int(number)))
    except ValueError:
        raise _bad(f"invalid notifications format:{raw}") from None
    return read


def _watch_keys(app: str, cluster: str, name: str, data_center: str | None) -> list[str]:
    """``WatchKeysUtil.assembleWatchKeys``: the cluster, the data center and default."""
    clusters = [] if cluster == DEFAULT_CLUSTER else [cluster]
    clusters += [data_center] if data_center and data_center != cluster else []
    return [f"{app}+{each}+{name}" for each in [*clusters, DEFAULT_CLUSTER]]


def _strip_properties(name: str) -> str:
    return name[: name.rindex(".")] if name.lower().endswith(".properties") else name


def _format_of(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return suffix if suffix in FORMATS else "properties"


def _audit(
    created_by: str, modified_by: str, created: datetime, modified: datetime
) -> dict[str, Any]:
    """The fields of Apollo's ``BaseDTO``."""
    return {
        "dataChangeCreatedBy": created_by,
        "dataChangeLastModifiedBy": modified_by,
        "dataChangeCreatedTime": _gson_date(created),
        "dataChangeLastModifiedTime": _gson_date(modified),
    }


def _namespace_dto(where: _Where, namespace: _Namespace) -> dict[str, Any]:
    """``OpenNamespaceDTO``, items included."""
    items = [_item_dto(item) for item in namespace.items.values()]
    return {
        "appId": where.app,
        "clusterName": where.cluster,
        "namespaceName": where.name,
        "format": _format_of(where.name),
        "isPublic": False,
        "items": items,
        **_audit("apollo", "apollo", namespace.created, namespace.created),
    }


def _item_dto(item: _Item) -> dict[str, Any]:
    """``OpenItemDTO``."""
    return {
        "key": item.key,
        "value": item.value,
        "type": item.type,
        "comment": item.comment,
        **_audit(item.created_by, item.modified_by, item.created, item.modified),
    }


def _release_dto(release: Release) -> dict[str, Any]:
    """``OpenReleaseDTO``: the configurations as a map, not the stored JSON text."""
    return {
        "id": release.id,
        "appId": release.app_id,
        "clusterName": release.cluster,
        "namespaceName": release.namespace,
        "name": release.title,
        "configurations": release.configurations,
        "comment": release.comment,
        **_audit(release.released_by, release.released_by, release.created, release.created),
    }


def _gson(value: Any) -> str:
    """JSON as Apollo's Gson writes it: no nulls in objects, HTML characters escaped."""

    def drop_nulls(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: drop_nulls(item) for key, item in node.items() if item is not None}
        if isinstance(node, list):
            return [drop_nulls(item) for item in node]
        return node

    text = json.dumps(drop_nulls(value), ensure_ascii=False, separators=(",", ":"))
    return "".join(_GSON_ESCAPES.get(char, char) for char in text)


def _gson_date(moment: datetime) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSSZ``, the date format of Apollo's Gson."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}+0000"


def _properties_text(configurations: Mapping[str, str]) -> str:
    """``Properties.store`` to a writer, less its date comment: escaped, one ``k=v`` a line."""

    def escape(text: str, is_key: bool) -> str:
        out = []
        for index, char in enumerate(text):
            if char == " ":
                out.append("\\ " if is_key or index == 0 else " ")
            elif char in "=:#!":
                out.append("\\" + char)
            else:
                out.append(_PROPERTY_ESCAPES.get(char, char))
        return "".join(out)

    return "".join(f"{escape(k, True)}={escape(v, False)}\n" for k, v in configurations.items())


def _send(handler: BaseHTTPRequestHandler, answer: _Answer) -> None:
    body = (answer.body or "").encode("utf-8")
    handler.send_response(answer.status)
    if answer.content_type and answer.status != 304:
        handler.send_header("Content-Type", answer.content_type)
    if answer.status != 304:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if answer.status != 304:
        handler.wfile.write(body)
