"""The SQLAlchemy store on a real SQLite file: transactions, version checks, the key guard."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import attrs
import pytest
from grayrelease_plugins.stores.sqlalchemy import SqlPlanStore
from grayrelease_plugins.stores.sqlalchemy import store as store_module
from sqlalchemy import create_engine, inspect

from grayrelease_core import (
    Client,
    ConfigRef,
    Conflict,
    GrayRelease,
    GrayReleaseError,
    LogRecord,
    ManualClock,
    NotFound,
    PermissionDenied,
    PlanQuery,
    PlanStatus,
    hookimpl,
)
from grayrelease_core.models import InstanceHits
from grayrelease_core.sequential import Counts
from grayrelease_core.sql import make_engine

from .conftest import Factory, spec_body
from .conftest import ref as spec_ref_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec_ref() -> ConfigRef:
    return spec_ref_of("database.url")


def log_for(plan_id: str, action: str = "TEST") -> LogRecord:
    return LogRecord(plan_id, action, "tester", T0)


def test_the_spec_tables_exist(gr: GrayRelease, db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        names = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {
        "gray_release_plan",
        "gray_release_detail",
        "gray_release_log",
        "gray_release_monitor",
        "gray_release_instance",
    } <= names


def test_plans_survive_a_restart(make_gr: Factory) -> None:
    first = make_gr()
    plan = first.create_plan(spec_body(), actor="a")
    running = first.start(plan.id, actor="a")
    first.close()
    again = make_gr()
    stored = again.get_plan(plan.id)
    assert stored == running
    assert stored.status is PlanStatus.ACTIVE
    assert stored.version == 2
    assert stored.created_at is not None
    assert stored.created_at.tzinfo is UTC
    assert again.resolve(spec_ref(), Client("i", "192.168.1.100")).gray


def test_stale_save_is_a_conflict_and_leaves_the_row(gr: GrayRelease, db_url: str) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    store = SqlPlanStore(make_engine(db_url))
    store.save_plan(attrs.evolve(plan, name="first"), expected_version=1, log=log_for(plan.id))
    with pytest.raises(Conflict) as caught:
        store.save_plan(attrs.evolve(plan, name="second"), expected_version=1, log=log_for(plan.id))
    assert caught.value.details == {"planId": plan.id, "version": 2, "expectedVersion": 1}
    assert gr.get_plan(plan.id).name == "first"
    assert [r.action for r in gr.plan_logs(plan.id).items] == ["CREATED", "TEST"]
    with pytest.raises(NotFound):
        store.save_plan(attrs.evolve(plan, id="gone"), expected_version=1, log=log_for("gone"))
    store.close()


def test_database_refuses_two_live_plans_on_one_key(gr: GrayRelease, db_url: str) -> None:
    first = gr.create_plan(spec_body(), actor="a")
    gr.start(first.id, actor="a")
    second = gr.create_plan(spec_body(), actor="b")
    store = SqlPlanStore(make_engine(db_url))
    generation = store.generation()
    # Bypass the engine's friendly pre-check: the unique key alone must refuse it.
    with pytest.raises(Conflict) as caught:
        store.save_plan(
            attrs.evolve(second, status=PlanStatus.ACTIVE),
            expected_version=1,
            log=log_for(second.id),
        )
    assert caught.value.details["conflictingPlanIds"] == [first.id]
    assert gr.get_plan(second.id).status is PlanStatus.DRAFT  # the whole transaction rolled back
    assert store.generation() == generation
    assert [r.action for r in gr.plan_logs(second.id).items] == ["CREATED"]
    store.close()


def race(calls: list[Callable[[], object]]) -> list[str]:
    """Run ``calls`` in threads released at one instant; "ok" or the error code of each."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = ["" for _ in calls]

    def run(index: int) -> None:
        barrier.wait()
        try:
            calls[index]()
            outcomes[index] = "ok"
        except GrayReleaseError as exc:
            outcomes[index] = exc.code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_concurrent_starts_on_one_key_from_two_processes_exactly_one_wins(make_gr: Factory) -> None:
    for round_no in range(5):
        one, two = make_gr(), make_gr()
        body = spec_body(environment=f"env-{round_no}")
        first, second = one.create_plan(body, actor="a"), two.create_plan(body, actor="b")
        outcomes = race(
            [partial(one.start, first.id, actor="a"), partial(two.start, second.id, actor="b")]
        )
        assert sorted(outcomes) == ["CONFLICT", "ok"]
        statuses = sorted(one.get_plan(p.id).status.value for p in (first, second))
        assert statuses == ["ACTIVE", "DRAFT"]


