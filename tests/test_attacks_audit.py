"""Attacks on the audit trail by someone who can write the database, each test named after
the invariant it protects (issue 16, point 7).

Every attack is made with plain SQL around the store; the next process to open the database
is a new engine (through the CLI where an operator would use it). Checkpoints are taken with
``grayrelease audit checkpoint`` and kept in files outside the database, as an operator would.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from grayrelease_adapters.flask.cli import cli
from grayrelease_plugins.stores.sqlalchemy import store_migrations
from grayrelease_plugins.stores.sqlalchemy.store import _log_record
from grayrelease_plugins.stores.sqlalchemy.tables import LogRow
from sqlalchemy import Engine, column, create_engine, insert, select, table, text

from grayrelease_core import GrayRelease, ManualClock
from grayrelease_core.audit import GENESIS, link
from grayrelease_core.checkpoint import Checkpoint, read_checkpoints
from grayrelease_core.migrations import upgrade
from grayrelease_core.sql import after_commit, make_engine, run_write

from .databases import fresh_database
from .test_audit import walk_a_plan
from .test_http_api import API, AUTH, make_app

KEY = "an-audit-key-kept-in-a-vault"
KINDS = ("sqlite", "postgresql", "mysql")
OLD_ROWS = ("CREATED", "STARTED", "PAUSED")


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as found:
        yield found


def settings_file(tmp_path: Path, key: str | None) -> list[str]:
    """The CLI options that give it the audit key (none without one)."""
    if key is None:
        return []
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"audit": {"key": key}}), encoding="utf-8")
    return ["--settings", str(path)]


def grayrelease(url: str, tmp_path: Path, key: str | None, *args: str) -> Result:
    """One run of the `grayrelease` command: a new process's engine on the database."""
    return CliRunner().invoke(cli, ["--database-url", url, *settings_file(tmp_path, key), *args])


def open_engine(url: str, clock: ManualClock, key: str | None) -> GrayRelease:
    settings: dict[str, Any] = {"database_url": url, "background_sync": False}
    if key is not None:
        settings["audit"] = {"key": key}
    return GrayRelease.from_settings(settings, clock=clock, load_entrypoints=False)


def sql(url: str, *statements: str, **params: Any) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement), params)
    finally:
        engine.dispose()


def scalar(url: str, statement: str, **params: Any) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(statement), params).scalar()
    finally:
        engine.dispose()


def take_checkpoint(url: str, tmp_path: Path, key: str | None, out: Path) -> Checkpoint:
    taken = grayrelease(url, tmp_path, key, "audit", "checkpoint", "--out", str(out))
    assert taken.exit_code == 0, taken.output
    return read_checkpoints(out.read_text(encoding="utf-8"), str(out))[-1][1]


