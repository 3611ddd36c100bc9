"""The ``sms`` channel on Aliyun dysmsapi, against a strict loopback imitation of it."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pluggy
import pytest
from grayrelease_plugins.notifiers import sms_aliyun
from grayrelease_plugins.notifiers.sms_aliyun import (
    AliyunSmsNotifier,
    AliyunSmsSettings,
    rpc_signature,
    template_param,
)
from hypothesis import given
from hypothesis import strategies as st

from grayrelease_core import ManualClock, Settings, ValidationError, hookspecs
from grayrelease_core.notify import DeliveryError, Message, Notifier

from .fake_aliyun import FakeAliyun, sign
from .loopback import free_port

# The documented example of the SendSms signature (PROTOCOLS.md, from Aliyun's SDK tests).
OFFICIAL_PARAMS = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}
OFFICIAL_SIGNATURE = "zJDF+Lrzhj/ThnlvIToysFRq6t4="

TEMPLATE = "SMS_123456789"
MESSAGE = Message(
    title="[grayrelease] 缓存配置金丝雀发布 自动回滚",
    text="…",
    markdown="…",
    template_params=(("plan", "缓存配置金丝雀发布"), ("event", "自动回滚"), ("actor", "ticker")),
)


def section(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "provider": "aliyun",
        "access_key_id": "testId",
        "access_key_secret": "testSecret",
        "sign_name": "灰度发布",
        "template_code": TEMPLATE,
        "template_params": {"plan": "plan", "status": "event"},
        "timeout": 2,
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeAliyun]:
    with FakeAliyun(clock=clock) as served:
        yield served


def notifier(fake: FakeAliyun, clock: ManualClock, **overrides: Any) -> AliyunSmsNotifier:
    settings = AliyunSmsSettings.from_section(section(base_url=fake.url, **overrides))
    return AliyunSmsNotifier(settings, clock=clock)


# --- signing ---------------------------------------------------------------------------------


def test_rpc_signature_reproduces_the_official_vector() -> None:
    assert rpc_signature(OFFICIAL_PARAMS, "testSecret") == OFFICIAL_SIGNATURE
    # The fake's independent signer too, so its checks mean something.
    assert sign("GET", OFFICIAL_PARAMS, "testSecret") == OFFICIAL_SIGNATURE
    # Signature itself is never part of what is signed.
    assert rpc_signature({**OFFICIAL_PARAMS, "Signature": "x"}, "testSecret") == OFFICIAL_SIGNATURE


@given(
    params=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=5),
    secret=st.text(max_size=10),
)
def test_rpc_signature_agrees_with_the_sdk_encoding_for_any_text(
    params: dict[str, str], secret: str
) -> None:
    for method in ("GET", "POST"):
        assert rpc_signature(params, secret, method) == sign(method, params, secret)


# --- delivery --------------------------------------------------------------------------------


def test_chinese_template_values_arrive_signed_and_mapped(
    fake: FakeAliyun, clock: ManualClock
) -> None:
    channel = notifier(fake, clock)
    assert isinstance(channel, Notifier)
    assert channel.name == "sms"

    channel.send(MESSAGE, ["+8613800000001", "8613900000002", " 13700000003 ", "13800000001"])

    assert [d.phone for d in fake.delivered] == ["13800000001", "13900000002", "13700000003"]
    first = fake.delivered[0]
    assert first.params == {"plan": "缓存配置金丝雀发布", "status": "自动回滚"}
    assert first.text == "【灰度发布】灰度计划缓存配置金丝雀发布已自动回滚"
    (request,) = fake.requests
    assert request["PhoneNumbers"] == "13800000001,13900000002,13700000003"
    assert {key: request[key] for key in ("Action", "Format", "RegionId", "Version")} == {
        "Action": "SendSms",
        "Format": "JSON",
        "RegionId": "cn-hangzhou",
        "Version": "2017-05-25",
    }
    assert request["SignatureMethod"] == "HMAC-SHA1"
    assert request["SignatureVersion"] == "1.0"
    assert request["Timestamp"] == "2026-01-01T00:00:00Z"

    channel.send(MESSAGE, ["13600000004"])
    assert fake.requests[1]["SignatureNonce"] != request["SignatureNonce"]
    assert len(fake.delivered) == 4


def test_template_param_keeps_and_renames_only_the_mapped_parameters() -> None:
    assert template_param(MESSAGE, {"name": "plan"}) == {"name": "缓存配置金丝雀发布"}
    assert template_param(MESSAGE, {"status": "event", "who": "actor"}) == {
        "status": "自动回滚",
        "who": "ticker",
    }
    with pytest.raises(DeliveryError, match="no parameter 'reason' for template variable 'why'"):
        template_param(MESSAGE, {"why": "reason"})


def test_a_message_without_a_mapped_parameter_is_refused_before_sending(
    fake: FakeAliyun, clock: ManualClock
) -> None:
    channel = notifier(fake, clock, template_params={"plan": "plan", "status": "reason"})
    with pytest.raises(DeliveryError) as caught:
        channel.send(MESSAGE, ["13800000001"])
    assert not caught.value.retryable
    assert fake.requests == []


# --- the service's refusals ------------------------------------------------------------------


def test_rate_limit_is_retryable_after_the_level_it_names(
    fake: FakeAliyun, clock: ManualClock
) -> None:
    channel = notifier(fake, clock)
    channel.send(MESSAGE, ["13800000001"])
    with pytest.raises(DeliveryError) as caught:
        channel.send(MESSAGE, ["13800000001"])
    assert caught.value.retryable
    assert caught.value.retry_after == 60
    assert "isv.BUSINESS_LIMIT_CONTROL" in str(caught.value)
    assert "触发分钟级流控Permits:1" in str(caught.value)

    for _ in range(4):
        clock.advance(61)
        channel.send(MESSAGE, ["13800000001"])
    clock.advance(61)
    with pytest.raises(DeliveryError) as caught:
        channel.send(MESSAGE, ["13800000001"])
    assert caught.value.retryable
    assert caught.value.retry_after == 3600
    assert "小时级" in str(caught.value)
    assert len(fake.delivered) == 5


def test_a_wrong_secret_is_not_retryable_and_names_the_code(
    fake: FakeAliyun, clock: ManualClock
) -> None:
    with pytest.raises(DeliveryError) as caught:
        notifier(fake, clock, access_key_secret="wrong").send(MESSAGE, ["13800000001"])
    assert not caught.value.retryable
    assert "SignatureDoesNotMatch" in str(caught.value)
    assert "HTTP 400" in str(caught.value)
    assert "wrong" not in str(caught.value)
    assert fake.delivered == []


def test_an_unknown_access_key_is_not_retryable(fake: FakeAliyun, clock: ManualClock) -> None:
    with pytest.raises(DeliveryError) as caught:
        notifier(fake, clock, access_key_id="LTAIunknown").send(MESSAGE, ["13800000001"])
    assert not caught.value.retryable
    assert "InvalidAccessKeyId.NotFound" in str(caught.value)


def test_a_clock_off_by_more_than_15_minutes_is_refused(
    fake: FakeAliyun, clock: ManualClock
) -> None:
    channel = AliyunSmsNotifier(
        AliyunSmsSettings.from_section(section(base_url=fake.url)),
        clock=ManualClock(clock.now().replace(hour=1)),
    )
    with pytest.raises(DeliveryError) as caught:
        channel.send(MESSAGE, ["13800000001"])
    assert not caught.value.retryable
    assert "InvalidTimeStamp.Expired" in str(caught.value)


def test_a_missing_template_variable_is_not_retryable_and_names_the_code(
    fake: FakeAliyun, clock: ManualClock
) -> None:
    channel = notifier(fake, clock, template_params={"plan": "plan"})
    with pytest.raises(DeliveryError) as caught:
        channel.send(MESSAGE, ["13800000001"])
    assert not caught.value.retryable
    assert "isv.TEMPLATE_MISSING_PARAMETERS" in str(caught.value)
    assert "模板缺少变量" in str(caught.value)
    assert fake.delivered == []


def test_an_unknown_sign_name_is_not_retryable(fake: FakeAliyun, clock: ManualClock) -> None:
    with pytest.raises(DeliveryError) as caught:
        notifier(fake, clock, sign_name="别的签名").send(MESSAGE, ["13800000001"])
    assert not caught.value.retryable
    assert "isv.SMS_SIGNATURE_ILLEGAL" in str(caught.value)


@pytest.mark.parametrize(
    "recipients",
    [["12345"], ["13800000001", "alice@example.com"], ["+1 415 555 0100"], ["1380000000a"], []],
)
def test_what_is_not_a_mobile_number_is_refused_before_sending(
    fake: FakeAliyun, clock: ManualClock, recipients: list[str]
) -> None:
    with pytest.raises(DeliveryError) as caught:
        notifier(fake, clock).send(MESSAGE, recipients)
    assert not caught.value.retryable
    assert fake.requests == []


def test_more_numbers_than_one_request_takes_are_refused(
    fake: FakeAliyun, clock: ManualClock
) -> None:
    numbers = [f"138{n:08d}" for n in range(1001)]
    with pytest.raises(DeliveryError, match="at most 1000") as caught:
        notifier(fake, clock).send(MESSAGE, numbers)
    assert not caught.value.retryable
    assert fake.requests == []


# --- the service unavailable -----------------------------------------------------------------


def test_a_server_that_is_down_is_retryable(clock: ManualClock) -> None:
    settings = AliyunSmsSettings.from_section(section(base_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(DeliveryError, match="cannot connect") as caught:
        AliyunSmsNotifier(settings, clock=clock).send(MESSAGE, ["13800000001"])
    assert caught.value.retryable


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "ServiceUnavailable")])
def test_a_5xx_is_retryable(fake: FakeAliyun, clock: ManualClock, status: int, code: str) -> None:
    fake.fail_status = status
    with pytest.raises(DeliveryError) as caught:
        notifier(fake, clock).send(MESSAGE, ["13800000001"])
    assert caught.value.retryable
    assert caught.value.retry_after is None
    assert code in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)


def test_a_server_that_does_not_answer_is_retryable(fake: FakeAliyun, clock: ManualClock) -> None:
    fake.hanging = True
    with pytest.raises(DeliveryError, match=r"no answer within 0.3 s") as caught:
        notifier(fake, clock, timeout=0.3).send(MESSAGE, ["13800000001"])
    assert caught.value.retryable
    assert len(fake.requests) == 1


# --- the fake is as strict as the service ----------------------------------------------------


def test_the_fake_refuses_a_replayed_request(fake: FakeAliyun, clock: ManualClock) -> None:
    params = notifier(fake, clock).request_params(["13800000001"], {"plan": "p", "status": "s"})
    url = f"{fake.url}/?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=2) as response:
        assert b'"Code": "OK"' in response.read()
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=2)
    with caught.value as answer:
        assert answer.code == 400
        assert b"SignatureNonceUsed" in answer.read()


# --- settings and the hook -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"template_params": None}, "settings.sms.template_params"),
        ({"template_params": {}}, "settings.sms.template_params"),
        ({"template_params": ["plan"]}, "settings.sms.template_params"),
        ({"template_params": {"${plan}": "plan"}}, "settings.sms.template_params.${plan}"),
        ({"template_params": {"plan": ""}}, "settings.sms.template_params.plan"),
        ({"access_key_secret": ""}, "settings.sms.access_key_secret"),
        ({"access_key_secret": None}, "settings.sms.access_key_secret"),
        ({"access_key_id": "  "}, "settings.sms.access_key_id"),
        ({"sign_name": 1}, "settings.sms.sign_name"),
        ({"template_code": None}, "settings.sms.template_code"),
        ({"base_url": "dysmsapi.aliyuncs.com"}, "settings.sms.base_url"),
        ({"base_url": "ftp://dysmsapi.aliyuncs.com"}, "settings.sms.base_url"),
        ({"base_url": "https://dysmsapi.aliyuncs.com/?x=1"}, "settings.sms.base_url"),
        ({"base_url": "https://h:99999"}, "settings.sms.base_url"),
        ({"timeout": 0}, "settings.sms.timeout"),
        ({"timeout": True}, "settings.sms.timeout"),
        ({"region_id": "cn hangzhou"}, "settings.sms.region_id"),
        ({"secret": "x"}, "settings.sms.secret"),
        ({"provider": None}, "settings.sms.provider"),
    ],
)
def test_settings_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    settings = Settings.from_mapping({"sms": section(**overrides)})
    with pytest.raises(ValidationError) as caught:
        sms_aliyun.grayrelease_register_notifiers(settings, ManualClock())
    assert caught.value.field == field
    assert "testSecret" not in str(caught.value)


def test_settings_defaults_and_the_secret_kept_out_of_repr() -> None:
    settings = AliyunSmsSettings.from_section(section(timeout=None))
    assert settings.base_url == "https://dysmsapi.aliyuncs.com"
    assert settings.region_id == "cn-hangzhou"
    assert settings.timeout == 5.0
    assert "testSecret" not in repr(settings)
    assert "testSecret" not in repr(AliyunSmsNotifier(settings))


def test_hook_register_notifiers_only_for_the_aliyun_provider() -> None:
    pm = pluggy.PluginManager("grayrelease")
    pm.add_hookspecs(hookspecs)
    pm.register(sms_aliyun)
    pm.check_pending()

    def contributed(data: dict[str, Any]) -> list[Any]:
        lists = pm.hook.grayrelease_register_notifiers(
            settings=Settings.from_mapping(data), store=None, clock=ManualClock()
        )
        return [notifier for contribution in lists for notifier in contribution]

    assert contributed({}) == []
    assert contributed({"sms": {"provider": "tencent", "secret_id": "x"}}) == []
    (channel,) = contributed({"sms": section()})
    assert isinstance(channel, AliyunSmsNotifier)
    assert channel.name == "sms"
    assert channel.settings.template_params == {"plan": "plan", "status": "event"}