def test_concurrent_actions_on_one_plan_exactly_one_wins(make_gr: Factory) -> None:
    one, two = make_gr(), make_gr()
    plan = one.create_plan(spec_body(), actor="a")
    one.start(plan.id, actor="a")
    outcomes = race(
        [
            lambda: one.pause(plan.id, actor="a", expected_version=2),
            lambda: two.rollback(plan.id, actor="b", expected_version=2),
        ]
    )
    assert sorted(outcomes) == ["CONFLICT", "ok"]
    expected = PlanStatus.PAUSED if outcomes[0] == "ok" else PlanStatus.ROLLBACK
    assert one.get_plan(plan.id).status is expected
    assert one.get_plan(plan.id).version == 3


def test_list_plans_filters_and_pages(gr: GrayRelease, clock: object) -> None:
    for n in range(5):
        gr.create_plan(spec_body(appName=f"app-{n % 2}", planName=f"p{n}"), actor="a")
    started = gr.create_plan(spec_body(appName="app-9"), actor="a")
    gr.start(started.id, actor="a")
    assert gr.list_plans().total == 6
    page = gr.list_plans(app_name="app-0", page_size=2)
    assert page.total == 3
    assert len(page.items) == 2
    second = gr.list_plans(app_name="app-0", page=2, page_size=2)
    assert len(second.items) == 1
    assert {p.id for p in page.items}.isdisjoint({p.id for p in second.items})
    active = gr.list_plans(PlanQuery(status=PlanStatus.ACTIVE))
    assert [p.id for p in active.items] == [started.id]
    assert gr.list_plans(environment="staging").total == 0


def test_search_finds_text_in_names_descriptions_and_keys_ignoring_case(
    gr: GrayRelease,
) -> None:
    def plan(name: str, keys: list[str], description: str = "") -> str:
        body = spec_body(
            planName=name,
            configKeys=keys,
            grayValues={key: "v" for key in keys},
            description=description,
        )
        return gr.create_plan(body, actor="carol").id

    pool = plan("Pool size", ["database.maxPoolSize"], "连接池优化")
    payment = plan("新功能开关灰度", ["feature.newPayment.enabled"])
    literal = plan("100% rollout_v2", ["cache.ttl"])

    def found(text: str, **filters: object) -> list[str]:
        return [p.id for p in gr.list_plans(PlanQuery(search=text, **filters)).items]  # type: ignore[arg-type]

    assert found("POOL") == [pool]
    assert found("maxpoolsize") == [pool]  # a config key, other case
    assert found("连接池") == [pool]  # the description, in Chinese
    assert found("newpayment") == [payment]
    assert found("开关") == [payment]
    assert found(payment[:12]) == [payment]  # part of the id
    assert found("%") == [literal]  # wildcards are plain characters
    assert found("_v2") == [literal]
    assert found("0_r") == []
    assert found("/") == []
    assert sorted(found("carol")) == sorted([pool, payment, literal])  # the author
    assert found("pool", app_name="other-app") == []
    page = gr.list_plans(PlanQuery(search="a", page_size=2))
    assert (page.total, len(page.items)) == (3, 2)


class RefuseMallory:
    @hookimpl
    def grayrelease_authorize(self, actor: str) -> bool | None:
        return False if actor == "mallory" else None


