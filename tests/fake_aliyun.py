"""A strict loopback imitation of Aliyun's dysmsapi ``SendSms`` (RPC signature v1).

It checks what the real endpoint checks, in the same order and with the same codes: the
AccessKeyId and the signature (recomputed here independently of the plugin's signer), the
Timestamp window and a reused SignatureNonce (HTTP 4xx gateway errors), then the sign name,
the template and its variables, the phone numbers and the per-number rate limit (HTTP 200
``isv.*`` business errors). It records what it delivered, and can be told to fail with a
5xx or to hang.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from grayrelease_core.clock import Clock, SystemClock

TIMESTAMP_WINDOW = timedelta(minutes=15)
DEFAULT_LIMITS: tuple[tuple[str, timedelta, int], ...] = (
    ("分钟级", timedelta(minutes=1), 1),
    ("小时级", timedelta(hours=1), 5),
    ("天级", timedelta(days=1), 10),
)
"""Aliyun's default per-number limits: (level named in the Message, window, messages)."""
_COMMON = (
    "AccessKeyId",
    "Action",
    "Format",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "Timestamp",
    "Version",
    "Signature",
)
_MOBILE = re.compile(r"(?:\+86|0086|86)?1[3-9][0-9]{9}")
_VARIABLE = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")


class Delivery(NamedTuple):
    """One text message the fake accepted, per phone number."""

    phone: str
    sign_name: str
    template_code: str
    params: dict[str, str]
    text: str
    """The template with its variables filled in, prefixed by ``【sign name】``."""


def aliyun_encode(value: str) -> str:
    """The official SDKs' way, on purpose not the plugin's: form-encode, then patch."""
    return (
        urllib.parse.quote_plus(value, encoding="utf-8")
        .replace("+", "%20")
        .replace("*", "%2A")
        .replace("%7E", "~")
    )


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(aliyun_encode(k) + "=" + aliyun_encode(v) for k, v in pairs)
    return method + "&" + aliyun_encode("/") + "&" + aliyun_encode(canonical)


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    key = (secret + "&").encode("utf-8")
    mac = hmac.new(key, string_to_sign(method, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class FakeAliyun:
    """dysmsapi on 127.0.0.1, in a thread; ``close()`` it (or use it as a context manager)."""

    def __init__(
        self,
        *,
        keys: Mapping[str, str] | None = None,
        signs: tuple[str, ...] = ("灰度发布",),
        templates: Mapping[str, str] | None = None,
        limits: tuple[tuple[str, timedelta, int], ...] = DEFAULT_LIMITS,
        clock: Clock | None = None,
    ) -> None:
        self.keys = dict(keys or {"testId": "testSecret"})
        """AccessKeyId → secret."""
        self.signs = signs
        self.templates = dict(templates or {"SMS_123456789": "灰度计划${plan}已${status}"})
        """TemplateCode → template text with ``${variable}`` placeholders."""
        self.limits = limits
        self.clock: Clock = clock or SystemClock()
        self.delivered: list[Delivery] = []
        self.requests: list[dict[str, str]] = []
        """The parameters of every request that reached the handler, in order."""
        self.fail_status: int | None = None
        """Answer every request with this HTTP status (500, 503) until reset to None."""
        self.hanging = False
        """Accept requests but never answer them (until ``close()``)."""
        self._nonces: set[str] = set()
        self._sent: dict[str, list[datetime]] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                self._handle(query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self._handle(self.rfile.read(length).decode("utf-8", errors="replace"))

            def _handle(self, query: str) -> None:
                params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
                with fake._lock:
                    fake.requests.append(params)
                if fake.hanging:
                    fake._release.wait()
                    self.close_connection = True
                    return
                status, answer = fake.answer(self.command, params)
                body = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits for the loop to notice, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        # Joins the handler threads (daemon_threads is off), so none outlives the test.
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeAliyun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the endpoint ----------------------------------------------------------------------

    def answer(self, method: str, params: dict[str, str]) -> tuple[int, dict[str, str]]:
        request_id = str(uuid.uuid4()).upper()
        if self.fail_status is not None:
            return self.fail_status, {
                "RequestId": request_id,
                "Code": "InternalError" if self.fail_status == 500 else "ServiceUnavailable",
                "Message": "The request processing has failed due to some unknown error.",
            }
        try:
            with self._lock:
                self._check_gateway(method, params)
                code, message = self._send(params)
        except GatewayError as exc:
            return exc.status, {"RequestId": request_id, "Code": exc.code, "Message": exc.message}
        answer = {"Message": message, "RequestId": request_id, "Code": code}
        if code == "OK":
            answer["BizId"] = f"{uuid.uuid4().int % 10**18}^0"
        return 200, answer

    def _check_gateway(self, method: str, params: dict[str, str]) -> None:
        for name in _COMMON:
            if not params.get(name):
                raise GatewayError(400, f"Missing{name}", f"{name} is mandatory for this action.")
        secret = self.keys.get(params["AccessKeyId"])
        if secret is None:
            raise GatewayError(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise GatewayError(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        expected = sign(method, params, secret)
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise GatewayError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. "
                f"server string to sign is:{string_to_sign(method, params)}",
            )
        try:
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise GatewayError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ) from None
        if abs(self.clock.now() - stamp) > TIMESTAMP_WINDOW:
            raise GatewayError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        if params["SignatureNonce"] in self._nonces:
            raise GatewayError(
                400, "SignatureNonceUsed", "Specified signature nonce was used already."
            )
        self._nonces.add(params["SignatureNonce"])
        if params["Action"] != "SendSms":
            raise GatewayError(
                404, "InvalidAction.NotFound", "Specified api is not found, please check."
            )
        if params["Version"] != "2017-05-25":
            raise GatewayError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        if params["Format"] != "JSON":
            # The real service would answer XML; this client never asks for it.
            raise GatewayError(400, "InvalidParameter", "This fake answers Format=JSON only.")
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not params.get(name):
                raise GatewayError(400, f"Missing{name}", f"{name} is mandatory for this action.")

    def _send(self, params: dict[str, str]) -> tuple[str, str]:
        if params["SignName"] not in self.signs:
            return "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名"
        template = self.templates.get(params["TemplateCode"])
        if template is None:
            return "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板"
        try:
            values = json.loads(params.get("TemplateParam", "{}"))
        except ValueError:
            return "isv.INVALID_JSON_PARAM", "JSON参数不合法"
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return "isv.INVALID_JSON_PARAM", "JSON参数不合法"
        variables = _VARIABLE.findall(template)
        if any(not values.get(name) for name in variables):
            return "isv.TEMPLATE_MISSING_PARAMETERS", "模板缺少变量"
        numbers = params["PhoneNumbers"].split(",")
        if len(numbers) > 1000:
            return "isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制"
        if not all(_MOBILE.fullmatch(number) for number in numbers):
            return "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"
        now = self.clock.now()
        phones = [number[-11:] for number in numbers]
        for phone in phones:
            sent = self._sent.get(phone, [])
            for level, window, permits in self.limits:
                if sum(1 for moment in sent if now - moment < window) >= permits:
                    return "isv.BUSINESS_LIMIT_CONTROL", f"触发{level}流控Permits:{permits}"
        text = "【" + params["SignName"] + "】" + _VARIABLE.sub(lambda m: values[m[1]], template)
        for phone in phones:
            self._sent.setdefault(phone, []).append(now)
            self.delivered.append(
                Delivery(phone, params["SignName"], params["TemplateCode"], dict(values), text)
            )
        return "OK", "OK"
