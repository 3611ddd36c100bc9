"""Scale: 10,000 plans (1,000 ACTIVE) and 1,000,000 instance rows in a real database.

Run: ``make bench-scale`` (or ``.venv/bin/python benchmarks/scale_bench.py [--database
postgresql|mysql|sqlite] [--plans N] [--active N] [--instances N] [--rounds N]``).

A fresh database is created for the run and dropped at the end, also on error or SIGTERM:
``gr_bench_<random>`` on the server of ``GRAYRELEASE_BENCH_POSTGRES_URL`` (default: the loopback
PostgreSQL, ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) or, with ``--database
mysql``, of ``GRAYRELEASE_BENCH_MYSQL_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``);
``--database sqlite`` uses a file in a temporary folder. ``GrayRelease.from_settings`` migrates
the schema. One ACTIVE 10% PERCENTAGE plan is made through the engine (the baseline: one live
plan); the rest is seeded in bulk through the store's tables with SQLAlchemy Core (instance rows
with COPY on PostgreSQL), as valid plans: rules normalized by each strategy's ``validate()``,
``live_key`` on live plans' keys, version 1, one CREATED audit row each.

Reported, baseline beside the figure at scale where there is one:
1. ``refresh_index()`` with 1 and with 1,000 live plans (median of rounds), split into the store
   query and the compilation; the memory the index keeps (tracemalloc: allocations still alive
   after ``live_plans()`` + ``build_entries()``, i.e. the plans and entries the engine holds).
2. ``resolve()`` median us/call over many distinct instances (as resolve_bench.py), for a key
   under the 10% plan and a key with no plan, with 1 and with 1,000 live plans.
3. ``list_plans`` shapes (filters and paging) with 1 and with 10,000 plans; ``list_instances`` and
   ``instance_ids`` on a 100,000-instance plan and a typical plan among 1,000,000 rows; and the
   EXPLAIN of every statement these (and ``live_plans``, ``get_plan``, ``list_logs``,
   ``live_plans_covering``) run. Exit status 1 if a statement that filters a big table reads
   all of it and no index can serve it (on PostgreSQL: not even with ``enable_seqscan`` off).
4. ``store.record_hits()`` throughput in batches, half new instances and half existing ones;
   target >= 50,000 hits/s on PostgreSQL (reported, not enforced: the machine may be noisy).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import attrs
from grayrelease_plugins.stores.sqlalchemy import SqlPlanStore
from grayrelease_plugins.stores.sqlalchemy.store import detail_rows, plan_row
from grayrelease_plugins.stores.sqlalchemy.tables import (
    DetailRow,
    InstanceRow,
    LogRow,
    MetaRow,
    PlanRow,
)
from sqlalchemy import Connection, Engine, create_engine, insert, select, text, update
from sqlalchemy.engine import make_url

from grayrelease_core import (
    Client,
    ConfigRef,
    GrayRelease,
    ItemStatus,
    Plan,
    PlanItem,
    PlanQuery,
    PlanStatus,
    Progress,
)
from grayrelease_core.hits import HitBuffer
from grayrelease_core.index import build_entries
from grayrelease_core.models import InstanceHits
from grayrelease_core.sql import captured_selects, make_engine
from grayrelease_core.strategy import StrategyRegistry

URLS = {
    "postgresql": os.environ.get(
        "GRAYRELEASE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    ),
    "mysql": os.environ.get(
        "GRAYRELEASE_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}
APP, ENV, GROUP = "order-service", "prod", "default"
GRAY_KEY = ConfigRef(APP, ENV, GROUP, "feature.newPayment.enabled")
PLAIN_KEY = ConfigRef(APP, ENV, GROUP, "feature.other.enabled")
APPS = [f"app-{i:02d}" for i in range(50)]
ENVS = ["dev", "test", "staging", "prod"]
FLUSH_TARGET = 50_000
FLUSH_ROUNDS = 5
BIG_TABLES = {
    "gray_release_plan",
    "gray_release_detail",
    "gray_release_log",
    "gray_release_instance",
}
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
ENDED = (PlanStatus.COMPLETED, PlanStatus.ROLLBACK)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# --- the scratch database -------------------------------------------------------------------


@contextmanager
def scratch_database(kind: str) -> Iterator[str]:
    """The URL of a new, empty database of ``kind``, dropped afterwards whatever happens."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="grayrelease-scale-bench-") as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"gr_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(URLS[kind], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(
                    text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                )
        url = make_url(URLS[kind]).set(database=name)
        if kind == "mysql":
            url = url.update_query_dict({"charset": "utf8mb4"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                if kind == "postgresql":
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            print(f"dropped database {name}")
    finally:
        admin.dispose()


# --- seeding --------------------------------------------------------------------------------


def raw_rules(strategy: str, i: int) -> dict[str, Any]:
    """Rules as an operator would send them, before the strategy normalizes them."""
    if strategy == "PERCENTAGE":
        return {"percentage": (i % 50) + 0.5}
    if strategy == "IP_WHITELIST":
        return {"ipWhitelist": [f"10.{i % 250}.0.0/16", f"192.168.{i % 250}.{i % 200 + 1}"]}
    if strategy == "USER_WHITELIST":
        return {"userWhitelist": [f"user-{i}-{k}" for k in range(5)]}
    return {
        "canary": {
            "canaryInstances": [f"pod-{i:05d}-000000", f"10.{i % 250}.1.1"],
            "stepPercentage": 10,
            "stepInterval": 30,
        }
    }


def plan_rows(
    index: int, status: PlanStatus, strategies: StrategyRegistry, now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The plan, detail and CREATED audit rows of seeded plan ``index``."""
    strategy_name = (
        ("PERCENTAGE", "PERCENTAGE", "IP_WHITELIST", "USER_WHITELIST", "CANARY")[index % 5]
        if status is PlanStatus.ACTIVE
        else ("PERCENTAGE", "IP_WHITELIST", "USER_WHITELIST", "CANARY")[index % 4]
    )
    strategy = strategies.get(strategy_name)
    rules = strategy.validate(raw_rules(strategy_name, index))
    created = EPOCH + timedelta(minutes=index * 37 % 500_000)
    started = status is not PlanStatus.DRAFT
    item_status = {
        PlanStatus.DRAFT: ItemStatus.PENDING,
        PlanStatus.ACTIVE: ItemStatus.GRAY,
        PlanStatus.COMPLETED: ItemStatus.PUBLISHED,
        PlanStatus.ROLLBACK: ItemStatus.ROLLED_BACK,
    }[status]
    app, env = APPS[index % len(APPS)], ENVS[index // len(APPS) % len(ENVS)]
    group = "default" if index % 3 else "database"
    plan = Plan(
        id=uuid.UUID(int=index + 1).hex,
        name=f"plan {index}",
        app_name=app,
        environment=env,
        group_name=group,
        items=tuple(
            PlanItem(
                config_key=f"key.{index:05d}.{k}",
                gray_value=f"gray-{index}-{k}",
                original_value=f"orig-{index}-{k}" if started else None,
                original_present=started,
                status=item_status,
            )
            for k in range(1 + index % 3)
        ),
        strategy=strategy_name,
        rules=rules,
        status=status,
        progress=Progress(
            percentage=100.0
            if status is PlanStatus.COMPLETED
            else strategy.initial_percentage(rules),
            next_step_at=strategy.next_step_at(rules, now) if status is PlanStatus.ACTIVE else None,
        ),
        description=f"seeded plan {index}",
        created_by="bench",
        updated_by="bench",
        created_at=created,
        updated_at=created,
        started_at=created + timedelta(minutes=5) if started else None,
        finished_at=created + timedelta(days=1) if status in ENDED else None,
    )
    row = plan_row(plan)
    details = detail_rows(plan)
    log = {
        "plan_id": plan.id,
        "action": "CREATED",
        "actor": "bench",
        "at": created,
        "status_before": None,
        "status_after": "DRAFT",
        "before": None,
        "after": None,
        "message": "",
    }
    return row, details, log


def seed_plans(
    engine: Engine, strategies: StrategyRegistry, count: int, active: int
) -> dict[PlanStatus, list[str]]:
    """Insert ``count`` plans, ``active`` of them ACTIVE; the others 3:9:3 DRAFT, COMPLETED,
    ROLLBACK, in a shuffled order. Returns the plan ids by status."""
    rest = count - active
    statuses = (
        [PlanStatus.ACTIVE] * active
        + [PlanStatus.DRAFT] * (rest * 3 // 15)
        + [PlanStatus.ROLLBACK] * (rest * 3 // 15)
    )
    statuses += [PlanStatus.COMPLETED] * (count - len(statuses))
    random.Random(7).shuffle(statuses)
    now = datetime.now(UTC)
    by_status: dict[PlanStatus, list[str]] = {status: [] for status in PlanStatus}
    plans, details, logs = [], [], []
    for index, status in enumerate(statuses):
        plan, plan_details, log = plan_rows(index, status, strategies, now)
        plans.append(plan)
        details.extend(plan_details)
        logs.append(log)
        by_status[status].append(plan["id"])
    with engine.begin() as conn:
        for table, rows in ((PlanRow, plans), (DetailRow, details), (LogRow, logs)):
            for start in range(0, len(rows), 5000):
                conn.execute(insert(table), rows[start : start + 5000])
        conn.execute(
            update(MetaRow).where(MetaRow.name == "generation").values(value=MetaRow.value + 1)
        )
    return by_status


def instance_id(plan_id: str, number: int) -> str:
    return f"pod-{plan_id[-6:]}-{number:07d}"


def instance_rows(assignments: list[tuple[str, int]]) -> Iterator[tuple[Any, ...]]:
    """``(plan_id, n)`` -> the plan's first ``n`` instances, as instance-table tuples."""
    for plan_id, n in assignments:
        for number in range(n):
            seen = EPOCH + timedelta(seconds=number)
            yield (
                plan_id,
                instance_id(plan_id, number),
                f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}",
                seen,
                seen + timedelta(hours=1),
                1 + number % 1000,
            )


def seed_instances(engine: Engine, assignments: list[tuple[str, int]]) -> None:
    """Insert the instance rows: COPY on PostgreSQL, Core executemany elsewhere."""
    columns = ("plan_id", "instance_id", "instance_ip", "first_seen", "last_seen", "hits")
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            with driver.cursor() as cursor:
                copy_sql = f"COPY gray_release_instance ({', '.join(columns)}) FROM STDIN"
                with cursor.copy(copy_sql) as copy:
                    for plan_id, instance, ip, first, last, hits in instance_rows(assignments):
                        # the columns hold UTC without a time zone, as UtcDateTime writes them
                        naive_first, naive_last = (
                            first.replace(tzinfo=None),
                            last.replace(tzinfo=None),
                        )
                        copy.write_row((plan_id, instance, ip, naive_first, naive_last, hits))
            driver.commit()
        finally:
            raw.close()
        return
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in instance_rows(assignments):
            batch.append(dict(zip(columns, row, strict=True)))
            if len(batch) == 20_000:
                conn.execute(insert(InstanceRow), batch)
                batch = []
        if batch:
            conn.execute(insert(InstanceRow), batch)


def analyze(engine: Engine) -> None:
    """Fresh planner statistics (and, on PostgreSQL, a visibility map), as autovacuum keeps."""
    tables = sorted(BIG_TABLES)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {', '.join(tables)}"))
    elif engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text(f"ANALYZE TABLE {', '.join(tables)}"))


# --- measuring ------------------------------------------------------------------------------


def median_ms(call: Callable[[], object], rounds: int) -> float:
    """Median milliseconds of ``call()`` over ``rounds`` runs, after one unmeasured run."""
    call()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


def per_call_us(call: Callable[[int], object], count: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean microseconds per ``call(i)`` for i in range(count)."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(count):
            call(i)
        samples.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(samples)


def index_memory(store: SqlPlanStore, strategies: StrategyRegistry) -> tuple[int, int]:
    """Bytes still allocated after loading the live plans and compiling their entries (what
    ``refresh_index`` keeps: ``_live_plans`` and ``_entries``), by tracemalloc; and entries."""
    store.live_plans()  # warm SQLAlchemy's statement caches outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        plans = store.live_plans()
        entries = build_entries(plans, strategies, HitBuffer(), lambda plan_id: frozenset())
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return size, len(entries)


def access_paths(conn: Connection, statement: str, parameters: Any) -> list[tuple[str, str]]:
    """``(table, how it is read)`` for each table the statement reads, from the EXPLAIN;
    ``how`` starts with ``FULL`` when the whole table is read."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
        tree = raw if isinstance(raw, list) else json.loads(str(raw))
        found: list[tuple[str, str]] = []

        def walk(node: dict[str, Any], pending_index: list[str]) -> None:
            kind = node["Node Type"]
            children = node.get("Plans", [])
            if kind == "Bitmap Heap Scan":
                indexes: list[str] = []
                for child in children:
                    walk(child, indexes)
                found.append((node["Relation Name"], f"Bitmap Heap Scan ({', '.join(indexes)})"))
                return
            if kind == "Bitmap Index Scan":
                pending_index.append(node["Index Name"])
            elif "Relation Name" in node:
                how = "FULL Seq Scan" if kind == "Seq Scan" else kind
                if "Index Name" in node:
                    how += f" using {node['Index Name']}"
                found.append((node["Relation Name"], how))
            for child in children:
                walk(child, pending_index)

        walk(tree[0]["Plan"], [])
        return found
    if dialect == "sqlite":
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        result = []
        for row in rows:
            detail = str(row[-1])
            words = detail.split()
            if words and words[0] in ("SCAN", "SEARCH") and len(words) > 1:
                full = words[0] == "SCAN" and "INDEX" not in detail
                result.append((words[1], ("FULL " if full else "") + detail))
        return result
    explained = conn.exec_driver_sql("EXPLAIN " + statement, parameters).mappings().all()
    return [
        (
            str(line["table"]),
            ("FULL " if line["type"] == "ALL" else "")
            + f"type={line['type']} key={line['key']} rows={line['rows']}",
        )
        for line in explained
        if line["table"]
    ]


def explain_all(
    engine: Engine, labelled: list[tuple[str, list[tuple[str, Any]], set[str]]]
) -> list[str]:
    """Print how each statement reads each table; return the missing indexes.

    A full read of a big table the statement filters is looked at again on PostgreSQL with
    ``enable_seqscan`` off: if an index then serves it, the planner chose the full read for
    the share of rows asked for (an index exists); if not, an index is missing. Elsewhere a
    full read is reported as a problem outright.
    """
    problems = []
    postgresql = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        for label, statements, must_seek in labelled:
            print(f"  {label}")
            for statement, parameters in statements:
                print(f"    {' '.join(statement.split())[:92]}")
                for table, how in access_paths(conn, statement, parameters):
                    note = ""
                    if how.startswith("FULL") and table in must_seek:
                        forced = []
                        if postgresql:
                            conn.exec_driver_sql("SET enable_seqscan = off")
                            forced = access_paths(conn, statement, parameters)
                            conn.exec_driver_sql("RESET enable_seqscan")
                        served = [h for t, h in forced if t == table and not h.startswith("FULL")]
                        if served:
                            note = f"  (planner's choice; with enable_seqscan off: {served[0]})"
                        else:
                            note = "  <-- NO INDEX serves this"
                            problems.append(f"{label}: {table}: {how}")
                    print(f"      {table}: {how}{note}")
        conn.rollback()
    return problems


# --- the benchmark --------------------------------------------------------------------------


@attrs.frozen
class Figures:
    """What is measured once with one live plan and again at scale."""

    rebuild_ms: float
    memory_bytes: int
    index_keys: int
    gray_us: float
    plain_us: float
    list_ms: list[float]


SHAPES = [
    ("app+env+status, page 1 of 20", PlanQuery("app-07", "prod", status="ACTIVE")),
    ("app+env, page 1 of 20", PlanQuery("app-07", "prod")),
    ("app+env+group, page 1 of 20", PlanQuery("app-07", "prod", "database")),
    ("app, page 2 of 50", PlanQuery("app-07", page=2, page_size=50)),
    ("status ACTIVE, page 1 of 20", PlanQuery(status="ACTIVE")),
    ("status COMPLETED, page 10 of 50", PlanQuery(status="COMPLETED", page=10, page_size=50)),
    ("environment only, page 1 of 20", PlanQuery(environment="prod")),
    ("no filter, page 1 of 20", PlanQuery()),
    ("no filter, page 50 of 200", PlanQuery(page=50, page_size=200)),
]
"""``list_plans`` shapes: the console's and the API's filters and paging."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--database", choices=("postgresql", "mysql", "sqlite"), default="postgresql"
    )
    parser.add_argument("--plans", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=1_000)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--big-plan", type=int, default=100_000, help="instances of one plan")
    parser.add_argument("--clients", type=int, default=200_000, help="distinct resolve clients")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--batches", default="10000,50000,100000", help="record_hits batch sizes, comma-separated"
    )
    args = parser.parse_args(argv)
    if not 2 <= args.active < args.plans:
        parser.error("--active must be at least 2 and below --plans")
    if not 0 < args.big_plan < args.instances:
        parser.error("--big-plan must be above 0 and below --instances")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # so the scratch database is dropped on SIGTERM
    started = time.perf_counter()
    with scratch_database(args.database) as url:
        print(f"database: {make_url(url).render_as_string(hide_password=True)}")
        gr = GrayRelease.from_settings({"database_url": url, "background_sync": False})
        store = SqlPlanStore(make_engine(url))  # the benchmark's own: seeding, EXPLAIN, flush
        try:
            status = run(args, gr, store)
        finally:
            gr.close()
            store.close()
    print(f"total time {time.perf_counter() - started:.0f} s")
    return status


def run(args: argparse.Namespace, gr: GrayRelease, store: SqlPlanStore) -> int:
    engine: Engine = store._engine
    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        version = conn.scalar(text("SELECT sqlite_version()" if sqlite else "SELECT version()"))
    print(f"server: {engine.dialect.name} {version}")
    gr.backend.publish(GRAY_KEY, "false", actor="bench")
    gr.backend.publish(PLAIN_KEY, "false", actor="bench")
    bench_plan = gr.create_plan(
        {
            "planName": "bench",
            "appName": APP,
            "environment": ENV,
            "configKeys": [GRAY_KEY.config_key],
            "grayStrategy": "PERCENTAGE",
            "grayRules": {"percentage": 10},
            "grayValues": {GRAY_KEY.config_key: "true"},
        },
        actor="bench",
    )
    gr.start(bench_plan.id, actor="bench")
    clients = [
        Client(f"instance-{i:06d}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        for i in range(args.clients)
    ]
    one = figures(args, gr, store, clients)

    by_status, assignments = seed(args, gr, engine)
    big_plan = assignments[0][0]
    typical_plan, typical_size = assignments[len(assignments) // 2]
    started = time.perf_counter()
    gr.refresh_index()
    first_rebuild_ms = (time.perf_counter() - started) * 1e3
    probe = gr.get_plan(big_plan)
    assert gr.resolve(probe.refs[0], Client("x", "10.0.0.1")).plan_id == big_plan, "not indexed"
    many = figures(args, gr, store, clients)
    gray_share = sum(gr.resolve(GRAY_KEY, c).gray for c in clients) / len(clients)
    gr.flush_hits()
    load_ms = median_ms(store.live_plans, args.rounds)
    live = store.live_plans()
    compile_ms = median_ms(
        lambda: build_entries(live, gr.strategies, HitBuffer(), lambda plan_id: frozenset()),
        args.rounds,
    )

    print()
    print(f"1. index rebuild: refresh_index(), median of {args.rounds}")
    print(f"   {'':40} {'1 live plan':>12} {f'{args.active:,} live':>12}  ratio")
    row("refresh_index() ms", one.rebuild_ms, many.rebuild_ms, ".2f")
    print(f"   {'  of which store.live_plans() ms':40} {'':12} {load_ms:12.2f}")
    print(f"   {'  of which build_entries() ms':40} {'':12} {compile_ms:12.2f}")
    print(f"   {'first rebuild after seeding ms':40} {'':12} {first_rebuild_ms:12.2f}")
    row("index memory KiB (tracemalloc)", one.memory_bytes / 1024, many.memory_bytes / 1024, ".1f")
    print(
        f"   {'':40} {'':12} {'':12}  {many.memory_bytes / args.active / 1024:.2f} KiB per "
        f"live plan; {one.index_keys} and {many.index_keys:,} keys"
    )
    print()
    print(f"2. resolve() us/call over {args.clients:,} distinct instances, median of {args.rounds}")
    print(f"   {'':40} {'1 live plan':>12} {f'{args.active:,} live':>12}  ratio")
    row("key under the 10% PERCENTAGE plan", one.gray_us, many.gray_us, ".3f")
    row("key with no plan", one.plain_us, many.plain_us, ".3f")
    print(f"   gray share of the 10% plan: {gray_share:.2%}")
    print()
    print(f"3. list_plans ms, median of {args.rounds * 3}")
    print(f"   {'':40} {'1 plan':>12} {f'{args.plans:,} plans':>12}  ratio")
    for (label, _), a, b in zip(SHAPES, one.list_ms, many.list_ms, strict=True):
        row(label, a, b, ".2f")
    instance_calls: list[tuple[str, Callable[[], object]]] = [
        (
            f"list_instances, {args.big_plan:,} instances, page 1 of 50",
            lambda: store.list_instances(big_plan, 1, 50),
        ),
        (
            f"list_instances, {args.big_plan:,} instances, page 100 of 50",
            lambda: store.list_instances(big_plan, 100, 50),
        ),
        (
            f"list_instances, {typical_size} instances, page 1 of 50",
            lambda: store.list_instances(typical_plan, 1, 50),
        ),
        (
            f"instance_ids, {typical_size} instances",
            lambda: store.instance_ids(typical_plan),
        ),
        (
            f"instance_ids, {args.big_plan:,} instances",
            lambda: store.instance_ids(big_plan),
        ),
    ]
    print(f"   instance queries ms among {args.instances:,} rows, median of {args.rounds}")
    for label, call in instance_calls:
        print(f"   {label:53} {median_ms(call, args.rounds):12.2f}")
    print()
    print("   EXPLAIN of each statement: the tables it reads and how")
    labelled: list[tuple[str, list[tuple[str, Any]], set[str]]] = []
    for label, query in SHAPES:
        with captured_selects(engine) as seen:
            store.find_plans(query)
        filtered = query.app_name is not None or query.status is not None
        must = {"gray_release_detail"} | ({"gray_release_plan"} if filtered else set())
        labelled.append((f"list_plans {label}", seen, must))
    plan_tables = {"gray_release_plan", "gray_release_detail"}
    others: list[tuple[str, Callable[[], object], set[str]]] = [
        ("live_plans (the index rebuild)", store.live_plans, plan_tables),
        ("get_plan", lambda: store.get_plan(big_plan), plan_tables),
        ("list_logs", lambda: store.list_logs(big_plan), {"gray_release_log"}),
        (
            "live_plans_covering (start)",
            lambda: store.live_plans_covering(probe.refs, exclude=bench_plan.id),
            {"gray_release_detail"},
        ),
        *((label, call, {"gray_release_instance"}) for label, call in instance_calls),
    ]
    for label, call, must in others:
        with captured_selects(engine) as seen:
            call()
        labelled.append((label, seen, must))
    problems = explain_all(engine, labelled)
    print()
    measure_flush(args, store, engine, by_status[PlanStatus.ACTIVE], dict(assignments))
    print()
    if problems:
        print("statements reading the whole of a big table they filter, with no index for it:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    return 0


def row(label: str, one: float, many: float, spec: str) -> None:
    print(f"   {label:40} {one:12{spec}} {many:12{spec}}  {many / one:5.2f}")


def figures(
    args: argparse.Namespace, gr: GrayRelease, store: SqlPlanStore, clients: list[Client]
) -> Figures:
    """Index rebuild, index memory, resolve and plan listing, as the database stands."""
    resolve = gr.resolve
    rebuild_ms = median_ms(gr.refresh_index, args.rounds)
    memory, keys = index_memory(store, gr.strategies)
    gray_us = per_call_us(lambda i: resolve(GRAY_KEY, clients[i]), args.clients, args.rounds)
    plain_us = per_call_us(lambda i: resolve(PLAIN_KEY, clients[i]), args.clients, args.rounds)
    gr.flush_hits()
    list_ms = [median_ms(functools.partial(gr.list_plans, q), args.rounds * 3) for _, q in SHAPES]
    return Figures(rebuild_ms, memory, keys, gray_us, plain_us, list_ms)


def seed(
    args: argparse.Namespace, gr: GrayRelease, engine: Engine
) -> tuple[dict[PlanStatus, list[str]], list[tuple[str, int]]]:
    """Seed the plans and the instance rows; the first assignment is the big plan's."""
    started = time.perf_counter()
    by_status = seed_plans(engine, gr.strategies, args.plans - 1, args.active - 1)
    plans_s = time.perf_counter() - started
    started_plans = [
        plan_id
        for status in (PlanStatus.ACTIVE, PlanStatus.COMPLETED, PlanStatus.ROLLBACK)
        for plan_id in by_status[status]
    ]
    big, typical = started_plans[0], started_plans[1:]
    share, extra = divmod(args.instances - args.big_plan, len(typical))
    assignments = [(big, args.big_plan)] + [
        (plan_id, share + (1 if n < extra else 0)) for n, plan_id in enumerate(typical)
    ]
    started = time.perf_counter()
    seed_instances(engine, assignments)
    instances_s = time.perf_counter() - started
    started = time.perf_counter()
    analyze(engine)
    analyze_s = time.perf_counter() - started
    counts = ", ".join(f"{len(ids):,} {status}" for status, ids in by_status.items() if ids)
    print(
        f"seeded {args.plans - 1:,} plans ({counts}; and the bench plan, ACTIVE) "
        f"in {plans_s:.1f} s;\n  {args.instances:,} instance rows ({args.big_plan:,} on one "
        f"ACTIVE plan, the rest over {len(typical):,} started plans) in {instances_s:.1f} s; "
        f"statistics in {analyze_s:.1f} s"
    )
    return by_status, assignments


def measure_flush(
    args: argparse.Namespace,
    store: SqlPlanStore,
    engine: Engine,
    active: list[str],
    seeded: dict[str, int],
) -> None:
    """hits/s of ``record_hits``: half of each batch instances the table has, half new ones,
    all of ACTIVE plans (only live plans collect hits); then check the rows it wrote."""
    plans = [plan_id for plan_id in active if seeded.get(plan_id)]
    rng = random.Random(11)
    now = datetime.now(UTC).replace(microsecond=0)
    fresh = 0
    known: dict[tuple[str, str], int] = {}  # hits added to existing rows, for the check

    def batch(new: int, existing: int) -> list[InstanceHits]:
        nonlocal fresh
        picked: dict[tuple[str, str], InstanceHits] = {}
        while len(picked) < existing:
            plan_id = rng.choice(plans)
            key = (plan_id, instance_id(plan_id, rng.randrange(seeded[plan_id])))
            picked[key] = InstanceHits(*key, "10.9.9.9", now, now, 3)
        for key in picked:
            known[key] = known.get(key, 0) + 3
        hits = list(picked.values())
        for n in range(new):
            fresh += 1
            hits.append(InstanceHits(plans[n % len(plans)], f"new-{fresh:09d}", "", now, now, 1))
        rng.shuffle(hits)
        return hits

    def rate(new: int, existing: int) -> float:
        samples = []
        for _ in range(FLUSH_ROUNDS):
            hits = batch(new, existing)
            started = time.perf_counter()
            store.record_hits(hits)
            samples.append(len(hits) / (time.perf_counter() - started))
        return statistics.median(samples)

    print(f"4. record_hits() hits/s into {args.instances:,} rows, median of {FLUSH_ROUNDS} batches")
    for size in (int(size) for size in args.batches.split(",")):
        got = rate(size - size // 2, size // 2)
        verdict = ""
        if engine.dialect.name == "postgresql":
            verdict = f"  target >= {FLUSH_TARGET:,}: {'ok' if got >= FLUSH_TARGET else 'MISSED'}"
        print(f"   {f'{size:,} a batch, half new, half existing':53} {got:12,.0f}{verdict}")
    size = int(args.batches.split(",")[-1])
    print(f"   {f'{size:,} a batch, all new':53} {rate(size, 0):12,.0f}")
    print(f"   {f'{size:,} a batch, all existing':53} {rate(0, size):12,.0f}")

    sample = rng.sample(sorted(known), 200)
    with engine.connect() as conn:
        for plan_id, instance in sample:
            stored = conn.execute(
                select(InstanceRow).where(
                    InstanceRow.plan_id == plan_id, InstanceRow.instance_id == instance
                )
            ).one()
            number = int(instance.rsplit("-", 1)[1])
            first_seen = (EPOCH + timedelta(seconds=number)).replace(tzinfo=None)
            assert stored.first_seen.replace(tzinfo=None) == first_seen, "first_seen changed"
            assert stored.last_seen.replace(tzinfo=None) == now.replace(tzinfo=None)
            assert stored.instance_ip == "10.9.9.9"
            assert stored.hits == 1 + number % 1000 + known[(plan_id, instance)], "hits lost"
    print("   checked 200 updated rows: hits added, first_seen kept, last_seen and ip new")


if __name__ == "__main__":
    sys.exit(main())
