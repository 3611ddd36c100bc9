"""A small client of Nacos's v1 config Open API: login, read, publish (with ``casMd5`` and
``betaIps``), delete, the long-polling listener, and the server's version.

Every failure is a ``BackendError`` naming the server and the cause; the password and the
access token never appear in one.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from grayrelease_adapters.remote import Answer, ServiceError, exchange

from grayrelease_core import BackendError

LOGIN = "/nacos/v1/auth/login"
CONFIGS = "/nacos/v1/cs/configs"
LISTENER = "/nacos/v1/cs/configs/listener"
REFRESH_AT = 0.8
"""Log in again once this share of the token's lifetime has passed."""
SERVER_STATES = ("/nacos/v1/console/server/state", "/nacos/v3/admin/core/state")
"""Where Nacos says its version, outside auth: 1.x and 2.x on the console's route (a JSON
object with ``version``); 3.x, whose console moved to a port of its own, on its admin route
(the object wrapped as ``{"code":0,"data":{...}}``)."""
CAS_OVER_HTTP = (2, 3, 0)
"""The first Nacos whose HTTP publish reads ``casMd5`` (alibaba/nacos#11120, in 2.3.0-BETA):
older servers ignore it and overwrite."""
CAS_FAILED = "cas publish fail"
SERVER_MIN_HOLD = 10.0
"""Seconds a Nacos server holds a long poll at the least (``LongPollingService``)."""


def nacos_md5(content: str) -> str:
    """The MD5 Nacos keeps of a config: hex of its UTF-8 bytes."""
    return hashlib.md5(content.encode(), usedforsecurity=False).hexdigest()


class ConfigId(NamedTuple):
    """Where a config lives in Nacos."""

    tenant: str
    """The namespace id (``""``: the public namespace)."""
    group: str
    data_id: str

    def __str__(self) -> str:
        return f"{self.tenant or 'public'}/{self.group}/{self.data_id}"


