"""``dingtalk``: notifications to a DingTalk group through a custom robot with signing (加签).

Enabled by a ``dingtalk`` settings section::

    {"dingtalk": {"webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=...",
                  "secret": "SEC...", "msgtype": "markdown", "timeout": 5}}

or ``"access_token": "..."`` (and ``"base_url"``, default ``https://oapi.dingtalk.com``) in
place of ``webhook_url``. ``msgtype`` is ``markdown`` (the default) or ``actionCard`` (a
button opening the plan, used when the message has a link; DingTalk cannot @ anyone in an
actionCard). ``link_title`` labels the link (default ``查看计划``).

Recipients are mobile numbers to @: listed in ``at.atMobiles`` and written as ``@138...`` in
the text, without which DingTalk does not show the mention. A markdown too long for the
robot's 20000-byte limit is cut, on a character boundary, rather than refused. Speaks HTTP
with the standard library only; the protocol is in ``PROTOCOLS.md`` (DingTalk custom robot).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import attrs

from grayrelease_core import Clock, Settings, SystemClock, ValidationError, hookimpl
from grayrelease_core.notify import DeliveryError, Message
from grayrelease_core.rules import rules_object, seconds

from . import webhook

SECTION = "dingtalk"
FIELD = f"settings.{SECTION}"
DEFAULT_BASE_URL = "https://oapi.dingtalk.com"
SEND_PATH = "/robot/send"
MAX_BODY_BYTES = 20_000
"""DingTalk refuses a message over this many bytes (errcode 460101)."""

RATE_LIMITED = 130101
THROTTLE_SECONDS = 600.0
"""DingTalk's documentation: over 20 messages a minute throttles the robot for 10 minutes,
so an earlier retry would only be refused again."""
BAD_SIGNATURE = 310000
BAD_TOKENS = frozenset({300001, 300005})
TOO_LONG = 460101
BUSY = -1
"""``系统繁忙``: the service's own transient failure."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sign_dingtalk(timestamp_ms: str, secret: str) -> str:
    """The ``sign`` query value for ``timestamp_ms``: HMAC-SHA256 keyed by ``secret`` over
    ``timestamp + "\\n" + secret``, base64, then ``quote_plus`` (ready to put in a URL)."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


@attrs.frozen
class DingTalkSettings:
    """The validated ``dingtalk`` settings section."""

    endpoint: str
    """The robot's send URL without its query (``https://oapi.dingtalk.com/robot/send``)."""
    access_token: str = attrs.field(repr=False)
    secret: str = attrs.field(repr=False)
    """The signing secret (``SEC...``); never shown, never sent."""
    msgtype: Literal["markdown", "actionCard"] = "markdown"
    timeout: float = 5.0
    """Seconds to wait for the connection and for the answer."""
    link_title: str = webhook.DEFAULT_LINK_TITLE
    """Label of the link to the plan (the markdown link, the actionCard button)."""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> DingTalkSettings:
        """Validate the section; each error names its field (``settings.dingtalk.secret``)."""
        data = rules_object(
            section,
            allowed=(
                "webhook_url",
                "access_token",
                "base_url",
                "secret",
                "msgtype",
                "timeout",
                "link_title",
            ),
            required=(),
            field=FIELD,
        )
        endpoint, token = webhook.robot_webhook(
            data, FIELD, param="access_token", default_base=DEFAULT_BASE_URL, path=SEND_PATH
        )
        msgtype = data.get("msgtype", "markdown")
        if msgtype not in ("markdown", "actionCard"):
            raise ValidationError(
                f"{FIELD}.msgtype", "must be markdown or actionCard", value=str(msgtype)
            )
        return cls(
            endpoint=endpoint,
            access_token=token,
            secret=_secret(data),
            msgtype=msgtype,
            timeout=seconds(data.get("timeout", 5), f"{FIELD}.timeout", webhook.MAX_TIMEOUT),
            link_title=webhook.link_label(
                data.get("link_title", webhook.DEFAULT_LINK_TITLE), f"{FIELD}.link_title"
            ),
        )


