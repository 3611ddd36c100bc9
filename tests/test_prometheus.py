"""The ``prometheus`` metric source against a real Prometheus scraping an exporter we control."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from grayrelease_plugins.metrics.prometheus import (
    NEVER,
    PrometheusSettings,
    PrometheusSource,
    promql_string,
    render,
)

from grayrelease_core import Plan, PlanItem, Settings, ValidationError
from grayrelease_core.metrics import (
    Check,
    Counts,
    MetricQuery,
    MetricSource,
    MetricSourceError,
    Observation,
)
from grayrelease_core.plugin_manager import collect, make_plugin_manager

from .loopback import free_port
from .prometheus_server import Exporter, PrometheusServer, exporter, prometheus

__all__ = ["exporter", "prometheus"]  # the imported fixtures, used by name

PLAN = Plan(
    id="p1",
    name="n",
    app_name="shop",
    environment="prod",
    group_name="default",
    items=(PlanItem("k"),),
    strategy="PERCENTAGE",
    rules={},
)
WEIRD = 'we"ird\\pod'
"""An instance id with a quote and a backslash: both must survive two levels of escaping."""
PODS = {
    # instance: (ip, 500s per second, 200s per second, queue depth)
    "pod-1": ("10.0.0.11", 2.0, 8.0, 11.0),
    "pod.1": ("10.0.0.12", 2.0, 8.0, 12.0),
    WEIRD: ("10.0.0.13", 0.1, 9.9, 13.0),
    "pod-2": ("10.0.0.21", 0.1, 9.9, 21.0),
    "pod-3": ("10.0.0.22", 0.1, 9.9, 22.0),
    "podX1": ("10a0a0a12", 0.1, 9.9, 99.0),  # what pod.1 and 10.0.0.12 would match unescaped
}
ERROR_RATE = (
    'sum by (instance) (rate(http_requests_total{app="{{appName}}",env="{{environment}}",'
    'code="500",instance OP "{{instances}}"}[5s])) / sum by (instance) '
    '(rate(http_requests_total{app="{{appName}}",env="{{environment}}",'
    'instance OP "{{instances}}"}[5s]))'
)
"""The error rate per instance; OP is =~ for the gray group, !~ for the baseline."""
QUEUE = 'app_queue_depth{app="{{appName}}",instance OP "{{instances}}"}'
GRAY, BASELINE = "=~", "!~"


def on(template: str, op: str) -> str:
    return template.replace("OP", op)


def settings(url: str, **options: Any) -> PrometheusSettings:
    return PrometheusSettings.from_section({"url": url, "step": 1, **options})


def ask(
    check: Check, gray: Iterable[str], ips: Iterable[str] = (), seconds: int = 8
) -> MetricQuery:
    end = datetime.now(UTC)
    return MetricQuery(
        plan=PLAN,
        check=check,
        start=end - timedelta(seconds=seconds),
        end=end,
        gray_instances=frozenset(gray),
        gray_ips=frozenset(ips),
    )


def observe(source: PrometheusSource, query: MetricQuery) -> Observation:
    [answer] = source.fetch([query])
    assert isinstance(answer, Observation), answer
    return answer


@pytest.fixture(scope="module")
def shop(exporter: Exporter) -> Exporter:
    """The series: requests by instance and code, a queue gauge, and a per-plan gauge."""
    for instance, (ip, errors, oks, depth) in PODS.items():
        labels = {"app": "shop", "env": "prod", "instance": instance, "ip": ip}
        exporter.counter("http_requests_total", {**labels, "code": "500"}, errors)
        exporter.counter("http_requests_total", {**labels, "code": "200"}, oks)
        exporter.gauge("app_queue_depth", {**labels, "addr": f"{ip}:8080"}, depth)
    exporter.gauge("app_queue_depth", {"app": "other", "instance": "pod-1", "ip": "x"}, 500.0)
    exporter.gauge("plan_gauge", {"plan": 'p"1\\x', "group": "g\\1", "env": "prod"}, 7.0)
    return exporter


@pytest.fixture(scope="module")
def server(shop: Exporter, prometheus: PrometheusServer) -> PrometheusServer:
    """Prometheus once it has two scrapes of every series, so ``rate()`` answers."""
    prometheus.wait_for("rate(http_requests_total[5s])", series=2 * len(PODS))
    return prometheus


@pytest.fixture(scope="module")
def source(server: PrometheusServer) -> PrometheusSource:
    return PrometheusSource(
        settings(
            server.url,
            queries={
                "errorRate": {
                    "gray": on(ERROR_RATE, GRAY),
                    "baseline": on(ERROR_RATE, BASELINE),
                }
            },
        )
    )


# --- samples from the real server ------------------------------------------------------------


def test_error_rate_gray_from_gray_pods_baseline_from_the_others(source: PrometheusSource) -> None:
    # The check names only the metric: the templates come from the settings.
    check = Check(metric="errorRate", source="prometheus", max_increase=0.2)
    source.validate_check(check, "autoRollback.checks[0]")
    seen = observe(source, ask(check, {"pod-1", "pod.1"}))
    assert len(seen.gray) == 2  # one value per series (instance): the mean of its points
    assert len(seen.baseline) == len(PODS) - 2
    assert all(0.18 < value < 0.22 for value in seen.gray), seen.gray
    assert all(0.005 < value < 0.015 for value in seen.baseline), seen.baseline
    assert statistics.mean(seen.gray) > 10 * statistics.mean(seen.baseline)


def test_instance_ids_are_regex_escaped(source: PrometheusSource) -> None:
    check = Check(
        metric="queue",
        source="prometheus",
        max_increase=0.1,
        query=on(QUEUE, GRAY),
        baseline_query=on(QUEUE, BASELINE),
    )
    seen = observe(source, ask(check, {"pod.1"}))
    assert set(seen.gray) == {12.0}  # not podX1's 99, not the other app's 500
    assert set(seen.baseline) == {11.0, 13.0, 21.0, 22.0, 99.0}


def test_instance_id_with_quote_and_backslash(source: PrometheusSource) -> None:
    check = Check(metric="queue", source="prometheus", threshold=1, query=on(QUEUE, GRAY))
    seen = observe(source, ask(check, {WEIRD, "pod-3"}))
    assert set(seen.gray) == {13.0, 22.0}
    assert seen.baseline == ()  # no baseline template: not asked


def test_instance_ips_render_as_a_group(source: PrometheusSource) -> None:
    # Grouped, so a template can append a port pattern to the alternation.
    by_ip = 'app_queue_depth{app="{{appName}}",ip=~"{{instanceIps}}"}'
    by_addr = 'app_queue_depth{app="{{appName}}",addr=~"{{instanceIps}}:.*"}'
    for template in (by_ip, by_addr):
        check = Check(metric="queue", source="prometheus", threshold=1, query=template)
        seen = observe(source, ask(check, {"pod.1", "pod-2"}, {"10.0.0.12", "10.0.0.21"}))
        assert set(seen.gray) == {12.0, 21.0}, template


def test_plan_placeholders_and_window(source: PrometheusSource) -> None:
    plan = attrs.evolve(PLAN, id='p"1\\x', group_name="g\\1")
    template = (
        'avg_over_time(plan_gauge{plan="{{planId}}",group="{{ groupName }}",'
        'env="{{environment}}"}[{{window}}])'
    )
    check = Check(metric="plan", source="prometheus", threshold=1, query=template)
    query = attrs.evolve(ask(check, {"pod-1"}), plan=plan)
    seen = observe(source, query)
    assert seen.gray
    assert set(seen.gray) == {7.0}


def test_render_escapes_for_re2_then_for_the_promql_string() -> None:
    check = Check(metric="m", source="prometheus", threshold=1)
    query = attrs.evolve(
        ask(check, {"b.1", WEIRD, "a|b"}, {"10.0.0.1"}, seconds=300),
        plan=attrs.evolve(PLAN, id='p"1', app_name="a\\b"),
    )
    template = (
        "{{appName}} {{environment}} {{groupName}} {{planId}} {{instances}} {{instanceIps}} "
        "{{window}}"
    )
    assert render(template, query) == (
        'a\\\\b prod default p\\"1 (?:a\\\\|b|b\\\\.1|we\\"ird\\\\\\\\pod) '
        "(?:10\\\\.0\\\\.0\\\\.1) 300s"
    )


def test_no_gray_instances_means_no_gray_query(source: PrometheusSource) -> None:
    check = Check(
        metric="queue",
        source="prometheus",
        max_increase=0.1,
        query=on(QUEUE, GRAY),
        baseline_query=on(QUEUE, BASELINE),
    )
    seen = observe(source, ask(check, set()))
    assert seen.gray == ()
    # The baseline's !~ an empty set (NEVER) is everyone.
    assert set(seen.baseline) == {11.0, 12.0, 13.0, 21.0, 22.0, 99.0}
    assert promql_string(NEVER) in render(on(QUEUE, BASELINE), ask(check, set()))


def test_no_gray_ips_means_no_gray_query_by_ip(source: PrometheusSource) -> None:
    # An empty alternation in ip=~"" would match every series without an ip label.
    by_ip = 'app_queue_depth{ip=~"{{instanceIps}}"}'
    check = Check(metric="queue", source="prometheus", threshold=1, query=by_ip)
    assert observe(source, ask(check, {"pod-1"}, set())).gray == ()


@pytest.mark.parametrize(
    ("gray", "ips", "template"),
    [(set(), set(), on(QUEUE, GRAY)), ({"pod-1"}, set(), 'up{ip=~"{{instanceIps}}"}')],
)
def test_an_empty_gray_set_is_not_asked(gray: set[str], ips: set[str], template: str) -> None:
    # Nothing listens at the URL: any request would be an error in the slot.
    nowhere = PrometheusSource(settings(f"http://127.0.0.1:{free_port()}"))
    check = Check(metric="queue", source="prometheus", threshold=1, query=template)
    assert nowhere.fetch([ask(check, gray, ips)]) == [Observation(gray=(), baseline=())]


def test_bad_promql_fails_its_slot_only(source: PrometheusSource, server: PrometheusServer) -> None:
    bad = Check(metric="broken", source="prometheus", threshold=1, query="sum(app_queue_depth")
    good = Check(metric="queue", source="prometheus", threshold=1, query=on(QUEUE, GRAY))
    first, second = source.fetch([ask(bad, {"pod-1"}), ask(good, {"pod-1"})])
    assert isinstance(first, MetricSourceError)
    assert "bad_data" in first.message
    assert server.url in first.message
    assert first.details["errorType"] == "bad_data"
    assert isinstance(second, Observation)
    assert set(second.gray) == {11.0}


# --- failures of the server itself -----------------------------------------------------------


def test_server_down_names_the_url_and_fails_every_slot_fast() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    down = PrometheusSource(settings(url))
    check = Check(metric="queue", source="prometheus", threshold=1, query=on(QUEUE, GRAY))
    started = time.monotonic()
    answers = down.fetch([ask(check, {"pod-1"}), ask(check, {"pod-2"})])
    assert time.monotonic() - started < 5
    assert all(isinstance(answer, MetricSourceError) for answer in answers)
    for answer in answers:
        assert isinstance(answer, MetricSourceError)
        assert url in answer.message
        assert "connection refused" in answer.message


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback port whose kernel accepts connections nobody ever answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_timeout_names_the_url(silent_server: str) -> None:
    slow = PrometheusSource(settings(silent_server, timeout=0.5))
    check = Check(metric="queue", source="prometheus", threshold=1, query=on(QUEUE, GRAY))
    started = time.monotonic()
    first, *rest = slow.fetch([ask(check, {f"pod-{n}"}) for n in range(4)])
    # One wait, not one per query: the others are not sent to a server that did not answer.
    assert time.monotonic() - started < 1.8
    assert isinstance(first, MetricSourceError)
    assert first.message.startswith(f"prometheus at {silent_server}: gray query of queue")
    assert first.message.endswith("no answer within 0.5 s")
    for answer in rest:
        assert isinstance(answer, MetricSourceError)
        assert silent_server in answer.message
        assert "unreachable earlier in this tick (no answer within 0.5 s)" in answer.message


@pytest.mark.parametrize(
    ("status", "content_type", "body", "expected"),
    [
        (200, "text/html", b"<html>hello</html>", "not JSON: <html>hello</html>"),
        (
            200,
            "application/json",
            b'{"status":"success","data":{"resultType":"vector","result":[]}}',
            "unexpected answer (not a matrix)",
        ),
        (
            200,
            "application/json",
            b'{"status":"success","data":{"resultType":"matrix",'
            b'"result":[{"metric":{},"values":[[1,2]]}]}}',
            "unexpected answer",
        ),
        (502, "text/plain", b"bad gateway", "HTTP 502 Bad Gateway: bad gateway"),
        (
            503,
            "application/json",
            b'{"status":"error","errorType":"timeout",'
            b'"error":"query timed out in expression evaluation"}',
            "timeout: query timed out",
        ),
    ],
)
def test_wrong_answers_name_the_url_and_the_cause(
    exporter: Exporter, status: int, content_type: str, body: bytes, expected: str
) -> None:
    path = f"/fake{status}-{len(body)}"
    exporter.route(f"{path}/api/v1/query_range", status, content_type, body)
    fake = PrometheusSource(settings(exporter.url + path))
    check = Check(metric="queue", source="prometheus", threshold=1, query=on(QUEUE, GRAY))
    [answer] = fake.fetch([ask(check, {"pod-1"})])
    assert isinstance(answer, MetricSourceError)
    assert exporter.url + path in answer.message
    assert expected in answer.message


def test_request_form_and_headers(exporter: Exporter) -> None:
    body = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'
    exporter.route("/spy/api/v1/query_range", 200, "application/json", body)
    spy = PrometheusSource(
        settings(exporter.url + "/spy/", timeout=7, headers={"Authorization": "Bearer t0k"})
    )
    check = Check(metric="queue", source="prometheus", threshold=1, query=on(QUEUE, GRAY))
    query = ask(check, {"pod.1"}, seconds=120)
    assert observe(spy, query) == Observation(gray=(), baseline=())
    [sent] = [request for request in exporter.requests if request.path.startswith("/spy/")]
    assert (sent.method, sent.path) == ("POST", "/spy/api/v1/query_range")
    assert sent.headers["Authorization"] == "Bearer t0k"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.form == {
        "query": 'app_queue_depth{app="shop",instance =~ "(?:pod\\\\.1)"}',
        "start": f"{query.start.timestamp():.3f}",
        "end": f"{query.end.timestamp():.3f}",
        "step": "1.0",
        "timeout": "7.0",
    }


def test_values_skip_nan_and_inf(exporter: Exporter) -> None:
    exporter.route(
        "/nan/api/v1/query_range",
        200,
        "application/json",
        b'{"status":"success","data":{"resultType":"matrix","result":['
        b'{"metric":{"instance":"a"},"values":[[1,"1.5"],[2,"NaN"],[3,"+Inf"]]},'
        b'{"metric":{"instance":"b"},"values":[[1,"-Inf"],[2,"2"]]}]}}',
    )
    fake = PrometheusSource(settings(exporter.url + "/nan"))
    check = Check(metric="queue", source="prometheus", threshold=1, query=on(QUEUE, GRAY))
    assert observe(fake, ask(check, {"a"})).gray == (1.5, 2.0)


# --- settings and checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({}, "settings.prometheus.url"),
        ({"url": "ftp://127.0.0.1:9090"}, "settings.prometheus.url"),
        ({"url": "127.0.0.1:9090"}, "settings.prometheus.url"),
        ({"url": "http://u:secret@127.0.0.1:9090"}, "settings.prometheus.url"),
        ({"url": "http://h", "timeout": 0}, "settings.prometheus.timeout"),
        ({"url": "http://h", "timeout": 301}, "settings.prometheus.timeout"),
        ({"url": "http://h", "timeout": "10"}, "settings.prometheus.timeout"),
        ({"url": "http://h", "step": -1}, "settings.prometheus.step"),
        ({"url": "http://h", "headers": ["x"]}, "settings.prometheus.headers"),
        ({"url": "http://h", "headers": {"Bad Name": "x"}}, "settings.prometheus.headers.Bad Name"),
        ({"url": "http://h", "headers": {"X-A": "a\r\nB: c"}}, "settings.prometheus.headers.X-A"),
        (
            {"url": "http://h", "queries": {"errorRate": {}}},
            "settings.prometheus.queries.errorRate",
        ),
        (
            {"url": "http://h", "queries": {"errorRate": {"gray": 'up{x="{{nope}}"}'}}},
            "settings.prometheus.queries.errorRate.gray",
        ),
        (
            {"url": "http://h", "queries": {"errorRate": {"grey": "up"}}},
            "settings.prometheus.queries.errorRate.grey",
        ),
        ({"url": "http://h", "interval": 5}, "settings.prometheus.interval"),
    ],
)
def test_settings_errors_name_the_field(section: Mapping[str, Any], field: str) -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    with pytest.raises(ValidationError) as caught:
        collect(
            pm,
            "grayrelease_register_metric_sources",
            settings=Settings.from_mapping({"prometheus": section}),
            store=None,
        )
    assert caught.value.field == field


def test_settings_defaults_and_secret_headers() -> None:
    parsed = PrometheusSettings.from_section(
        {"url": "https://prom.example:9090/prefix/", "headers": {"Authorization": "Bearer s3"}}
    )
    assert parsed.url == "https://prom.example:9090/prefix"
    assert (parsed.timeout, parsed.step) == (10.0, 15.0)
    assert "s3" not in repr(parsed)
    assert "s3" not in repr(PrometheusSource(parsed))


@pytest.mark.parametrize(
    ("check", "field", "words"),
    [
        (Check(metric="m", source="prometheus", threshold=1), "c.query", "needs a PromQL query"),
        (
            Check(metric="m", source="prometheus", max_increase=0.1, query="up"),
            "c.baselineQuery",
            "needs a baseline",
        ),
        (
            Check(metric="m", source="prometheus", threshold=1, query='up{i="{{instance}}"}'),
            "c.query",
            "unknown placeholder {{instance}}",
        ),
        (
            Check(
                metric="m",
                source="prometheus",
                max_increase=0.1,
                query="up",
                baseline_query='up{p="{{ plan_id }}"}',
            ),
            "c.baselineQuery",
            "unknown placeholder {{ plan_id }}",
        ),
    ],
)
def test_validate_check_refuses(check: Check, field: str, words: str) -> None:
    source = PrometheusSource(settings("http://h"))
    with pytest.raises(ValidationError) as caught:
        source.validate_check(check, "c")
    assert caught.value.field == field
    assert words in caught.value.message


def test_validate_check_takes_templates_from_settings() -> None:
    source = PrometheusSource(
        settings("http://h", queries={"errorRate": {"gray": "a", "baseline": "b"}})
    )
    source.validate_check(Check(metric="errorRate", source="prometheus", max_increase=0.2), "c")
    only_gray = PrometheusSource(settings("http://h", queries={"errorRate": {"gray": "a"}}))
    with pytest.raises(ValidationError) as caught:
        only_gray.validate_check(Check(metric="errorRate", max_increase=0.2), "c")
    assert caught.value.field == "c.baselineQuery"


def test_hook_registers_a_source_only_with_a_section() -> None:
    pm = make_plugin_manager(load_entrypoints=False)

    def prometheus_sources(data: Mapping[str, Any]) -> list[Any]:
        contributions = collect(
            pm,
            "grayrelease_register_metric_sources",
            settings=Settings.from_mapping(data),
            store=None,
        )
        return [item for plugin, item in contributions if plugin.endswith(".prometheus")]

    assert prometheus_sources({}) == []
    [registered] = prometheus_sources({"prometheus": {"url": "http://127.0.0.1:9090"}})
    assert isinstance(registered, PrometheusSource)
    assert isinstance(registered, MetricSource)
    assert registered.name == "prometheus"
    assert registered.settings.url == "http://127.0.0.1:9090"


# --- a plan judged by Prometheus, tick by tick -----------------------------------------------


def failed_check_of_a_rolled_back_canary(
    server: PrometheusServer, tmp_path: Any, queries: dict[str, Any], rules: dict[str, Any]
) -> dict[str, Any]:
    """A canary of the failing pods pod-1 and pod.1, judged on Prometheus by ``rules``
    (``autoRollback``) one minute after it started: it must roll back at the first tick. The
    failed check's audit details."""
    from grayrelease_core import Client, ConfigRef, GrayRelease, ManualClock, PlanStatus

    clock = ManualClock(datetime.now(UTC) - timedelta(minutes=1))
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'gray.db'}",
        "background_sync": False,
        "prometheus": {"url": server.url, "step": 1, "queries": queries},
    }
    with GrayRelease.from_settings(settings, clock=clock, load_entrypoints=False) as gr:
        key = ConfigRef("shop", "prod", "default", "payment.timeout")
        body = {
            "planName": "p",
            "appName": "shop",
            "environment": "prod",
            "configKeys": [key.config_key],
            "grayStrategy": "CANARY",
            "grayRules": {
                "canary": {
                    "canaryInstances": ["pod-1", "pod.1"],
                    "stepPercentage": 20,
                    "stepInterval": 1,
                }
            },
            "grayValues": {key.config_key: "3s"},
            "autoRollback": rules,
        }
        plan = gr.start(gr.create_plan(body, actor="a").id, actor="a")
        for pod in ("pod-1", "pod.1"):
            assert gr.resolve(key, Client(pod, PODS[pod][0])).gray
        clock.advance(timedelta(minutes=1))  # now: the time Prometheus has the pods' data for
        report = gr.tick()
        assert report.rolled_back == [plan.id]
        assert gr.get_plan(plan.id).status is PlanStatus.ROLLBACK
        verdict = gr.plan_logs(plan.id).items[-2]
        assert verdict.action == "ANALYSIS_FAILED"
        assert verdict.details is not None
        (check,) = verdict.details["checks"]
        assert isinstance(check, dict)
        return check


