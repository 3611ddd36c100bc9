"""Loopback fakes of the DingTalk custom robot and the WeCom group robot, strict as the real ones.

Each is an HTTP server on 127.0.0.1 in a thread, used as a context manager::

    with FakeDingTalk({"tok": "SECsecret"}, clock=clock) as dingtalk:
        notifier = ...(dingtalk.webhook_url("tok"))
        dingtalk.accepted  # the messages the group would show

They check what the services check (PROTOCOLS.md): the credential, DingTalk's signature and
timestamp, the JSON body of a known msgtype with the fields it needs, the byte limits and 20
messages a minute per robot, answering HTTP 200 with ``{"errcode", "errmsg"}`` as the services
do. ``fail(502)`` and ``hang()`` turn a server into a broken one for fault tests. Time comes
from ``clock`` (the real one by default), so a test can move a minute on without sleeping.
``wecom_mentions(received.body)`` tells whom a WeCom message notifies, by the robot's rules:
``@all`` only in a text message's ``mentioned_list`` or ``mentioned_mobile_list``; ``<@userid>``
in the content of a text or a markdown (``<@all>`` there is printed, not a mention).
Where the documentation gives no error code (a malformed body) the fakes use the ones the
services are seen to answer; callers should only rely on the documented ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.message import Message as Headers
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

from grayrelease_core import Clock, SystemClock

from .loopback import LoopbackServer

RATE_LIMIT = 20
"""Messages a robot takes per minute."""
DINGTALK_THROTTLE = timedelta(minutes=10)
"""How long DingTalk refuses a robot's messages once it went over the rate."""
DINGTALK_MAX_BODY = 20_000
DINGTALK_MAX_SKEW = timedelta(hours=1)
WECOM_MAX_MARKDOWN = 4096
WECOM_MAX_TEXT = 2048
MAX_REQUEST = 1 << 20
"""Bodies over this are not read at all (HTTP 413), to keep a runaway test bounded."""

WECOM_EVERYONE = "@all"
WECOM_USERID = re.compile(r"<@([A-Za-z0-9][A-Za-z0-9_.@-]{0,63})>")
"""``<@userid>`` in a content: a WeCom userid is letters, digits and ``_-@.``, a letter or a
digit first, so ``<@@all>`` cannot be one."""

OK = (0, "ok")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Received(NamedTuple):
    """A message the robot accepted."""

    robot: str
    """The access token or key it was sent to."""
    body: dict[str, Any]
    raw: bytes
    content_type: str

    @property
    def msgtype(self) -> str:
        return str(self.body["msgtype"])

    @property
    def content(self) -> dict[str, Any]:
        """The msgtype's object (``body["markdown"]``, ``body["text"]``...)."""
        part: dict[str, Any] = self.body[self.msgtype]
        return part


class WeComMentions(NamedTuple):
    """Whom a WeCom message notifies in the group."""

    everyone: bool
    users: tuple[str, ...]
    """User ids mentioned (``mentioned_list``, ``<@userid>``), in order."""
    mobiles: tuple[str, ...]
    """Mobile numbers mentioned (``mentioned_mobile_list``), in order."""


