"""The ticker over HTTP and the command line: promote, pushed metrics, the charts' data, the
extension's ticker thread, and ``grayrelease tick``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from grayrelease_adapters.flask.cli import cli

from grayrelease_core import ManualClock

from .test_http_api import API, AUTH, error_of, make_app

CANARY = {
    "planName": "缓存配置金丝雀发布",
    "appName": "cache-service",
    "environment": "prod",
    "configKeys": ["redis.cluster.nodes"],
    "grayStrategy": "CANARY",
    "grayRules": {
        "canary": {"canaryInstances": ["192.168.1.200"], "stepPercentage": 20, "stepInterval": 30}
    },
    "grayValues": {"redis.cluster.nodes": "10.0.0.9:6379"},
    "autoRollback": [{"metric": "errorRate", "maxIncrease": 0.2, "minSamples": 5}],
}


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    app = make_app(tmp_path, clock, GRAYRELEASE_TICK_INTERVAL=0)
    yield app
    app.extensions["grayrelease"].close(app)


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


def started(http: FlaskClient, body: dict[str, Any] = CANARY) -> str:
    created = http.post(f"{API}/plan", json=body, headers=AUTH)
    assert created.status_code == 201, created.json
    plan_id: str = created.json["planId"]
    assert http.post(f"{API}/plan/{plan_id}/start", headers=AUTH).status_code == 200
    return plan_id


def samples(gray: float, base: float, count: int = 8) -> dict[str, Any]:
    return {
        "samples": [
            {"instanceId": f"g{n}", "gray": True, "metric": "errorRate", "value": gray + n / 1e4}
            for n in range(count)
        ]
        + [
            {"instanceId": f"b{n}", "gray": False, "metric": "errorRate", "value": base + n / 1e4}
            for n in range(count)
        ]
    }


def read_as_canaries(http: FlaskClient, count: int = 8) -> None:
    """Canary instances g0... read the key, so the plan records them as gray."""
    for n in range(count):
        answer = http.get(
            f"{API}/config/value",
            query_string={
                "appName": "cache-service",
                "environment": "prod",
                "configKey": "redis.cluster.nodes",
                "instanceId": f"g{n}",
                "instanceIp": "192.168.1.200",
            },
        )
        assert answer.json["gray"] is True


def test_the_plan_round_trips_its_checks_and_schedule(http: FlaskClient) -> None:
    body = {**CANARY, "startAt": "2026-01-01T09:30:00+08:00"}
    plan = http.post(f"{API}/plan", json=body, headers=AUTH).json
    assert plan["startAt"] == "2026-01-01T01:30:00.000Z"
    assert plan["autoRollback"] == {
        "checks": [
            {
                "metric": "errorRate",
                "source": "push",
                "direction": "increase",
                "minSamples": 5,
                "critical": False,
                "maxIncrease": 0.2,
            }
        ],
        "failureThreshold": 1,
        "alpha": 0.025,
    }
    cleared = http.put(
        f"{API}/plan/{plan['planId']}", json={"startAt": None, "autoRollback": None}, headers=AUTH
    )
    assert (cleared.json["startAt"], cleared.json["autoRollback"]) == (None, None)


def test_promote_over_http(http: FlaskClient) -> None:
    plan_id = started(http)
    stepped = http.post(f"{API}/plan/{plan_id}/promote", headers=AUTH)
    assert stepped.status_code == 200
    assert (stepped.json["progress"]["percentage"], stepped.headers["ETag"]) == (20, '"3"')
    full = http.post(f"{API}/plan/{plan_id}/promote", json={"full": True}, headers=AUTH)
    assert full.json["progress"]["percentage"] == 100
    refused = http.post(f"{API}/plan/{plan_id}/promote", json={"full": "yes"}, headers=AUTH)
    assert error_of(refused, 400)["details"]["field"] == "full"
    unknown = http.post(f"{API}/plan/{plan_id}/promote", json={"step": 2}, headers=AUTH)
    assert error_of(unknown, 400)["details"]["field"] == "step"
    stale = http.post(f"{API}/plan/{plan_id}/promote", json={}, headers={**AUTH, "If-Match": '"3"'})
    assert error_of(stale, 409)["code"] == "CONFLICT"
    assert http.post(f"{API}/plan/{plan_id}/promote").status_code == 401


def test_pushed_samples_become_series_and_verdicts(
    app: Flask, http: FlaskClient, clock: ManualClock
) -> None:
    plan_id = started(http)
    read_as_canaries(http)
    clock.advance(timedelta(minutes=10))
    pushed = http.post(f"{API}/plan/{plan_id}/metrics", json=samples(0.01, 0.01), headers=AUTH)
    assert (pushed.status_code, pushed.json) == (202, {"accepted": 16})
    clock.advance(timedelta(minutes=20))
    engine = app.extensions["grayrelease"].state(app).engine
    assert engine.tick().stepped == [plan_id]
    charts = http.get(f"{API}/plan/{plan_id}/metrics", headers=AUTH)
    assert charts.status_code == 200
    series = charts.json["series"]
    assert [s["metric"] for s in series] == ["errorRate"]
    (gray,) = series[0]["gray"]
    (baseline,) = series[0]["baseline"]
    assert (gray["count"], baseline["count"]) == (8, 8)
    assert gray["mean"] == pytest.approx(0.01035)
    assert gray["at"] == "2026-01-01T00:10:00.000Z"
    (verdict,) = charts.json["verdicts"]
    assert verdict["outcome"] == "PASS"
    assert verdict["checks"][0]["grayCount"] == 8
    assert [s["action"] for s in charts.json["steps"]] == ["STARTED", "STEPPED"]
    assert charts.json["steps"][-1]["percentage"] == 20
    wide = http.get(
        f"{API}/plan/{plan_id}/metrics",
        query_string={"since": "2026-01-01T00:00:00Z", "bucket": "3600"},
        headers=AUTH,
    )
    assert wide.json["series"][0]["gray"][0]["at"] == "2026-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"samples": []}, "samples"),
        ({"samples": [{"metric": "errorRate", "value": 1}]}, "samples[0].instanceId"),
        (
            {"samples": [{"instanceId": "i", "metric": "errorRate", "value": "1"}]},
            "samples[0].value",
        ),
        (
            {"samples": [{"instanceId": "i", "metric": "e", "value": 1, "gray": "yes"}]},
            "samples[0].gray",
        ),
        (
            {"samples": [{"instanceId": "i", "metric": "e", "value": 1, "timestamp": "soon"}]},
            "samples[0].timestamp",
        ),
        (
            {"samples": [{"instanceId": "i", "metric": "e", "value": 1, "timestamp": 4e9}]},
            "samples[0].timestamp",
        ),
        (
            {"samples": [{"instanceId": "i", "metric": "e", "value": 1, "host": "x"}]},
            "samples[0].host",
        ),
        ({"samples": [{"instanceId": "i", "metric": "e", "value": 1}] * 1001}, "samples"),
        ({"sample": []}, "sample"),
        ("text", "samples"),
    ],
)
def test_bad_samples_are_refused_by_name_and_nothing_is_stored(
    app: Flask, http: FlaskClient, body: Any, field: str
) -> None:
    plan_id = started(http)
    good = {"instanceId": "ok", "metric": "errorRate", "value": 0.5}
    if isinstance(body, dict) and body.get("samples"):
        body = {"samples": [good, *body["samples"]]}
        field = field.replace("samples[0]", "samples[1]")
    answer = http.post(f"{API}/plan/{plan_id}/metrics", json=body, headers=AUTH)
    assert error_of(answer, 400)["details"]["field"] == field
    charts = http.get(f"{API}/plan/{plan_id}/metrics", headers=AUTH).json
    assert charts["series"] == []


def test_samples_are_only_taken_for_live_plans_and_gray_is_inferred(
    app: Flask, http: FlaskClient, clock: ManualClock
) -> None:
    created = http.post(f"{API}/plan", json=CANARY, headers=AUTH).json
    one = {"samples": [{"instanceId": "canary-1", "metric": "errorRate", "value": 0.5}]}
    draft = http.post(f"{API}/plan/{created['planId']}/metrics", json=one, headers=AUTH)
    assert error_of(draft, 409)["code"] == "INVALID_TRANSITION"
    http.post(f"{API}/plan/{created['planId']}/start", headers=AUTH)
    read = http.get(
        f"{API}/config/value",
        query_string={
            "appName": "cache-service",
            "environment": "prod",
            "configKey": "redis.cluster.nodes",
            "instanceId": "canary-1",
            "instanceIp": "192.168.1.200",
        },
    )
    assert read.json["gray"] is True
    assert (
        http.post(f"{API}/plan/{created['planId']}/metrics", json=one, headers=AUTH).status_code
        == 202
    )
    other = {"samples": [{"instanceId": "pod-9", "metric": "errorRate", "value": 0.1}]}
    http.post(f"{API}/plan/{created['planId']}/metrics", json=other, headers=AUTH)
    (series,) = http.get(f"{API}/plan/{created['planId']}/metrics", headers=AUTH).json["series"]
    assert [p["mean"] for p in series["gray"]] == [0.5]
    assert [p["mean"] for p in series["baseline"]] == [0.1]


def test_samples_older_than_the_retention_are_purged_by_the_tick(
    app: Flask, http: FlaskClient, clock: ManualClock
) -> None:
    plan_id = started(http)
    http.post(f"{API}/plan/{plan_id}/metrics", json=samples(0.01, 0.01), headers=AUTH)
    engine = app.extensions["grayrelease"].state(app).engine
    since = {"since": "2026-01-01T00:00:00Z", "until": "2026-01-31T00:00:00Z"}
    clock.advance(timedelta(hours=167))
    engine.tick()
    assert (
        len(
            http.get(f"{API}/plan/{plan_id}/metrics", query_string=since, headers=AUTH).json[
                "series"
            ]
        )
        == 1
    )
    clock.advance(timedelta(hours=2))
    engine.tick()
    assert (
        http.get(f"{API}/plan/{plan_id}/metrics", query_string=since, headers=AUTH).json["series"]
        == []
    )


def test_the_extension_ticks_in_the_background(tmp_path: Path, clock: ManualClock) -> None:
    app = make_app(tmp_path, clock, GRAYRELEASE_TICK_INTERVAL=0.05)
    try:
        http = app.test_client()
        body = {key: value for key, value in CANARY.items() if key != "autoRollback"}
        plan_id = started(http, body)
        clock.advance(timedelta(minutes=30))
        deadline = time.monotonic() + 10
        percentage = 0
        while time.monotonic() < deadline and percentage != 20:
            time.sleep(0.02)
            percentage = http.get(f"{API}/plan/{plan_id}", headers=AUTH).json["progress"][
                "percentage"
            ]
        assert percentage == 20
    finally:
        app.extensions["grayrelease"].close(app)


def test_the_tick_interval_setting_is_checked(tmp_path: Path, clock: ManualClock) -> None:
    from grayrelease_core import ValidationError

    with pytest.raises(ValidationError) as caught:
        make_app(tmp_path, clock, GRAYRELEASE_TICK_INTERVAL=-1)
    assert caught.value.field == "GRAYRELEASE_TICK_INTERVAL"


def test_tick_and_promote_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(cli, ["--database-url", url, "--actor", "ops", *args])
        assert result.exit_code == 0, result.output
        return result.output

    source = tmp_path / "plan.json"
    body = {**CANARY, "startAt": "2000-01-01T00:00:00Z"}
    source.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    plan_id = json.loads(run("plan", "create", "-f", str(source)))["planId"]
    report = json.loads(run("tick", "--json"))
    assert report["started"] == [plan_id]
    assert "0 stepped" in run("tick")
    promoted = json.loads(run("plan", "promote", plan_id))
    assert promoted["progress"]["percentage"] == 20
    assert json.loads(run("plan", "promote", plan_id, "--full"))["progress"]["percentage"] == 100


def test_a_plan_whose_checks_can_never_decide_is_told_so_on_create_and_start(
    http: FlaskClient,
) -> None:
    """Issue 17: a relative value check of a one-canary plan held it at the canary stage for
    good, in silence; relative checks only at 100% never let it complete by itself."""
    created = http.post(f"{API}/plan", json=CANARY, headers=AUTH)
    assert created.status_code == 201, created.json
    (few,) = created.json["warnings"]
    assert few["code"] == "FEW_CANARIES"
    assert few["field"] == "autoRollback.checks[0].minSamples"
    assert few["params"] == {"metric": "errorRate", "minSamples": 5, "canaries": 1}
    plan_id = created.json["planId"]
    started = http.post(f"{API}/plan/{plan_id}/start", headers=AUTH)
    assert [w["code"] for w in started.json["warnings"]] == ["FEW_CANARIES"]

    rules = CANARY["grayRules"]["canary"]
    completing = {
        **CANARY,
        "configKeys": ["other.key"],
        "grayValues": {"other.key": "v"},
        "grayRules": {"canary": {**rules, "autoComplete": True}},
        "autoRollback": [{"metric": "errorRate", "maxIncrease": 0.2, "measure": "rate"}],
    }
    answer = http.post(f"{API}/plan", json=completing, headers=AUTH)
    assert answer.status_code == 201, answer.json
    assert [w["code"] for w in answer.json["warnings"]] == ["NO_COMPLETION"]
    guarded = {
        **completing,
        "autoRollback": [
            {"metric": "errorRate", "maxIncrease": 0.2, "measure": "rate"},
            {"metric": "errorRate", "threshold": 0.05, "measure": "rate"},
        ],
    }
    fixed = http.put(f"{API}/plan/{answer.json['planId']}", json=guarded, headers=AUTH)
    assert fixed.status_code == 200, fixed.json
    assert fixed.json["warnings"] == []
