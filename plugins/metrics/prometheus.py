"""``prometheus``: a check's gray and baseline samples from a Prometheus server's range queries.

Enabled by a ``prometheus`` settings section::

    {"prometheus": {"url": "http://127.0.0.1:9090", "timeout": 10, "step": 15,
                    "headers": {"Authorization": "Bearer ..."},
                    "queries": {"errorRate": {"gray": "...", "baseline": "..."}}}}

A check's ``query`` (gray) and ``baselineQuery`` are PromQL templates; ``queries`` gives the
defaults per metric name. Templates name the plan with ``{{placeholders}}`` (``PLACEHOLDERS``).
A value check's templates are range queries: one series per instance, averaged over the
window. A rate check (``measure: rate``) counts: ``query`` / ``baselineQuery`` give each
instance's events over the window and ``totalQuery`` / ``baselineTotalQuery`` its totals
(``sum by (instance) (increase(...[{{window}}]))``), asked as instant queries at the window's
end and matched series by series on their labels.
Speaks the HTTP API with the standard library only; every failure is a
``MetricSourceError`` in the query's slot, which the judge counts as inconclusive.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from grayrelease_core import Settings, ValidationError, hookimpl
from grayrelease_core.checks import MAX_QUERY
from grayrelease_core.metrics import Check, Counts, MetricQuery, MetricSourceError, Observation
from grayrelease_core.rules import rules_object, seconds, service_url

SECTION = "prometheus"
FIELD = f"settings.{SECTION}"
PLACEHOLDERS = (
    "appName",
    "environment",
    "groupName",
    "planId",
    "instances",
    "instanceIps",
    "window",
)
"""The ``{{name}}`` placeholders a template may use."""
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
MAX_TIMEOUT = 300.0
MAX_STEP = 3600.0
MAX_POINTS = 11_000
"""Prometheus refuses a range query of more points per series than this."""
NEVER = r"[^\x00-\x{10FFFF}]"
"""An RE2 regex no string matches: what an empty set of instances renders as."""
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SNIPPET = 200
_Parsed = TypeVar("_Parsed")


@attrs.frozen
class Templates:
    """The default PromQL templates of one metric (``settings.prometheus.queries.<metric>``)."""

    gray: str | None = None
    baseline: str | None = None
    gray_total: str | None = None
    """For rate checks: the gray group's totals per instance (``gray`` counts its events)."""
    baseline_total: str | None = None


@attrs.frozen
class PrometheusSettings:
    """The validated ``prometheus`` settings section."""

    url: str
    """Base URL of the server, without a trailing slash (``http://127.0.0.1:9090``)."""
    timeout: float = 10.0
    """Seconds to wait for each answer; also sent as the query's server-side timeout."""
    step: float = 15.0
    """Seconds between the points of a range query (raised when a window would exceed
    ``MAX_POINTS`` points)."""
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    """Extra request headers (``Authorization``); kept out of ``repr`` and error messages."""
    queries: Mapping[str, Templates] = attrs.field(factory=dict)
    """Default templates per metric name."""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> PrometheusSettings:
        """Validate the section; each error names its field (``settings.prometheus.url``)."""
        data = rules_object(
            section,
            allowed=("url", "timeout", "step", "headers", "queries"),
            required=("url",),
            field=FIELD,
        )
        return cls(
            url=service_url(data["url"], f"{FIELD}.url", "http://127.0.0.1:9090"),
            timeout=seconds(data.get("timeout", 10), f"{FIELD}.timeout", MAX_TIMEOUT),
            step=seconds(data.get("step", 15), f"{FIELD}.step", MAX_STEP),
            headers=_headers(data.get("headers", {}), f"{FIELD}.headers"),
            queries=_queries(data.get("queries", {}), f"{FIELD}.queries"),
        )


@attrs.define
class _Fetch:
    """One ``fetch`` call's state (two ticks may fetch at once)."""

    unreachable: MetricSourceError | None = None
    """The error of a request that found the server unreachable: later ones are not sent."""