class Refusal(Exception):
    """An answer other than success: ``errcode`` and ``errmsg`` as the service words them."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


class RobotServer(LoopbackServer):
    """What both fakes share: the rate limit and the records."""

    path = "/"

    def __init__(self, clock: Clock | None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.accepted: list[Received] = []
        """Messages accepted, in order (what the group shows)."""
        self.refused: list[tuple[int, str]] = []
        """``(errcode, errmsg)`` of the messages refused, in order."""
        self._lock = threading.Lock()
        self._sent: dict[str, list[datetime]] = {}
        super().__init__()

    # --- one request --------------------------------------------------------------------------

    def handle(self, query: Mapping[str, list[str]], headers: Headers, body: bytes) -> Received:
        """Check one request; the message accepted, or raise ``Refusal``."""
        raise NotImplementedError

    def rate_limit(self, robot: str) -> None:
        """Refuse the message when ``robot`` already took ``RATE_LIMIT`` in the last minute."""
        raise NotImplementedError

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        length = handler.headers.get("Content-Length")
        if length is None or not length.isdigit():
            _send(handler, 411, "text/plain", b"length required")
            return
        if int(length) > MAX_REQUEST:
            _send(handler, 413, "text/plain", b"too large")
            return
        body = handler.rfile.read(int(length))
        if self.hold_if_hanging():
            return  # the connection closes without an answer
        broken = self.fault_page()
        if broken is not None:
            _send(handler, broken[0], "text/html", broken[1].encode())
            return
        if split.path != self.path:
            _send(handler, 404, "text/plain", b"not found")
            return
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        try:
            with self._lock:
                received = self.handle(query, handler.headers, body)
                self.accepted.append(received)
                self._sent.setdefault(received.robot, []).append(self.clock.now())
            errcode, errmsg = OK
        except Refusal as refusal:
            errcode, errmsg = refusal.errcode, refusal.errmsg
            with self._lock:
                self.refused.append((errcode, errmsg))
        answer = json.dumps({"errcode": errcode, "errmsg": errmsg}, ensure_ascii=False)
        _send(handler, 200, "application/json;charset=utf-8", answer.encode())

    def _in_last_minute(self, robot: str) -> int:
        now = self.clock.now()
        return sum(1 for at in self._sent.get(robot, ()) if now - at < timedelta(minutes=1))


class FakeDingTalk(RobotServer):
    """``POST /robot/send?access_token=&timestamp=&sign=`` for the robots given as
    ``{access_token: secret}`` (a ``None`` secret: a robot without signing)."""

    path = "/robot/send"

    def __init__(self, robots: Mapping[str, str | None], *, clock: Clock | None = None) -> None:
        self.robots = dict(robots)
        self._throttled: dict[str, datetime] = {}
        super().__init__(clock)

    def webhook_url(self, token: str) -> str:
        return f"{self.base_url}{self.path}?access_token={token}"

    def handle(self, query: Mapping[str, list[str]], headers: Headers, body: bytes) -> Received:
        token = _single(query, "access_token")
        if not token:
            raise Refusal(300001, "access_token is blank")
        if token not in self.robots:
            raise Refusal(300001, "token is not exist")
        secret = self.robots[token]
        if secret is not None:
            self._check_signature(query, secret)
        self.rate_limit(token)
        if headers.get_content_type() != "application/json" or (
            headers.get_content_charset("utf-8") or "utf-8"
        ).lower() not in ("utf-8", "utf8"):
            raise Refusal(43004, "无效的HTTP HEADER Content-Type")
        if len(body) > DINGTALK_MAX_BODY:
            raise Refusal(460101, f"message too long, exceed {DINGTALK_MAX_BODY} bytes")
        message = _json_object(body)
        _check_dingtalk_shape(message)
        return Received(token, message, body, headers.get("Content-Type", ""))

    def rate_limit(self, robot: str) -> None:
        now = self.clock.now()
        if now < self._throttled.get(robot, now):
            raise Refusal(130101, "send too fast, exceed 20 times per minute")
        if self._in_last_minute(robot) >= RATE_LIMIT:
            self._throttled[robot] = now + DINGTALK_THROTTLE
            raise Refusal(130101, "send too fast, exceed 20 times per minute")

    def _check_signature(self, query: Mapping[str, list[str]], secret: str) -> None:
        timestamp, sign = _single(query, "timestamp"), _single(query, "sign")
        if not timestamp or not timestamp.isdigit():
            raise Refusal(310000, "invalid timestamp")
        now_ms = (self.clock.now() - _EPOCH) // timedelta(milliseconds=1)
        if abs(now_ms - int(timestamp)) > DINGTALK_MAX_SKEW // timedelta(milliseconds=1):
            raise Refusal(310000, "invalid timestamp")
        digest = hmac.new(
            secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256
        ).digest()
        # parse_qs has already undone the URL encoding, as the service does.
        if sign is None or not hmac.compare_digest(sign.encode(), base64.b64encode(digest)):
            raise Refusal(310000, "sign not match")


class FakeWeCom(RobotServer):
    """``POST /cgi-bin/webhook/send?key=`` for the robots' ``keys``."""

    path = "/cgi-bin/webhook/send"

    def __init__(self, keys: Iterable[str], *, clock: Clock | None = None) -> None:
        self.keys = frozenset(keys)
        super().__init__(clock)

    def webhook_url(self, key: str) -> str:
        return f"{self.base_url}{self.path}?key={key}"

    def handle(self, query: Mapping[str, list[str]], headers: Headers, body: bytes) -> Received:
        key = _single(query, "key")
        if key not in self.keys:
            raise Refusal(93000, "invalid webhook url")
        self.rate_limit(key)
        if headers.get_content_type() != "application/json":
            raise Refusal(40035, "invalid Content-Type, expected application/json")
        message = _json_object(body)
        _check_wecom_shape(message)
        return Received(key, message, body, headers.get("Content-Type", ""))

    def rate_limit(self, robot: str) -> None:
        if self._in_last_minute(robot) >= RATE_LIMIT:
            raise Refusal(45009, "api freq out of limit")


# --- message shapes --------------------------------------------------------------------------