def test_a_canary_judged_on_prometheus_rolls_back_when_its_pods_fail(
    server: PrometheusServer, tmp_path: Any
) -> None:
    check = failed_check_of_a_rolled_back_canary(
        server,
        tmp_path,
        {"errorRate": {"gray": on(ERROR_RATE, GRAY)}},
        {"checks": [{"metric": "errorRate", "source": "prometheus", "threshold": 0.05}]},
    )
    assert (check["source"], check["grayCount"]) == ("prometheus", 2)
    assert 0.18 < check["grayMean"] < 0.22


# --- rate checks: counted events and totals per instance ---------------------------------------

EVENTS = (
    'sum by (instance) (increase(http_requests_total{app="{{appName}}",code="500",'
    'instance OP "{{instances}}"}[{{window}}]))'
)
TOTALS = (
    'sum by (instance) (increase(http_requests_total{app="{{appName}}",'
    'instance OP "{{instances}}"}[{{window}}]))'
)
RATE_CHECK = Check(
    metric="errors",
    source="prometheus",
    max_increase=0.2,
    measure="rate",
    query=on(EVENTS, GRAY),
    baseline_query=on(EVENTS, BASELINE),
    total_query=on(TOTALS, GRAY),
    baseline_total_query=on(TOTALS, BASELINE),
)


