"""The ``grayrelease`` command: standalone, under ``flask gray-release``, and ``serve`` for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import FlaskGroup
from grayrelease_adapters.flask import GrayRelease
from grayrelease_adapters.flask.cli import cli

from .demo_server import demo_server

SPEC_PLAN = {
    "planName": "新功能开关灰度",
    "appName": "order-service",
    "environment": "prod",
    "configKeys": ["feature.newPayment.enabled"],
    "grayStrategy": "PERCENTAGE",
    "grayRules": {"percentage": 10},
    "grayValues": {"feature.newPayment.enabled": "true"},
}


@pytest.fixture
def run(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, ok: bool = True) -> Any:
        result = runner.invoke(cli, ["--database-url", url, "--actor", "ops", *args], input=input)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def test_plan_lifecycle_from_the_command_line(run: Any, tmp_path: Path) -> None:
    source = tmp_path / "plan.json"
    source.write_text(json.dumps(SPEC_PLAN, ensure_ascii=False), encoding="utf-8")
    created = json.loads(run("plan", "create", "-f", str(source)).output)
    assert created["status"] == "DRAFT"
    assert created["createdBy"] == "ops"
    plan_id = created["planId"]
    assert json.loads(run("plan", "start", plan_id).output)["status"] == "ACTIVE"
    assert json.loads(run("plan", "pause", plan_id).output)["status"] == "PAUSED"
    assert json.loads(run("plan", "resume", plan_id).output)["status"] == "ACTIVE"
    assert json.loads(run("plan", "complete", plan_id).output)["status"] == "COMPLETED"
    rolled = json.loads(run("plan", "rollback", plan_id, "--reason", "oops").output)
    assert rolled["status"] == "ROLLBACK"
    assert json.loads(run("plan", "show", plan_id).output)["version"] == 6
    table = run("plan", "list").output
    assert plan_id in table
    assert "新功能开关灰度" in table
    assert "1 plan(s)" in table
    listed = json.loads(run("plan", "list", "--status", "ROLLBACK", "--json").output)
    assert [p["planId"] for p in listed["items"]] == [plan_id]
    searched = json.loads(run("plan", "list", "--search", "NEWPAYMENT", "--json").output)
    assert [p["planId"] for p in searched["items"]] == [plan_id]
    assert json.loads(run("plan", "list", "--search", "nothing", "--json").output)["total"] == 0


def test_create_reads_stdin(run: Any) -> None:
    created = json.loads(run("plan", "create", "-f", "-", input=json.dumps(SPEC_PLAN)).output)
    assert created["planName"] == "新功能开关灰度"


def test_errors_are_one_line_and_exit_1(run: Any, tmp_path: Path) -> None:
    missing = run("plan", "start", "nope", ok=False)
    assert missing.exit_code == 1
    assert "NOT_FOUND" in missing.output
    assert "Traceback" not in missing.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SPEC_PLAN, "grayRules": {"percentage": 300}}))
    invalid = run("plan", "create", "-f", str(bad), ok=False)
    assert "VALIDATION_ERROR: grayRules.percentage" in invalid.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert "VALIDATION_ERROR: file" in run("plan", "create", "-f", str(broken), ok=False).output


def test_db_upgrade_current_downgrade(run: Any, tmp_path: Path) -> None:
    assert "plan store: at 0009" in run("db", "init").output
    assert (tmp_path / "cli.db").exists()
    current = run("db", "current").output
    assert "plan store: 0009 (head 0009; up to date)" in current
    assert "sql backend: 0001" in current
    refused = run("db", "downgrade", input="n\n", ok=False)
    assert refused.exit_code == 1
    assert "plan store: 0009" in run("db", "current").output
    dropped = run("db", "downgrade", "--yes").output
    assert "plan store: at base" in dropped
    assert "plan store: none (head 0009; behind" in run("db", "current").output
    refused = run("db", "upgrade", "0001", ok=False)
    assert "VALIDATION_ERROR: --set: is required" in refused.output
    assert "plan store: at 0001" in run("db", "upgrade", "0001", "--set", "plan store").output
    assert "plan store: 0001 (head 0009; behind" in run("db", "current").output
    assert "plan store: at 0009" in run("db", "upgrade").output
    assert "no such migration set" in run("db", "upgrade", "--set", "nope", ok=False).output


def test_tick(run: Any) -> None:
    assert "tick done" in run("tick").output


def test_flask_gray_release_uses_the_host_apps_engine(tmp_path: Path) -> None:
    def create_app() -> Flask:
        app = Flask("host")
        app.config.update(
            GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path / 'host.db'}",
            GRAYRELEASE_BACKEND="memory",
            GRAYRELEASE_BACKGROUND_SYNC=False,
        )
        GrayRelease(app, load_entrypoints=False)
        return app

    flask_cli = FlaskGroup(create_app=create_app)
    runner = CliRunner()
    source = tmp_path / "plan.json"
    source.write_text(json.dumps(SPEC_PLAN))
    created = runner.invoke(
        flask_cli, ["gray-release", "--actor", "host-ops", "plan", "create", "-f", str(source)]
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["createdBy"] == "host-ops"
    listed = runner.invoke(flask_cli, ["gray-release", "plan", "list", "--json"])
    assert json.loads(listed.output)["total"] == 1
    assert (tmp_path / "host.db").exists()
    assert not (tmp_path / "grayrelease.db").exists()


def request(
    url: str, method: str = "GET", token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_runs_the_demo_config_center_and_stops_cleanly(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'serve.db'}"
    with demo_server(database) as served:
        server, banner, base, token = served.process, served.banner, served.base, served.token
        assert "shown once" in banner[1]
        # The printed console address is the page a newcomer opens.
        assert f"web console at {base}/gray-release/" in banner[2]
        with urllib.request.urlopen(f"{base}/gray-release/") as page:
            assert page.status == 200
            assert "grayrelease-api" in page.read().decode()
        api = f"{base}/api/gray-release"

        status, seeded = request(
            f"{base}/api/config/item?appName=order-service&environment=prod&groupName=default"
            "&configKey=feature.newPayment.enabled"
        )
        assert (status, seeded) == (200, {"value": "false"})
        assert request(f"{api}/plan", "POST", None, SPEC_PLAN)[0] == 401
        status, plan = request(f"{api}/plan", "POST", token, SPEC_PLAN)
        assert status == 201
        assert request(f"{api}/plan/{plan['planId']}/start", "POST", token)[1]["status"] == "ACTIVE"
        answers = [
            request(
                f"{api}/config/value?appName=order-service&environment=prod"
                f"&configKey=feature.newPayment.enabled&instanceId=order-{n}"
            )[1]
            for n in range(200)
        ]
        gray = [a for a in answers if a["gray"]]
        assert 5 <= len(gray) <= 40
        assert {a["value"] for a in gray} == {"true"}
        status, _ = request(
            f"{base}/api/config/item",
            "PUT",
            token,
            {
                "appName": "order-service",
                "environment": "prod",
                "groupName": "default",
                "configKey": "feature.other",
                "value": True,
            },
        )
        assert status == 200

        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=30)
        assert server.returncode == 0, rest
        assert "buffered instance hits written" in rest
    # The hits buffered in the server reached the database on shutdown.
    listed = CliRunner().invoke(cli, ["--database-url", database, "plan", "list", "--json"])
    plan_id = json.loads(listed.output)["items"][0]["planId"]
    from grayrelease_core import GrayRelease as Engine

    with Engine.from_settings({"database_url": database, "background_sync": False}) as engine:
        assert engine.plan_instances(plan_id).total == len(gray)


def test_the_console_script_explains_a_missing_flask_extra(tmp_path: Path) -> None:
    # A stand-in "flask" package that fails to import, as if the extra were not installed.
    (tmp_path / "flask").mkdir()
    (tmp_path / "flask" / "__init__.py").write_text("raise ImportError('No module named flask')")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", "from grayrelease_adapters.console import main; main()"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert "pip install 'grayrelease[flask]'" in done.stderr
    assert "Traceback" not in done.stderr