_DINGTALK_FIELDS: Mapping[str, tuple[str, ...]] = {
    "text": ("content",),
    "markdown": ("title", "text"),
    "link": ("title", "text", "messageUrl"),
    "actionCard": ("title", "text"),
    "feedCard": (),
}


def _check_dingtalk_shape(message: dict[str, Any]) -> None:
    msgtype = message.get("msgtype")
    if not isinstance(msgtype, str) or not msgtype:
        raise Refusal(40035, "缺少参数 msgtype")
    if msgtype not in _DINGTALK_FIELDS:
        raise Refusal(40035, f"不合法的参数 msgtype: {msgtype}")
    part = message.get(msgtype)
    if not isinstance(part, dict):
        raise Refusal(40035, f"缺少参数 {msgtype}")
    for name in _DINGTALK_FIELDS[msgtype]:
        if not isinstance(part.get(name), str) or not part[name].strip():
            raise Refusal(40035, f"缺少参数 {msgtype}.{name}")
    if msgtype == "actionCard":
        single = ("singleTitle", "singleURL")
        if any(name in part for name in single):
            for name in single:
                if not isinstance(part.get(name), str) or not part[name].strip():
                    raise Refusal(40035, f"缺少参数 actionCard.{name}")
        elif not isinstance(part.get("btns"), list) or not part["btns"]:
            raise Refusal(40035, "缺少参数 actionCard.singleURL 或 actionCard.btns")
    if msgtype == "feedCard" and (not isinstance(part.get("links"), list) or not part["links"]):
        raise Refusal(40035, "缺少参数 feedCard.links")
    at = message.get("at")
    if at is not None:
        if not isinstance(at, dict):
            raise Refusal(40035, "不合法的参数 at")
        for name in ("atMobiles", "atUserIds"):
            if name in at and not _strings(at[name]):
                raise Refusal(40035, f"不合法的参数 at.{name}")
        if "isAtAll" in at and not isinstance(at["isAtAll"], bool):
            raise Refusal(40035, "不合法的参数 at.isAtAll")


def _check_wecom_shape(message: dict[str, Any]) -> None:
    msgtype = message.get("msgtype")
    if msgtype not in ("text", "markdown", "image", "news", "file", "template_card"):
        raise Refusal(40008, "invalid message type")
    part = message.get(msgtype)
    if not isinstance(part, dict):
        raise Refusal(40035, f"missing {msgtype}")
    if msgtype in ("text", "markdown"):
        content = part.get("content")
        if not isinstance(content, str) or not content:
            raise Refusal(44004, "empty content")
        limit = WECOM_MAX_TEXT if msgtype == "text" else WECOM_MAX_MARKDOWN
        if len(content.encode()) > limit:
            raise Refusal(
                40058,
                f"{msgtype}.content exceed max length {limit}. invalid Request Parameter",
            )
    if msgtype == "text":
        for name in ("mentioned_list", "mentioned_mobile_list"):
            if name in part and not _strings(part[name]):
                raise Refusal(40035, f"invalid {name}")


def wecom_mentions(message: Mapping[str, Any]) -> WeComMentions:
    """Whom an accepted WeCom ``message`` notifies.

    Only a text message has ``mentioned_list`` and ``mentioned_mobile_list``, the one way to
    mention everyone (``@all`` in either); a markdown has only its ``content``, so lists sent
    with one mention nobody. In a content only ``<@userid>`` mentions: ``<@all>`` and
    ``<@@all>`` are shown as written, and a mobile number cannot be mentioned there.
    """
    msgtype = message["msgtype"]
    part = message[msgtype]
    everyone = False
    users: list[str] = []
    mobiles: list[str] = []
    if msgtype == "text":
        for name, into in (("mentioned_list", users), ("mentioned_mobile_list", mobiles)):
            for entry in part.get(name, []):
                if entry == WECOM_EVERYONE:
                    everyone = True
                else:
                    into.append(entry)
    if msgtype in ("text", "markdown"):
        # No member of the fakes' groups is called "all": <@all> notifies nobody.
        found = WECOM_USERID.findall(part["content"])
        users.extend(user for user in found if user.lower() != "all")
    return WeComMentions(everyone, tuple(dict.fromkeys(users)), tuple(dict.fromkeys(mobiles)))


# --- helpers ---------------------------------------------------------------------------------


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name, [])
    return values[0] if len(values) == 1 else None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refusal(40035, f"Warning: wrong json format. {exc}") from exc
    if not isinstance(message, dict):
        raise Refusal(40035, "Warning: wrong json format. not an object")
    return message


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(entry, str) for entry in value)


def _send(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