class NacosClient:
    """Calls one Nacos server (or the address in front of a cluster)."""

    def __init__(
        self,
        server: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        monotonic: Any = time.monotonic,
    ) -> None:
        self.server = server.rstrip("/")
        self._username = username
        self._password = password
        self._timeout = timeout
        self._monotonic = monotonic
        self._token: str | None = None
        self._token_until = 0.0
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener()
        self._error = ServiceError("Nacos", self.server)

    # --- calls ------------------------------------------------------------------------------

    def get(self, config: ConfigId) -> str | None:
        """The config's content, ``None`` when Nacos has none."""
        answer = self._call("GET", CONFIGS, _params(config), what=f"reading {config}")
        if answer.status == 404:
            return None
        self._check(answer, f"reading {config}")
        return answer.body

    def publish(
        self,
        config: ConfigId,
        content: str,
        *,
        cas_md5: str | None = None,
        beta_ips: Sequence[str] = (),
        type_: str = "text",
        actor: str = "",
        description: str = "",
    ) -> None:
        """Publish ``content``; with ``cas_md5``, only if Nacos still holds what had that MD5.

        :raises BackendError: it failed; ``details["casFailed"]`` when the config changed in
            Nacos meanwhile.
        """
        form = {**_params(config), "content": content, "type": type_}
        if actor:
            form["src_user"] = actor
        if description:
            form["desc"] = description
        headers = {"betaIps": ",".join(beta_ips)} if beta_ips else {}
        if cas_md5 is not None:
            headers["casMd5"] = cas_md5  # a header: as a parameter Nacos ignores it
        what = f"publishing {config}" + (" as a beta" if beta_ips else "")
        answer = self._call("POST", CONFIGS, form, what=what, headers=headers)
        if answer.status == 500 and CAS_FAILED in answer.body.lower():
            raise changed_since_read(self.server, config)
        self._check(answer, what)
        if answer.body.strip() != "true":
            raise self._error(what, f"Nacos answered {answer.body[:200]!r}, not true")

    def delete(self, config: ConfigId, *, beta: bool = False) -> None:
        """Delete the config (or, with ``beta``, only its beta)."""
        params = {**_params(config), **({"beta": "true"} if beta else {})}
        what = f"deleting {config}" + ("'s beta" if beta else "")
        answer = self._call("DELETE", CONFIGS, params, what=what)
        self._check(answer, what)
        if beta and not _beta_stopped(answer.body):
            # Nacos (stopBeta, 1.4 to 3.x) answers a failed stop with HTTP 200 and
            # {"code":500,"message":"remove beta data error","data":false}.
            raise self._error(what, f"Nacos answered {answer.body[:200]!r}: the beta still runs")

    def server_version(self) -> str | None:
        """The version the server says it is; ``None`` when it says none (each state route
        is missing or answers no version: a proxy that forwards only the config API, a
        build without a version).

        :raises BackendError: the server could not be asked (down, no answer, a 403, a 5xx).
        """
        what = "asking its version"
        for path in SERVER_STATES:
            # No token: the route is outside Nacos's auth, and the login can wait.
            answer = self._send("GET", path, {}, what, None, None, None)
            if answer.status == 404:
                continue
            self._check(answer, what)
            version = _version_answer(answer.body)
            if version is not None:
                return version
        return None

    def listen(self, md5s: Mapping[ConfigId, str], timeout: float) -> list[ConfigId]:
        """Wait up to ``timeout`` seconds for any of the configs to differ from its MD5
        (``""`` for an absent one); the ones that changed (none on a quiet timeout)."""
        listening = "".join(
            f"{c.data_id}\x02{c.group}\x02{md5}" + (f"\x02{c.tenant}" if c.tenant else "") + "\x01"
            for c, md5 in md5s.items()
        )
        answer = self._call(
            "POST",
            LISTENER,
            {"Listening-Configs": listening},
            what="listening for changes",
            headers={"Long-Pulling-Timeout": str(int(timeout * 1000))},
            # A real server holds a poll at least SERVER_MIN_HOLD seconds, whatever is asked.
            timeout=max(timeout, SERVER_MIN_HOLD) + self._timeout,
        )
        self._check(answer, "listening for changes")
        changed = []
        # Java's URLEncoder wrote it: spaces are "+".
        for entry in urllib.parse.unquote_plus(answer.body.strip()).split("\x01"):
            if not entry:
                continue
            parts = entry.split("\x02")
            if len(parts) < 2:
                raise self._error("listening for changes", f"cannot read {entry!r}")
            changed.append(ConfigId(parts[2] if len(parts) > 2 else "", parts[1], parts[0]))
        return changed

    # --- plumbing ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        """One call, logged in first when auth is on; a token Nacos no longer takes is
        replaced once."""
        answer = self._send(method, path, params, what, headers, timeout, self._access_token())
        if answer.status == 403 and self._username is not None and "token" in answer.body:
            with self._lock:
                self._token = None
            answer = self._send(method, path, params, what, headers, timeout, self._access_token())
        return answer

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        what: str,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        token: str | None,
    ) -> Answer:
        query = dict(params)
        if token is not None:
            query["accessToken"] = token
        body = None
        url = f"{self.server}{path}"
        send_headers = {"Accept": "*/*", **(headers or {})}
        if method == "POST":
            body = urllib.parse.urlencode(query).encode()
            send_headers["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8"
        elif query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, data=body, method=method, headers=send_headers)
        return exchange(
            self._opener, request, timeout=timeout or self._timeout, what=what, error=self._error
        )

    def _access_token(self) -> str | None:
        if self._username is None:
            return None
        with self._lock:
            if self._token is not None and self._monotonic() < self._token_until:
                return self._token
            answer = self._send(
                "POST",
                LOGIN,
                {"username": self._username, "password": self._password or ""},
                "logging in",
                None,
                None,
                None,
            )
            if answer.status == 403 and "unknown user" in answer.body:
                raise self._error("logging in", f"Nacos refused the user {self._username!r}")
            self._check(answer, "logging in")
            token, ttl = _login_answer(answer.body)
            if token is None:
                raise self._error("logging in", "the answer holds no accessToken")
            self._token = token
            self._token_until = self._monotonic() + ttl * REFRESH_AT
            return token

    def _check(self, answer: Answer, what: str) -> None:
        if answer.status == 403:
            raise self._error(what, f"access denied (403): {answer.body[:200]}")
        if answer.status >= 400:
            raise self._error(what, f"HTTP {answer.status}: {answer.body[:200]}")


def changed_since_read(server: str, config: ConfigId) -> BackendError:
    """The refusal of a publish whose config changed in Nacos since it was read."""
    return BackendError(
        f"{config} changed in Nacos ({server}) since it was read; nothing was "
        "published: read it again and retry",
        details={"server": server, "config": str(config), "casFailed": True},
    )


def honours_cas_md5(version: str) -> bool:
    """Whether a Nacos of ``version`` (``2.2.3``, ``2.3.0-BETA``, ``2.4.0.1``) refuses an
    HTTP publish whose ``casMd5`` is stale, rather than ignoring it."""
    numbers = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if numbers is None:
        return False
    return tuple(int(n or 0) for n in numbers.groups()) >= CAS_OVER_HTTP


def _params(config: ConfigId) -> dict[str, str]:
    params = {"dataId": config.data_id, "group": config.group}
    if config.tenant:
        params["tenant"] = config.tenant
    return params


def _json_object(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _beta_stopped(body: str) -> bool:
    answer = _json_object(body)
    return answer.get("code") == 200 and answer.get("data") is True


def _version_answer(body: str) -> str | None:
    state = _json_object(body)
    if "version" not in state and isinstance(state.get("data"), dict):
        state = state["data"]  # 3.x wraps it
    version = state.get("version")
    return version.strip() if isinstance(version, str) and version.strip() else None


def _login_answer(body: str) -> tuple[str | None, float]:
    data = _json_object(body)
    token = data.get("accessToken")
    ttl = data.get("tokenTtl", 18000)
    if not isinstance(token, str) or not token:
        return None, 0.0
    return token, float(ttl) if isinstance(ttl, int | float) else 18000.0
