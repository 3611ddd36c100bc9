"""A loopback Nacos config server speaking the v1 HTTP Open API, strict as a real Nacos 2.x.

An HTTP server on 127.0.0.1 in a thread, used as a context manager::

    with FakeNacos({"nacos": "secret"}, clock=clock, version="2.2.3") as nacos:
        client = ...(nacos.base_url, username="nacos", password="secret")
        nacos.set("", "DEFAULT_GROUP", "app.yaml", "ratio: 10")  # an edit in the console
        nacos.configs  # {(tenant, group, dataId): content}

Client code written against it must work unchanged against a real server (only the base URL
differs), so the fake follows the server's source (``ConfigController``, ``ParamUtils``,
``LongPollingService``, ``MD5Util``, the auth filter) where the PROTOCOLS.md summary is silent:

* Parameters are servlet parameters: the query string, and for a POST the
  ``application/x-www-form-urlencoded`` body as well (the Python SDK sends everything in the
  query). A GET or DELETE body is not read. Only a read maps the tenant ``public`` (or
  ``null``) to the public namespace ``""``, as the v1 read does; publish and delete keep it.
* Auth (``users`` given): the token is ``accessToken=`` (query or form) or
  ``Authorization: Bearer``; ``username`` + ``password`` parameters are also taken instead of a
  token, as the server does. Refusals are HTTP 403 with Spring Boot's JSON error page whose
  ``message`` is ``user not found!`` (no token), ``token invalid!`` or ``token expired!``
  (after ``tokenTtl`` seconds on the fake's clock). A failed login is 403 with the plain text
  ``unknown user!``. Rely on the status and on the phrase as a substring, not on the body shape.
* Validation: a missing required parameter is 400 with Spring's JSON error page; an invalid
  ``dataId``/``group``/``tenant`` (letters, digits and ``_-.:`` only) or a blank ``content`` is
  400 with the text ``caused: <reason>;`` -- a real server refuses to store blank content.
* ``version`` (default ``DEFAULT_VERSION``) is what the server says it is, and decides
  compare-and-set. From 2.3.0 (``ConfigController.publishConfig`` reads it since 2.3.0-BETA)
  ``casMd5`` is read from the *request header* ``casMd5``; a mismatch is HTTP 500
  ``caused: Cas publish fail, server md5 may have changed.;``, and a CAS publish of an absent
  config creates it (the server's ``insertOrUpdateCas``). Before 2.3.0 (1.4.x to 2.2.x) the
  header is ignored and the publish overwrites, as those servers do. ``casMd5`` sent as a form
  or query parameter is ignored by every real server, silently losing the check, so the fake
  refuses it with a 400 instead of imitating that.
* The version is answered, outside auth, at ``GET /nacos/v1/console/server/state`` as
  ``{"version": ..., "standalone_mode": "standalone", "function_mode": null}`` (a 2.2+ server
  adds other keys: rely on ``version`` only). From 3.0.0 that console route is gone from the
  server's port and ``GET /nacos/v3/admin/core/state`` answers the same object wrapped as
  ``{"code":0,"message":"success","data":{...}}``; before 3.0.0 that route is a 404.
* The client address used for ``betaIps`` is the server's ``RequestUtil.getRemoteIp``: the first
  entry of ``X-Forwarded-For``, else ``X-Real-IP``, else the socket's address -- so tests on
  loopback send ``X-Forwarded-For``. ``betaIps`` is split on ``,`` without trimming, as the
  server does. A long poll compares a beta client's md5 with the beta's.
* Long polling holds ``max(min_hold, Long-Pulling-Timeout - 0.5 s)``: a real server holds at
  least 10 s whatever the client asks (``min_hold`` defaults to that; tests lower it), capped
  here at ``MAX_HOLD``. ``longPullingNoHangUp: true`` answers at once. The answer to a change is
  the URL-encoded list (Java's ``URLEncoder``) followed by a newline, as ``println`` writes it.
  Without a ``Long-Pulling-Timeout`` header the server falls back to a legacy short poll whose
  answer depends on the client version; the fake refuses that with a 400.
* Bodies: ``true`` for a publish or delete (JSON, as Spring writes a ``Boolean``), the raw
  content with ``Config-Type``, ``Content-MD5`` and, for a beta reader, ``isBeta: true``;
  ``config data not exist`` plus a newline for 404. ``DELETE ...&beta=true`` stops the beta and
  answers ``{"code":200,"message":"stop beta ok","data":true}``; ``GET ...&beta=true`` answers
  the beta as ``{"code":200,"message":"query beta ok","data":{...} or null}``. While
  ``beta_stops_fail`` is true, a beta stop fails as the server's ``stopBeta`` does when its
  storage throws: HTTP 200 with ``{"code":500,"message":"remove beta data error","data":false}``,
  and the beta keeps running.

Not imitated: tags (a ``tag`` publish is refused with 501, a ``tag`` read is 404), the v2
API, aggregation, history, the console's search. ``fail(502)`` and ``hang()`` turn the server
into a broken one for fault tests.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.message import Message as Headers
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import NamedTuple, NoReturn

from grayrelease_core import Clock, SystemClock

from .loopback import LoopbackServer

CONFIGS_PATH = "/nacos/v1/cs/configs"
LISTENER_PATH = "/nacos/v1/cs/configs/listener"
LOGIN_PATHS = ("/nacos/v1/auth/login", "/nacos/v1/auth/users/login")
STATE_PATH = "/nacos/v1/console/server/state"
STATE_PATH_V3 = "/nacos/v3/admin/core/state"
DEFAULT_VERSION = "2.5.1"
"""The version the fake says it is unless told otherwise."""
CAS_SINCE = (2, 3, 0)
"""The first version whose HTTP publish honours ``casMd5``."""
CONSOLE_MOVED = (3, 0, 0)
"""The first version whose console routes are no longer on the server's port."""

