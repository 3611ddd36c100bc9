"""The web console in a real browser: Debian's Chromium, driven by Playwright, against the app
served by waitress under the console's strict Content-Security-Policy.

Each test logs in through the page and does what an operator does: create each kind of plan
in the dialog, start it, watch a canary widen as the ticker advances, pause, resume, complete,
roll back, and meet a validation error and a permission error. Screenshots of the main views
are taken on every run (into a scratch folder, so ``make test`` leaves ``git status`` clean);
``make screenshots`` (``GRAYRELEASE_SCREENSHOTS=docs/images``) writes them to
``docs/images/`` for docs/console.md.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from grayrelease_adapters.flask import GrayRelease

from grayrelease_core import ConfigRef, ManualClock, ValidationError
from grayrelease_core import GrayRelease as Engine

from .console_browser import (
    browser_page,
    chromium,
    click_action,
    enabled_actions,
    expect,
    fill_basics,
    fill_canary,
    fill_key,
    open_dialog,
    save_plan,
    served,
    sign_in,
    status_is,
)

ALICE = "alice-token-0123456789abcdef"  # admin
BOB = "bob-token-0123456789abcdefgh"  # viewer everywhere
CAROL = "carol-token-0123456789abcdef"  # releaser everywhere
API = "/api/gray-release"
CONSOLE = "/gray-release"
ROOT = Path(__file__).resolve().parent.parent
IMAGES = (
    ROOT / os.environ["GRAYRELEASE_SCREENSHOTS"]
    if os.environ.get("GRAYRELEASE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "grayrelease-screenshots"
)
"""Where screenshots go: docs/images only when asked (``make screenshots``)."""
STATIC = Path(__file__).resolve().parent.parent / "adapters" / "flask" / "console" / "static"

VALUES = {
    ConfigRef("demo-app", "prod", "database", "database.url"): "jdbc:mysql://db-old:3306/demo",
    ConfigRef("demo-app", "prod", "database", "database.username"): "app",
    ConfigRef("order-service", "prod", "default", "feature.newPayment.enabled"): "false",
    ConfigRef("cache-service", "prod", "default", "redis.cluster.nodes"): "10.0.0.1:6379",
    ConfigRef("user-service", "prod", "default", "database.maxPoolSize"): "20",
    ConfigRef("search-service", "prod", "default", "search.ranker"): "bm25",
    ConfigRef("billing", "staging", "default", "invoice.template"): "v1",
}


# --- the server and the browser -----------------------------------------------------------


class Console:
    """The app behind the browser: its engine, clock and address."""

    def __init__(self, app: Flask, engine: Engine, clock: ManualClock, base: str) -> None:
        self.app = app
        self.engine = engine
        self.clock = clock
        self.base = base
        self.url = f"{base}{CONSOLE}/"

    def api(self, method: str, path: str, body: Any = None, token: str = ALICE) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.base}{API}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def plan(self, plan_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.api("GET", f"/plan/{plan_id}")
        return answer


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    clock = ManualClock()
    app = Flask("console_host")
    app.config.update(
        GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path_factory.mktemp('console') / 'gray.db'}",
        GRAYRELEASE_BACKGROUND_SYNC=False,
        GRAYRELEASE_TICK_INTERVAL=0,  # the test ticks, with the manual clock
        GRAYRELEASE_DELIVERY_INTERVAL=0,
        GRAYRELEASE_TOKENS={ALICE: "alice", BOB: "bob", CAROL: "carol"},
        GRAYRELEASE_SETTINGS={"auth": {"admins": ["alice"]}},
        GRAYRELEASE_APPROVAL_ENVIRONMENTS=["staging"],
        SECRET_KEY="console-test-secret-0123456789",
    )
    extension = GrayRelease(app, clock=clock, load_entrypoints=False)
    engine = extension.state(app).engine
    engine.grant(actor="alice", grantee="bob", role="viewer", app_name="*", environment="*")
    engine.grant(actor="alice", grantee="carol", role="releaser", app_name="*", environment="*")
    for ref, value in VALUES.items():
        engine.backend.publish(ref, value, actor="ops")
    try:
        with served(app) as base:
            yield Console(app, engine, clock, base)
    finally:
        extension.close(app)


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with browser_page(browser) as opened:
        yield opened


def login(page: Any, console: Console, token: str = ALICE, hash_: str = "") -> None:
    sign_in(page, console.url + hash_, token)


def shot(page: Any, name: str) -> None:
    for close in page.query_selector_all(".toast-close"):  # the view, not the notices
        close.click()
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name), full_page=False)


def read_value(console: Console, app: str, key: str, instance: str, ip: str, group: str) -> Any:
    query = (
        f"appName={app}&environment=prod&groupName={group}&configKey={key}"
        f"&instanceId={instance}&instanceIp={ip}"
    )
    with urllib.request.urlopen(f"{console.base}{API}/config/value?{query}", timeout=10) as r:
        return json.loads(r.read())


def draft_via_api(
    console: Console,
    name: str,
    key: str,
    *,
    app: str = "demo-app",
    env: str = "prod",
    value: str = "x",
    percentage: float | None = None,
) -> dict[str, Any]:
    """A DRAFT plan made through the API: a user whitelist, or a percentage when given."""
    strategy, rules = (
        ("USER_WHITELIST", {"userWhitelist": ["u-1"]})
        if percentage is None
        else ("PERCENTAGE", {"percentage": percentage})
    )
    body = {
        "planName": name,
        "appName": app,
        "environment": env,
        "configKeys": [key],
        "grayStrategy": strategy,
        "grayRules": rules,
        "grayValues": {key: value},
    }
    plan: dict[str, Any] = console.api("POST", "/plan", body)
    return plan


# --- serving ------------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_page_is_served_with_a_strict_csp_and_its_files_are_cached_by_digest(
    console: Console,
) -> None:
    status, headers, body = fetch(console.url)
    assert status == 200
    assert headers["Content-Security-Policy"].startswith("default-src 'self';")
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    page = body.decode()
    assert f'<meta name="grayrelease-api" content="{API}">' in page
    # No inline script or handler: every <script> has a src, no on...= attribute anywhere.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert re.search(r"\son[a-z]+\s*=", page) is None
    script = re.search(r'<script type="module" src="(static/[0-9a-f]{12}/app\.js)"', page)
    assert script is not None
    status, headers, _ = fetch(f"{console.url}{script.group(1)}")
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in headers["Cache-Control"]
    assert fetch(f"{console.url}static/000000000000/app.js")[0] == 404
    settings = json.loads(fetch(f"{console.url}console.json")[2])
    assert settings["apiPrefix"] == API
    assert settings["transitions"]["complete"] == ["ACTIVE", "PAUSED"]
    assert settings["approvalEnvironments"] == ["staging"]
    assert "CANARY" in settings["strategies"]
    # Without the slash, a redirect to the page.
    status, _, _ = fetch(f"{console.base}{CONSOLE}")
    assert status == 200


def test_console_files_never_parse_api_data_as_html() -> None:
    for path in STATIC.rglob("*.js"):
        text = path.read_text(encoding="utf-8")
        for forbidden in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ):
            assert forbidden not in text, f"{path.name} uses {forbidden}"


def test_every_console_file_ships_in_the_package() -> None:
    """A file that setup.cfg's package_data misses works in the source tree and in editable
    installs, and is a 404 after ``pip install grayrelease``."""
    config = configparser.ConfigParser()
    config.read(STATIC.parents[3] / "setup.cfg", encoding="utf-8")
    globs = [g.strip() for g in config["options.package_data"]["grayrelease_adapters"].split(",")]
    package = STATIC.parents[2]  # adapters/, installed as grayrelease_adapters
    for path in STATIC.rglob("*"):
        if path.is_file():
            name = path.relative_to(package).as_posix()
            assert any(
                fnmatch.fnmatchcase(name, g) and name.count("/") == g.count("/") for g in globs
            ), name


def test_console_prefix_can_be_moved_or_turned_off(tmp_path: Path) -> None:
    def make(prefix: Any) -> Flask:
        app = Flask("host")
        app.config.update(
            GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path / 'gray.db'}",
            GRAYRELEASE_BACKGROUND_SYNC=False,
            GRAYRELEASE_TICK_INTERVAL=0,
            GRAYRELEASE_DELIVERY_INTERVAL=0,
            GRAYRELEASE_CONSOLE_PREFIX=prefix,
        )
        GrayRelease(app, load_entrypoints=False)
        return app

    for prefix, where in (("/ops/gray", "/ops/gray/"), (None, None), ("", None)):
        app = make(prefix)
        try:
            http = app.test_client()
            assert http.get("/gray-release/").status_code == 404
            if where:
                answer = http.get(where)
                assert answer.status_code == 200
                assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
        finally:
            app.extensions["grayrelease"].close(app)
    for bad in ("gray", "/gray/", "/api/gray-release", 3):
        with pytest.raises(ValidationError) as caught:
            make(bad)
        assert caught.value.details["field"] == "GRAYRELEASE_CONSOLE_PREFIX"


# --- in the browser -----------------------------------------------------------------------


def test_login_refuses_a_bad_token_then_logs_in_and_out(page: Any, console: Console) -> None:
    page.goto(console.url)
    page.fill("#login-token", "not-a-token-of-ours-at-all")
    page.click("form.login button[type=submit]")
    page.wait_for_selector("form.login .field-error:not([hidden])")
    assert "unknown" in page.inner_text("form.login .field-error")
    login(page, console)
    assert page.inner_text("header .actor") == "alice"
    page.reload()  # the cookie session survives a reload
    page.wait_for_selector("header.topbar")
    page.click("header .logout")
    page.wait_for_selector("form.login")


def test_ip_whitelist_plan_from_draft_to_completed(page: Any, console: Console) -> None:
    """The spec's first scenario, with a validation error on the way."""
    login(page, console)
    open_dialog(page)
    fill_basics(page, "数据库配置灰度发布", "demo-app", group="database")
    page.fill("dialog textarea[name=description]", "数据库配置优化")
    page.fill("dialog textarea[name=ipWhitelist]", "192.168.1.100\n192.168.1.300")
    fill_key(page, 0, "database.url", "jdbc:mysql://db-new:3306/demo")
    fill_key(page, 1, "database.username", "app2")
    # The current values sit beside the gray ones.
    current = page.locator("dialog .key-row [data-testid=current-value]")
    expect(current.nth(0)).to_have_text("jdbc:mysql://db-old:3306/demo")
    expect(current.nth(1)).to_have_text("app")
    shot(page, "console-dialog.png")

    page.click("dialog.plan-dialog [data-action=save]")
    error = page.wait_for_selector(
        "[data-field='grayRules.ipWhitelist'] "
        ".field-error[data-error-for='grayRules.ipWhitelist[1]']"
    )
    assert "not an IP address" in error.inner_text()
    assert "192.168.1.300" in error.inner_text()
    shot(page, "console-validation.png")

    page.fill("dialog textarea[name=ipWhitelist]", "192.168.1.100\n10.0.0.0/24")
    plan_id = save_plan(page)
    status_is(page, "DRAFT")
    assert enabled_actions(page) == ["delete", "start", "update"]

    click_action(page, "start")
    status_is(page, "ACTIVE")
    assert enabled_actions(page) == ["complete", "pause", "rollback"]
    # A whitelisted instance reads its config: it shows up among the instances.
    got = read_value(console, "demo-app", "database.url", "db-client-1", "10.0.0.7", "database")
    assert got == {"value": "jdbc:mysql://db-new:3306/demo", "gray": True, "planId": plan_id}
    page.locator("[data-testid=instances]").filter(has_text="db-client-1").wait_for()
    item = page.locator(".item[data-key='database.url']")
    assert item.locator("[data-testid=original]").inner_text() == "jdbc:mysql://db-old:3306/demo"
    assert item.locator("[data-testid=gray]").inner_text() == "jdbc:mysql://db-new:3306/demo"

    click_action(page, "pause")
    status_is(page, "PAUSED")
    assert enabled_actions(page) == ["complete", "resume", "rollback"]
    click_action(page, "resume")
    status_is(page, "ACTIVE")

    page.click(".actions button[data-action=complete]")
    page.wait_for_selector("dialog.confirm[open]")
    page.click("dialog.confirm [data-confirm=cancel]")  # a second thought: nothing happens
    assert console.plan(plan_id)["status"] == "ACTIVE"
    click_action(page, "complete", confirm=True)
    status_is(page, "COMPLETED")
    assert enabled_actions(page) == ["rollback"]
    backend = console.engine.backend
    assert backend.get(ConfigRef("demo-app", "prod", "database", "database.url")) == (
        "jdbc:mysql://db-new:3306/demo"
    )
    logs = page.locator("[data-testid=log] tbody tr")
    assert [logs.nth(i).get_attribute("data-action") for i in range(logs.count())][:5] == [
        "COMPLETED",
        "RESUMED",
        "PAUSED",
        "STARTED",
        "CREATED",
    ]
    shot(page, "console-detail.png")