def test_a_rate_check_counts_events_and_totals_per_instance(source: PrometheusSource) -> None:
    """Each instance's errors and requests over the window, from instant queries at its end,
    paired by labels: gray pods fail 2 of 10 requests a second, the others 0.1 of 10."""
    source.validate_check(RATE_CHECK, "autoRollback.checks[0]")
    seen = observe(source, ask(RATE_CHECK, {"pod-1", "pod.1"}, seconds=8))
    assert isinstance(seen.gray_counts, Counts)  # per instance, paired by labels
    assert isinstance(seen.baseline_counts, Counts)
    assert len(seen.gray_counts.totals) == 2
    assert len(seen.baseline_counts.totals) == len(PODS) - 2
    # About 10 requests a second each, over as much of the window as the server has scraped.
    totals = (*seen.gray_counts.totals, *seen.baseline_counts.totals)
    assert min(totals) > 0
    assert max(totals) < 2 * min(totals), totals
    assert seen.gray_counts.rate is not None
    assert seen.baseline_counts.rate is not None
    assert 0.18 < seen.gray_counts.rate < 0.22
    assert 0.005 < seen.baseline_counts.rate < 0.015
    assert all(0.18 < value < 0.22 for value in seen.gray), seen.gray


def test_a_rate_check_without_its_totals_query_is_refused() -> None:
    source = PrometheusSource(settings("http://h"))
    no_totals = attrs.evolve(RATE_CHECK, total_query=None)
    with pytest.raises(ValidationError) as caught:
        source.validate_check(no_totals, "c")
    assert caught.value.field == "c.totalQuery"
    no_baseline_totals = attrs.evolve(RATE_CHECK, baseline_total_query=None)
    with pytest.raises(ValidationError) as caught:
        source.validate_check(no_baseline_totals, "c")
    assert caught.value.field == "c.baselineTotalQuery"
    bad = attrs.evolve(RATE_CHECK, total_query='x{i="{{pod}}"}')
    with pytest.raises(ValidationError) as caught:
        source.validate_check(bad, "c")
    assert caught.value.field == "c.totalQuery"
    # An absolute rate check needs no baseline; the settings may give the totals.
    configured = PrometheusSource(
        settings("http://h", queries={"errors": {"gray": "a", "grayTotal": "b"}})
    )
    configured.validate_check(Check("errors", "prometheus", threshold=0.05, measure="rate"), "c")


