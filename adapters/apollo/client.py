"""Small clients of Apollo: the portal's Open API (items and releases, with a consumer token)
and the config service's long-polling notifications (signed with an access key if the app
has one).

Every failure is a ``BackendError`` naming the server and the cause; the token and the
access key never appear in one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from grayrelease_adapters.remote import Answer, ServiceError, exchange

from grayrelease_core import BackendError

OPENAPI = "/openapi/v1"
TITLE_LIMIT = 64
"""Apollo refuses a ``releaseTitle`` longer than this."""
COMMENT_LIMIT = 256
"""Apollo refuses an item's or a release's comment longer than this."""
SERVER_HOLD = 60.0
"""Seconds Apollo's config service holds a notification poll."""


class NamespaceId(NamedTuple):
    """Where a config lives in Apollo."""

    env: str
    app_id: str
    cluster: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.env}/{self.app_id}/{self.cluster}/{self.namespace}"

    @property
    def path(self) -> str:
        q = _segment
        return (
            f"{OPENAPI}/envs/{q(self.env)}/apps/{q(self.app_id)}/clusters/{q(self.cluster)}"
            f"/namespaces/{q(self.namespace)}"
        )


class Release(NamedTuple):
    """A namespace's latest release, as the portal tells it."""

    id: int
    configurations: Mapping[str, str]