def test_percentage_plan_is_rolled_back_with_a_reason(page: Any, console: Console) -> None:
    """The spec's feature switch at 10%, rolled back."""
    login(page, console)
    open_dialog(page)
    fill_basics(page, "新功能开关灰度", "order-service")
    page.select_option("dialog select[name=grayStrategy]", "PERCENTAGE")
    page.fill("dialog input[name=percentage]", "10")
    fill_key(page, 0, "feature.newPayment.enabled", "true")
    plan_id = save_plan(page)
    plan = console.plan(plan_id)
    assert plan["grayRules"]["percentage"] == 10
    click_action(page, "start")
    status_is(page, "ACTIVE")
    page.wait_for_selector("[data-testid=progress] .progress-cell[data-percentage='10']")
    click_action(page, "rollback", confirm=True, reason="支付错误率上升")
    status_is(page, "ROLLBACK")
    assert enabled_actions(page) == []
    page.locator("[data-testid=log] tr[data-action=ROLLED_BACK]").filter(
        has_text="支付错误率上升"
    ).wait_for()
    assert console.plan(plan_id)["status"] == "ROLLBACK"


def test_canary_progress_moves_as_the_ticker_advances(page: Any, console: Console) -> None:
    """The spec's canary, judged on pushed metrics: each tick's step shows without a reload."""
    login(page, console)
    open_dialog(page)
    fill_basics(page, "缓存配置金丝雀发布", "cache-service")
    fill_canary(page, "192.168.1.200", step=20, interval=30)
    page.fill("dialog input[name=maxPercentage]", "60")
    fill_key(page, 0, "redis.cluster.nodes", "10.0.0.1:6379,10.0.0.2:6379")
    page.check("dialog input[name=autoRollbackOn]")
    row = page.locator("dialog .check-row").first
    row.locator("input[name=metric]").fill("errorRate")
    row.locator("select[name=kind]").select_option("threshold")
    row.locator("input[name=limit]").fill("0.05")
    row.locator("input[name=critical]").check()
    plan_id = save_plan(page)
    plan = console.plan(plan_id)
    assert plan["grayRules"]["canary"]["canaryInstances"] == ["192.168.1.200"]
    assert plan["autoRollback"]["checks"][0]["threshold"] == 0.05
    click_action(page, "start")
    status_is(page, "ACTIVE")
    page.wait_for_selector("[data-testid=progress] .progress-cell[data-percentage='0']")
    # The canary instance and two more on its address read the key: the gray group.
    for n in range(3):
        got = read_value(
            console,
            "cache-service",
            "redis.cluster.nodes",
            f"cache-{n}",
            "192.168.1.200",
            "default",
        )
        assert got["gray"] is True

    for expected in (20, 40):
        console.clock.advance(timedelta(minutes=30))
        report(console, plan_id)
        console.engine.tick()
        # No reload: the poll brings the step in.
        page.wait_for_selector(
            f"[data-testid=progress] .progress-cell[data-percentage='{expected}']"
        )
        page.wait_for_selector(
            f"[data-testid=timeline] .stop.current[data-percentage='{expected}']"
        )
    page.locator("[data-testid=log] tr[data-action=STEPPED]").nth(1).wait_for()
    chart = page.wait_for_selector("svg.chart[data-metric=errorRate]")
    assert chart.query_selector(".series-gray path") is not None
    assert chart.query_selector(".series-baseline path") is not None
    assert chart.query_selector(".verdict[data-outcome=PASS]") is not None
    page.locator("h2", has_text="Metrics").scroll_into_view_if_needed()
    shot(page, "console-canary.png")

    click_action(page, "promote")  # a step by hand: 60%, the top
    page.wait_for_selector("[data-testid=progress] .progress-cell[data-percentage='60']")
    assert console.plan(plan_id)["progress"]["percentage"] == 60
    click_action(page, "rollback", confirm=True)
    status_is(page, "ROLLBACK")