def test_a_rate_query_that_answers_no_vector_fails_its_slot(source: PrometheusSource) -> None:
    ranged = attrs.evolve(
        RATE_CHECK, total_query='http_requests_total{instance=~"{{instances}}"}[5s]'
    )
    [answer] = source.fetch([ask(ranged, {"pod-1"})])
    assert isinstance(answer, MetricSourceError)
    assert answer.details["reason"] == "bad_answer"
    assert "not a vector" in str(answer)


def test_a_canary_judged_on_prometheus_counts_rolls_back_when_its_pods_fail(
    server: PrometheusServer, tmp_path: Any
) -> None:
    check = failed_check_of_a_rolled_back_canary(
        server,
        tmp_path,
        {"errors": {"gray": on(EVENTS, GRAY), "grayTotal": on(TOTALS, GRAY)}},
        {
            "checks": [
                {"metric": "errors", "source": "prometheus", "measure": "rate", "threshold": 0.05}
            ],
            "interval": 1,  # the look counts the pods' last minute
        },
    )
    assert (check["measure"], check["grayCount"]) == ("rate", 2)
    assert 0.18 < check["grayMean"] < 0.22
    assert check["grayTotal"] > 0


def test_error_series_without_a_totals_series_fail_the_slot_instead_of_counting_nothing(
    source: PrometheusSource,
) -> None:
    """Issue 17 review: events grouped by (instance, code) against totals by instance paired
    nothing, so every look counted 0 errors and passed."""
    by_code = attrs.evolve(
        RATE_CHECK,
        query=on(EVENTS, GRAY).replace("sum by (instance)", "sum by (instance, code)"),
    )
    [answer] = source.fetch([ask(by_code, {"pod-1", "pod.1"})])
    assert isinstance(answer, MetricSourceError)
    assert answer.details["reason"] == "bad_answer"
    assert "no totals series with the same labels" in str(answer)