def write_trail(url: str, clock: ManualClock, key: str | None, plans: int) -> None:
    with open_engine(url, clock, key) as gr:
        for n in range(plans):
            walk_a_plan(gr, clock, f"p{n}")


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
def test_deleting_the_newest_rows_and_rewinding_the_head_fails_a_checkpoint(
    url: str, tmp_path: Path, clock: ManualClock, key: str | None
) -> None:
    write_trail(url, clock, key, plans=1)  # rows 1-4
    kept = tmp_path / "checkpoints.jsonl"
    take_checkpoint(url, tmp_path, key, kept)
    write_trail(url, clock, key, plans=1)  # rows 5-8
    checkpoint = take_checkpoint(url, tmp_path, key, kept)
    assert checkpoint.seq == 8
    assert (checkpoint.signature is not None) == (key is not None)
    assert (
        grayrelease(url, tmp_path, key, "audit", "verify", "--checkpoint", str(kept)).exit_code == 0
    )

    # Delete rows 6-8 and move the head back to row 5: the chain alone is whole again.
    last_kept = scalar(url, "SELECT row_hash FROM gray_release_log WHERE seq = 5")
    sql(
        url,
        "DELETE FROM gray_release_log WHERE seq > 5",
        "UPDATE gray_release_audit_head SET seq = 5, row_hash = :h",
        h=last_kept,
    )
    assert grayrelease(url, tmp_path, key, "audit", "verify").exit_code == 0  # the hole

    caught = grayrelease(url, tmp_path, key, "audit", "verify", "--checkpoint", str(kept))
    assert caught.exit_code == 1
    assert f"{kept}:2: deleted: checkpoint seq 8 taken" in caught.output
    assert "the chain now ends at seq 5; rows 6-8 are gone" in caught.output
    assert f"{kept}:1" not in caught.output  # the older checkpoint still holds
    report = json.loads(
        grayrelease(
            url, tmp_path, key, "audit", "verify", "--json", "--checkpoint", str(kept)
        ).output
    )
    assert report["ok"] is False
    assert [held["ok"] for held in report["checkpoints"]] == [True, False]


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
def test_rows_without_a_place_in_the_chain_are_never_relinked_by_the_next_process(
    url: str, tmp_path: Path, clock: ManualClock, key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    write_trail(url, clock, key, plans=1)
    first = scalar(url, "SELECT MIN(id) FROM gray_release_log")
    sql(
        url,
        "UPDATE gray_release_log SET seq = NULL, row_hash = NULL",
        "UPDATE gray_release_log SET actor = 'mallory' WHERE id = :id",
        f"UPDATE gray_release_audit_head SET seq = 0, row_hash = '{GENESIS}'",
        id=first + 1,
    )
    # The next process: the real console script, a process of its own.
    verified = subprocess.run(
        [
            str(Path(sys.executable).with_name("grayrelease")),
            "--database-url",
            url,
            *settings_file(tmp_path, key),
            "audit",
            "verify",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 1, verified.stderr
    found = json.loads(verified.stdout)["firstBreak"]
    assert (found["problem"], found["logId"], found["seq"]) == ("inserted", first, 1)
    assert scalar(url, "SELECT COUNT(*) FROM gray_release_log WHERE seq IS NOT NULL") == 0
    assert "rows from before the chain" not in verified.stderr
    with caplog.at_level(logging.INFO, logger="grayrelease.audit"):
        assert grayrelease(url, tmp_path, key, "audit", "verify").exit_code == 1
    assert "rows from before the chain" not in caplog.text

    # The process goes on writing: its rows are linked, the cleared ones stay a break.
    with open_engine(url, clock, key) as gr:
        walk_a_plan(gr, clock, "after")
        report = gr.verify_audit()
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.log_id == first
    assert scalar(url, "SELECT COUNT(*) FROM gray_release_log WHERE seq IS NULL") == 4
    assert scalar(url, "SELECT actor FROM gray_release_log WHERE id = :id", id=first + 1) == (
        "mallory"
    )


def test_setting_the_legacy_marker_again_relinks_only_under_the_log_and_a_checkpoint_catches_it(
    url: str, tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The limit of the marker: it is in the database too. Setting it again (with every link
    # cleared) has the next process link the rows, but that shows in the grayrelease.audit
    # log, and a checkpoint taken before shows the rewritten row.
    write_trail(url, clock, KEY, plans=1)
    kept = tmp_path / "checkpoints.jsonl"
    take_checkpoint(url, tmp_path, KEY, kept)
    sql(
        url,
        "UPDATE gray_release_audit_head SET legacy_pending = :yes",
        yes=True,
    )
    with caplog.at_level(logging.INFO, logger="grayrelease.audit"):
        untouched = grayrelease(url, tmp_path, KEY, "audit", "verify", "--checkpoint", str(kept))
    assert untouched.exit_code == 0, untouched.output  # a begun chain is not relinked
    assert "legacy marker is set on a chain that has begun" in caplog.text

    sql(
        url,
        "UPDATE gray_release_log SET seq = NULL, row_hash = NULL",
        "UPDATE gray_release_log SET actor = 'mallory' WHERE action = 'STARTED'",
        f"UPDATE gray_release_audit_head SET seq = 0, row_hash = '{GENESIS}', "
        "legacy_pending = :yes",
        yes=True,
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="grayrelease.audit"):
        caught = grayrelease(url, tmp_path, KEY, "audit", "verify", "--checkpoint", str(kept))
    assert "linked 4 rows from before the chain" in caplog.text
    assert caught.exit_code == 1
    assert "altered: checkpoint seq 4" in caught.output


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
def test_deleting_every_row_and_resetting_the_head_fails_a_checkpoint(
    url: str, tmp_path: Path, clock: ManualClock, key: str | None
) -> None:
    write_trail(url, clock, key, plans=2)
    kept = tmp_path / "checkpoint.json"
    take_checkpoint(url, tmp_path, key, kept)
    sql(
        url,
        "DELETE FROM gray_release_log",
        f"UPDATE gray_release_audit_head SET seq = 0, row_hash = '{GENESIS}'",
    )
    empty = grayrelease(url, tmp_path, key, "audit", "verify")
    assert empty.exit_code == 0  # the documented limit: an empty chain looks like a new one
    assert "intact: 0 rows" in empty.output

    caught = grayrelease(url, tmp_path, key, "audit", "verify", "--checkpoint", str(kept))
    assert caught.exit_code == 1
    assert f"{kept}:1: deleted: checkpoint seq 8" in caught.output
    assert "rows 1-8 are gone" in caught.output
    # Writing new rows up to the old length does not bring the checkpoint's row back.
    write_trail(url, clock, key, plans=2)
    again = grayrelease(url, tmp_path, key, "audit", "verify", "--checkpoint", str(kept))
    assert again.exit_code == 1
    assert "altered: checkpoint seq 8" in again.output


def test_a_checkpoint_not_signed_with_the_key_is_refused(
    url: str, tmp_path: Path, clock: ManualClock
) -> None:
    write_trail(url, clock, KEY, plans=1)
    kept = tmp_path / "checkpoint.json"
    good = take_checkpoint(url, tmp_path, KEY, kept)
    edited = {
        **good.to_wire(),
        "seq": 2,
        "rowHash": scalar(url, "SELECT row_hash FROM gray_release_log WHERE seq = 2"),
    }
    unsigned = {**good.to_wire(), "signature": None}
    forged = tmp_path / "forged.jsonl"
    forged.write_text(f"{json.dumps(edited)}\n{json.dumps(unsigned)}\n", encoding="utf-8")
    refused = grayrelease(url, tmp_path, KEY, "audit", "verify", "--checkpoint", str(forged))
    assert refused.exit_code == 1
    assert f"{forged}:1: signature:" in refused.output
    assert f"{forged}:2: signature:" in refused.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seq": -1}\n', encoding="utf-8")
    malformed = grayrelease(url, tmp_path, KEY, "audit", "verify", "--checkpoint", str(bad))
    assert malformed.exit_code == 1
    assert f"{bad}:1: seq must be" in malformed.output


def test_checkpoints_logged_to_grayrelease_audit_are_read_back_from_the_log(
    url: str, tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with open_engine(url, clock, KEY) as gr:
        walk_a_plan(gr, clock)
        with caplog.at_level(logging.INFO, logger="grayrelease.audit"):
            taken = gr.audit_checkpoint()
        clock.advance(timedelta(minutes=1))
        walk_a_plan(gr, clock, "q")
        assert gr.verify_audit().ok  # the old signature: no checkpoints
        assert gr.verify_audit(checkpoints=[taken]).ok
    shipped = tmp_path / "app.log"
    shipped.write_text(
        "".join(f"2026-12-03 INFO {r.name}: {r.getMessage()}\n" for r in caplog.records),
        encoding="utf-8",
    )
    [(where, read)] = read_checkpoints(shipped.read_text(encoding="utf-8"), str(shipped))
    assert read == taken
    assert where == f"{shipped}:1"
    sql(url, "DELETE FROM gray_release_log WHERE seq <= 4")
    with open_engine(url, clock, KEY) as gr:
        report = gr.verify_audit(checkpoints=[read])
    assert not report.ok
    assert [held.problem for held in report.checkpoints] == ["deleted"]


# --- the upgrade from before the chain ----------------------------------------------------


def old_rows(engine: Engine) -> None:
    """Three audit rows as a database from before migration 0004 holds them."""
    log = table(
        "gray_release_log",
        column("plan_id"),
        column("action"),
        column("actor"),
        column("at"),
        column("message"),
    )
    at = datetime(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(
            insert(log),
            [
                {"plan_id": "p1", "action": action, "actor": "a", "at": at, "message": ""}
                for action in OLD_ROWS
            ],
        )


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
def test_rows_from_before_the_chain_are_linked_exactly_once_after_the_upgrade(
    url: str, tmp_path: Path, clock: ManualClock, key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(url)
    try:
        upgrade(store_migrations(engine), "0003")
        old_rows(engine)
    finally:
        engine.dispose()
    with caplog.at_level(logging.INFO, logger="grayrelease.audit"):
        for _ in range(2):  # two processes open the upgraded database, one after the other
            opened = grayrelease(url, tmp_path, key, "audit", "verify")
            assert opened.exit_code == 0, opened.output
            assert "intact: 3 rows" in opened.output
    linked = [r for r in caplog.records if "rows from before the chain" in r.getMessage()]
    assert len(linked) == 1
    assert linked[0].levelno == logging.WARNING
    assert scalar(url, "SELECT legacy_seq FROM gray_release_audit_head") == 3
    assert scalar(url, "SELECT legacy_at FROM gray_release_audit_head") is not None
    assert not scalar(url, "SELECT legacy_pending FROM gray_release_audit_head")

    # Once linked, clearing the links again is a break, not a second upgrade.
    sql(
        url,
        "UPDATE gray_release_log SET seq = NULL, row_hash = NULL",
        f"UPDATE gray_release_audit_head SET seq = 0, row_hash = '{GENESIS}'",
    )
    assert grayrelease(url, tmp_path, key, "audit", "verify").exit_code == 1
    assert scalar(url, "SELECT COUNT(*) FROM gray_release_log WHERE seq IS NULL") == 3


def test_a_chain_linked_before_the_marker_existed_is_left_as_it_is(
    url: str, tmp_path: Path
) -> None:
    engine = make_engine(url)
    try:
        migrations = store_migrations(engine)
        upgrade(migrations, "0003")
        old_rows(engine)
        upgrade(migrations, "0007")
        # What the store did before 0008 when it first opened the database.
        with engine.begin() as conn:
            rows = conn.execute(select(LogRow).order_by(LogRow.id)).all()
            previous = GENESIS
            for seq, row in enumerate(rows, start=1):
                record = _log_record(row)
                previous = link(previous, record, seq, None)
                conn.execute(
                    text("UPDATE gray_release_log SET seq = :s, row_hash = :h WHERE id = :id"),
                    {"s": seq, "h": previous, "id": row.id},
                )
            conn.execute(
                text("UPDATE gray_release_audit_head SET seq = :s, row_hash = :h"),
                {"s": len(rows), "h": previous},
            )
    finally:
        engine.dispose()
    opened = grayrelease(url, tmp_path, None, "audit", "verify")  # migrates to 0008
    assert opened.exit_code == 0, opened.output
    assert "intact: 3 rows" in opened.output
    assert not scalar(url, "SELECT legacy_pending FROM gray_release_audit_head")
    assert scalar(url, "SELECT legacy_seq FROM gray_release_audit_head") is None


def test_the_http_api_fails_a_checkpoint_the_chain_no_longer_holds(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = make_app(tmp_path, clock, GRAYRELEASE_TICK_INTERVAL=0, GRAYRELEASE_DELIVERY_INTERVAL=0)
    try:
        http = app.test_client()
        engine: GrayRelease = app.extensions["grayrelease"].state(app).engine
        walk_a_plan(engine, clock)
        taken = json.dumps(engine.audit_checkpoint().to_wire())
        held = http.get(f"{API}/audit/verify", query_string={"checkpoint": taken}, headers=AUTH)
        assert held.status_code == 200
        assert held.json is not None
        assert held.json["ok"] is True
        assert held.json["checkpoints"][0]["ok"] is True

        url = app.config["GRAYRELEASE_DATABASE_URL"]
        kept = scalar(url, "SELECT row_hash FROM gray_release_log WHERE seq = 2")
        sql(
            url,
            "DELETE FROM gray_release_log WHERE seq > 2",
            "UPDATE gray_release_audit_head SET seq = 2, row_hash = :h",
            h=kept,
        )
        unchecked = http.get(f"{API}/audit/verify", headers=AUTH).json
        assert unchecked is not None
        assert unchecked["ok"] is True  # without a checkpoint: the hole
        assert "checkpoints" not in unchecked
        caught = http.get(
            f"{API}/audit/verify", query_string={"checkpoint": [taken, taken]}, headers=AUTH
        )
        assert caught.status_code == 200
        assert caught.json is not None
        assert caught.json["ok"] is False
        assert [c["problem"] for c in caught.json["checkpoints"]] == ["deleted", "deleted"]
        assert "rows 3-4 are gone" in caught.json["checkpoints"][0]["detail"]

        refused = http.get(
            f"{API}/audit/verify", query_string={"checkpoint": "{nope"}, headers=AUTH
        )
        assert refused.status_code == 400
        assert refused.json is not None
        assert refused.json["error"]["details"]["field"] == "checkpoint[0]"
    finally:
        app.extensions["grayrelease"].close(app)


def test_checkpoints_logged_every_n_rows_catch_a_truncation_without_a_manual_one(
    url: str, tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {
        "database_url": url,
        "background_sync": False,
        "audit": {"key": KEY, "checkpoint_every": 3},
    }
    with (
        caplog.at_level(logging.INFO, logger="grayrelease.audit"),
        GrayRelease.from_settings(settings, clock=clock, load_entrypoints=False) as gr,
    ):
        walk_a_plan(gr, clock, "a")  # rows 1-4
        walk_a_plan(gr, clock, "b")  # rows 5-8
    shipped = tmp_path / "app.log"
    shipped.write_text(
        "".join(f"INFO {r.name}: {r.getMessage()}\n" for r in caplog.records), encoding="utf-8"
    )
    logged = [cp for _, cp in read_checkpoints(shipped.read_text(encoding="utf-8"), "log")]
    assert [cp.seq for cp in logged] == [3, 6]
    assert all(cp.signature for cp in logged)
    held = grayrelease(url, tmp_path, KEY, "audit", "verify", "--checkpoint", str(shipped))
    assert held.exit_code == 0, held.output

    kept = scalar(url, "SELECT row_hash FROM gray_release_log WHERE seq = 4")
    sql(
        url,
        "DELETE FROM gray_release_log WHERE seq > 4",
        "UPDATE gray_release_audit_head SET seq = 4, row_hash = :h",
        h=kept,
    )
    caught = grayrelease(url, tmp_path, KEY, "audit", "verify", "--checkpoint", str(shipped))
    assert caught.exit_code == 1
    assert f"{shipped}:2: deleted: checkpoint seq 6" in caught.output


def test_a_checkpoint_is_logged_only_for_rows_that_committed(url: str) -> None:
    # The hook the store logs periodic checkpoints through: a rolled-back write says nothing.
    told: list[str] = []
    engine = make_engine(url)
    try:

        def fails(conn: Any) -> None:
            assert after_commit(conn, lambda: told.append("rolled back"))
            raise RuntimeError("the write fails after the rows were linked")

        with pytest.raises(RuntimeError):
            run_write(engine, fails)
        assert run_write(engine, lambda conn: after_commit(conn, lambda: told.append("ok")))
        with engine.connect() as conn:
            assert not after_commit(conn, lambda: told.append("outside run_write"))
    finally:
        engine.dispose()
    assert told == ["ok"]