def test_last_actions_skip_refusals(make_gr: Factory) -> None:
    gr = make_gr(plugins=(RefuseMallory(),))
    first = gr.create_plan(spec_body(), actor="alice")
    second = gr.create_plan(spec_body(groupName="other"), actor="bob")
    untouched = gr.create_plan(spec_body(groupName="third"), actor="carol")
    gr.start(first.id, actor="dave")
    gr.pause(first.id, actor="erin")
    with pytest.raises(PermissionDenied):
        gr.start(second.id, actor="mallory")
    assert gr.plan_logs(second.id).items[-1].action == "DENIED"
    last = gr.last_actions([first.id, second.id, "no-such-plan"])
    assert set(last) == {first.id, second.id}
    assert (last[first.id].action, last[first.id].actor) == ("PAUSED", "erin")
    assert (last[second.id].action, last[second.id].actor) == ("CREATED", "bob")
    assert gr.last_actions([]) == {}
    assert gr.last_actions([untouched.id])[untouched.id].action == "CREATED"


def test_hits_accumulate_per_instance(gr: GrayRelease, db_url: str) -> None:
    store = SqlPlanStore(make_engine(db_url))
    first = InstanceHits("p1", "i-1", "10.0.0.1", T0, T0, 3)
    later = InstanceHits(
        "p1", "i-1", "10.0.0.9", T0 + timedelta(hours=1), T0 + timedelta(hours=1), 2
    )
    store.record_hits([first, InstanceHits("p1", "i-2", "10.0.0.2", T0, T0, 1)])
    store.record_hits([later])
    records = {r.instance_id: r for r in store.list_instances("p1").items}
    assert records["i-1"].hits == 5
    assert records["i-1"].first_seen == T0
    assert records["i-1"].last_seen == T0 + timedelta(hours=1)
    assert records["i-1"].instance_ip == "10.0.0.9"
    assert store.instance_ids("p1") == {"i-1", "i-2"}
    store.close()


def test_many_hits_are_written_in_batches(
    gr: GrayRelease, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "HIT_BATCH", 500)
    store = SqlPlanStore(make_engine(db_url))
    hits = [InstanceHits("p2", f"i-{n}", "10.0.0.1", T0, T0, 1) for n in range(1234)]
    store.record_hits(hits)
    later = T0 + timedelta(minutes=1)
    store.record_hits([attrs.evolve(h, last_seen=later, hits=2) for h in reversed(hits)])
    page = store.list_instances("p2", page_size=200)
    assert page.total == 1234
    assert {(r.hits, r.first_seen, r.last_seen) for r in page.items} == {(3, T0, later)}
    store.close()


def test_one_instance_twice_in_a_batch_counts_as_two_writes(gr: GrayRelease, db_url: str) -> None:
    store = SqlPlanStore(make_engine(db_url))
    later = T0 + timedelta(hours=1)
    store.record_hits(
        [
            InstanceHits("p3", "i-1", "10.0.0.1", T0, T0, 2),
            InstanceHits("p3", "i-2", "10.0.0.5", T0, T0, 1),
            InstanceHits("p3", "i-1", "10.0.0.2", later, later, 3),
        ]
    )
    records = {r.instance_id: r for r in store.list_instances("p3").items}
    assert records["i-1"].hits == 5
    assert records["i-1"].first_seen == T0
    assert records["i-1"].last_seen == later
    assert records["i-1"].instance_ip == "10.0.0.2"
    assert records["i-2"].hits == 1
    store.close()