def report(console: Console, plan_id: str) -> None:
    """Three gray and three baseline instances report a healthy error rate every 5 minutes
    of the half hour that just passed."""
    now = console.clock.now()
    samples = [
        {
            "instanceId": f"cache-{n}",
            "metric": "errorRate",
            "value": round(0.012 + 0.003 * ((minute // 5 * 3 + n) % 5) / 5 + 0.002 * (n < 3), 4),
            "gray": n < 3,
            "timestamp": (now - timedelta(minutes=minute)).isoformat(),
        }
        for n in range(6)
        for minute in range(1, 30, 5)
    ]
    console.engine.push_metrics(plan_id, {"samples": samples}, actor="alice")


def test_user_whitelist_and_label_plans_are_made_in_the_dialog(page: Any, console: Console) -> None:
    login(page, console)
    open_dialog(page)
    fill_basics(page, "连接池按用户灰度", "user-service")
    page.select_option("dialog select[name=grayStrategy]", "USER_WHITELIST")
    page.fill("dialog textarea[name=userWhitelist]", "u-1001\nalice")
    fill_key(page, 0, "database.maxPoolSize", "50")
    users = save_plan(page)
    assert console.plan(users)["grayRules"] == {"userWhitelist": ["u-1001", "alice"]}

    page.goto(console.url + "#/plans")
    open_dialog(page)
    fill_basics(page, "排序按机房灰度", "search-service")
    page.select_option("dialog select[name=grayStrategy]", "LABEL")
    page.fill("dialog .label-row input[name=labelName]", "zone")
    page.fill("dialog .label-row input[name=labelValues]", "hz-a, hz-b")
    page.click("dialog [data-action=add-label]")
    page.locator("dialog .label-row").nth(1).locator("input[name=labelName]").fill("version")
    page.locator("dialog .label-row").nth(1).locator("input[name=labelValues]").fill("")
    fill_key(page, 0, "search.ranker", "learned")
    page.click("dialog.plan-dialog [data-action=save]")
    page.wait_for_selector("[data-field='grayRules.labels.version'] .field-error")
    page.locator("dialog .label-row").nth(1).locator("input[name=labelValues]").fill("2.1.0")
    labels = save_plan(page)
    assert console.plan(labels)["grayRules"] == {
        "labels": {"zone": ["hz-a", "hz-b"], "version": ["2.1.0"]}
    }
    # An edit of the draft: the same dialog, filled in.
    click_action(page, "update")
    page.wait_for_selector("dialog.plan-dialog[open]")
    assert page.input_value("dialog input[name=planName]") == "排序按机房灰度"
    page.fill("dialog input[name=planName]", "排序按机房灰度 v2")
    page.click("dialog.plan-dialog [data-action=save]")
    page.wait_for_selector("[data-testid=plan-name]:text('排序按机房灰度 v2')")
    assert console.plan(labels)["version"] == 2


def test_dialog_shows_current_values_without_joining_the_plan_that_holds_them(
    page: Any, console: Console
) -> None:
    """The dialog's current value is the backend's, even for a key a live plan serves to
    every client, and looking it up is not a client read: no instance is recorded."""
    console.engine.backend.publish(
        ConfigRef("held-app", "prod", "default", "held.key"), "backend-value", actor="ops"
    )
    holder = draft_via_api(
        console, "holds the key", "held.key", app="held-app", value="gray-value", percentage=100
    )
    console.api("POST", f"/plan/{holder['planId']}/start")
    login(page, console)
    open_dialog(page)
    fill_basics(page, "second plan on a held key", "held-app")
    page.fill("dialog textarea[name=ipWhitelist]", "10.1.1.1")
    fill_key(page, 0, "held.key", "another")
    fill_key(page, 1, "unset.key", "new")
    current = page.locator("dialog .key-row [data-testid=current-value]")
    expect(current.nth(0)).to_have_text(
        f"backend-value\nheld by live plan {holder['planId']}", use_inner_text=True
    )
    expect(current.nth(0)).to_have_class(re.compile(r"\bwarning\b"))
    expect(current.nth(1)).to_have_text("(not set)")
    # Notifications: the inbox only for warnings and worse.
    page.check("dialog input[name=notifyOn]")
    page.select_option("dialog select[name=minSeverity-inbox]", "warning")
    page.locator("dialog .key-row").nth(0).locator("input[name=configKey]").fill("free.key")
    page.locator("dialog .key-row").nth(0).locator("input[name=configKey]").dispatch_event("change")
    expect(current.nth(0)).to_have_text("(not set)")
    plan_id = save_plan(page)
    assert console.plan(plan_id)["notify"]["minSeverity"] == {"inbox": "warning"}
    instances = console.api("GET", f"/plan/{holder['planId']}/instances")
    assert instances["total"] == 0
    # A client read is recorded, so the check above could have failed.
    got = read_value(console, "held-app", "held.key", "held-client", "10.9.9.9", "default")
    assert got["value"] == "gray-value"
    assert console.api("GET", f"/plan/{holder['planId']}/instances")["total"] == 1
    console.api("POST", f"/plan/{holder['planId']}/rollback")


def test_a_viewer_sees_the_permission_error(page: Any, console: Console) -> None:
    draft = draft_via_api(console, "viewer cannot start", "viewer.key")
    login(page, console, BOB, f"#/plans/{draft['planId']}")
    status_is(page, "DRAFT")
    click_action(page, "start")
    toast = page.wait_for_selector(".toast-error")
    assert "Permission denied" in toast.inner_text()
    assert "releaser" in toast.inner_text()
    assert console.plan(draft["planId"])["status"] == "DRAFT"
    page.goto(console.url + "#/plans/new")
    page.wait_for_selector("dialog.plan-dialog[open]")
    fill_basics(page, "viewer cannot create", "demo-app")
    page.fill("dialog textarea[name=ipWhitelist]", "10.0.0.1")
    fill_key(page, 0, "k", "v")
    page.click("dialog.plan-dialog [data-action=save]")
    problem = page.wait_for_selector("dialog .form-error:not([hidden])")
    assert "Permission denied" in problem.inner_text()


def test_a_pending_action_is_shown_and_blocks_the_buttons_until_recovery(
    page: Any, console: Console
) -> None:
    """A completion whose commit could not be written stays pending: the detail says so,
    offers no action, and shows the outcome once a tick recovered it."""
    draft = draft_via_api(console, "pending complete", "pending.key", percentage=10)
    plan_id = draft["planId"]
    console.api("POST", f"/plan/{plan_id}/start")
    store = console.engine._store
    real = store.commit_plan

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("database unreachable")

    store.commit_plan = unreachable  # type: ignore[method-assign]
    try:
        with pytest.raises(urllib.error.HTTPError):
            console.api("POST", f"/plan/{plan_id}/complete")
    finally:
        store.commit_plan = real  # type: ignore[method-assign]
    login(page, console, hash_=f"#/plans/{plan_id}")
    banner = page.wait_for_selector("[data-testid=pending-action]")
    assert "alice" in banner.inner_text()
    assert "being published" in banner.inner_text()
    assert enabled_actions(page) == []
    assert console.engine.tick().recovered == [plan_id]
    status_is(page, "COMPLETED")
    page.wait_for_selector("[data-testid=pending-action]", state="detached")
    assert console.plan(plan_id)["pendingAction"] is None


def test_checks_that_can_never_decide_are_shown_on_the_plan_in_both_languages(
    page: Any, console: Console
) -> None:
    """Issue 17: the API's ``warnings`` reach the operator on the plan's page."""
    body = {
        "planName": "undecidable canary",
        "appName": "demo-app",
        "environment": "prod",
        "configKeys": ["warned.key"],
        "grayStrategy": "CANARY",
        "grayRules": {
            "canary": {"canaryInstances": ["10.9.0.1"], "stepPercentage": 20, "stepInterval": 5}
        },
        "grayValues": {"warned.key": "v"},
        "autoRollback": [{"metric": "latencyP99", "maxIncrease": 0.2, "minSamples": 5}],
    }
    plan = console.api("POST", "/plan", body)
    assert [w["code"] for w in plan["warnings"]] == ["FEW_CANARIES"]
    login(page, console, hash_=f"#/plans/{plan['planId']}")
    banner = page.wait_for_selector("[data-testid=warning-FEW_CANARIES]")
    assert "latencyP99" in banner.inner_text()
    assert "needs 5 gray instances" in banner.inner_text()
    page.select_option("header select.lang", "zh")
    page.wait_for_selector("[data-testid=warning-FEW_CANARIES]:has-text('金丝雀阶段')")
    page.select_option("header select.lang", "en")


def test_approval_by_another_releaser_before_start(page: Any, console: Console) -> None:
    draft = draft_via_api(
        console,
        "发票模板",
        "invoice.template",
        app="billing",
        env="staging",
        value="v2",
        percentage=50,
    )
    plan_id = draft["planId"]
    login(page, console, CAROL, f"#/plans/{plan_id}")
    box = page.wait_for_selector("[data-testid=approval]")
    assert "approval" in box.inner_text()
    page.click("[data-testid=approval] [data-action=approve]")
    page.click("dialog.confirm [data-confirm=ok]")
    page.wait_for_selector(".approval-approved")
    click_action(page, "start")
    status_is(page, "ACTIVE")


def test_list_filters_pages_and_speaks_chinese(page: Any, console: Console) -> None:
    # First the plans the other tests left, in Chinese: the list's screenshot.
    login(page, console)
    page.select_option("header select.lang", "zh")
    page.wait_for_selector("th:text('最近操作')")
    assert page.inner_text("header .brand") == "灰度发布"
    page.locator("table.plans tbody tr").first.wait_for()
    shot(page, "console-list.png")
    page.select_option("header select.lang", "en")
    page.wait_for_selector("th:text('Last action')")

    made = []
    for n in range(22):
        console.clock.advance(timedelta(seconds=1))  # newest first: made[3] is on page 1
        made.append(
            draft_via_api(
                console,
                f"批量计划 {n:02d}",
                f"bulk.key{n}",
                app="bulk-app",
                value="on",
                percentage=5,
            )
        )
    console.api("POST", f"/plan/{made[3]['planId']}/start")
    page.goto(console.url + "#/plans?appName=bulk-app")
    rows = page.locator("table.plans tbody tr[data-plan-id]")
    rows.nth(19).wait_for()
    expect(rows).to_have_count(20)
    assert "Page 1 of 2" in page.inner_text(".pager")
    started = page.locator(f"table.plans tbody tr[data-plan-id='{made[3]['planId']}']")
    expect(started.locator(".last-action")).to_contain_text("Started")
    expect(started.locator(".last-action")).to_contain_text("by alice")
    page.click(".pager [data-page=next]")
    page.wait_for_selector(".pager-text:text('Page 2 of 2')")
    expect(rows).to_have_count(2)
    page.fill(".filters input[name=q]", "计划 07")
    page.wait_for_selector("table.plans tbody tr[data-plan-id] >> text=批量计划 07")
    expect(rows).to_have_count(1)
    page.fill(".filters input[name=q]", "BULK.KEY21")  # a config key, searched by the server
    page.wait_for_selector("table.plans tbody tr[data-plan-id] >> text=批量计划 21")
    expect(rows).to_have_count(1)
    page.fill(".filters input[name=q]", "")
    page.fill(".filters input[name=appName]", "")
    page.select_option(".filters select[name=status]", "ACTIVE")
    expect(
        page.locator("table.plans tbody tr[data-plan-id]:not([data-status=ACTIVE])")
    ).to_have_count(0)
    expect(page.locator("table.plans tbody tr[data-status=ACTIVE]")).not_to_have_count(0)
    page.select_option(".filters select[name=status]", "")
    expect(page.locator("table.plans tbody tr[data-status=DRAFT]")).not_to_have_count(0)
    page.wait_for_timeout(300)  # the filter's debounce writes the URL the new language reads
    page.select_option("header select.lang", "zh")  # the choice outlives the view
    page.wait_for_selector("th:text('最近操作')")
    page.reload()
    page.wait_for_selector("th:text('最近操作')")
    page.select_option("header select.lang", "en")
    page.wait_for_selector("th:text('Last action')")


def test_times_are_shown_in_the_browsers_time_zone(browser: Any, console: Console) -> None:
    plan = draft_via_api(console, "北京时间", "clock.key")
    created = datetime.fromisoformat(plan["createdAt"].replace("Z", "+00:00"))
    beijing = created.astimezone(timezone(timedelta(hours=8))).strftime("%H:%M:%S")
    with browser_page(browser, timezone="Asia/Shanghai") as page:
        login(page, console, hash_=f"#/plans/{plan['planId']}")
        status_is(page, "DRAFT")
        facts = page.locator(".detail-head .facts")
        expect(facts).to_contain_text(f"{beijing} GMT+8")


def test_messages_badge_and_the_plans_link(page: Any, console: Console) -> None:
    plan = draft_via_api(console, "消息测试", "message.key")
    console.api("POST", f"/plan/{plan['planId']}/start")
    console.engine.deliver()  # the inbox: STARTED, to the plan's author
    login(page, console)
    badge = page.wait_for_selector("[data-testid=unread]:not([hidden])")
    unread = int(badge.inner_text())
    assert unread >= 1
    page.click("header .messages-link")
    item = page.locator(f".message.unread:has(a[href='#/plans/{plan['planId']}'])").first
    message_id = item.get_attribute("data-message-id")
    item = page.locator(f".message[data-message-id='{message_id}']")
    item.locator(".message-title").click()
    expect(item).not_to_have_class(re.compile(r"\bunread\b"))
    item.locator(".message-body").wait_for()
    if unread == 1:
        expect(page.locator("[data-testid=unread]")).to_be_hidden()
    else:
        expect(page.locator("[data-testid=unread]")).to_have_text(str(unread - 1))
    item.locator("a", has_text="Open the plan").click()
    page.wait_for_selector("[data-testid=plan-name]:text('消息测试')")
