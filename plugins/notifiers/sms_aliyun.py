"""``sms`` on Aliyun: one dysmsapi ``SendSms`` request per message (RPC signature v1).

Enabled by an ``sms`` settings section whose ``provider`` is ``aliyun``::

    {"sms": {"provider": "aliyun",
             "access_key_id": "LTAI...", "access_key_secret": "...",
             "sign_name": "灰度发布", "template_code": "SMS_123456789",
             "template_params": {"plan": "plan", "status": "event"},
             "base_url": "https://dysmsapi.aliyuncs.com", "region_id": "cn-hangzhou",
             "timeout": 5}}

SMS text is an approved template, never free text: ``template_params`` maps each of the
template's variables to the name of a :attr:`Message.template_params` entry that fills it.
Another provider (``"provider": "tencent"``) is another plugin reading the same section;
this one then contributes nothing. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC
from types import MappingProxyType
from typing import Any

import attrs

from grayrelease_core import Settings, ValidationError, hookimpl
from grayrelease_core.clock import Clock, SystemClock
from grayrelease_core.notify import DeliveryError, Message
from grayrelease_core.rules import rules_object, seconds, service_url

SECTION = "sms"
REQUIRED = (
    "provider",
    "access_key_id",
    "access_key_secret",
    "sign_name",
    "template_code",
    "template_params",
)
FIELD = f"settings.{SECTION}"
PROVIDER = "aliyun"
DEFAULT_BASE_URL = "https://dysmsapi.aliyuncs.com"
API_VERSION = "2017-05-25"
MAX_PHONE_NUMBERS = 1000
"""Most numbers one ``SendSms`` request may carry."""
MAX_TIMEOUT = 60.0
RATE_LIMIT_CODE = "isv.BUSINESS_LIMIT_CONTROL"
_RATE_LIMIT_WAIT = (("天级", 3600.0), ("小时级", 3600.0))
"""Seconds to wait by the level the rate limit's Message names (``触发小时级流控Permits:5``);
a minute-level limit (or an unrecognised one) waits ``_MINUTE``. A day-level window may be the
calendar day, so it is retried hourly rather than a day later."""
_MINUTE = 60.0
_RETRYABLE_CODES = frozenset({"isp.SYSTEM_ERROR", "ServiceUnavailable", "InternalError"})
"""Codes that mean the service itself failed for a moment (besides ``Throttling*``)."""
_MOBILE = re.compile(r"(?:\+?86)?(1[3-9][0-9]{9})")
"""A mainland China mobile number, with or without the +86/86 country code."""
_VARIABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
"""A template variable's name (``${plan}``): a letter, then letters, digits, underscores."""
_TOKEN = re.compile(r"[A-Za-z0-9_.\-]+")
_SNIPPET = 200


# --- signing -----------------------------------------------------------------------------------


def percent_encode(value: str) -> str:
    """RFC 3986 encoding of the UTF-8 bytes: only ``A-Za-z0-9-_.~`` stay as they are (so a
    space is ``%20`` and ``*`` is ``%2A``, where form encoding would differ)."""
    return urllib.parse.quote(value, safe="-_.~", encoding="utf-8")


def canonical_query(params: Mapping[str, str]) -> str:
    """``k=v`` pairs of ``params`` (without ``Signature``), sorted by key, percent-encoded,
    joined with ``&``: the query the signature covers, and the one sent."""
    return "&".join(
        f"{percent_encode(key)}={percent_encode(params[key])}"
        for key in sorted(params)
        if key != "Signature"
    )


def rpc_signature(params: Mapping[str, str], secret: str, method: str = "GET") -> str:
    """The ``Signature`` of an Aliyun RPC request (signature version 1.0, HMAC-SHA1)."""
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


# --- settings ----------------------------------------------------------------------------------