class DingTalkNotifier:
    """The ``dingtalk`` channel: one robot, one group."""

    name = "dingtalk"

    def __init__(self, settings: DingTalkSettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        self._opener = webhook.webhook_opener()

    def __repr__(self) -> str:
        return f"DingTalkNotifier(endpoint={self.settings.endpoint!r})"

    def send(self, message: Message, recipients: Sequence[str]) -> None:
        body = self.body(message, recipients)
        timestamp = str((self._clock.now() - _EPOCH) // timedelta(milliseconds=1))
        url = (
            f"{self.settings.endpoint}?access_token={self.settings.access_token}"
            f"&timestamp={timestamp}&sign={sign_dingtalk(timestamp, self.settings.secret)}"
        )
        answer = webhook.post_json(SECTION, self._opener, url, body, self.settings.timeout)
        _check_answer(*answer)

    def body(self, message: Message, recipients: Sequence[str]) -> bytes:
        """The JSON body for ``message``, at most ``MAX_BODY_BYTES`` long."""
        mobiles = list(dict.fromkeys(r.strip() for r in recipients if r.strip()))
        title = message.title or "grayrelease"
        markdown = message.markdown or message.text
        link = message.link
        build: Callable[[str], dict[str, Any]]
        if self.settings.msgtype == "actionCard" and link:

            def build(text: str) -> dict[str, Any]:
                return {
                    "msgtype": "actionCard",
                    "actionCard": {
                        "title": title,
                        "text": text,
                        "singleTitle": self.settings.link_title,
                        "singleURL": link,
                    },
                }

        else:
            tail = ""
            if link:
                tail += f"\n\n[{self.settings.link_title}]({link})"
            if mobiles:
                tail += "\n\n" + " ".join(f"@{mobile}" for mobile in mobiles)

            def build(text: str) -> dict[str, Any]:
                return {
                    "msgtype": "markdown",
                    "markdown": {"title": title, "text": text + tail},
                    "at": {"atMobiles": mobiles, "isAtAll": False},
                }

        return _fit(build, markdown)


# --- the body --------------------------------------------------------------------------------


def _fit(build: Callable[[str], dict[str, Any]], markdown: str) -> bytes:
    """``build(markdown)`` encoded; when over the limit, with the longest cut of ``markdown``
    that fits (JSON escapes make the body grow unevenly with the text: searched, not computed).
    """
    body = webhook.json_body(build(markdown))
    if len(body) <= MAX_BODY_BYTES:
        return body
    best = webhook.json_body(build(webhook.TRUNCATED))
    if len(best) > MAX_BODY_BYTES:
        raise DeliveryError(
            f"dingtalk: the message does not fit in {MAX_BODY_BYTES} bytes even without "
            "its text (title, link or recipients too long)",
            retryable=False,
        )
    low, high = 0, len(markdown.encode()) - 1
    while low < high:
        middle = (low + high + 1) // 2
        candidate = webhook.json_body(
            build(webhook.truncate_utf8(markdown, middle) + webhook.TRUNCATED)
        )
        if len(candidate) <= MAX_BODY_BYTES:
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


# --- the answer ------------------------------------------------------------------------------


def _check_answer(status: int, reason: str, retry_after: float | None, body: bytes) -> None:
    errcode, errmsg = webhook.robot_answer(SECTION, status, reason, retry_after, body)
    if errcode == 0:
        return
    cause = f"dingtalk: errcode {errcode}: {errmsg}"
    if errcode == RATE_LIMITED:
        raise DeliveryError(
            f"{cause} (the robot is throttled for {THROTTLE_SECONDS / 60:g} minutes)",
            retryable=True,
            retry_after=THROTTLE_SECONDS,
        )
    if errcode == BUSY:
        raise DeliveryError(cause, retryable=True)
    if errcode == BAD_SIGNATURE:
        cause += f" (check {FIELD}.secret and this server's clock)"
    elif errcode in BAD_TOKENS:
        cause += f" (check the access token in {FIELD})"
    elif errcode == TOO_LONG:
        cause += f" (over {MAX_BODY_BYTES} bytes)"
    raise DeliveryError(cause, retryable=False)


# --- validating settings ---------------------------------------------------------------------


def _secret(data: Mapping[str, Any]) -> str:
    field = f"{FIELD}.secret"
    if "secret" not in data:
        raise ValidationError(
            field, "is required: the robot's signing secret (加签), which starts with SEC"
        )
    secret = data["secret"]
    # Never echoed: it is the credential.
    if not isinstance(secret, str) or not secret.strip().startswith("SEC"):
        raise ValidationError(field, "must be the robot's signing secret, which starts with SEC")
    secret = secret.strip()
    if len(secret) == 3 or not secret.isascii() or not secret.isprintable() or " " in secret:
        raise ValidationError(field, "must be the whole secret: SEC then letters and digits")
    return secret


@hookimpl
def grayrelease_register_notifiers(settings: Settings, clock: Clock) -> list[DingTalkNotifier]:
    # Present but empty still counts as configured, so a forgotten URL is an error, not silence.
    if SECTION not in settings.sections:
        return []
    return [DingTalkNotifier(DingTalkSettings.from_section(settings.section(SECTION)), clock=clock)]