MAX_CONTENT = 10 * 1024 * 1024
"""Characters of content a server takes by default (``nacos.config.maxContent``)."""
MAX_REQUEST = 64 << 20
"""Bodies over this are not read at all (HTTP 413), to keep a runaway test bounded."""
MAX_LISTENERS = 10_000
"""Configs one long poll may list (``MD5Util.getClientMd5Map``)."""
HOLD_FLOOR = 10.0
"""Seconds a real server holds a long poll at least."""
EARLY = 0.5
"""Seconds a server answers a long poll before the client's timeout (``FIXED_DELAY_TIME``)."""
MAX_HOLD = 30.0
"""Seconds the fake holds a long poll at most, whatever the client asks."""
CONFIG_TYPES = frozenset({"text", "json", "xml", "yaml", "html", "properties", "toml", "unset"})
"""``ConfigType`` values; anything else is stored as ``text``."""

WORD = "\x02"
LINE = "\x01"
_VALID_PUNCTUATION = frozenset("_-.:")
_JAVA_LONG = re.compile(r"[+-]?[0-9]{1,18}")
_TEXT = "text/plain;charset=UTF-8"
_JSON = "application/json;charset=UTF-8"

Key = tuple[str, str, str]
"""``(tenant, group, dataId)``; the public namespace is tenant ``""``."""


def nacos_md5(content: str) -> str:
    """The md5 Nacos keeps for ``content``: hex of its UTF-8 bytes."""
    return hashlib.md5(content.encode("utf-8")).hexdigest()


class Beta(NamedTuple):
    """A gray (beta) release of a config, served to the clients at ``ips`` only."""

    content: str
    ips: tuple[str, ...]
    type: str


class Seen(NamedTuple):
    """A request the fake received (whatever became of it)."""

    method: str
    path: str
    params: dict[str, str]
    """Servlet parameters: the query string, then a POST's form body; first value of each."""


class _Stored(NamedTuple):
    content: str
    type: str
    modified: datetime


class _Answer(Exception):
    """Stops handling a request with this answer."""

    def __init__(
        self,
        status: int,
        body: str,
        content_type: str = _TEXT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})


class _Request(NamedTuple):
    method: str
    path: str
    params: dict[str, str]
    headers: Headers
    client_ip: str


