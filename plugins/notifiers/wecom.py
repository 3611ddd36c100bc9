"""``wecom``: notifications to a WeCom (企业微信) group through a group robot's webhook.

Enabled by a ``wecom`` settings section::

    {"wecom": {"webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...",
               "msgtype": "markdown", "timeout": 5}}

or ``"key": "..."`` (and ``"base_url"``, default ``https://qyapi.weixin.qq.com``) in place of
``webhook_url``. ``msgtype`` is ``markdown`` (the default) or ``text``; ``link_title`` labels
the markdown link to the plan (default ``查看计划``).

Recipients are WeCom user ids to mention: ``<@userid>`` in a markdown's content,
``mentioned_list`` of a text message. ``@all`` mentions everyone, which the robot does only in
a text message's ``mentioned_list`` (a markdown would print it), so a notification to ``@all``
goes out as a text message whatever ``msgtype`` says. A content too long for the robot (4096
bytes of markdown, 2048 of text) is cut, on a character boundary, rather than refused. The
protocol is in ``PROTOCOLS.md`` (WeCom group robot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from grayrelease_core import Settings, ValidationError, hookimpl
from grayrelease_core.notify import DeliveryError, Message
from grayrelease_core.rules import rules_object, seconds

from .webhook import (
    DEFAULT_LINK_TITLE,
    MAX_TIMEOUT,
    TRUNCATED,
    json_body,
    link_label,
    post_json,
    robot_answer,
    robot_webhook,
    truncate_utf8,
    webhook_opener,
)

SECTION = "wecom"
FIELD = f"settings.{SECTION}"
DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
SEND_PATH = "/cgi-bin/webhook/send"
MAX_MARKDOWN_BYTES = 4096
"""WeCom refuses a markdown content over this many bytes (errcode 40058)."""
MAX_TEXT_BYTES = 2048
"""WeCom refuses a text content over this many bytes (errcode 40058)."""

RATE_LIMITED = 45009
RATE_WINDOW_SECONDS = 60.0
"""The robot takes 20 messages a minute; a minute later the window has room again."""
INVALID_WEBHOOK = 93000
BUSY = -1
EVERYONE = "@all"
"""The recipient that mentions the whole group; only a text message can carry it."""


@attrs.frozen
class WeComSettings:
    """The validated ``wecom`` settings section."""

    endpoint: str
    """The robot's send URL without its query (``https://qyapi.weixin.qq.com/cgi-bin/...``)."""
    key: str = attrs.field(repr=False)
    """The robot's key: whoever has it can post to the group; never shown."""
    msgtype: Literal["markdown", "text"] = "markdown"
    timeout: float = 5.0
    """Seconds to wait for the connection and for the answer."""
    link_title: str = DEFAULT_LINK_TITLE
    """Label of the markdown link to the plan."""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> WeComSettings:
        """Validate the section; each error names its field (``settings.wecom.webhook_url``)."""
        data = rules_object(
            section,
            allowed=("webhook_url", "key", "base_url", "msgtype", "timeout", "link_title"),
            required=(),
            field=FIELD,
        )
        endpoint, key = robot_webhook(
            data, FIELD, param="key", default_base=DEFAULT_BASE_URL, path=SEND_PATH
        )
        msgtype = data.get("msgtype", "markdown")
        if msgtype not in ("markdown", "text"):
            raise ValidationError(
                f"{FIELD}.msgtype", "must be markdown or text", value=str(msgtype)
            )
        return cls(
            endpoint=endpoint,
            key=key,
            msgtype=msgtype,
            timeout=seconds(data.get("timeout", 5), f"{FIELD}.timeout", MAX_TIMEOUT),
            link_title=link_label(
                data.get("link_title", DEFAULT_LINK_TITLE), f"{FIELD}.link_title"
            ),
        )


class WeComNotifier:
    """The ``wecom`` channel: one robot, one group."""

    name = "wecom"

    def __init__(self, settings: WeComSettings) -> None:
        self.settings = settings
        self._opener = webhook_opener()

    def __repr__(self) -> str:
        return f"WeComNotifier(endpoint={self.settings.endpoint!r})"

    def send(self, message: Message, recipients: Sequence[str]) -> None:
        url = f"{self.settings.endpoint}?key={self.settings.key}"
        body = self.body(message, recipients)
        answer = post_json(
            SECTION, self._opener, url, body, self.settings.timeout, "application/json"
        )
        _check_answer(*answer)

    def body(self, message: Message, recipients: Sequence[str]) -> bytes:
        """The JSON body for ``message``; its content within the robot's byte limit."""
        users = list(dict.fromkeys(_user(r) for r in recipients if r.strip()))
        payload: dict[str, Any]
        if self.settings.msgtype == "text" or EVERYONE in users:
            tail = f"\n\n{message.link}" if message.link else ""
            content = _fit(f"{message.title}\n\n", message.text, tail, MAX_TEXT_BYTES)
            payload = {"msgtype": "text", "text": {"content": content}}
            if users:
                payload["text"]["mentioned_list"] = users
        else:
            tail = ""
            if message.link:
                tail += f"\n\n[{self.settings.link_title}]({message.link})"
            if users:
                tail += "\n\n" + "".join(f"<@{user}>" for user in users)
            content = _fit("", message.markdown or message.text, tail, MAX_MARKDOWN_BYTES)
            payload = {"msgtype": "markdown", "markdown": {"content": content}}
        # The limits count the content's bytes, so the JSON escapes do not matter here.
        return json_body(payload)


def _user(recipient: str) -> str:
    """``recipient`` as ``mentioned_list`` takes it: ``@all`` in any case is everyone (a user id
    cannot start with ``@``), anything else a user id."""
    user = recipient.strip()
    return EVERYONE if user.lower() == EVERYONE else user


def _fit(head: str, text: str, tail: str, limit: int) -> str:
    """``head + text + tail``, with ``text`` cut so that the whole fits in ``limit`` bytes."""
    content = head + text + tail
    if len(content.encode()) <= limit:
        return content
    budget = limit - len((head + TRUNCATED + tail).encode())
    if budget < 0:
        raise DeliveryError(
            f"wecom: the message does not fit in {limit} bytes even without its text "
            "(title, link or recipients too long)",
            retryable=False,
        )
    return head + truncate_utf8(text, budget) + TRUNCATED + tail


def _check_answer(status: int, reason: str, retry_after: float | None, body: bytes) -> None:
    errcode, errmsg = robot_answer(SECTION, status, reason, retry_after, body)
    if errcode == 0:
        return
    cause = f"wecom: errcode {errcode}: {errmsg}"
    if errcode == RATE_LIMITED:
        raise DeliveryError(cause, retryable=True, retry_after=RATE_WINDOW_SECONDS)
    if errcode == BUSY:
        raise DeliveryError(cause, retryable=True)
    if errcode == INVALID_WEBHOOK:
        cause += f" (check the key in {FIELD})"
    raise DeliveryError(cause, retryable=False)


@hookimpl
def grayrelease_register_notifiers(settings: Settings) -> list[WeComNotifier]:
    # Present but empty still counts as configured, so a forgotten URL is an error, not silence.
    if SECTION not in settings.sections:
        return []
    return [WeComNotifier(WeComSettings.from_section(settings.section(SECTION)))]
