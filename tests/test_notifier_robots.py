"""The DingTalk and WeCom channels against loopback fakes as strict as the real robots."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Any

import pluggy
import pytest
from grayrelease_plugins.notifiers import dingtalk, wecom
from grayrelease_plugins.notifiers.dingtalk import DingTalkNotifier, DingTalkSettings, sign_dingtalk
from grayrelease_plugins.notifiers.webhook import truncate_utf8
from grayrelease_plugins.notifiers.wecom import WeComNotifier, WeComSettings
from hypothesis import given
from hypothesis import strategies as st

from grayrelease_core import ManualClock, Settings, ValidationError, hookspecs
from grayrelease_core.notify import DeliveryError, Message, Notifier

from .fake_robots import FakeDingTalk, FakeWeCom, RobotServer, WeComMentions, wecom_mentions
from .loopback import free_port

TOKEN = "a1b2c3d4e5f6"
SECRET = "SEC0123456789abcdef"
KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
LINK = "https://gray.example.com/plans/p-42"

MESSAGE = Message(
    title="[grayrelease] 自动回滚：缓存配置金丝雀发布",  # noqa: RUF001 - Chinese punctuation
    text="计划 p-42 的错误率超过基线 2 倍，已自动回滚。",  # noqa: RUF001
    markdown="### 自动回滚\n\n计划 **p-42** 的错误率超过基线 2 倍，已自动回滚。",  # noqa: RUF001
    link=LINK,
)

Send = Callable[[Message], None]


@pytest.fixture
def fake_dingtalk(clock: ManualClock) -> Iterator[FakeDingTalk]:
    with FakeDingTalk({TOKEN: SECRET}, clock=clock) as fake:
        yield fake


@pytest.fixture
def fake_wecom(clock: ManualClock) -> Iterator[FakeWeCom]:
    with FakeWeCom([KEY], clock=clock) as fake:
        yield fake


def dingtalk_notifier(
    clock: ManualClock, url: str, secret: str = SECRET, **options: Any
) -> DingTalkNotifier:
    section = {"webhook_url": url, "secret": secret, **options}
    return DingTalkNotifier(DingTalkSettings.from_section(section), clock=clock)


def wecom_notifier(url: str, **options: Any) -> WeComNotifier:
    return WeComNotifier(WeComSettings.from_section({"webhook_url": url, **options}))


def post(url: str, body: bytes, content_type: str = "application/json") -> bytes:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: bytes = response.read()
        return answer


# --- signing ---------------------------------------------------------------------------------


def test_sign_dingtalk_reproduces_the_documented_vector() -> None:
    assert (
        sign_dingtalk("1577262236757", "this is secret")
        == "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
    )


# --- what arrives ----------------------------------------------------------------------------


def test_dingtalk_markdown_arrives_with_title_link_and_mentions(
    clock: ManualClock, fake_dingtalk: FakeDingTalk
) -> None:
    notifier = dingtalk_notifier(clock, fake_dingtalk.webhook_url(TOKEN))
    notifier.send(MESSAGE, ["13800000000", " 13900000001 ", "13800000000"])

    [got] = fake_dingtalk.accepted
    assert got.msgtype == "markdown"
    assert got.content["title"] == MESSAGE.title
    text = got.content["text"]
    assert text.startswith(MESSAGE.markdown)
    assert f"[查看计划]({LINK})" in text
    # DingTalk shows a mention only when the number is also written in the text.
    assert got.body["at"] == {"atMobiles": ["13800000000", "13900000001"], "isAtAll": False}
    assert text.endswith("@13800000000 @13900000001")
    assert got.content_type == "application/json;charset=utf-8"
    assert "自动回滚" in got.raw.decode()  # UTF-8 on the wire, not \u escapes


def test_dingtalk_action_card_opens_the_plan(
    clock: ManualClock, fake_dingtalk: FakeDingTalk
) -> None:
    notifier = dingtalk_notifier(
        clock, fake_dingtalk.webhook_url(TOKEN), msgtype="actionCard", link_title="打开计划"
    )
    notifier.send(MESSAGE, [])
    notifier.send(Message(title="无链接", text="t", markdown="**m**"), [])

    card, fallback = fake_dingtalk.accepted
    assert card.body == {
        "msgtype": "actionCard",
        "actionCard": {
            "title": MESSAGE.title,
            "text": MESSAGE.markdown,
            "singleTitle": "打开计划",
            "singleURL": LINK,
        },
    }
    # Without a link there is no button to show: a markdown message instead.
    assert fallback.msgtype == "markdown"
    assert fallback.content == {"title": "无链接", "text": "**m**"}


def test_wecom_markdown_arrives_with_link_and_mentions(fake_wecom: FakeWeCom) -> None:
    wecom_notifier(fake_wecom.webhook_url(KEY)).send(MESSAGE, ["zhangsan", "lisi"])

    [got] = fake_wecom.accepted
    assert got.body == {
        "msgtype": "markdown",
        "markdown": {
            "content": f"{MESSAGE.markdown}\n\n[查看计划]({LINK})\n\n<@zhangsan><@lisi>",
        },
    }


def test_wecom_text_arrives_with_title_link_and_mentioned_list(fake_wecom: FakeWeCom) -> None:
    wecom_notifier(fake_wecom.webhook_url(KEY), msgtype="text").send(MESSAGE, ["zhangsan", "@all"])

    [got] = fake_wecom.accepted
    assert got.body == {
        "msgtype": "text",
        "text": {
            "content": f"{MESSAGE.title}\n\n{MESSAGE.text}\n\n{LINK}",
            "mentioned_list": ["zhangsan", "@all"],
        },
    }


# --- mentions --------------------------------------------------------------------------------


@pytest.mark.parametrize("msgtype", ["markdown", "text"])
@pytest.mark.parametrize(
    "recipients", [["@all"], ["zhangsan", "@all", "lisi"], [" @ALL ", "zhangsan"]]
)
def test_invariant_wecom_mention_of_everyone_reaches_everyone(
    fake_wecom: FakeWeCom, msgtype: str, recipients: list[str]
) -> None:
    wecom_notifier(fake_wecom.webhook_url(KEY), msgtype=msgtype).send(MESSAGE, recipients)

    [got] = fake_wecom.accepted
    mentions = wecom_mentions(got.body)
    assert mentions.everyone
    users = [r for r in recipients if r.strip().lower() != "@all"]
    assert mentions.users == tuple(users)  # the named ones are still named
    # Only a text message can mention everyone; nothing is left to print "@all" literally.
    assert got.msgtype == "text"
    assert "@all" not in got.content["content"].lower()
    assert got.content["content"] == f"{MESSAGE.title}\n\n{MESSAGE.text}\n\n{LINK}"


def test_wecom_markdown_without_everyone_stays_markdown_and_mentions_user_ids(
    fake_wecom: FakeWeCom,
) -> None:
    wecom_notifier(fake_wecom.webhook_url(KEY)).send(MESSAGE, ["zhangsan", "li.si@corp"])

    [got] = fake_wecom.accepted
    assert got.msgtype == "markdown"
    assert wecom_mentions(got.body) == WeComMentions(False, ("zhangsan", "li.si@corp"), ())


WECOM_USER_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,20}", fullmatch=True)


@given(
    st.sampled_from(["markdown", "text"]),
    st.lists(st.one_of(WECOM_USER_ID, st.sampled_from(["@all", " @all", "@ALL"])), max_size=8),
)
def test_invariant_wecom_every_recipient_is_mentioned(msgtype: str, recipients: list[str]) -> None:
    notifier = wecom_notifier(WE, msgtype=msgtype)
    body = json.loads(notifier.body(MESSAGE, recipients))

    mentions = wecom_mentions(body)
    everyone = any(r.strip().lower() == "@all" for r in recipients)
    assert mentions.everyone == everyone
    named = [r for r in recipients if r.strip().lower() != "@all"]
    assert mentions.users == tuple(dict.fromkeys(named))
    if body["msgtype"] == "markdown":
        assert "@all" not in body["markdown"]["content"].lower()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"msgtype": "markdown", "markdown": {"content": "hi <@all>"}},
            WeComMentions(False, (), ()),
        ),
        (
            {"msgtype": "markdown", "markdown": {"content": "hi <@@all>"}},
            WeComMentions(False, (), ()),
        ),
        (
            {"msgtype": "markdown", "markdown": {"content": "hi", "mentioned_list": ["@all"]}},
            WeComMentions(False, (), ()),
        ),
        (
            {"msgtype": "markdown", "markdown": {"content": "<@zs> <@13800000000>"}},
            WeComMentions(False, ("zs", "13800000000"), ()),  # a user id, never a mobile
        ),
        (
            {"msgtype": "text", "text": {"content": "@all hi"}},
            WeComMentions(False, (), ()),
        ),
        (
            {"msgtype": "text", "text": {"content": "hi", "mentioned_mobile_list": ["@all"]}},
            WeComMentions(True, (), ()),
        ),
        (
            {
                "msgtype": "text",
                "text": {
                    "content": "hi <@ww>",
                    "mentioned_list": ["zs", "@all"],
                    "mentioned_mobile_list": ["13800000000"],
                },
            },
            WeComMentions(True, ("zs", "ww"), ("13800000000",)),
        ),
    ],
    ids=[
        "markdown-at-all",
        "markdown-at-at-all",
        "markdown-mentioned-list",
        "markdown-user-ids",
        "text-at-all-in-content",
        "text-mobile-list-all",
        "text-lists",
    ],
)
def test_the_wecom_fake_counts_only_the_mentions_wecom_makes(
    fake_wecom: FakeWeCom, body: dict[str, Any], expected: WeComMentions
) -> None:
    assert b'"errcode": 0' in post(fake_wecom.webhook_url(KEY), json.dumps(body).encode())
    [got] = fake_wecom.accepted
    assert wecom_mentions(got.body) == expected


# --- rate limits -----------------------------------------------------------------------------


def test_dingtalk_21st_message_in_a_minute_is_retryable_after_the_throttle(
    clock: ManualClock, fake_dingtalk: FakeDingTalk
) -> None:
    notifier = dingtalk_notifier(clock, fake_dingtalk.webhook_url(TOKEN))
    for _ in range(20):
        notifier.send(MESSAGE, [])
        clock.advance(1)

    with pytest.raises(DeliveryError) as caught:
        notifier.send(MESSAGE, [])
    assert caught.value.retryable
    assert caught.value.retry_after == 600
    assert "130101" in str(caught.value)
    assert "send too fast" in str(caught.value)

    # The robot stays throttled for 10 minutes, not only until the minute is over.
    clock.advance(60)
    with pytest.raises(DeliveryError, match="130101"):
        notifier.send(MESSAGE, [])
    clock.advance(600)
    notifier.send(MESSAGE, [])
    assert len(fake_dingtalk.accepted) == 21


def test_wecom_21st_message_in_a_minute_is_retryable_a_minute_later(
    clock: ManualClock, fake_wecom: FakeWeCom
) -> None:
    notifier = wecom_notifier(fake_wecom.webhook_url(KEY))
    for _ in range(20):
        notifier.send(MESSAGE, [])

    with pytest.raises(DeliveryError) as caught:
        notifier.send(MESSAGE, [])
    assert caught.value.retryable
    assert caught.value.retry_after == 60
    assert "45009" in str(caught.value)

    clock.advance(60)
    notifier.send(MESSAGE, [])
    assert len(fake_wecom.accepted) == 21


# --- refusals that retrying cannot fix -------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "secret", "skew", "expected"),
    [
        (TOKEN, "SECnot-the-robots-secret", 0, "errcode 310000: sign not match"),
        ("unknown0token", SECRET, 0, "errcode 300001: token is not exist"),
        (TOKEN, SECRET, 2 * 3600, "errcode 310000: invalid timestamp"),
    ],
    ids=["wrong-secret", "wrong-token", "clock-two-hours-ahead"],
)
def test_dingtalk_refused_credentials_are_not_retryable(
    clock: ManualClock,
    fake_dingtalk: FakeDingTalk,
    token: str,
    secret: str,
    skew: float,
    expected: str,
) -> None:
    notifier_clock = ManualClock(clock.now() + timedelta(seconds=skew))
    notifier = dingtalk_notifier(notifier_clock, fake_dingtalk.webhook_url(token), secret)
    with pytest.raises(DeliveryError) as caught:
        notifier.send(MESSAGE, [])
    assert not caught.value.retryable
    assert caught.value.retry_after is None
    assert expected in str(caught.value)
    assert SECRET not in str(caught.value)
    assert secret not in str(caught.value)
    assert fake_dingtalk.accepted == []


def test_wecom_wrong_key_is_not_retryable(fake_wecom: FakeWeCom) -> None:
    notifier = wecom_notifier(fake_wecom.webhook_url("not-a-key"))
    with pytest.raises(DeliveryError) as caught:
        notifier.send(MESSAGE, [])
    assert not caught.value.retryable
    assert "errcode 93000: invalid webhook url" in str(caught.value)
    assert "not-a-key" not in str(caught.value)


# --- faults ----------------------------------------------------------------------------------


@contextmanager
def dingtalk_pair(clock: ManualClock) -> Iterator[tuple[RobotServer, Send]]:
    with FakeDingTalk({TOKEN: SECRET}, clock=clock) as fake:
        notifier = dingtalk_notifier(clock, fake.webhook_url(TOKEN), timeout=0.3)
        yield fake, lambda message: notifier.send(message, [])


@contextmanager
def wecom_pair(clock: ManualClock) -> Iterator[tuple[RobotServer, Send]]:
    with FakeWeCom([KEY], clock=clock) as fake:
        notifier = wecom_notifier(fake.webhook_url(KEY), timeout=0.3)
        yield fake, lambda message: notifier.send(message, [])


Pair = Callable[[ManualClock], AbstractContextManager[tuple[RobotServer, Send]]]
PAIRS = pytest.mark.parametrize("pair", [dingtalk_pair, wecom_pair], ids=["dingtalk", "wecom"])


@PAIRS
def test_bad_gateway_is_retryable(clock: ManualClock, pair: Pair) -> None:
    with pair(clock) as (fake, send):
        fake.fail(502)
        with pytest.raises(DeliveryError, match="HTTP 502") as caught:
            send(MESSAGE)
        assert caught.value.retryable
        fake.heal()
        send(MESSAGE)
        assert len(fake.accepted) == 1


@PAIRS
def test_hanging_server_times_out_retryable(clock: ManualClock, pair: Pair) -> None:
    with pair(clock) as (fake, send):
        fake.hang()
        with pytest.raises(DeliveryError, match=r"no answer within 0\.3 s") as caught:
            send(MESSAGE)
        assert caught.value.retryable
        assert fake.accepted == []


@pytest.mark.parametrize(
    "make",
    [
        lambda clock, url: dingtalk_notifier(
            clock, f"{url}/robot/send?access_token={TOKEN}", timeout=1
        ),
        lambda clock, url: wecom_notifier(f"{url}/cgi-bin/webhook/send?key={KEY}", timeout=1),
    ],
    ids=["dingtalk", "wecom"],
)
def test_server_down_is_retryable(
    clock: ManualClock, make: Callable[[ManualClock, str], Notifier]
) -> None:
    notifier = make(clock, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DeliveryError, match="cannot connect") as caught:
        notifier.send(MESSAGE, [])
    assert caught.value.retryable


# --- long messages ---------------------------------------------------------------------------

# Three-byte Chinese, a four-byte emoji, and characters JSON escapes (quote, backslash, newline).
LONG_MARKDOWN = ('灰度发布😀 "引用" \\ 路径\n' * 2000)[:14000]


def cut_part(received: str, original: str, tail: str) -> str:
    """The part of ``original`` that arrived, after checking the rest of ``received``."""
    assert received.endswith("\n\n…" + tail)
    part = received[: -len("\n\n…" + tail)]
    assert original.startswith(part)  # a prefix of whole characters, none split or mangled
    return part


def test_dingtalk_truncates_a_long_markdown_to_fit(
    clock: ManualClock, fake_dingtalk: FakeDingTalk
) -> None:
    assert len(LONG_MARKDOWN.encode()) > 30_000
    notifier = dingtalk_notifier(clock, fake_dingtalk.webhook_url(TOKEN))
    notifier.send(Message(title="长消息", text="", markdown=LONG_MARKDOWN, link=LINK), ["1380"])

    [got] = fake_dingtalk.accepted
    assert 19_900 < len(got.raw) <= 20_000
    cut_part(got.content["text"], LONG_MARKDOWN, f"\n\n[查看计划]({LINK})\n\n@1380")


def test_the_dingtalk_fake_refuses_an_oversized_body_as_not_retryable(
    clock: ManualClock, fake_dingtalk: FakeDingTalk
) -> None:
    class Untruncated(DingTalkNotifier):
        def body(self, message: Message, recipients: Any) -> bytes:
            return json.dumps({"msgtype": "text", "text": {"content": "x" * 20_000}}).encode()

    settings = DingTalkSettings.from_section(
        {"webhook_url": fake_dingtalk.webhook_url(TOKEN), "secret": SECRET}
    )
    with pytest.raises(DeliveryError, match="errcode 460101") as caught:
        Untruncated(settings, clock=clock).send(MESSAGE, [])
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("msgtype", "recipients", "limit", "tail"),
    [
        ("markdown", ["zhangsan"], 4096, f"\n\n[查看计划]({LINK})\n\n<@zhangsan>"),
        ("text", ["zhangsan"], 2048, f"\n\n{LINK}"),
        # A markdown channel mentioning everyone sends a text message: the text's limit.
        ("markdown", ["zhangsan", "@all"], 2048, f"\n\n{LINK}"),
    ],
    ids=["markdown", "text", "markdown-to-everyone"],
)
def test_wecom_truncates_a_long_content_to_fit(
    fake_wecom: FakeWeCom, msgtype: str, recipients: list[str], limit: int, tail: str
) -> None:
    notifier = wecom_notifier(fake_wecom.webhook_url(KEY), msgtype=msgtype)
    message = Message(title="长消息", text=LONG_MARKDOWN, markdown=LONG_MARKDOWN, link=LINK)
    notifier.send(message, recipients)

    [got] = fake_wecom.accepted
    assert got.msgtype == ("text" if limit == 2048 else "markdown")
    content: str = got.content["content"]
    assert limit - 4 < len(content.encode()) <= limit
    head = "长消息\n\n" if got.msgtype == "text" else ""
    assert content.startswith(head)
    cut_part(content[len(head) :], LONG_MARKDOWN, tail)
    assert wecom_mentions(got.body) == WeComMentions("@all" in recipients, ("zhangsan",), ())


def test_the_wecom_fake_refuses_an_oversized_content() -> None:
    with FakeWeCom([KEY]) as fake:
        body = json.dumps({"msgtype": "markdown", "markdown": {"content": "x" * 4097}}).encode()
        answer = post(fake.webhook_url(KEY), body)
    assert b'"errcode": 40058' in answer
    assert fake.accepted == []


@given(st.text(), st.integers(min_value=-1, max_value=64))
def test_truncate_utf8_keeps_the_longest_prefix_of_whole_characters(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)
    assert text.startswith(cut)
    assert len(cut.encode()) <= max(limit, 0)
    if cut != text:
        assert len(text[: len(cut) + 1].encode()) > limit


# --- the fakes are strict --------------------------------------------------------------------


def test_the_dingtalk_fake_refuses_a_missing_signature_and_a_wrong_content_type(
    clock: ManualClock, fake_dingtalk: FakeDingTalk
) -> None:
    body = b'{"msgtype":"text","text":{"content":"hi"}}'
    assert b"310000" in post(fake_dingtalk.webhook_url(TOKEN), body)
    timestamp = str(int(clock.now().timestamp() * 1000))
    signed = (
        f"{fake_dingtalk.webhook_url(TOKEN)}&timestamp={timestamp}"
        f"&sign={sign_dingtalk(timestamp, SECRET)}"
    )
    assert b"43004" in post(signed, body, content_type="text/plain")
    assert b"40035" in post(signed, b'{"msgtype":"markdown","markdown":{"title":"t"}}')
    assert b'"errcode": 0' in post(signed, body)
    assert [r.msgtype for r in fake_dingtalk.accepted] == ["text"]


# --- settings --------------------------------------------------------------------------------

DING = "https://oapi.dingtalk.com/robot/send?access_token=abc123"


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"secret": SECRET}, "settings.dingtalk.webhook_url"),
        ({"webhook_url": DING}, "settings.dingtalk.secret"),
        ({"webhook_url": DING, "secret": "not-a-sec"}, "settings.dingtalk.secret"),
        ({"webhook_url": DING, "secret": "SEC"}, "settings.dingtalk.secret"),
        ({"webhook_url": "https://oapi.dingtalk.com/robot/send", "secret": SECRET}, "webhook_url"),
        ({"webhook_url": DING + "&timestamp=1&sign=x", "secret": SECRET}, "webhook_url"),
        ({"webhook_url": "ftp://h/robot/send?access_token=a", "secret": SECRET}, "webhook_url"),
        ({"webhook_url": DING, "access_token": "abc", "secret": SECRET}, "access_token"),
        ({"access_token": "a b", "secret": SECRET}, "settings.dingtalk.access_token"),
        ({"access_token": "abc", "base_url": "oapi", "secret": SECRET}, "base_url"),
        ({"webhook_url": DING, "secret": SECRET, "msgtype": "text"}, "settings.dingtalk.msgtype"),
        ({"webhook_url": DING, "secret": SECRET, "timeout": 0}, "settings.dingtalk.timeout"),
        ({"webhook_url": DING, "secret": SECRET, "timeout": True}, "settings.dingtalk.timeout"),
        ({"webhook_url": DING, "secret": SECRET, "link_title": "a\nb"}, "link_title"),
        ({"webhook_url": DING, "secret": SECRET, "colour": "red"}, "settings.dingtalk.colour"),
    ],
)
def test_dingtalk_settings_errors_name_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DingTalkSettings.from_section(section)
    assert caught.value.field.endswith(field)
    assert caught.value.field.startswith("settings.dingtalk.")
    assert SECRET not in str(caught.value.to_dict())
    assert "abc123" not in str(caught.value.to_dict())


def test_dingtalk_settings_accept_a_token_and_base_url() -> None:
    settings = DingTalkSettings.from_section(
        {"access_token": "abc123", "base_url": "http://127.0.0.1:8080/", "secret": f" {SECRET} "}
    )
    assert settings.endpoint == "http://127.0.0.1:8080/robot/send"
    assert (settings.access_token, settings.secret) == ("abc123", SECRET)
    assert (settings.msgtype, settings.timeout) == ("markdown", 5.0)
    assert "abc123" not in repr(settings)
    assert SECRET not in repr(settings)
    default = DingTalkSettings.from_section({"webhook_url": DING, "secret": SECRET})
    assert default.endpoint == "https://oapi.dingtalk.com/robot/send"


WE = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=" + KEY


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({}, "settings.wecom.webhook_url"),
        ({"webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"}, "webhook_url"),
        ({"webhook_url": WE + "&debug=1"}, "settings.wecom.webhook_url"),
        ({"webhook_url": WE, "key": KEY}, "settings.wecom.key"),
        ({"key": ""}, "settings.wecom.key"),
        ({"webhook_url": WE, "msgtype": "actionCard"}, "settings.wecom.msgtype"),
        ({"webhook_url": WE, "timeout": 61}, "settings.wecom.timeout"),
        ({"webhook_url": WE, "secret": SECRET}, "settings.wecom.secret"),
    ],
)
def test_wecom_settings_errors_name_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WeComSettings.from_section(section)
    assert caught.value.field.endswith(field)
    assert caught.value.field.startswith("settings.wecom.")
    assert KEY not in str(caught.value.to_dict())


def test_wecom_settings_accept_a_key_and_the_default_base_url() -> None:
    settings = WeComSettings.from_section({"key": KEY, "msgtype": "text", "timeout": 2.5})
    assert settings.endpoint == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    assert (settings.key, settings.msgtype, settings.timeout) == (KEY, "text", 2.5)
    assert KEY not in repr(settings)


# --- the hook --------------------------------------------------------------------------------


def fresh_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("grayrelease")
    pm.add_hookspecs(hookspecs)
    pm.register(dingtalk)
    pm.register(wecom)
    pm.check_pending()
    return pm


def test_hook_register_notifiers_returns_nothing_without_a_section() -> None:
    pm = fresh_manager()
    assert pm.hook.grayrelease_register_notifiers(
        settings=Settings.from_mapping({}), store=None, clock=ManualClock()
    ) == [[], []]


def test_hook_register_notifiers_returns_one_channel_per_section() -> None:
    settings = Settings.from_mapping(
        {"dingtalk": {"webhook_url": DING, "secret": SECRET}, "wecom": {"webhook_url": WE}}
    )
    results = fresh_manager().hook.grayrelease_register_notifiers(
        settings=settings, store=None, clock=ManualClock()
    )
    notifiers = [notifier for result in results for notifier in result]
    assert sorted(n.name for n in notifiers) == ["dingtalk", "wecom"]
    assert all(isinstance(n, Notifier) for n in notifiers)


def test_hook_register_notifiers_validates_the_section() -> None:
    settings = Settings.from_mapping({"dingtalk": {}})
    with pytest.raises(ValidationError) as caught:
        fresh_manager().hook.grayrelease_register_notifiers(
            settings=settings, store=None, clock=ManualClock()
        )
    assert caught.value.field == "settings.dingtalk.webhook_url"