class FakeNacos(LoopbackServer):
    """The config part of a Nacos 2.x server's v1 Open API; auth is on when ``users`` (name to
    password) is given. ``min_hold`` is the least a long poll is held, in real seconds;
    ``version`` is the Nacos version imitated (compare-and-set, the state routes)."""

    methods = ("GET", "POST", "DELETE", "PUT")

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        clock: Clock | None = None,
        token_ttl: int = 18000,
        min_hold: float = HOLD_FLOOR,
        version: str = DEFAULT_VERSION,
    ) -> None:
        self.users = dict(users) if users is not None else None
        self.version = version
        self.beta_stops_fail = False
        """While true, ``DELETE ...&beta=true`` fails as a real server does: HTTP 200, code 500."""
        self.clock: Clock = clock or SystemClock()
        self.token_ttl = token_ttl
        self.min_hold = min_hold
        self.requests: list[Seen] = []
        """Every request received, in order."""
        self.logins = 0
        """Successful logins."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._configs: dict[Key, _Stored] = {}
        self._betas: dict[Key, Beta] = {}
        self._tokens: dict[str, datetime] = {}
        self._stopping = False
        super().__init__()

    # --- what a test looks at ------------------------------------------------------------------

    @property
    def configs(self) -> dict[Key, str]:
        """A copy of the formal configs' contents."""
        with self._lock:
            return {key: stored.content for key, stored in self._configs.items()}

    @property
    def betas(self) -> dict[Key, Beta]:
        """A copy of the running betas."""
        with self._lock:
            return dict(self._betas)

    def set(self, tenant: str, group: str, data_id: str, content: str, type: str = "text") -> None:
        """Store a formal config as an edit in the console would, waking its long polls."""
        key = (tenant, group, data_id)
        try:
            _check_tenant(tenant)
            _check_config(data_id, group, content)
        except _Answer as refused:
            raise ValueError(refused.body) from None
        with self._changed:
            self._configs[key] = _Stored(content, _config_type(type), self.clock.now())
            self._changed.notify_all()

    def remove(self, tenant: str, group: str, data_id: str) -> None:
        """Delete a formal config as the console would, waking its long polls."""
        with self._changed:
            self._configs.pop((tenant, group, data_id), None)
            self._changed.notify_all()

    # --- life ----------------------------------------------------------------------------------

    def _closing(self) -> None:
        with self._changed:
            # Long polls still held answer empty at once, so that the server can stop.
            self._stopping = True
            self._changed.notify_all()

    # --- one request ---------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        try:
            self._respond(handler)
        except _Answer as answer:
            _send(handler, answer)

    def _respond(self, handler: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        method = handler.command
        if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
            raise _Answer(411, "length required")
        length = handler.headers.get("Content-Length", "0")
        if not length.isdigit():
            raise _Answer(400, "bad Content-Length")
        if int(length) > MAX_REQUEST:
            raise _Answer(413, "too large")
        body = handler.rfile.read(int(length))
        params = _parameters(method, split.query, handler.headers, body)
        with self._lock:
            self.requests.append(Seen(method, split.path, dict(params or {})))
        if self.hold_if_hanging():
            handler.close_connection = True
            return  # the connection closes without an answer
        broken = self.fault_page()
        if broken is not None:
            raise _Answer(broken[0], broken[1], "text/html")
        if params is None:
            raise _spring_error(self.clock, 400, "Invalid request parameters", split.path)
        request = _Request(method, split.path, params, handler.headers, _remote_ip(handler))
        answer = self._route(request)
        _send(handler, answer)

    def _route(self, request: _Request) -> _Answer:
        path, method = request.path, request.method
        if path in LOGIN_PATHS:
            self._allow(request, "POST")
            return self._login(request)
        console_moved = _version(self.version) >= CONSOLE_MOVED
        if path == (STATE_PATH_V3 if console_moved else STATE_PATH):
            self._allow(request, "GET")
            return self._state(wrapped=console_moved)
        if path == CONFIGS_PATH:
            self._allow(request, "GET", "POST", "DELETE")
            self._authorize(request)
            if method == "GET":
                return self._get(request)
            if method == "POST":
                return self._publish(request)
            return self._delete(request)
        if path == LISTENER_PATH:
            self._allow(request, "POST")
            self._authorize(request)
            return self._listen(request)
        raise _spring_error(self.clock, 404, "No message available", path)

    def _allow(self, request: _Request, *methods: str) -> None:
        if request.method not in methods:
            message = f"Request method '{request.method}' not supported"
            raise _spring_error(self.clock, 405, message, request.path)

    # --- auth ----------------------------------------------------------------------------------

    def _login(self, request: _Request) -> _Answer:
        username = _required(self.clock, request, "username")
        password = _required(self.clock, request, "password")
        if not self._known(username, password):
            raise _Answer(403, "unknown user!")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self.clock.now() + timedelta(seconds=self.token_ttl)
            self.logins += 1
        answer = {
            "accessToken": token,
            "tokenTtl": self.token_ttl,
            "globalAdmin": False,
            "username": username,
        }
        return _Answer(200, json.dumps(answer), _JSON)

    def _known(self, username: str, password: str) -> bool:
        if self.users is None or username not in self.users:
            return False
        return secrets.compare_digest(self.users[username].encode(), password.encode())

    def _authorize(self, request: _Request) -> None:
        if self.users is None:
            return
        bearer = request.headers.get("Authorization", "")
        token = bearer[len("Bearer ") :] if bearer.startswith("Bearer ") else ""
        token = token or request.params.get("accessToken", "")
        if not token.strip():
            username = request.params.get("username")
            if username is None:
                self._forbid(request, "user not found!")
            elif not self._known(username, request.params.get("password", "")):
                self._forbid(request, "unknown user!")
            return
        with self._lock:
            expires = self._tokens.get(token)
        if expires is None:
            self._forbid(request, "token invalid!")
        elif self.clock.now() >= expires:
            self._forbid(request, "token expired!")

    def _forbid(self, request: _Request, message: str) -> NoReturn:
        raise _spring_error(self.clock, 403, message, request.path)

    def _state(self, *, wrapped: bool) -> _Answer:
        """``ServerStateController``: outside auth (no ``@Secured``; on the ignore list too)."""
        state = {"standalone_mode": "standalone", "function_mode": None, "version": self.version}
        answer = {"code": 0, "message": "success", "data": state} if wrapped else state
        return _Answer(200, json.dumps(answer), _JSON)

    # --- configs -------------------------------------------------------------------------------

    def _key(
        self, request: _Request, *, needs_content: bool = False, namespace_aliases: bool = False
    ) -> tuple[Key, str]:
        """The config a request names, checked as the server checks it, and its ``content``."""
        data_id = _required(self.clock, request, "dataId")
        group = _required(self.clock, request, "group")
        content = _required(self.clock, request, "content") if needs_content else "-"
        tenant = request.params.get("tenant", "")
        _check_tenant(tenant)
        _check_config(data_id, group, content)
        _check_tag(request.params.get("tag", ""))
        if namespace_aliases and (not tenant.strip() or tenant.lower() in ("public", "null")):
            # Only the read path maps these to the public namespace (NamespaceUtil).
            tenant = ""
        return (tenant, group, data_id), content

    def _get(self, request: _Request) -> _Answer:
        key, _ = self._key(request, namespace_aliases=True)
        if request.params.get("beta") == "true":
            return self._query_beta(key)
        tag = request.params.get("tag", "")
        with self._lock:
            beta = self._betas.get(key)
            stored = self._configs.get(key)
        if beta is not None and request.client_ip in beta.ips:
            content, config_type, headers = beta.content, beta.type, {"isBeta": "true"}
        elif stored is None or tag.strip():
            raise _Answer(404, "config data not exist\n")
        else:
            content, config_type, headers = stored.content, stored.type, {}
            headers["Last-Modified"] = format_datetime(stored.modified, usegmt=True)
        headers.update(
            {
                "Config-Type": config_type,
                "Content-MD5": nacos_md5(content),
                "Pragma": "no-cache",
                "Cache-Control": "no-cache,no-store",
            }
        )
        return _Answer(200, content, _TEXT, headers)

    def _query_beta(self, key: Key) -> _Answer:
        with self._lock:
            beta = self._betas.get(key)
        data = None
        if beta is not None:
            tenant, group, data_id = key
            data = {
                "dataId": data_id,
                "group": group,
                "tenant": tenant,
                "content": beta.content,
                "md5": nacos_md5(beta.content),
                "type": beta.type,
                "betaIps": ",".join(beta.ips),
            }
        answer = {"code": 200, "message": "query beta ok", "data": data}
        return _Answer(200, json.dumps(answer, ensure_ascii=False), _JSON)

    def _publish(self, request: _Request) -> _Answer:
        key, content = self._key(request, needs_content=True)
        tag = request.params.get("tag", "")
        for name, limit in (("desc", 128), ("type", 32)):
            if len(request.params.get(name, "")) > limit:
                raise _caused(f"too long {name}, over {limit}")
        if "casMd5" in request.params:
            raise _caused(
                "casMd5 must be sent as a request header; Nacos ignores the parameter "
                "(refused by the fake so that the check is not lost)"
            )
        if tag.strip():
            raise _Answer(501, "the fake does not imitate tagged configs")
        config_type = _config_type(request.params.get("type", ""))
        beta_ips = request.headers.get("betaIps", "")
        # Before 2.3.0 the controller never reads the header: the check is silently lost.
        cas_md5 = request.headers.get("casMd5", "") if _version(self.version) >= CAS_SINCE else ""
        with self._changed:
            target = self._betas.get(key) if beta_ips.strip() else self._configs.get(key)
            # An absent config is created whatever casMd5 says (insertOrUpdateCas).
            if cas_md5.strip() and target is not None and nacos_md5(target.content) != cas_md5:
                raise _caused("Cas publish fail, server md5 may have changed.", status=500)
            if beta_ips.strip():
                self._betas[key] = Beta(content, tuple(beta_ips.split(",")), config_type)
            else:
                self._configs[key] = _Stored(content, config_type, self.clock.now())
            self._changed.notify_all()
        return _Answer(200, "true", _JSON)

    def _delete(self, request: _Request) -> _Answer:
        key, _ = self._key(request)
        if request.params.get("beta") == "true":
            if self.beta_stops_fail:
                # stopBeta catches the storage's error and answers it with HTTP 200.
                failed = {"code": 500, "message": "remove beta data error", "data": False}
                return _Answer(200, json.dumps(failed), _JSON)
            with self._changed:
                self._betas.pop(key, None)
                self._changed.notify_all()
            answer = {"code": 200, "message": "stop beta ok", "data": True}
            return _Answer(200, json.dumps(answer), _JSON)
        if not request.params.get("tag", "").strip():
            # The formal config only: a running beta stays, as on the server.
            with self._changed:
                self._configs.pop(key, None)
                self._changed.notify_all()
        return _Answer(200, "true", _JSON)

    # --- long polling --------------------------------------------------------------------------

    def _listen(self, request: _Request) -> _Answer:
        probe = request.params.get("Listening-Configs", "")
        if not probe.strip():
            raise _caused("invalid probeModify")
        # The server URL-decodes the parameter once more after the servlet did.
        if "%" in probe and not _valid_escapes(probe):
            raise _caused("URLDecoder: Illegal hex characters in escape (%) pattern")
        listening = _parse_listening(urllib.parse.unquote_plus(probe))
        timeout_header = request.headers.get("Long-Pulling-Timeout")
        if timeout_header is None:
            raise _caused("the fake speaks long polling only: send the Long-Pulling-Timeout header")
        if not _JAVA_LONG.fullmatch(timeout_header):
            raise _caused(f'For input string: "{timeout_header}"')
        timeout_ms = int(timeout_header)
        hold = min(MAX_HOLD, max(self.min_hold, timeout_ms / 1000 - EARLY))
        no_hang_up = request.headers.get("longPullingNoHangUp", "").lower() == "true"
        deadline = time.monotonic() + hold
        with self._changed:
            while True:
                changed = self._stale(listening, request.client_ip)
                remaining = deadline - time.monotonic()
                if changed or no_hang_up or self._stopping or remaining <= 0:
                    break
                self._changed.wait(remaining)
        if not changed:
            return _Answer(200, "", _TEXT)
        lines = "".join(
            data_id + WORD + group + (WORD + tenant if tenant else "") + LINE
            for tenant, group, data_id in changed
        )
        return _Answer(200, _java_url_encode(lines) + "\n", _TEXT, {"Cache-Control": "no-cache"})

    def _stale(self, listening: Mapping[Key, str], client_ip: str) -> list[Key]:
        """The listed configs whose md5, as this client would read them, is not the one given."""
        changed = []
        for key, md5 in listening.items():
            beta = self._betas.get(key)
            stored = self._configs.get(key)
            if beta is not None and client_ip in beta.ips:
                current = nacos_md5(beta.content)
            else:
                current = nacos_md5(stored.content) if stored is not None else ""
            if current != md5:
                changed.append(key)
        return changed


# --- validation ----------------------------------------------------------------------------------


def _valid_name(value: str) -> bool:
    """``ParamUtils.isValid``: letters, digits (any script) and ``_-.:``."""
    return all(char.isalnum() or char in _VALID_PUNCTUATION for char in value)


def _check_tenant(tenant: str) -> None:
    if tenant.strip():
        if not _valid_name(tenant.strip()):
            raise _caused("invalid tenant")
        if len(tenant) > 128:
            raise _caused("too long tenant, over 128")


def _check_config(data_id: str, group: str, content: str) -> None:
    if not data_id.strip() or not _valid_name(data_id.strip()):
        raise _caused(f"invalid dataId : {data_id}")
    if not group.strip() or not _valid_name(group):
        raise _caused(f"invalid group : {group}")
    if not content.strip():
        raise _caused(f"content is blank : {content}")
    if len(content) > MAX_CONTENT:
        raise _caused(f"invalid content, over {MAX_CONTENT}")


def _check_tag(tag: str) -> None:
    if tag.strip():
        if not _valid_name(tag.strip()):
            raise _caused(f"invalid tag : {tag}")
        if len(tag) > 16:
            raise _caused("too long tag, over 16")


def _version(text: str) -> tuple[int, int, int]:
    """``2.3.0-BETA`` as ``(2, 3, 0)``; a version that does not start with a number is 0."""
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if match is None:
        return (0, 0, 0)
    major, minor, patch = (int(part or 0) for part in match.groups())
    return (major, minor, patch)


def _config_type(value: str) -> str:
    return value if value in CONFIG_TYPES else "text"


def _required(clock: Clock, request: _Request, name: str) -> str:
    value = request.params.get(name)
    if value is None:
        message = (
            f"Required request parameter '{name}' for method parameter type String is not present"
        )
        raise _spring_error(clock, 400, message, request.path)
    return value


def _parse_listening(probe: str) -> dict[Key, str]:
    """``MD5Util.getClientMd5Map``: ``dataId^2group^2md5[^2tenant]^1`` records to md5 by key."""
    listening: dict[Key, str] = {}
    records = probe.split(LINE)
    # Text after the last separator is not a record; the server ignores it too.
    for record in records[:-1]:
        fields = record.split(WORD)
        if len(fields) == 3:
            data_id, group, md5 = fields
            tenant = ""
        elif len(fields) == 4:
            data_id, group, md5, tenant = fields
        else:
            raise _caused("invalid probeModify")
        listening[(tenant, group, data_id)] = md5
        if len(listening) > MAX_LISTENERS:
            raise _caused("invalid probeModify")
    return listening


def _valid_escapes(text: str) -> bool:
    hexdigits = "0123456789abcdefABCDEF"
    index = text.find("%")
    while index != -1:
        escape = text[index + 1 : index + 3]
        if len(escape) < 2 or any(char not in hexdigits for char in escape):
            return False
        index = text.find("%", index + 3)
    return True


def _java_url_encode(text: str) -> str:
    """``URLEncoder.encode(text, "UTF-8")``: like ``quote_plus`` but keeping ``*``, not ``~``."""
    return urllib.parse.quote_plus(text, safe="*").replace("~", "%7E")


# --- HTTP plumbing -------------------------------------------------------------------------------


def _parameters(method: str, query: str, headers: Headers, body: bytes) -> dict[str, str] | None:
    """Servlet parameters (first value of each), or None when they cannot be decoded."""
    pairs: list[tuple[str, str]] = []
    try:
        pairs += urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict")
        if method == "POST" and headers.get_content_type() == "application/x-www-form-urlencoded":
            charset = headers.get_content_charset("utf-8") or "utf-8"
            text = body.decode(charset)
            pairs += urllib.parse.parse_qsl(
                text, keep_blank_values=True, encoding=charset, errors="strict"
            )
    except (UnicodeDecodeError, LookupError, ValueError):
        return None
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    return params


def _remote_ip(handler: BaseHTTPRequestHandler) -> str:
    """``RequestUtil.getRemoteIp``."""
    forwarded = handler.headers.get("X-Forwarded-For", "")
    if forwarded.strip():
        return forwarded.split(",")[0].strip()
    real_ip = handler.headers.get("X-Real-IP", "")
    if real_ip.strip():
        return real_ip
    return str(handler.client_address[0])


def _caused(reason: str, *, status: int = 400) -> _Answer:
    """The config module's exception handler: ``ExceptionUtil.getAllExceptionMsg`` as text."""
    return _Answer(status, f"caused: {reason};")


def _spring_error(clock: Clock, status: int, message: str, path: str) -> _Answer:
    """Spring Boot's error page, as ``sendError`` produces it (the server includes messages)."""
    page = {
        "timestamp": clock.now().isoformat(timespec="milliseconds"),
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "path": path,
    }
    return _Answer(status, json.dumps(page), _JSON)


def _send(handler: BaseHTTPRequestHandler, answer: _Answer) -> None:
    body = answer.body.encode("utf-8")
    handler.send_response(answer.status)
    handler.send_header("Content-Type", answer.content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in answer.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