@attrs.frozen
class AliyunSmsSettings:
    """The validated ``sms`` settings section (provider ``aliyun``)."""

    access_key_id: str
    """The AccessKey ID of a RAM user allowed ``dysms:SendSms``."""
    access_key_secret: str = attrs.field(repr=False)
    """Its secret; kept out of ``repr`` and error messages."""
    sign_name: str
    """The approved signature (签名) shown as ``【…】`` in the text."""
    template_code: str
    """The approved template (``SMS_…``)."""
    template_params: Mapping[str, str]
    """Template variable → name of the :attr:`Message.template_params` entry that fills it."""
    base_url: str = DEFAULT_BASE_URL
    """The endpoint, without a trailing slash."""
    region_id: str = "cn-hangzhou"
    timeout: float = 5.0
    """Seconds to wait for the answer."""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> AliyunSmsSettings:
        """Validate the section; each error names its field (``settings.sms.sign_name``)."""
        data = rules_object(
            section,
            allowed=(*REQUIRED, "base_url", "region_id", "timeout"),
            required=REQUIRED,
            field=FIELD,
        )
        if data["provider"] != PROVIDER:
            raise ValidationError(f"{FIELD}.provider", f"must be {PROVIDER!r} for this plugin")
        secret = data["access_key_secret"]
        if not isinstance(secret, str) or not secret.strip():
            # Never echoed: it is a credential.
            raise ValidationError(f"{FIELD}.access_key_secret", "must be a non-empty string")
        return cls(
            access_key_id=_token(data["access_key_id"], f"{FIELD}.access_key_id"),
            access_key_secret=secret.strip(),
            sign_name=_text(data["sign_name"], f"{FIELD}.sign_name"),
            template_code=_token(data["template_code"], f"{FIELD}.template_code"),
            template_params=_template_params(data["template_params"], f"{FIELD}.template_params"),
            base_url=service_url(
                data.get("base_url", DEFAULT_BASE_URL), f"{FIELD}.base_url", DEFAULT_BASE_URL
            ),
            region_id=_token(data.get("region_id", "cn-hangzhou"), f"{FIELD}.region_id"),
            timeout=seconds(data.get("timeout", 5), f"{FIELD}.timeout", MAX_TIMEOUT),
        )


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string", value=value)
    return value.strip()


def _token(value: Any, field: str) -> str:
    text = _text(value, field)
    if not _TOKEN.fullmatch(text):
        raise ValidationError(
            field, "must hold only letters, digits, '_', '-' and '.'", value=value
        )
    return text