class ApolloPortal:
    """Calls the portal's Open API as one consumer (its token)."""

    def __init__(self, server: str, token: str, *, timeout: float = 5.0) -> None:
        self.server = server.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._opener = urllib.request.build_opener()
        self._error = ServiceError("Apollo portal", self.server)

    def latest_release(self, ns: NamespaceId) -> Release | None:
        """The namespace's latest release; ``None`` when it has never been released."""
        what = f"reading the latest release of {ns}"
        data = self._json("GET", f"{ns.path}/releases/latest", what=what)
        if data is None:
            return None
        return _release(data, lambda cause: self._error(what, cause))

    def items(self, ns: NamespaceId) -> dict[str, str]:
        """The namespace's items as they are now, released or not."""
        what = f"reading the items of {ns}"
        data = self._json("GET", ns.path, what=what)
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._error(what, "the answer holds no items")
        found = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise self._error(what, f"cannot read the item {item!r:.100}")
            if item["key"]:  # Apollo keeps comments and blank lines as items without a key
                found[item["key"]] = str(item.get("value", ""))
        return found

    def put_item(
        self, ns: NamespaceId, key: str, value: str, *, operator: str, comment: str
    ) -> None:
        body = {
            "key": key,
            "value": value,
            "comment": comment[:COMMENT_LIMIT],
            "dataChangeLastModifiedBy": operator,
            "dataChangeCreatedBy": operator,
        }
        path = f"{ns.path}/items/{_segment(key)}?createIfNotExists=true"
        self._json("PUT", path, body, what=f"writing {key} in {ns}")

    def delete_item(self, ns: NamespaceId, key: str, *, operator: str) -> None:
        path = f"{ns.path}/items/{_segment(key)}?{urllib.parse.urlencode({'operator': operator})}"
        self._json("DELETE", path, what=f"deleting {key} in {ns}")

    def release(self, ns: NamespaceId, *, title: str, comment: str, operator: str) -> Release:
        what = f"releasing {ns}"
        body = {
            "releaseTitle": title[:TITLE_LIMIT],
            "releaseComment": comment[:COMMENT_LIMIT],
            "releasedBy": operator,
        }
        data = self._json("POST", f"{ns.path}/releases", body, what=what)
        return _release(data, lambda cause: self._error(what, cause))

    def _json(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, what: str
    ) -> Any:
        """One call; its JSON answer (``None`` for an empty one)."""
        headers = {"Authorization": self._token, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json;charset=UTF-8"
        request = urllib.request.Request(
            f"{self.server}{path}", data=data, method=method, headers=headers
        )
        answer = exchange(
            self._opener, request, timeout=self._timeout, what=what, error=self._error
        )
        if answer.status >= 400:
            raise _refusal(answer, what, self._error)
        if not answer.body.strip():
            return None
        try:
            return json.loads(answer.body)
        except ValueError:
            raise self._error(what, f"the answer is not JSON: {answer.body[:100]!r}") from None


class ApolloConfigService:
    """Long-polls one environment's config service for released namespaces."""

    def __init__(
        self,
        server: str,
        *,
        access_keys: Mapping[str, str],
        timeout: float,
        now_ms: Callable[[], int],
    ) -> None:
        self.server = server.rstrip("/")
        self._access_keys = access_keys
        self._timeout = timeout
        self._now_ms = now_ms
        self._opener = urllib.request.build_opener()
        self._error = ServiceError("Apollo config service", self.server)

    def notifications(self, app_id: str, cluster: str, ids: Mapping[str, int]) -> dict[str, int]:
        """Wait (up to the server's hold) for a release of any of the namespaces newer than
        its notification id (-1: never seen); the namespaces released, with their new ids."""
        listed = [{"namespaceName": name, "notificationId": id_} for name, id_ in ids.items()]
        query = urllib.parse.urlencode(
            {
                "appId": app_id,
                "cluster": cluster,
                "notifications": json.dumps(listed, separators=(",", ":")),
            }
        )
        path = f"/notifications/v2?{query}"
        what = f"waiting for releases of {app_id}"
        headers = {"Accept": "application/json", **self._signature(app_id, path)}
        request = urllib.request.Request(f"{self.server}{path}", headers=headers)
        answer = exchange(
            self._opener,
            request,
            timeout=SERVER_HOLD + self._timeout,
            what=what,
            error=self._error,
        )
        if answer.status == 304:
            return {}
        if answer.status >= 400:
            raise _refusal(answer, what, self._error)
        try:
            data = json.loads(answer.body)
            return {str(n["namespaceName"]): int(n["notificationId"]) for n in data}
        except (ValueError, TypeError, KeyError):
            raise self._error(what, f"cannot read {answer.body[:100]!r}") from None

    def _signature(self, app_id: str, path_with_query: str) -> dict[str, str]:
        secret = self._access_keys.get(app_id)
        if secret is None:
            return {}
        timestamp = str(self._now_ms())
        signature = access_signature(secret, timestamp, path_with_query)
        return {
            "Authorization": f"Apollo {app_id}:{signature}",
            "Timestamp": timestamp,
        }


def access_signature(secret: str, timestamp: str, path_with_query: str) -> str:
    """Apollo's access key signature: base64 of HMAC-SHA1 over ``timestamp\\npathWithQuery``."""
    digest = hmac.new(
        secret.encode(), f"{timestamp}\n{path_with_query}".encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _release(data: Any, error: Callable[[str], BackendError]) -> Release:
    if not isinstance(data, dict):
        raise error("the answer holds no release")
    configurations = data.get("configurations")
    if isinstance(configurations, str):  # older portals send the configurations as JSON text
        try:
            configurations = json.loads(configurations)
        except ValueError:
            configurations = None
    release_id = data.get("id")
    if not isinstance(configurations, dict) or not isinstance(release_id, int):
        raise error("the release holds no id or configurations")
    return Release(release_id, {str(k): str(v) for k, v in configurations.items()})


def _refusal(answer: Answer, what: str, error: ServiceError) -> BackendError:
    """Apollo's error body ``{"status", "message", "exception", ...}``, worded for a person."""
    message = answer.body[:200]
    try:
        data = json.loads(answer.body)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            message = data["message"]
    except ValueError:
        pass
    if answer.status == 401:
        cause = "the consumer token was refused (401)"
    elif answer.status == 403:
        cause = f"access denied (403): {message}"
    else:
        cause = f"HTTP {answer.status}: {message}"
    return error(what, cause)