class FakeDriverError(Exception):
    """What psycopg raises: an error carrying the SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_a_deadlock_victim_is_run_again_and_other_errors_are_not(sqlite_url: str) -> None:
    from sqlalchemy.exc import DBAPIError

    from grayrelease_core.sql import run_write

    engine = make_engine(sqlite_url)
    attempts: list[int] = []

    def deadlocked_once(conn: object) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise DBAPIError("INSERT ...", {}, FakeDriverError("40P01"))
        return "done"

    assert run_write(engine, deadlocked_once) == "done"
    assert len(attempts) == 2

    def broken(conn: object) -> str:
        attempts.append(1)
        raise DBAPIError("INSERT ...", {}, FakeDriverError("23505"))

    attempts.clear()
    with pytest.raises(DBAPIError):
        run_write(engine, broken)
    assert len(attempts) == 1
    engine.dispose()


def test_a_one_mebibyte_value_survives_every_database(make_gr: Factory) -> None:
    big = "x" * (1024 * 1024)
    gr = make_gr({"backend": "sql"})
    plan = gr.create_plan(
        spec_body(grayValues={"database.url": big, "database.username": "u"}), actor="a"
    )
    gr.backend.publish(spec_ref(), big[:-1] + "y", actor="ops")
    started = gr.start(plan.id, actor="a")
    assert started.item("database.url").gray_value == big
    assert make_gr().get_plan(plan.id).item("database.url").original_value == big[:-1] + "y"


def test_hits_flushed_out_of_order_keep_the_earliest_and_latest_times(
    gr: GrayRelease, db_url: str
) -> None:
    store = SqlPlanStore(make_engine(db_url))
    at = [T0 + timedelta(minutes=m) for m in range(11)]
    store.record_hits([InstanceHits("p4", "i-1", "10.0.0.5", at[5], at[10], 2)])
    store.record_hits([InstanceHits("p4", "i-1", "10.0.0.1", at[0], at[1], 1)])  # a late flush
    (record,) = store.list_instances("p4").items
    assert (record.first_seen, record.last_seen, record.hits) == (at[0], at[10], 3)
    assert record.instance_ip == "10.0.0.5"  # the address seen last, not the one written last
    store.close()


def test_keys_and_instances_differing_only_in_case_stay_apart(make_gr: Factory) -> None:
    gr = make_gr({"backend": "sql"})
    plan = gr.create_plan(
        spec_body(
            configKeys=["Feature.Flag", "feature.flag"],
            grayValues={"Feature.Flag": "A", "feature.flag": "b"},
            grayStrategy="PERCENTAGE",
            grayRules={"percentage": 100},
        ),
        actor="a",
    )
    gr.backend.publish(spec_ref_of("Feature.Flag"), "old-A", actor="ops")
    gr.backend.publish(spec_ref_of("feature.flag"), "old-b", actor="ops")
    gr.start(plan.id, actor="a")
    for instance in ("Pod-1", "pod-1"):
        assert gr.resolve(spec_ref_of("Feature.Flag"), Client(instance)).value == "A"
    gr.pause(plan.id, actor="a")
    assert {r.instance_id for r in gr.plan_instances(plan.id).items} == {"Pod-1", "pod-1"}
    assert make_gr({"backend": "sql"}).backend.get(spec_ref_of("feature.flag")) == "old-b"
    assert gr.list_plans(app_name="DEMO-APP").total == 0


def test_counted_samples_sum_per_instance_then_per_group_on_every_database(
    gr: GrayRelease, clock: ManualClock
) -> None:
    """``sample_counts`` does in SQL what ``Counts.sums`` does in Python: each instance's
    samples in the window summed, then the group's sums of e, t, e*e, e*t and t*t."""
    plan = gr.start(gr.create_plan(spec_body(), actor="a").id, actor="a")
    start = clock.now()
    samples = [
        ("g1", True, 3, 600),
        ("g1", True, 1, 400),
        ("g2", True, 0, 900),
        ("b1", False, 2, 1000),
        ("b2", False, 5, 1500),
        ("b3", False, 0, 0),
    ]
    clock.advance(timedelta(minutes=1))
    gr.push_metrics(
        plan.id,
        [
            {"instanceId": i, "gray": g, "metric": "errors", "events": e, "total": t}
            for i, g, e, t in samples
        ]
        + [{"instanceId": "g1", "gray": True, "metric": "errors", "value": 0.5}],  # no counts
        actor="agent",
    )
    clock.advance(timedelta(minutes=1))
    gr.push_metrics(  # outside the window
        plan.id, [{"instanceId": "g2", "metric": "errors", "events": 9, "total": 9}], actor="x"
    )
    found = gr._store.sample_counts({plan.id}, {"errors"}, start, start + timedelta(minutes=1))
    gray, baseline = found[plan.id, "errors"]
    assert gray == Counts((4.0, 0.0), (1000.0, 900.0)).sums
    assert baseline == Counts((2.0, 5.0, 0.0), (1000.0, 1500.0, 0.0)).sums
    assert (gray.instances, baseline.instances) == (2, 2)  # b3 served nothing