class PrometheusSource:
    """The ``prometheus`` metric source."""

    name = "prometheus"

    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        self._endpoint = f"{settings.url}/api/v1/query_range"
        self._instant = f"{settings.url}/api/v1/query"
        self._opener = urllib.request.build_opener()

    def __repr__(self) -> str:
        return f"PrometheusSource(url={self.settings.url!r})"

    def templates(self, check: Check) -> Templates:
        """The check's own queries, else the settings' defaults for its metric."""
        defaults = self.settings.queries.get(check.metric, Templates())
        return Templates(
            gray=check.query or defaults.gray,
            baseline=check.baseline_query or defaults.baseline,
            gray_total=check.total_query or defaults.gray_total,
            baseline_total=check.baseline_total_query or defaults.baseline_total,
        )

    def validate_check(self, check: Check, field: str) -> None:
        templates = self.templates(check)
        hint = f"or configure {FIELD}.queries.{check.metric}"
        relative = check.max_increase is not None
        needed = [("query", templates.gray, "gray", "a PromQL query")]
        if relative:
            needed.append(("baselineQuery", templates.baseline, "baseline", "a baseline query"))
        if check.is_rate:
            needed.append(("totalQuery", templates.gray_total, "grayTotal", "a totals query"))
            if relative:
                needed.append(
                    (
                        "baselineTotalQuery",
                        templates.baseline_total,
                        "baselineTotal",
                        "a baseline totals query",
                    )
                )
        for name, template, setting, what in needed:
            if template is None:
                kind = "a rate check" if check.is_rate else "a prometheus check"
                if name == "baselineQuery" and not check.is_rate:
                    kind = "a relative check (maxIncrease)"
                raise ValidationError(f"{field}.{name}", f"{kind} needs {what} ({hint}.{setting})")
        for name, template in (
            ("query", templates.gray),
            ("baselineQuery", templates.baseline),
            ("totalQuery", templates.gray_total),
            ("baselineTotalQuery", templates.baseline_total),
        ):
            if template is not None:
                _check_placeholders(template, f"{field}.{name}")

    def fetch(self, queries: Sequence[MetricQuery]) -> list[Observation | Exception]:
        # Once the server is unreachable (refused, timed out), the rest of this tick's requests
        # fail at once with the same cause instead of each waiting out the timeout. A query
        # Prometheus refuses (bad PromQL) touches only its own slot.
        tick = _Fetch()
        answers: list[Observation | Exception] = []
        for query in queries:
            try:
                if query.check.is_rate:
                    answers.append(self._counted(query, tick))
                else:
                    answers.append(self._values(query, tick))
            except MetricSourceError as exc:
                answers.append(exc)
        return answers

    def _values(self, query: MetricQuery, tick: _Fetch) -> Observation:
        templates = self.templates(query.check)
        samples: list[tuple[float, ...]] = []
        for side, template in (("gray", templates.gray), ("baseline", templates.baseline)):
            if template is None or (side == "gray" and _no_gray_side(template, query)):
                samples.append(())
                continue
            what = f"{side} query of {query.check.metric} (plan {query.plan.id})"
            form = self._range_form(render(template, query), query)
            samples.append(self._ask(self._endpoint, form, what, _matrix_samples, tick))
        return Observation(gray=samples[0], baseline=samples[1])

    def _counted(self, query: MetricQuery, tick: _Fetch) -> Observation:
        templates = self.templates(query.check)
        counted: list[Counts | None] = []
        for side, events, totals in (
            ("gray", templates.gray, templates.gray_total),
            ("baseline", templates.baseline, templates.baseline_total),
        ):
            if events is None or totals is None:
                counted.append(None)
                continue
            if side == "gray" and (_no_gray_side(events, query) or _no_gray_side(totals, query)):
                counted.append(Counts((), ()))
                continue
            found = []
            for kind, template in (("events", events), ("totals", totals)):
                what = f"{side} {kind} query of {query.check.metric} (plan {query.plan.id})"
                form = self._instant_form(render(template, query), query)
                found.append(self._ask(self._instant, form, what, _vector_values, tick))
            try:
                counted.append(_paired(found[0], found[1]))
            except ValueError as exc:
                what = f"{side} queries of {query.check.metric} (plan {query.plan.id})"
                raise self._error(what, str(exc), "bad_answer") from exc
        gray, baseline = counted
        return Observation(
            gray=_rates(gray),
            baseline=_rates(baseline),
            gray_counts=gray,
            baseline_counts=baseline,
        )

    # --- one range query ----------------------------------------------------------------------

    def _range_form(self, promql: str, query: MetricQuery) -> dict[str, str]:
        window = query.window_seconds
        step = max(self.settings.step, float(math.ceil(window / MAX_POINTS)))
        return {
            "query": promql,
            "start": f"{_unix(query.start):.3f}",
            "end": f"{_unix(query.end):.3f}",
            "step": repr(step),
            "timeout": repr(self.settings.timeout),
        }

    def _instant_form(self, promql: str, query: MetricQuery) -> dict[str, str]:
        return {
            "query": promql,
            "time": f"{_unix(query.end):.3f}",
            "timeout": repr(self.settings.timeout),
        }

    def _ask(
        self,
        endpoint: str,
        fields: Mapping[str, str],
        what: str,
        parse: Callable[[Any], _Parsed],
        tick: _Fetch,
    ) -> _Parsed:
        """``parse`` of a successful answer's ``data``, or the error that names the cause."""
        if tick.unreachable is not None:
            raise self._error(
                what,
                f"not sent, the server was unreachable earlier in this tick "
                f"({tick.unreachable.details['cause']})",
                "unreachable",
            )
        try:
            data, body = self._post(endpoint, fields, what)
        except MetricSourceError as exc:
            if exc.details["reason"] in ("unreachable", "timeout"):
                tick.unreachable = exc
            raise
        try:
            return parse(data)
        except (TypeError, ValueError, KeyError) as exc:
            raise self._error(
                what, f"unexpected answer ({exc}): {_snippet(body)}", "bad_answer"
            ) from exc

    def _post(self, endpoint: str, fields: Mapping[str, str], what: str) -> tuple[Any, bytes]:
        form = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(
            endpoint,
            data=form,
            method="POST",
            headers={
                **self.settings.headers,
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        timed_out = f"no answer within {self.settings.timeout:g} s"
        try:
            with self._opener.open(request, timeout=self.settings.timeout) as response:
                status, reason, body = response.status, response.reason, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    body = exc.read()
                except TimeoutError:
                    raise self._error(what, timed_out, "timeout") from exc
                except OSError:
                    body = b""
            status, reason = exc.code, str(exc.reason)
        except TimeoutError as exc:
            raise self._error(what, timed_out, "timeout") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._error(what, timed_out, "timeout") from exc
            if isinstance(exc.reason, ConnectionRefusedError):
                raise self._error(what, "connection refused", "unreachable") from exc
            raise self._error(what, f"cannot connect: {exc.reason}", "unreachable") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._error(
                what, f"connection failed: {type(exc).__name__}: {exc}", "unreachable"
            ) from exc
        return self._payload(status, reason, body, what)

    def _payload(self, status: int, reason: str, body: bytes, what: str) -> tuple[Any, bytes]:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("status") == "error":
            raise self._error(
                what,
                f"{payload.get('errorType', 'unknown')}: {payload.get('error', '')}",
                "prometheus_error",
                errorType=str(payload.get("errorType", "")),
                httpStatus=status,
            )
        if status >= 400:
            raise self._error(
                what, f"HTTP {status} {reason}: {_snippet(body)}", "http", httpStatus=status
            )
        if payload is None:
            raise self._error(what, f"the answer is not JSON: {_snippet(body)}", "bad_answer")
        if not isinstance(payload, dict) or payload.get("status") != "success":
            raise self._error(
                what, f"unexpected answer (no status success): {_snippet(body)}", "bad_answer"
            )
        return payload.get("data"), body

    def _error(self, what: str, cause: str, reason: str, **details: Any) -> MetricSourceError:
        return MetricSourceError(
            f"prometheus at {self.settings.url}: {what}: {cause}",
            details={"url": self.settings.url, "reason": reason, "cause": cause, **details},
        )


# --- rendering templates ---------------------------------------------------------------------


def render(template: str, query: MetricQuery) -> str:
    """``template`` with its placeholders replaced, each escaped for a PromQL double-quoted
    string; ``{{instances}}`` and ``{{instanceIps}}`` are also regex-escaped alternations."""
    plan = query.plan
    values = {
        "appName": promql_string(plan.app_name),
        "environment": promql_string(plan.environment),
        "groupName": promql_string(plan.group_name),
        "planId": promql_string(plan.id),
        "instances": promql_string(regex_alternation(query.gray_instances)),
        "instanceIps": promql_string(regex_alternation(query.gray_ips)),
        "window": f"{query.window_seconds}s",
    }
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def regex_alternation(values: frozenset[str]) -> str:
    """An RE2 regex matching exactly ``values`` (sorted), grouped so a template may append
    to it (``{{instanceIps}}:.*``); a regex that matches nothing when ``values`` is empty."""
    if not values:
        return NEVER
    escaped = ("".join("\\" + c if c in _RE2_SPECIAL else c for c in v) for v in sorted(values))
    return "(?:" + "|".join(escaped) + ")"


def promql_string(value: str) -> str:
    """``value`` escaped to sit between the double quotes of a PromQL string."""
    out = []
    for char in value:
        if char in '\\"':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def _no_gray_side(template: str, query: MetricQuery) -> bool:
    # An empty gray set has no gray samples; never ask, as a template could match everyone.
    names = {match.group(1) for match in PLACEHOLDER.finditer(template)}
    return not query.gray_instances or ("instanceIps" in names and not query.gray_ips)


def _check_placeholders(template: str, field: str) -> None:
    for match in PLACEHOLDER.finditer(template):
        if match.group(1) not in PLACEHOLDERS:
            raise ValidationError(
                field,
                f"unknown placeholder {match.group(0)}; the placeholders are "
                + ", ".join("{{" + name + "}}" for name in PLACEHOLDERS),
                value=match.group(0),
            )


# --- reading answers -------------------------------------------------------------------------


def _matrix_samples(data: Any) -> tuple[float, ...]:
    """One value per series of a ``matrix`` answer: the mean of its finite points.

    A series is one instance (or one label set); its points over the window are not
    independent of each other, so the judge compares series, not points."""
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise ValueError("not a matrix")
    result = data["result"]
    if not isinstance(result, list):
        raise TypeError("result is not a list")
    means: list[float] = []
    for series in result:
        if not isinstance(series, dict):
            raise TypeError("a series is not an object")
        # A native-histogram series carries "histograms" and no "values": no float samples.
        values = series.get("values", [])
        if not isinstance(values, list):
            raise TypeError("values is not a list")
        finite: list[float] = []
        for point in values:
            if not isinstance(point, list) or len(point) != 2 or not isinstance(point[1], str):
                raise TypeError('a point is not [time, "value"]')
            value = float(point[1])
            if math.isfinite(value):
                finite.append(value)
        if finite:
            means.append(math.fsum(finite) / len(finite))
    return tuple(means)


def _vector_values(data: Any) -> dict[tuple[tuple[str, str], ...], float]:
    """``{labels: value}`` of a ``vector`` answer (an instant query); non-finite or negative
    values (a counter reset mid-window can do that) are left out."""
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise ValueError("not a vector (a rate check's queries are instant queries)")
    result = data["result"]
    if not isinstance(result, list):
        raise TypeError("result is not a list")
    values: dict[tuple[tuple[str, str], ...], float] = {}
    for series in result:
        if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
            raise TypeError("a series is not an object with metric labels")
        point = series.get("value")
        if not isinstance(point, list) or len(point) != 2 or not isinstance(point[1], str):
            raise TypeError('a value is not [time, "value"]')
        value = float(point[1])
        if math.isfinite(value) and value >= 0:
            values[tuple(sorted((str(k), str(v)) for k, v in series["metric"].items()))] = value
    return values


def _paired(
    events: Mapping[tuple[tuple[str, str], ...], float],
    totals: Mapping[tuple[tuple[str, str], ...], float],
) -> Counts:
    """Each totals series with the events series of the same labels (none: no events). An
    instance's events never exceed its total (``increase`` extrapolates each on its own). An
    events series with events and no totals series means the two templates group by different
    labels: counting it as nothing would pass every look, so it is refused."""
    unpaired = sorted(
        labels for labels, value in events.items() if value > 0 and labels not in totals
    )
    if unpaired:
        shown = ", ".join(f"{k}={v}" for k, v in unpaired[0]) or "no labels"
        raise ValueError(
            f"{len(unpaired)} events series have no totals series with the same labels "
            f"({shown}): group both templates by the same labels"
        )
    paired = [(min(events.get(labels, 0.0), total), total) for labels, total in totals.items()]
    return Counts(tuple(e for e, _ in paired), tuple(t for _, t in paired))


def _rates(counts: Counts | None) -> tuple[float, ...]:
    if counts is None:
        return ()
    return tuple(e / t for e, t in zip(counts.events, counts.totals, strict=True) if t > 0)


def _snippet(body: bytes) -> str:
    text = " ".join(body[:_SNIPPET].decode("utf-8", errors="replace").split())
    if not text:
        return "(empty body)"
    return text + ("…" if len(body) > _SNIPPET else "")


def _unix(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# --- validating settings ---------------------------------------------------------------------


def _headers(value: Any, field: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object of header names to values")
    headers: dict[str, str] = {}
    for name, header in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValidationError(f"{field}.{name}", "is not a valid HTTP header name")
        if not isinstance(header, str) or any(c in header for c in "\r\n\0"):
            # The value is often a secret: never echoed.
            raise ValidationError(f"{field}.{name}", "must be a string on one line")
        headers[name] = header
    return MappingProxyType(headers)


def _queries(value: Any, field: str) -> Mapping[str, Templates]:
    if not isinstance(value, Mapping):
        raise ValidationError(
            field,
            'must be an object of metric names to {"gray", "baseline", "grayTotal", '
            '"baselineTotal"}',
        )
    queries: dict[str, Templates] = {}
    for metric, raw in value.items():
        entry = rules_object(
            raw,
            allowed=("gray", "baseline", "grayTotal", "baselineTotal"),
            required=(),
            field=f"{field}.{metric}",
        )
        if not entry:
            raise ValidationError(f"{field}.{metric}", "needs a gray or a baseline template")
        for side, template in entry.items():
            if not isinstance(template, str) or not template.strip() or len(template) > MAX_QUERY:
                raise ValidationError(
                    f"{field}.{metric}.{side}", f"must be a query of 1 to {MAX_QUERY} characters"
                )
            _check_placeholders(template, f"{field}.{metric}.{side}")
        queries[str(metric)] = Templates(
            gray=entry.get("gray"),
            baseline=entry.get("baseline"),
            gray_total=entry.get("grayTotal"),
            baseline_total=entry.get("baselineTotal"),
        )
    return MappingProxyType(queries)


@hookimpl
def grayrelease_register_metric_sources(settings: Settings) -> list[PrometheusSource]:
    # Present but empty still counts as configured, so a forgotten url is an error, not silence.
    if SECTION not in settings.sections:
        return []
    return [PrometheusSource(PrometheusSettings.from_section(settings.section(SECTION)))]