def _template_params(value: Any, field: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not value:
        # A template code without its variables would fail on every message; say so now.
        raise ValidationError(
            field,
            "must be a non-empty object of template variables to message parameter names, "
            'like {"plan": "plan", "status": "event"}',
        )
    mapping: dict[str, str] = {}
    for variable, param in value.items():
        if not isinstance(variable, str) or not _VARIABLE.fullmatch(variable):
            raise ValidationError(
                f"{field}.{variable}",
                "is not a template variable name (a letter, then letters, digits or '_')",
            )
        if not isinstance(param, str) or not param.strip():
            raise ValidationError(
                f"{field}.{variable}", "must name a message parameter", value=param
            )
        mapping[variable] = param.strip()
    return MappingProxyType(mapping)


# --- the channel -------------------------------------------------------------------------------


def phone_number(recipient: str) -> str:
    """``recipient`` as the 11-digit mainland mobile number it denotes.

    :raises DeliveryError: (not retryable) it is not one.
    """
    match = _MOBILE.fullmatch(recipient.strip())
    if match is None:
        raise DeliveryError(
            f"aliyun sms: {recipient!r} is not a mainland China mobile number "
            "(11 digits starting with 1, optionally after +86)",
            retryable=False,
        )
    return match.group(1)


def template_param(message: Message, mapping: Mapping[str, str]) -> dict[str, str]:
    """The ``TemplateParam`` object: each template variable with the value of the message
    parameter ``mapping`` names for it; the message's other parameters are not sent.

    :raises DeliveryError: (not retryable) the message lacks one of them.
    """
    values = dict(message.template_params)
    params: dict[str, str] = {}
    for variable, name in mapping.items():
        value = values.get(name, "")
        if not value:
            # Aliyun refuses an empty variable; a message of another kind than the template
            # was made for cannot be sent by retrying it.
            raise DeliveryError(
                f"aliyun sms: the message has no parameter {name!r} for template variable "
                f"{variable!r} (it has {', '.join(sorted(values)) or 'none'})",
                retryable=False,
            )
        params[variable] = value
    return params


class AliyunSmsNotifier:
    """The ``sms`` channel through Aliyun's dysmsapi ``SendSms``."""

    name = "sms"
    requires_recipients = True
    """Routing must give phone numbers."""

    def __init__(self, settings: AliyunSmsSettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock: Clock = clock or SystemClock()
        self._opener = urllib.request.build_opener()

    def __repr__(self) -> str:
        return (
            f"AliyunSmsNotifier(base_url={self.settings.base_url!r}, "
            f"template_code={self.settings.template_code!r})"
        )

    def check_recipient(self, recipient: str) -> None:
        """Refuse a number Aliyun would refuse when routing names it.

        :raises ValueError: it is not a mainland China mobile number.
        """
        try:
            phone_number(recipient)
        except DeliveryError as exc:
            raise ValueError(str(exc).removeprefix("aliyun sms: ")) from None

    def send(self, message: Message, recipients: Sequence[str]) -> None:
        numbers = list(dict.fromkeys(phone_number(recipient) for recipient in recipients))
        if not numbers:
            raise DeliveryError("aliyun sms: no phone numbers to send to", retryable=False)
        if len(numbers) > MAX_PHONE_NUMBERS:
            raise DeliveryError(
                f"aliyun sms: {len(numbers)} phone numbers, at most {MAX_PHONE_NUMBERS} "
                "fit in one request",
                retryable=False,
            )
        params = self.request_params(
            numbers, template_param(message, self.settings.template_params)
        )
        self._call(params)

    def request_params(
        self, numbers: Sequence[str], variables: Mapping[str, str]
    ) -> dict[str, str]:
        """Every parameter of one ``SendSms`` request, ``Signature`` included."""
        settings = self.settings
        params = {
            "AccessKeyId": settings.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": settings.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": str(uuid.uuid4()),
            "SignatureVersion": "1.0",
            "Timestamp": self._clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
            "PhoneNumbers": ",".join(numbers),
            "SignName": settings.sign_name,
            "TemplateCode": settings.template_code,
            "TemplateParam": json.dumps(variables, ensure_ascii=False, separators=(",", ":")),
        }
        params["Signature"] = rpc_signature(params, settings.access_key_secret)
        return params

    # --- one request -------------------------------------------------------------------------

    def _call(self, params: Mapping[str, str]) -> None:
        query = f"Signature={percent_encode(params['Signature'])}&{canonical_query(params)}"
        request = urllib.request.Request(
            f"{self.settings.base_url}/?{query}",
            method="GET",
            headers={"Accept": "application/json"},
        )
        timeout = self.settings.timeout
        # A request that timed out may still have been delivered; the outbox's retry may then
        # send it twice, which beats not sending an alert at all.
        try:
            with self._opener.open(request, timeout=timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    body = exc.read()
                except TimeoutError:
                    raise self._error(f"no answer within {timeout:g} s", True) from exc
                except OSError:
                    body = b""
            status = exc.code
        except TimeoutError as exc:
            raise self._error(f"no answer within {timeout:g} s", True) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._error(f"no answer within {timeout:g} s", True) from exc
            raise self._error(f"cannot connect: {exc.reason}", True) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._error(f"connection failed: {type(exc).__name__}: {exc}", True) from exc
        self._check_answer(status, body)

    def _check_answer(self, status: int, body: bytes) -> None:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("Code"), str):
            raise self._error(
                f"HTTP {status}, not an answer of dysmsapi: {_snippet(body)}",
                status >= 500 or status == 429,
            )
        code = answer["Code"]
        if status == 200 and code == "OK":
            return
        cause = f"{code}: {answer.get('Message', '')} (HTTP {status}"
        cause += f", RequestId {answer['RequestId']})" if answer.get("RequestId") else ")"
        if code == RATE_LIMIT_CODE:
            text = str(answer.get("Message", ""))
            wait = next((seconds for level, seconds in _RATE_LIMIT_WAIT if level in text), _MINUTE)
            raise self._error(cause, True, retry_after=wait)
        retryable = (
            status >= 500
            or status == 429
            or code.startswith("Throttling")
            or code in _RETRYABLE_CODES
        )
        raise self._error(cause, retryable)

    def _error(
        self, cause: str, retryable: bool, *, retry_after: float | None = None
    ) -> DeliveryError:
        return DeliveryError(
            f"aliyun sms at {self.settings.base_url}: {cause}",
            retryable=retryable,
            retry_after=retry_after,
        )


def _snippet(body: bytes) -> str:
    text = " ".join(body[:_SNIPPET].decode("utf-8", errors="replace").split())
    if not text:
        return "(empty body)"
    return text + ("…" if len(body) > _SNIPPET else "")


@hookimpl
def grayrelease_register_notifiers(settings: Settings, clock: Clock) -> list[AliyunSmsNotifier]:
    # The section belongs to whichever provider it names; present without a provider is an
    # error here (so a forgotten provider is not silence).
    if SECTION not in settings.sections:
        return []
    section = settings.section(SECTION)
    if "provider" in section and section["provider"] != PROVIDER:
        return []
    return [AliyunSmsNotifier(AliyunSmsSettings.from_section(section), clock=clock)]
