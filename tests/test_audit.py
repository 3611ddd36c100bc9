"""The audit trail: its hash chain catches a row altered, deleted or inserted around the store,
on every database; the trail can be searched, exported as CSV and checked from HTTP and CLI."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from grayrelease_adapters.flask.cli import cli
from sqlalchemy import create_engine, text

from grayrelease_core import GrayRelease, ManualClock, PermissionDenied, hookimpl
from grayrelease_core.audit import link
from grayrelease_core.store import LogQuery

from .conftest import Factory, spec_body
from .test_http_api import API, AUTH, BOB, make_app

KEY = "an-audit-key-kept-in-a-vault"


def walk_a_plan(gr: GrayRelease, clock: ManualClock, name: str = "p", app: str = "demo-app") -> str:
    key = f"k.{name}"
    plan = gr.create_plan(
        spec_body(planName=name, appName=app, configKeys=[key], grayValues={key: "v"}),
        actor="alice",
    )
    clock.advance(timedelta(seconds=1))
    gr.start(plan.id, actor="alice")
    clock.advance(timedelta(seconds=1))
    gr.pause(plan.id, actor="bob")
    gr.rollback(plan.id, actor="bob", reason='=HYPERLINK("http://evil")')
    return plan.id


def sql(url: str, statement: str, **params: Any) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def log_ids(gr: GrayRelease) -> list[int]:
    rows = gr.find_logs(LogQuery(page_size=200, newest_first=False)).items
    return [row.id for row in rows if row.id is not None]


def test_an_untouched_chain_verifies_and_numbers_every_row_in_order(
    make_gr: Factory, clock: ManualClock
) -> None:
    gr = make_gr()
    walk_a_plan(gr, clock, "a")
    walk_a_plan(gr, clock, "b")
    rows = gr.find_logs(LogQuery(page_size=200, newest_first=False)).items
    assert [row.seq for row in rows] == list(range(1, 9))
    assert {(row.app_name, row.environment) for row in rows} == {("demo-app", "prod")}
    report = gr.verify_audit()
    assert report.ok
    assert report.rows == 8


@pytest.mark.parametrize(
    ("statement", "problem", "at"),
    [
        ("UPDATE gray_release_log SET message = 'nothing happened' WHERE id = :id", "altered", 0),
        ("UPDATE gray_release_log SET actor = 'mallory' WHERE id = :id", "altered", 0),
        ("DELETE FROM gray_release_log WHERE id = :id", "deleted", 1),
        (
            "INSERT INTO gray_release_log (plan_id, action, actor, at, message) "
            "SELECT plan_id, 'COMPLETED', 'mallory', at, '' FROM gray_release_log WHERE id = :id",
            "inserted",
            "new",
        ),
        (
            "INSERT INTO gray_release_log (plan_id, action, actor, at, message, seq, row_hash) "
            "SELECT plan_id, action, actor, at, message, seq, row_hash "
            "FROM gray_release_log WHERE id = :id",
            None,  # refused: a sequence number is unique
            None,
        ),
    ],
)
def test_a_row_changed_around_the_store_is_found(
    make_gr: Factory, clock: ManualClock, db_url: str, statement: str, problem: str | None, at: Any
) -> None:
    gr = make_gr()
    walk_a_plan(gr, clock)
    ids = log_ids(gr)
    target = ids[1]
    if problem is None:
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            sql(db_url, statement, id=target)
        assert gr.verify_audit().ok
        return
    sql(db_url, statement, id=target)
    report = gr.verify_audit()
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.problem == problem
    if at == "new":
        assert report.first_break.log_id not in ids
    else:
        assert report.first_break.log_id == ids[1 + at]
        assert report.first_break.seq == 2


def test_deleting_the_newest_rows_is_found_at_the_head(
    make_gr: Factory, clock: ManualClock, db_url: str
) -> None:
    gr = make_gr()
    walk_a_plan(gr, clock)
    sql(db_url, "DELETE FROM gray_release_log WHERE id = :id", id=log_ids(gr)[-1])
    report = gr.verify_audit()
    assert report.first_break is not None
    assert report.first_break.problem == "deleted"
    assert report.first_break.log_id is None
    assert report.first_break.seq == 4


def test_a_row_forged_beyond_the_head_is_found(
    make_gr: Factory, clock: ManualClock, db_url: str
) -> None:
    gr = make_gr()
    walk_a_plan(gr, clock)
    sql(
        db_url,
        "INSERT INTO gray_release_log (plan_id, action, actor, at, message, seq, row_hash) "
        "SELECT plan_id, 'COMPLETED', 'mallory', at, '', 99, row_hash FROM gray_release_log "
        "WHERE id = :id",
        id=log_ids(gr)[-1],
    )
    report = gr.verify_audit()
    assert report.first_break is not None
    assert report.first_break.problem == "inserted"
    assert report.first_break.seq == 99


def test_with_a_key_a_recomputed_hash_does_not_hide_an_edit(
    make_gr: Factory, clock: ManualClock, db_url: str
) -> None:
    gr = make_gr({"audit": {"key": KEY}})
    walk_a_plan(gr, clock)
    first, second = gr.find_logs(LogQuery(page_size=2, newest_first=False)).items
    assert first.seq == 1
    assert second.id is not None
    edited = attrs.evolve(second, message="nothing happened")
    forged = link(link("0" * 64, first, 1, None), edited, 2, None)  # no key: plain SHA-256
    sql(
        db_url,
        "UPDATE gray_release_log SET message = 'nothing happened', row_hash = :h WHERE id = :id",
        h=forged,
        id=second.id,
    )
    report = gr.verify_audit()
    assert report.first_break is not None
    assert report.first_break.problem == "altered"
    assert report.first_break.log_id == second.id
    # Without the key the same chain does not verify either: the links are HMACs.
    assert not make_gr().verify_audit().ok


def test_concurrent_writers_extend_one_unbroken_chain(make_gr: Factory, clock: ManualClock) -> None:
    engines = [make_gr(), make_gr(), make_gr()]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def work(n: int, gr: GrayRelease) -> None:
        try:
            barrier.wait()
            for k in range(4):
                walk_a_plan(gr, clock, f"w{n}-{k}")
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, gr)) for n, gr in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = engines[0].verify_audit()
    assert report.ok
    assert report.rows == 3 * 4 * 4
    seqs = [row.seq for row in engines[0].find_logs(LogQuery(page_size=200)).items]
    assert sorted(seqs) == list(range(1, 49))  # type: ignore[type-var]


def test_the_trail_is_searched_by_actor_app_environment_action_and_time(
    make_gr: Factory, clock: ManualClock
) -> None:
    gr = make_gr()
    start = clock.now()
    first = walk_a_plan(gr, clock, "a", app="order-service")
    second = walk_a_plan(gr, clock, "b", app="user-service")
    gr.delete_plan(gr.create_plan(spec_body(planName="c"), actor="carol").id, actor="carol")

    def found(**filters: Any) -> list[tuple[str, str]]:
        page = gr.find_logs(LogQuery(page_size=200, **filters))
        return [(row.plan_id, row.action) for row in page.items]

    assert found(actor="bob") == [
        (second, "ROLLED_BACK"),
        (second, "PAUSED"),
        (first, "ROLLED_BACK"),
        (first, "PAUSED"),
    ]
    assert {p for p, _ in found(app_name="order-service")} == {first}
    assert found(actions=("CREATED",), app_name="user-service") == [(second, "CREATED")]
    assert [a for _, a in found(actor="carol")] == ["DELETED", "CREATED"]  # a deleted plan
    assert found(environment="test") == []
    assert found(since=start + timedelta(seconds=1), until=start + timedelta(seconds=2)) == [
        (first, "STARTED")
    ]
    paged = gr.find_logs(LogQuery(page=2, page_size=3))
    assert paged.total == 10
    assert len(paged.items) == 3


# --- over HTTP and the command line -------------------------------------------------------


class DenyBob:
    @hookimpl
    def grayrelease_authorize(self, actor: str, action: str, plan: Any) -> bool | None:
        return False if actor == "bob" else None


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Flask]:
    app = make_app(tmp_path, clock, GRAYRELEASE_TICK_INTERVAL=0, GRAYRELEASE_DELIVERY_INTERVAL=0)
    yield app
    app.extensions["grayrelease"].close(app)


def test_logs_api_filters_exports_csv_and_verifies(
    app: Flask, clock: ManualClock, tmp_path: Path
) -> None:
    http: FlaskClient = app.test_client()
    engine: GrayRelease = app.extensions["grayrelease"].state(app).engine
    plan_id = walk_a_plan(engine, clock)

    page = http.get(f"{API}/logs?actor=bob&action=PAUSED&action=ROLLED_BACK", headers=AUTH)
    assert page.status_code == 200
    assert page.json is not None
    assert [row["action"] for row in page.json["items"]] == ["ROLLED_BACK", "PAUSED"]
    assert page.json["items"][0]["appName"] == "demo-app"
    assert page.json["items"][0]["seq"] == 4
    # Whatever the document allows is a filter, even one that matches nothing (the fuzzer's _).
    nothing = http.get(f"{API}/logs?action=_", headers=AUTH)
    assert nothing.status_code == 200
    assert nothing.json is not None
    assert nothing.json["items"] == []

    exported = http.get(f"{API}/logs?format=csv&planId={plan_id}", headers=AUTH)
    assert exported.status_code == 200
    assert exported.mimetype == "text/csv"
    assert "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [row["action"] for row in rows] == ["ROLLED_BACK", "PAUSED", "STARTED", "CREATED"]
    assert rows[0]["message"] == '\'=HYPERLINK("http://evil")'  # not a formula
    assert json.loads(rows[1]["after"])["status"] == "PAUSED"

    for bad, field in (
        ("format=xml", "format"),
        ("since=yesterday", "since"),
        ("action=DROP%20TABLE", "action"),
        ("pageSize=0", "pageSize"),
        ("who=bob", "who"),
    ):
        refused = http.get(f"{API}/logs?{bad}", headers=AUTH)
        assert refused.status_code == 400, bad
        assert refused.json is not None
        assert refused.json["error"]["details"]["field"] == field
    assert http.get(f"{API}/logs").status_code == 401

    verified = http.get(f"{API}/audit/verify", headers=AUTH)
    assert verified.json == {
        "ok": True,
        "rows": 4,
        "checkedAt": verified.json["checkedAt"] if verified.json else None,
        "firstBreak": None,
    }
    url = app.config["GRAYRELEASE_DATABASE_URL"]
    sql(url, "UPDATE gray_release_log SET actor = 'mallory' WHERE seq = 2")
    broken = http.get(f"{API}/audit/verify", headers=AUTH).json
    assert broken is not None
    assert broken["ok"] is False
    assert broken["firstBreak"]["problem"] == "altered"
    assert broken["firstBreak"]["seq"] == 2

    runner = CliRunner()
    failed = runner.invoke(cli, ["--database-url", url, "audit", "verify"])
    assert failed.exit_code == 1
    assert "altered" in failed.output
    out = tmp_path / "audit.csv"
    exported_cli = runner.invoke(
        cli, ["--database-url", url, "audit", "export", "--actor", "alice", "-o", str(out)]
    )
    assert exported_cli.exit_code == 0, exported_cli.output
    lines = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["action"] for row in lines] == ["CREATED"]  # STARTED's actor was rewritten


def test_a_denied_attempt_is_in_the_trail_with_its_source_address(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = make_app(tmp_path, clock, GRAYRELEASE_TICK_INTERVAL=0, GRAYRELEASE_DELIVERY_INTERVAL=0)
    engine: GrayRelease = app.extensions["grayrelease"].state(app).engine
    engine.plugin_manager.register(DenyBob())
    try:
        http = app.test_client()
        plan = engine.create_plan(spec_body(), actor="alice")
        bob = {"Authorization": f"Bearer {BOB}"}
        refused = http.post(
            f"{API}/plan/{plan.id}/start", headers=bob, environ_base={"REMOTE_ADDR": "10.9.8.7"}
        )
        assert refused.status_code == 403
        [denied] = engine.find_logs(LogQuery(actions=("DENIED",))).items
        assert denied.actor == "bob"
        assert denied.plan_id == plan.id
        assert denied.details is not None
        assert denied.details["action"] == "start"
        assert denied.details["source"] == "10.9.8.7"
        with pytest.raises(PermissionDenied):
            engine.start(plan.id, actor="bob")  # the Python API: no address to record
        newest = engine.find_logs(LogQuery(actions=("DENIED",))).items[0]
        assert newest.details is not None
        assert newest.details["source"] is None
        assert engine.verify_audit().ok
    finally:
        app.extensions["grayrelease"].close(app)


def test_the_cli_reads_the_audit_key_from_a_settings_file(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    settings = {"database_url": url, "background_sync": False, "audit": {"key": KEY}}
    with GrayRelease.from_settings(settings, clock=clock, load_entrypoints=False) as gr:
        walk_a_plan(gr, clock)
    keyed = tmp_path / "settings.json"
    keyed.write_text(json.dumps({"audit": {"key": KEY}}), encoding="utf-8")
    runner = CliRunner()
    intact = runner.invoke(
        cli, ["--database-url", url, "--settings", str(keyed), "audit", "verify"]
    )
    assert intact.exit_code == 0, intact.output
    assert "intact: 4 rows" in intact.output
    keyless = runner.invoke(cli, ["--database-url", url, "audit", "verify", "--json"])
    assert keyless.exit_code == 1
    assert json.loads(keyless.output)["firstBreak"]["problem"] == "altered"
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]", encoding="utf-8")
    refused = runner.invoke(
        cli, ["--database-url", url, "--settings", str(broken), "audit", "verify"]
    )
    assert refused.exit_code == 2
    assert "JSON object" in refused.output
