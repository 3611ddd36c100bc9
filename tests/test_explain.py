"""The read and control paths' queries are served by indexes: EXPLAIN on PostgreSQL.

The statements are the ones the store really sends (captured from its engine), explained with
their real parameters, on tables big enough after ``ANALYZE`` for the planner to prefer an
index wherever a query asks for a small share of a table: 5,000 plans and 40,000 instance rows.
``benchmarks/scale_bench.py`` does the same at 10,000 plans and 1,000,000 instance rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from grayrelease_plugins.stores.sqlalchemy import SqlPlanStore
from grayrelease_plugins.stores.sqlalchemy.store import live_key
from grayrelease_plugins.stores.sqlalchemy.tables import DetailRow, LogRow, MetaRow, PlanRow
from sqlalchemy import Connection, Engine, insert, text, update

from grayrelease_core import ConfigRef, GrayRelease, PlanQuery
from grayrelease_core.models import InstanceHits
from grayrelease_core.sql import captured_selects, make_engine

from .databases import fresh_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLANS = 5000
STATUSES = ("DRAFT", "COMPLETED", "COMPLETED", "ROLLBACK", "ACTIVE")


def plan_id(n: int) -> str:
    return f"plan-{n:05d}"


def status_of(n: int) -> str:
    """Runs of 100 plans per status: every app and environment gets each status."""
    return STATUSES[n // 100 % len(STATUSES)]


BIG_PLAN = plan_id(400)  # ACTIVE, with 10,000 instances
SMALL_PLAN = plan_id(401)  # ACTIVE, with 30 instances


def seed(engine: Engine, store: SqlPlanStore) -> None:
    """5,000 plans (two keys each) over 25 apps x 4 environments, a fifth of them ACTIVE;
    40,000 instance rows."""
    plans, details, logs = [], [], []
    for n in range(PLANS):
        status = status_of(n)
        app, env = f"app-{n % 25:02d}", ("dev", "test", "staging", "prod")[n // 25 % 4]
        at = T0 + timedelta(minutes=n)
        plans.append(
            {
                "id": plan_id(n),
                "plan_name": f"plan {n}",
                "app_name": app,
                "environment": env,
                "group_name": "default",
                "gray_strategy": "PERCENTAGE",
                "gray_rules": {"percentage": 10.0, "stickiness": "instanceId"},
                "status": status,
                "percentage": 10.0,
                "current_step": 0,
                "next_step_at": None,
                "description": "",
                "created_by": "test",
                "updated_by": "test",
                "created_at": at,
                "updated_at": at,
                "started_at": None if status == "DRAFT" else at,
                "finished_at": None,
                "version": 1,
            }
        )
        for position in range(2):
            ref = ConfigRef(app, env, "default", f"key.{n}.{position}")
            details.append(
                {
                    "plan_id": plan_id(n),
                    "position": position,
                    "config_key": ref.config_key,
                    "gray_value": "gray",
                    "original_value": "original",
                    "original_present": True,
                    "status": "GRAY" if status == "ACTIVE" else "PENDING",
                    "live_key": live_key(ref) if status == "ACTIVE" else None,
                }
            )
        logs.append({"plan_id": plan_id(n), "action": "CREATED", "actor": "test", "at": at})
    with engine.begin() as conn:
        conn.execute(insert(PlanRow), plans)
        conn.execute(insert(DetailRow), details)
        conn.execute(insert(LogRow), logs)
        conn.execute(update(MetaRow).values(value=MetaRow.value + 1))
    active = [plan_id(n) for n in range(PLANS) if status_of(n) == "ACTIVE"]
    hits = [
        InstanceHits(BIG_PLAN, f"pod-{i:05d}", "10.0.0.1", T0 + timedelta(seconds=i), T0, 1)
        for i in range(10_000)
    ]
    hits += [
        InstanceHits(pid, f"pod-{i:02d}", "10.0.0.2", T0 + timedelta(seconds=i), T0, 1)
        for pid in active
        if pid != BIG_PLAN
        for i in range(30)
    ]
    store.record_hits(hits)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlPlanStore]:
    """A seeded PostgreSQL database, shared by the module's tests (they only read)."""
    with fresh_database("postgresql", Path(tmp_path_factory.mktemp("explain"))) as url:
        GrayRelease.from_settings(
            {"database_url": url, "background_sync": False}, load_entrypoints=False
        ).close()  # migrates the schema
        store = SqlPlanStore(make_engine(url))
        try:
            seed(store._engine, store)
            yield store
        finally:
            store.close()


def scans(conn: Connection, statement: str, parameters: Any) -> list[tuple[str, str, str]]:
    """``(table, node type, index)`` of every node of the plan that reads a table."""
    raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
    plan = raw if isinstance(raw, list) else json.loads(str(raw))
    found: list[tuple[str, str, str]] = []

    def walk(node: dict[str, Any], table: str) -> None:
        table = node.get("Relation Name", table)
        if "Relation Name" in node or node["Node Type"] == "Bitmap Index Scan":
            found.append((table, node["Node Type"], node.get("Index Name", "")))
        for child in node.get("Plans", []):
            walk(child, table)

    walk(plan[0]["Plan"], "")
    return found


def explained(
    store: SqlPlanStore, call: Callable[[], object], *, seqscan: bool = True
) -> list[list[tuple[str, str, str]]]:
    """The scans of each statement ``call`` sends (``seqscan=False``: with enable_seqscan off)."""
    engine = store._engine
    with captured_selects(engine) as statements:
        call()
    assert statements
    with engine.connect() as conn:
        if not seqscan:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        result = [scans(conn, sql, parameters) for sql, parameters in statements]
        conn.rollback()
    return result


def seq_scans(plans: list[list[tuple[str, str, str]]], tables: set[str]) -> list[str]:
    return [
        f"{table}: {kind}"
        for plan in plans
        for table, kind, _ in plan
        if table in tables and kind == "Seq Scan"
    ]


PLAN_TABLES = {"gray_release_plan", "gray_release_detail"}


@pytest.mark.parametrize(
    "query",
    [
        PlanQuery("app-07", "prod", status="ACTIVE"),
        PlanQuery("app-07", "prod"),
        PlanQuery("app-07", "prod", status="COMPLETED", page=2, page_size=5),
        PlanQuery("app-07"),
        PlanQuery(status="ACTIVE"),
    ],
    ids=["app+env+status", "app+env", "app+env+status paged", "app", "status"],
)
def test_the_filtered_plan_list_is_served_by_indexes(store: SqlPlanStore, query: PlanQuery) -> None:
    # The planner's own choice, default settings: a few dozen of 5,000 plans come from an index.
    plans = explained(store, lambda: store.find_plans(query))
    assert len(plans) == 3  # the count, the page, the page's details
    assert not seq_scans(plans, PLAN_TABLES), plans
    used = {index for plan in plans for _, _, index in plan}
    if query.app_name is not None:
        assert "ix_gray_release_plan_app_name_environment_status" in used, plans


@pytest.mark.parametrize(
    "call",
    [
        lambda store: store.instance_ids(SMALL_PLAN),
        lambda store: store.instance_ids(BIG_PLAN),
        lambda store: store.list_instances(SMALL_PLAN),
        lambda store: store.list_instances(BIG_PLAN, page=3, page_size=50),
    ],
    ids=["ids of 30", "ids of 10,000", "page of 30", "page of 10,000"],
)
def test_the_instance_queries_by_plan_are_served_by_indexes(
    store: SqlPlanStore, call: Callable[[SqlPlanStore], object]
) -> None:
    # The planner's own choice: even the plan with a quarter of the rows is read by index.
    plans = explained(store, lambda: call(store))
    assert not seq_scans(plans, {"gray_release_instance"}), plans


def test_a_page_of_instances_is_read_in_order_from_the_index(store: SqlPlanStore) -> None:
    # Without (plan_id, first_seen, instance_id) the page of a big plan sorts all its rows.
    count, page = explained(store, lambda: store.list_instances(BIG_PLAN, page=3, page_size=50))
    assert [index for _, _, index in page] == [
        "ix_gray_release_instance_plan_id_first_seen_instance_id"
    ], page
    assert "pk_gray_release_instance" in {index for _, _, index in count}


@pytest.mark.parametrize(
    ("call", "tables"),
    [
        (lambda store: store.live_plans(), PLAN_TABLES),
        (lambda store: store.get_plan(BIG_PLAN), PLAN_TABLES),
        (lambda store: store.list_logs(BIG_PLAN), {"gray_release_log"}),
        (
            lambda store: store.live_plans_covering(
                [ConfigRef("app-00", "dev", "default", "key.400.0")], exclude="x"
            ),
            {"gray_release_detail"},
        ),
        (lambda store: store.find_plans(PlanQuery("app-07", "prod", "default")), PLAN_TABLES),
    ],
    ids=["live_plans", "get_plan", "list_logs", "live_plans_covering", "app+env+group"],
)
def test_every_other_path_query_can_be_served_by_an_index(
    store: SqlPlanStore, call: Callable[[SqlPlanStore], object], tables: set[str]
) -> None:
    # With enable_seqscan off: whether an index CAN serve the query. The planner may still
    # prefer reading a table whole when a query wants a large share of it (live_plans loads
    # the details of a fifth of all plans here), which is its call to make, not a missing index.
    plans = explained(store, lambda: call(store), seqscan=False)
    assert not seq_scans(plans, tables), plans
