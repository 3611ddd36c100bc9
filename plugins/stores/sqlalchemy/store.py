"""``SqlPlanStore``: plans, audit rows and instance records in one SQL database."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import operator
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, cast

import attrs
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Engine,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeEngine

from grayrelease_core import (
    ConfigurationError,
    Conflict,
    InstanceRecord,
    ItemStatus,
    LogRecord,
    NotFound,
    Page,
    Plan,
    PlanItem,
    PlanQuery,
    PlanStatus,
    Progress,
)
from grayrelease_core.access import ApiToken, ConsoleSession, Grant
from grayrelease_core.audit import GENESIS, AuditReport, Break, ChainedRow, link, verify
from grayrelease_core.checkpoint import Checkpoint, check_all
from grayrelease_core.checks import auto_rollback_from_json
from grayrelease_core.inbox import InboxMessage
from grayrelease_core.intent import Intent, busy_error
from grayrelease_core.models import ConfigRef, InstanceHits, Sample
from grayrelease_core.notify import Message
from grayrelease_core.outbox import Attempt, DeliveryState, Notification
from grayrelease_core.routing import routing_from_json
from grayrelease_core.sequential import NO_COUNTS, CountSums
from grayrelease_core.sql import after_commit, run_write, shared_name
from grayrelease_core.store import LogQuery, ProgressChange

from .tables import (
    AttemptRow,
    AuditHeadRow,
    DetailRow,
    GrantRow,
    InstanceRow,
    LogRow,
    MessageRow,
    MetaRow,
    MonitorRow,
    NotificationRow,
    PlanRow,
    SessionRow,
    TokenRow,
    UtcDateTime,
)

GENERATION = "generation"
HEAD = 1
"""The id of the audit chain's one head row."""
LOG_CHUNK = 1000
"""Audit rows read at a time by exports and the chain's checks."""
LIVE = (PlanStatus.ACTIVE.value, PlanStatus.PAUSED.value)
HIT_BATCH = 10_000
"""Instance rows per statement (or executemany call) when writing hits."""
SAMPLE_BATCH = 5_000
"""Sample rows per executemany call."""
HIT_COLUMNS = ("plan_id", "instance_id", "instance_ip", "first_seen", "last_seen", "hits")
MAX_INSTANCE_ID = 256
log = logging.getLogger("grayrelease")
audit_log = logging.getLogger("grayrelease.audit")


def _storable(hit: InstanceHits) -> bool:
    """Whether the database can hold the hit's texts: PostgreSQL refuses NUL, every driver
    refuses lone surrogates, and the id column is 256 characters wide."""
    if not 0 < len(hit.instance_id) <= MAX_INSTANCE_ID:
        return False
    for text in (hit.instance_id, hit.instance_ip):
        if "\x00" in text:
            return False
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _log_checkpoint(checkpoint: Checkpoint) -> None:
    """Log shipping keeps a copy off the database; `audit verify --checkpoint` reads it."""
    audit_log.info("audit checkpoint %s", json.dumps(checkpoint.to_wire(), sort_keys=True))


def live_key(ref: ConfigRef) -> str:
    """A fixed-length digest of a key's coordinates, unique-indexed while a plan holds it."""
    return hashlib.sha256("\x1f".join(ref).encode()).hexdigest()


class SqlPlanStore:
    """The built-in store; every write is one transaction with its audit row."""

    def __init__(
        self,
        engine: Engine,
        *,
        audit_key: bytes | None = None,
        checkpoint_every: int | None = None,
    ) -> None:
        self._engine = engine
        self._audit_key = audit_key
        self.database_url = shared_name(engine)
        """Where the plans are: a backend in the same database may join our transactions."""
        self._checkpoint_every = checkpoint_every

    # --- reads ----------------------------------------------------------------------------

    def generation(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.scalar(select(MetaRow.value).where(MetaRow.name == GENERATION)) or 0)

    def get_plan(self, plan_id: str) -> Plan | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(PlanRow).where(PlanRow.id == plan_id)).one_or_none()
            return None if row is None else self._plans(conn, [row])[0]

    def find_plans(self, query: PlanQuery) -> Page[Plan]:
        conditions = []
        if query.app_name is not None:
            conditions.append(PlanRow.app_name == query.app_name)
        if query.environment is not None:
            conditions.append(PlanRow.environment == query.environment)
        if query.group_name is not None:
            conditions.append(PlanRow.group_name == query.group_name)
        if query.status is not None:
            conditions.append(PlanRow.status == query.status.value)
        if query.search:
            conditions.append(_plan_search(query.search))
        with self._engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(PlanRow).where(*conditions)) or 0
            rows = conn.execute(
                select(PlanRow)
                .where(*conditions)
                .order_by(PlanRow.created_at.desc(), PlanRow.id)
                .limit(query.page_size)
                .offset((query.page - 1) * query.page_size)
            ).all()
            return Page(tuple(self._plans(conn, rows)), int(total), query.page, query.page_size)

    def live_plans(self) -> list[Plan]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(PlanRow).where(PlanRow.status.in_(LIVE))).all()
            return self._plans(conn, rows)

    def served_plans(self, now: datetime) -> list[Plan]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(PlanRow).where(
                    or_(
                        PlanRow.status.in_(LIVE),
                        PlanRow.action_intent.is_not(None),
                        PlanRow.settle_until >= now,
                    )
                )
            ).all()
            return self._plans(conn, rows)

    def open_intents(self) -> list[Plan]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(PlanRow).where(PlanRow.action_intent.is_not(None))).all()
            return self._plans(conn, rows)

    def holds_claim(self, plan_id: str, epoch: int) -> bool:
        with self._engine.connect() as conn:
            found = conn.scalar(
                select(PlanRow.action_epoch).where(
                    PlanRow.id == plan_id, PlanRow.action_intent.is_not(None)
                )
            )
        return found == epoch

    def scheduled_plans(self, now: datetime) -> list[Plan]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(PlanRow).where(
                    PlanRow.status == PlanStatus.DRAFT.value,
                    PlanRow.start_at.is_not(None),
                    PlanRow.start_at <= now,
                )
            ).all()
            return self._plans(conn, rows)

    def live_plans_covering(
        self, refs: Iterable[ConfigRef], *, exclude: str
    ) -> dict[ConfigRef, str]:
        by_key = {live_key(ref): ref for ref in refs}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(DetailRow.live_key, DetailRow.plan_id).where(
                    DetailRow.live_key.in_(list(by_key)), DetailRow.plan_id != exclude
                )
            ).all()
        return {by_key[row.live_key]: row.plan_id for row in rows}

    def instance_ids(self, plan_id: str) -> frozenset[str]:
        with self._engine.connect() as conn:
            return frozenset(
                conn.scalars(select(InstanceRow.instance_id).where(InstanceRow.plan_id == plan_id))
            )

    def instance_addresses(self, plan_id: str) -> dict[str, str]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(InstanceRow.instance_id, InstanceRow.instance_ip).where(
                    InstanceRow.plan_id == plan_id
                )
            ).all()
        return {row.instance_id: row.instance_ip for row in rows}

    def list_instances(
        self, plan_id: str, page: int = 1, page_size: int = 50
    ) -> Page[InstanceRecord]:
        where = InstanceRow.plan_id == plan_id
        with self._engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(InstanceRow).where(where)) or 0
            rows = conn.execute(
                select(InstanceRow)
                .where(where)
                .order_by(InstanceRow.first_seen, InstanceRow.instance_id)
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).all()
        records = tuple(
            InstanceRecord(
                r.plan_id, r.instance_id, r.instance_ip, r.first_seen, r.last_seen, r.hits
            )
            for r in rows
        )
        return Page(records, int(total), page, page_size)

    def list_logs(
        self,
        plan_id: str,
        page: int = 1,
        page_size: int = 50,
        actions: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> Page[LogRecord]:
        return self.find_logs(
            LogQuery(
                plan_id=plan_id,
                actions=None if actions is None else tuple(actions),
                since=since,
                until=until,
                page=page,
                page_size=page_size,
                newest_first=newest_first,
            )
        )

    def find_logs(self, query: LogQuery) -> Page[LogRecord]:
        where = _log_filters(query)
        with self._engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(LogRow).where(*where)) or 0
            rows = conn.execute(
                select(LogRow)
                .where(*where)
                .order_by(LogRow.id.desc() if query.newest_first else LogRow.id)
                .limit(query.page_size)
                .offset((query.page - 1) * query.page_size)
            ).all()
        return Page(tuple(map(_log_record, rows)), int(total), query.page, query.page_size)

    def last_logs(self, plan_ids: Collection[str]) -> dict[str, LogRecord]:
        if not plan_ids:
            return {}
        newest = (
            select(func.max(LogRow.id))
            .where(among(self._engine.dialect, LogRow.plan_id, plan_ids), LogRow.action != "DENIED")
            .group_by(LogRow.plan_id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(select(LogRow).where(LogRow.id.in_(newest))).all()
        return {row.plan_id: _log_record(row) for row in rows}

    def each_log(self, query: LogQuery) -> Iterator[LogRecord]:
        where = _log_filters(query)
        newest = query.newest_first
        last: int | None = None
        while True:  # keyset pages: no transaction held open while the caller writes
            page = list(where)
            if last is not None:
                page.append(LogRow.id < last if newest else LogRow.id > last)
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(LogRow)
                    .where(*page)
                    .order_by(LogRow.id.desc() if newest else LogRow.id)
                    .limit(LOG_CHUNK)
                ).all()
            if not rows:
                return
            yield from map(_log_record, rows)
            last = rows[-1].id

    def verify_audit(self, now: datetime, checkpoints: Sequence[Checkpoint] = ()) -> AuditReport:
        report = self._verify_chain(now)
        if not checkpoints:
            return report
        # Read after the walk: a row committed since has a higher number and moves the head
        # forward, never back, so a checkpoint that held during the walk still holds here.
        with self._engine.connect() as conn:
            head_seq = conn.scalar(select(AuditHeadRow.seq).where(AuditHeadRow.id == HEAD))
            wanted = sorted({cp.seq for cp in checkpoints})
            hashes = {
                row.seq: row.row_hash
                for row in conn.execute(
                    select(LogRow.seq, LogRow.row_hash).where(LogRow.seq.in_(wanted))
                )
                if row.row_hash is not None
            }
        held = check_all(checkpoints, int(head_seq or 0), hashes, self._audit_key)
        return attrs.evolve(report, checkpoints=held)

    def audit_checkpoint(self, now: datetime) -> Checkpoint:
        with self._engine.connect() as conn:
            head = conn.execute(
                select(AuditHeadRow.seq, AuditHeadRow.row_hash).where(AuditHeadRow.id == HEAD)
            ).one_or_none()
        if head is None:
            raise ConfigurationError(
                "gray_release_audit_head has no row; run `grayrelease db upgrade`"
            )
        checkpoint = Checkpoint.take(head.seq, head.row_hash, now, self._audit_key)
        _log_checkpoint(checkpoint)
        return checkpoint

    def _verify_chain(self, now: datetime) -> AuditReport:
        with self._engine.connect() as conn:
            head = conn.execute(
                select(AuditHeadRow.seq, AuditHeadRow.row_hash).where(AuditHeadRow.id == HEAD)
            ).one_or_none()
        if head is None:
            raise ConfigurationError(
                "gray_release_audit_head has no row; run `grayrelease db upgrade`"
            )
        seq, last_hash = head
        # Rows appended after the head was read have higher numbers: they are left out, so a
        # busy installation is checked as of that moment.
        chained = [LogRow.seq.is_(None), LogRow.seq <= seq]
        report = verify(
            (
                ChainedRow(row.id, row.seq, row.row_hash, _log_record(row))
                for row in self._scan(or_(*chained))
            ),
            (seq, last_hash),
            key=self._audit_key,
            now=now,
        )
        if not report.ok:
            return report
        with self._engine.connect() as conn:
            beyond = conn.execute(
                select(LogRow.id, LogRow.seq).where(LogRow.seq > seq).order_by(LogRow.seq)
            ).all()
            newest = conn.scalar(select(AuditHeadRow.seq).where(AuditHeadRow.id == HEAD))
        # Read after those rows: every row the store committed by then is within it.
        forged = [row for row in beyond if newest is None or row.seq > newest]
        if forged:
            return AuditReport(
                report.rows + 1,
                now,
                Break("inserted", forged[0].id, forged[0].seq, "the row lies beyond the head"),
            )
        return report

    def start_audit_chain(self, now: datetime) -> None:
        """Link the rows written before the chain existed: once, by the first process to open
        a database that migration 0008 marked (the head's row lock makes the others wait).

        Rows without a place in the chain are linked only under that marker, never because
        the head stands at zero: otherwise clearing every link and the head would have the
        next process re-link (and, with a key, sign) whatever rows were left or changed.
        """

        def work(conn: Connection) -> int | None:
            head = conn.execute(
                select(AuditHeadRow.seq, AuditHeadRow.legacy_pending)
                .where(AuditHeadRow.id == HEAD)
                .with_for_update()
            ).one_or_none()
            if head is None or not head.legacy_pending:
                return None  # linked already, or nothing to link (or no schema: writes say so)
            begun = conn.scalar(select(LogRow.id).where(LogRow.seq.isnot(None)).limit(1))
            if head.seq != 0 or begun is not None:
                # The marker was set around the store on a chain that has begun: linking
                # now would sign rows nobody vouched for. They stay a break.
                audit_log.error(
                    "audit: the legacy marker is set on a chain that has begun; not linking"
                )
                return None
            previous, seq = GENESIS, 0
            for row in self._scan(LogRow.seq.is_(None), conn):
                seq += 1
                previous = link(previous, _log_record(row), seq, self._audit_key)
                conn.execute(
                    update(LogRow).where(LogRow.id == row.id).values(seq=seq, row_hash=previous)
                )
            conn.execute(
                update(AuditHeadRow)
                .where(AuditHeadRow.id == HEAD)
                .values(
                    seq=seq,
                    row_hash=previous,
                    legacy_pending=False,
                    legacy_seq=seq,
                    legacy_at=now,
                )
            )
            return seq

        linked = run_write(self._engine, work)
        if linked is not None:
            # Once per installation: a second one in the log means the marker was set again.
            audit_log.warning(
                "audit: linked %d rows from before the chain (seq 1-%d) at %s",
                linked,
                linked,
                now.isoformat(),
            )

    def _scan(self, where: Any, conn: Connection | None = None) -> Iterator[Any]:
        """Log rows matching ``where`` in insertion order, in chunks."""
        last = 0
        while True:
            statement = (
                select(LogRow).where(where, LogRow.id > last).order_by(LogRow.id).limit(LOG_CHUNK)
            )
            if conn is not None:
                rows = conn.execute(statement).all()
            else:
                with self._engine.connect() as own:
                    rows = own.execute(statement).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].id

    def sample_values(
        self, plan_ids: Collection[str], metrics: Collection[str], since: datetime, until: datetime
    ) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
        groups: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        if not plan_ids or not metrics:
            return groups
        statement = (
            select(
                MonitorRow.plan_id,
                MonitorRow.metric_name,
                MonitorRow.gray,
                func.avg(MonitorRow.value),
            )
            .where(
                among(self._engine.dialect, MonitorRow.plan_id, plan_ids),
                MonitorRow.metric_name.in_(list(metrics)),
                MonitorRow.sampled_at > since,
                MonitorRow.sampled_at <= until,
            )
            .group_by(
                MonitorRow.plan_id, MonitorRow.metric_name, MonitorRow.gray, MonitorRow.instance_id
            )
        )
        with self._engine.connect() as conn:
            rows = conn.execute(statement).all()
        for plan_id, metric, gray, mean in rows:
            group = groups.get((plan_id, metric))
            if group is None:
                group = groups[plan_id, metric] = ([], [])
            group[0 if gray else 1].append(float(mean))
        return groups

    def sample_counts(
        self, plan_ids: Collection[str], metrics: Collection[str], since: datetime, until: datetime
    ) -> dict[tuple[str, str], tuple[CountSums, CountSums]]:
        if not plan_ids or not metrics:
            return {}
        # Per instance first (its samples summed over the window), then per group: the rate
        # test needs only sums of e, t, e*e, e*t and t*t, so a tick reads two rows a plan.
        per_instance = (
            select(
                MonitorRow.plan_id.label("plan_id"),
                MonitorRow.metric_name.label("metric"),
                MonitorRow.gray.label("gray"),
                func.sum(MonitorRow.event_count).label("e"),
                func.sum(MonitorRow.event_total).label("t"),
            )
            .where(
                among(self._engine.dialect, MonitorRow.plan_id, plan_ids),
                MonitorRow.metric_name.in_(list(metrics)),
                MonitorRow.sampled_at > since,
                MonitorRow.sampled_at <= until,
                MonitorRow.event_total.is_not(None),
            )
            .group_by(
                MonitorRow.plan_id, MonitorRow.metric_name, MonitorRow.gray, MonitorRow.instance_id
            )
            .subquery()
        )
        e, t = per_instance.c.e, per_instance.c.t
        statement = select(
            per_instance.c.plan_id,
            per_instance.c.metric,
            per_instance.c.gray,
            func.sum(case((t > 0, 1), else_=0)),
            func.sum(e),
            func.sum(t),
            func.sum(e * e),
            func.sum(e * t),
            func.sum(t * t),
        ).group_by(per_instance.c.plan_id, per_instance.c.metric, per_instance.c.gray)
        with self._engine.connect() as conn:
            rows = conn.execute(statement).all()
        sums: dict[tuple[str, str, bool], CountSums] = {}
        for plan_id, metric, gray, instances, *values in rows:
            sums[plan_id, metric, bool(gray)] = CountSums(
                int(instances or 0), *(float(value or 0.0) for value in values)
            )
        return {
            (plan_id, metric): (
                sums.get((plan_id, metric, True), NO_COUNTS),
                sums.get((plan_id, metric, False), NO_COUNTS),
            )
            for plan_id, metric, _ in sums
        }

    def instance_counts(self, plan_ids: Collection[str]) -> dict[str, int]:
        if not plan_ids:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(InstanceRow.plan_id, func.count())
                .where(among(self._engine.dialect, InstanceRow.plan_id, plan_ids))
                .group_by(InstanceRow.plan_id)
            ).all()
        return {plan_id: int(count) for plan_id, count in rows}

    def samples(
        self,
        plan_ids: Collection[str],
        metrics: Collection[str] | None,
        since: datetime,
        until: datetime,
        limit: int | None = None,
    ) -> list[Sample]:
        if not plan_ids or (metrics is not None and not metrics):
            return []
        where = [
            among(self._engine.dialect, MonitorRow.plan_id, plan_ids),
            MonitorRow.sampled_at >= since,
            MonitorRow.sampled_at < until,
        ]
        if metrics is not None:
            where.append(MonitorRow.metric_name.in_(list(metrics)))
        columns = (
            MonitorRow.plan_id,
            MonitorRow.metric_name,
            MonitorRow.value,
            MonitorRow.gray,
            MonitorRow.instance_id,
            MonitorRow.sampled_at,
        )
        with self._engine.connect() as conn:
            rows = conn.execute(select(*columns).where(*where).limit(limit)).all()
        return [
            Sample(plan_id, metric, value, bool(gray), instance, at)
            for plan_id, metric, value, gray, instance, at in rows
        ]

    # --- writes ---------------------------------------------------------------------------

    def add_plan(self, plan: Plan, log: LogRecord, outbox: Sequence[Notification] = ()) -> None:
        def work(conn: Connection) -> None:
            conn.execute(insert(PlanRow).values(**plan_row(plan)))
            self._write_details(conn, plan)
            self._finish(conn, log, outbox)

        run_write(self._engine, work)

    def save_plan(
        self,
        plan: Plan,
        *,
        expected_version: int,
        log: LogRecord | Sequence[LogRecord],
        outbox: Sequence[Notification] = (),
        join: Callable[[Connection], None] | None = None,
    ) -> Plan:
        def work(conn: Connection) -> None:
            result = conn.execute(
                update(PlanRow)
                .where(
                    PlanRow.id == plan.id,
                    PlanRow.version == expected_version,
                    PlanRow.action_intent.is_(None),  # a claimed plan is its claimer's
                )
                .values(
                    **_plan_values(plan),
                    version=expected_version + 1,
                    settle_until=plan.settle_until,
                )
            )
            if result.rowcount != 1:
                self._raise_stale(conn, plan.id, expected_version)
            if join is not None:  # a backend's writes, committed with the plan or not at all
                join(conn)
            conn.execute(delete(DetailRow).where(DetailRow.plan_id == plan.id))
            self._write_details(conn, plan)
            self._finish(conn, log, outbox)

        try:
            run_write(self._engine, work)
        except IntegrityError as exc:
            holders = self.live_plans_covering(plan.refs, exclude=plan.id)
            others = sorted(set(holders.values()))
            raise Conflict(
                f"plan {', '.join(others) or '(another)'} started on the same keys at the same "
                "time; complete or roll it back first",
                details={
                    "conflictingPlanIds": others,
                    "configKeys": sorted(r.config_key for r in holders),
                },
            ) from exc
        return attrs.evolve(plan, version=expected_version + 1)

    def claim_plan(
        self, plan_id: str, *, expected_version: int, expected_epoch: int, intent: Intent
    ) -> None:
        def work(conn: Connection) -> None:
            result = conn.execute(
                update(PlanRow)
                .where(
                    PlanRow.id == plan_id,
                    PlanRow.version == expected_version,
                    PlanRow.action_epoch == expected_epoch,
                    PlanRow.action_intent.is_(None),
                )
                .values(action_epoch=intent.epoch, action_intent=intent.to_json())
            )
            if result.rowcount != 1:
                self._raise_stale(conn, plan_id, expected_version, expected_epoch)
            self._bump(conn)

        run_write(self._engine, work)

    def replace_intent(self, plan_id: str, *, expected_epoch: int, intent: Intent) -> None:
        def work(conn: Connection) -> None:
            result = conn.execute(
                update(PlanRow)
                .where(*_claimed(plan_id, expected_epoch))
                .values(action_epoch=intent.epoch, action_intent=intent.to_json())
            )
            if result.rowcount != 1:
                raise _fenced_out(plan_id, expected_epoch)
            self._bump(conn)

        run_write(self._engine, work)

    def commit_plan(
        self,
        plan: Plan,
        *,
        epoch: int,
        log: Sequence[LogRecord],
        outbox: Sequence[Notification] = (),
    ) -> Plan:
        def work(conn: Connection) -> None:
            result = conn.execute(
                update(PlanRow)
                .where(*_claimed(plan.id, epoch), PlanRow.version == plan.version - 1)
                .values(
                    **_plan_values(plan),
                    version=plan.version,
                    action_intent=null(),
                    settle_until=plan.settle_until,
                )
            )
            if result.rowcount != 1:
                raise _fenced_out(plan.id, epoch)
            conn.execute(delete(DetailRow).where(DetailRow.plan_id == plan.id))
            self._write_details(conn, plan)
            self._finish(conn, log, outbox)

        run_write(self._engine, work)
        return attrs.evolve(plan, epoch=epoch, intent=None)

    def release_plan(
        self,
        plan_id: str,
        *,
        epoch: int,
        log: Sequence[LogRecord],
        outbox: Sequence[Notification] = (),
    ) -> None:
        def work(conn: Connection) -> None:
            result = conn.execute(
                update(PlanRow).where(*_claimed(plan_id, epoch)).values(action_intent=null())
            )
            if result.rowcount != 1:
                raise _fenced_out(plan_id, epoch)
            self._finish(conn, log, outbox)

        run_write(self._engine, work)

    def remove_plan(
        self,
        plan_id: str,
        *,
        expected_version: int,
        log: LogRecord,
        outbox: Sequence[Notification] = (),
    ) -> None:
        def work(conn: Connection) -> None:
            conn.execute(delete(DetailRow).where(DetailRow.plan_id == plan_id))
            result = conn.execute(
                delete(PlanRow).where(PlanRow.id == plan_id, PlanRow.version == expected_version)
            )
            if result.rowcount != 1:
                self._raise_stale(conn, plan_id, expected_version)
            self._finish(conn, log, outbox)

        run_write(self._engine, work)

    def save_progress(self, changes: Sequence[ProgressChange]) -> list[Plan]:
        ordered = sorted(changes, key=lambda c: c.plan.id)  # one lock order for every writer
        params = [_progress_params(change) for change in ordered]
        saved: list[Plan] = []
        one_by_one = False

        def work(conn: Connection) -> None:
            saved.clear()  # run_write may retry the whole transaction
            won: Sequence[ProgressChange] = ordered
            if one_by_one or len(params) < 2 or not conn.dialect.supports_sane_multi_rowcount:
                won = [
                    change
                    for change, values in zip(ordered, params, strict=True)
                    if conn.execute(_SAVE_PROGRESS, values).rowcount == 1
                ]  # the others: another process changed them first, and its decision stands
            elif conn.execute(_SAVE_PROGRESS, params).rowcount != len(params):
                raise _Contended  # rolls the batch back; then find the losers one by one
            self._append_logs(conn, [entry for change in won for entry in change.logs])
            _queue(conn, [entry for change in won for entry in change.outbox])
            if any(change.reindex for change in won):
                self._bump(conn)
            saved.extend(
                attrs.evolve(change.plan, version=change.expected_version + 1) for change in won
            )

        try:
            run_write(self._engine, work)
        except _Contended:
            one_by_one = True
            run_write(self._engine, work)
        return list(saved)

    def bump_generation(self) -> None:
        run_write(self._engine, self._bump)

    def record_samples(self, samples: Sequence[Sample]) -> None:
        rows = [
            {
                "plan_id": sample.plan_id,
                "metric_name": sample.metric,
                "gray": sample.gray,
                "instance_id": sample.instance_id,
                "value": sample.value,
                "sampled_at": sample.at,
                "event_count": sample.events,
                "event_total": sample.total,
            }
            for sample in samples
        ]
        if not rows:
            return

        def work(conn: Connection) -> None:
            for start in range(0, len(rows), SAMPLE_BATCH):
                conn.execute(insert(MonitorRow), rows[start : start + SAMPLE_BATCH])

        run_write(self._engine, work)

    def purge_samples(self, before: datetime) -> int:
        deleted = 0

        def work(conn: Connection) -> None:
            nonlocal deleted
            result = conn.execute(delete(MonitorRow).where(MonitorRow.sampled_at < before))
            deleted = result.rowcount

        run_write(self._engine, work)
        return deleted

    def append_log(self, log: LogRecord, outbox: Sequence[Notification] = ()) -> None:
        def work(conn: Connection) -> None:
            self._append_logs(conn, [log])
            _queue(conn, outbox)

        run_write(self._engine, work)

    def record_hits(self, hits: Sequence[InstanceHits]) -> None:
        storable = [h for h in hits if _storable(h)]
        if len(storable) < len(hits):
            # One row the database refuses would poison every later batch of hits.
            log.warning(
                "grayrelease: %d hits with unstorable instance ids dropped",
                len(hits) - len(storable),
            )
        rows: list[dict[str, Any]] = []
        previous = None
        for h in sorted(storable, key=_hit_key):  # one lock order for every writer
            if (h.plan_id, h.instance_id) == previous:
                # One instance twice: as if written one after the other.
                rows[-1].update(
                    hits=rows[-1]["hits"] + h.hits,
                    last_seen=h.last_seen,
                    instance_ip=h.instance_ip[:64],
                )
                continue
            previous = (h.plan_id, h.instance_id)
            rows.append(
                {
                    "plan_id": h.plan_id,
                    "instance_id": h.instance_id,
                    "instance_ip": h.instance_ip[:64],
                    "first_seen": h.first_seen,
                    "last_seen": h.last_seen,
                    "hits": h.hits,
                }
            )
        if not rows:
            return

        def work(conn: Connection) -> None:
            upsert = _upsert_hits(conn.dialect.name)
            columnar = conn.dialect.name == "postgresql"
            for start in range(0, len(rows), HIT_BATCH):
                chunk = rows[start : start + HIT_BATCH]
                conn.execute(upsert, _columns(chunk, conn.dialect) if columnar else chunk)

        run_write(self._engine, work)

    # --- the notification outbox ----------------------------------------------------------

    def due_notifications(
        self, now: datetime, limit: int, skip: Collection[str] = ()
    ) -> list[Notification]:
        due = or_(
            and_(
                NotificationRow.state == DeliveryState.PENDING.value,
                NotificationRow.next_attempt_at <= now,
            ),
            and_(
                NotificationRow.state == DeliveryState.SENDING.value,
                NotificationRow.lease_until < now,
            ),
        )
        where = [due]
        if skip:
            where.append(NotificationRow.channel.not_in(list(skip)))
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(NotificationRow)
                .where(*where)
                .order_by(NotificationRow.created_at, NotificationRow.id)
                .limit(limit)
            ).all()
        return [_notification(row) for row in rows]

    def claim_notification(
        self, notification: Notification, now: datetime, lease: datetime
    ) -> bool:
        claimed = False

        def work(conn: Connection) -> None:
            nonlocal claimed
            result = conn.execute(
                update(NotificationRow)
                .where(
                    NotificationRow.id == notification.id,
                    NotificationRow.attempts == notification.attempts,
                    or_(
                        NotificationRow.state == DeliveryState.PENDING.value,
                        and_(
                            NotificationRow.state == DeliveryState.SENDING.value,
                            NotificationRow.lease_until < now,
                        ),
                    ),
                )
                .values(
                    state=DeliveryState.SENDING.value,
                    attempts=notification.attempts + 1,
                    lease_until=lease,
                )
            )
            claimed = result.rowcount == 1

        run_write(self._engine, work)
        return claimed

    def finish_notification(
        self,
        notification: Notification,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_at: datetime,
    ) -> bool:
        held = False

        def work(conn: Connection) -> None:
            nonlocal held
            conn.execute(
                insert(AttemptRow).values(
                    notification_id=notification.id,
                    number=attempt.number,
                    at=attempt.at,
                    delivered=attempt.delivered,
                    retryable=attempt.retryable,
                    error=attempt.error,
                    duration_ms=attempt.duration_ms,
                )
            )
            result = conn.execute(
                update(NotificationRow)
                .where(
                    NotificationRow.id == notification.id,
                    NotificationRow.attempts == attempt.number,
                    NotificationRow.state == DeliveryState.SENDING.value,
                )
                .values(
                    state=state.value,
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    last_error=attempt.error,
                    delivered_at=attempt.at if attempt.delivered else None,
                )
            )
            held = result.rowcount == 1

        run_write(self._engine, work)
        return held

    def list_notifications(
        self, plan_id: str, page: int = 1, page_size: int = 50
    ) -> Page[Notification]:
        where = NotificationRow.plan_id == plan_id
        with self._engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(NotificationRow).where(where))
            rows = conn.execute(
                select(NotificationRow)
                .where(where)
                .order_by(NotificationRow.created_at.desc(), NotificationRow.id.desc())
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).all()
            history: dict[str, list[Attempt]] = {row.id: [] for row in rows}
            if history:
                for a in conn.execute(
                    select(AttemptRow)
                    .where(AttemptRow.notification_id.in_(list(history)))
                    .order_by(AttemptRow.id)
                ):
                    history[a.notification_id].append(
                        Attempt(a.number, a.at, a.delivered, a.error, a.retryable, a.duration_ms)
                    )
        items = tuple(
            attrs.evolve(_notification(row), history=tuple(history[row.id])) for row in rows
        )
        return Page(items, int(total or 0), page, page_size)

    # --- the in-system inbox --------------------------------------------------------------

    def add_inbox_messages(self, messages: Sequence[InboxMessage]) -> int:
        added = 0

        def work(conn: Connection) -> None:
            nonlocal added
            added = 0
            for message in messages:
                exists = conn.scalar(
                    select(MessageRow.id).where(
                        MessageRow.notification_id == message.notification_id,
                        MessageRow.recipient == message.recipient,
                    )
                )
                if exists is None:
                    conn.execute(insert(MessageRow).values(**_message_values(message)))
                    added += 1

        try:
            run_write(self._engine, work)
        except IntegrityError:
            # Another worker stored the same notification's messages at the same moment: its
            # rows are the ones kept, and ours are the duplicates the unique pair refused.
            run_write(self._engine, work)
        return added

    def list_inbox(
        self, recipient: str, page: int = 1, page_size: int = 20, unread_only: bool = False
    ) -> Page[InboxMessage]:
        where = [MessageRow.recipient == recipient]
        if unread_only:
            where.append(MessageRow.read_at.is_(None))
        with self._engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(MessageRow).where(*where))
            rows = conn.execute(
                select(MessageRow)
                .where(*where)
                .order_by(
                    case((MessageRow.read_at.is_(None), 0), else_=1),
                    MessageRow.created_at.desc(),
                    MessageRow.id.desc(),
                )
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).all()
        return Page(tuple(_inbox(row) for row in rows), int(total or 0), page, page_size)

    def read_inbox_message(
        self, recipient: str, message_id: int, at: datetime
    ) -> InboxMessage | None:
        found: InboxMessage | None = None

        def work(conn: Connection) -> None:
            nonlocal found
            conn.execute(
                update(MessageRow)
                .where(
                    MessageRow.id == message_id,
                    MessageRow.recipient == recipient,
                    MessageRow.read_at.is_(None),
                )
                .values(read_at=at)
            )
            row = conn.execute(
                select(MessageRow).where(
                    MessageRow.id == message_id, MessageRow.recipient == recipient
                )
            ).one_or_none()
            found = None if row is None else _inbox(row)

        run_write(self._engine, work)
        return found

    def unread_inbox(self, recipient: str) -> int:
        with self._engine.connect() as conn:
            count = conn.scalar(
                select(func.count())
                .select_from(MessageRow)
                .where(MessageRow.recipient == recipient, MessageRow.read_at.is_(None))
            )
        return int(count or 0)

    # --- grants and tokens ------------------------------------------------------------------

    def add_grant(self, grant: Grant, log: LogRecord) -> Grant:
        new_id = 0

        def work(conn: Connection) -> None:
            nonlocal new_id
            result = conn.execute(
                insert(GrantRow).values(
                    actor=grant.actor,
                    role=grant.role,
                    app_name=grant.app_name,
                    environment=grant.environment,
                    granted_by=grant.granted_by,
                    granted_at=grant.granted_at,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            new_id = int(key[0])
            self._append_logs(conn, [log])

        try:
            run_write(self._engine, work)
        except IntegrityError as exc:
            raise Conflict(
                f"{grant.actor} already holds {grant.role} on {grant.app_name}/{grant.environment}",
                details={"actor": grant.actor, "role": grant.role},
            ) from exc
        return attrs.evolve(grant, id=new_id)

    def remove_grant(self, grant_id: int, log: LogRecord) -> None:
        def work(conn: Connection) -> None:
            if conn.execute(delete(GrantRow).where(GrantRow.id == grant_id)).rowcount != 1:
                raise NotFound(f"grant {grant_id} does not exist", details={"grantId": grant_id})
            self._append_logs(conn, [log])

        run_write(self._engine, work)

    def find_grants(
        self,
        actor: str | None = None,
        app_name: str | None = None,
        environment: str | None = None,
    ) -> list[Grant]:
        where = [
            column == value
            for column, value in (
                (GrantRow.actor, actor),
                (GrantRow.app_name, app_name),
                (GrantRow.environment, environment),
            )
            if value is not None
        ]
        with self._engine.connect() as conn:
            rows = conn.execute(select(GrantRow).where(*where).order_by(GrantRow.id)).all()
        return [_grant(row) for row in rows]

    def get_grant(self, grant_id: int) -> Grant | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(GrantRow).where(GrantRow.id == grant_id)).one_or_none()
        return None if row is None else _grant(row)

    def add_token(self, token: ApiToken, log: LogRecord) -> None:
        def work(conn: Connection) -> None:
            conn.execute(
                insert(TokenRow).values(
                    id=token.id,
                    token_hash=token.token_hash,
                    actor=token.actor,
                    scope=token.scope,
                    name=token.name,
                    created_by=token.created_by,
                    created_at=token.created_at,
                    expires_at=token.expires_at,
                    revoked_at=token.revoked_at,
                )
            )
            self._append_logs(conn, [log])

        run_write(self._engine, work)

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(TokenRow).where(TokenRow.token_hash == token_hash)
            ).one_or_none()
        return None if row is None else _token(row)

    def get_token(self, token_id: str) -> ApiToken | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(TokenRow).where(TokenRow.id == token_id)).one_or_none()
        return None if row is None else _token(row)

    def revoke_token(self, token_id: str, at: datetime, log: LogRecord) -> None:
        def work(conn: Connection) -> None:
            found = conn.execute(
                update(TokenRow)
                .where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            if found.rowcount == 1:
                self._append_logs(conn, [log])

        run_write(self._engine, work)

    def list_tokens(self, actor: str | None = None) -> list[ApiToken]:
        where = [] if actor is None else [TokenRow.actor == actor]
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(TokenRow).where(*where).order_by(TokenRow.created_at, TokenRow.id)
            ).all()
        return [_token(row) for row in rows]

    def add_session(self, session: ConsoleSession) -> None:
        def work(conn: Connection) -> None:
            # Logins prune what no cookie can still name, so the table stays bounded.
            conn.execute(delete(SessionRow).where(SessionRow.expires_at < session.created_at))
            conn.execute(
                insert(SessionRow).values(
                    id=session.id,
                    actor=session.actor,
                    token_id=session.token_id,
                    created_at=session.created_at,
                    expires_at=session.expires_at,
                    ended_at=session.ended_at,
                )
            )

        run_write(self._engine, work)

    def get_session(self, session_id: str) -> ConsoleSession | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(SessionRow).where(SessionRow.id == session_id)).one_or_none()
        return None if row is None else _session(row)

    def end_session(self, session_id: str, at: datetime) -> None:
        def work(conn: Connection) -> None:
            conn.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.ended_at.is_(None))
                .values(ended_at=at)
            )

        run_write(self._engine, work)

    def close(self) -> None:
        self._engine.dispose()

    # --- internals ------------------------------------------------------------------------

    def _write_details(self, conn: Connection, plan: Plan) -> None:
        conn.execute(insert(DetailRow), detail_rows(plan))

    def _finish(
        self,
        conn: Connection,
        log: LogRecord | Sequence[LogRecord],
        outbox: Sequence[Notification],
    ) -> None:
        self._append_logs(conn, [log] if isinstance(log, LogRecord) else list(log))
        _queue(conn, outbox)
        self._bump(conn)

    def _append_logs(self, conn: Connection, logs: Sequence[LogRecord]) -> None:
        """Insert audit rows as the next links of the chain. Moving the head first locks it,
        so concurrent writers link one after the other, in the order they commit."""
        if not logs:
            return
        moved = conn.execute(
            update(AuditHeadRow)
            .where(AuditHeadRow.id == HEAD)
            .values(seq=AuditHeadRow.seq + len(logs))
        )
        if moved.rowcount != 1:
            raise ConfigurationError(
                "gray_release_audit_head has no row; run `grayrelease db upgrade`"
            )
        seq, previous = conn.execute(
            select(AuditHeadRow.seq, AuditHeadRow.row_hash).where(AuditHeadRow.id == HEAD)
        ).one()
        rows = []
        every = self._checkpoint_every
        for number, entry in enumerate(logs, start=seq - len(logs) + 1):
            previous = link(previous, entry, number, self._audit_key)
            rows.append({**_log_values(entry), "seq": number, "row_hash": previous})
            if every and number % every == 0:
                checkpoint = Checkpoint.take(number, previous, entry.at, self._audit_key)
                # Only once committed: a checkpoint of rows rolled back would never hold.
                after_commit(conn, functools.partial(_log_checkpoint, checkpoint))
        conn.execute(insert(LogRow), rows)
        conn.execute(update(AuditHeadRow).where(AuditHeadRow.id == HEAD).values(row_hash=previous))

    def _bump(self, conn: Connection) -> None:
        moved = conn.execute(
            update(MetaRow).where(MetaRow.name == GENERATION).values(value=MetaRow.value + 1)
        )
        if moved.rowcount != 1:  # without it, other processes would never see a change
            raise ConfigurationError(
                "gray_release_meta has no generation row; run `grayrelease db upgrade`"
            )

    def _raise_stale(
        self,
        conn: Connection,
        plan_id: str,
        expected_version: int,
        expected_epoch: int | None = None,
    ) -> None:
        row = conn.execute(
            select(PlanRow.version, PlanRow.action_epoch, PlanRow.action_intent).where(
                PlanRow.id == plan_id
            )
        ).one_or_none()
        if row is None:
            raise NotFound(
                f"plan {plan_id} does not exist (deleted meanwhile?)", details={"planId": plan_id}
            )
        current = row.version
        if row.action_intent is not None:
            raise busy_error(
                plan_id, Intent.from_json(row.action_intent), current, expected_version
            )
        if current == expected_version and expected_epoch not in (None, row.action_epoch):
            raise Conflict(
                f"plan {plan_id} changed meanwhile (another action published and was undone); "
                "reload it and try again",
                details={
                    "planId": plan_id,
                    "version": current,
                    "expectedVersion": expected_version,
                },
            )
        raise Conflict(
            f"plan {plan_id} changed meanwhile (version {current}, expected {expected_version}); "
            "reload it and try again",
            details={"planId": plan_id, "version": current, "expectedVersion": expected_version},
        )

    def _plans(self, conn: Connection, rows: Sequence[Any]) -> list[Plan]:
        if not rows:
            return []
        details: dict[str, list[Any]] = {row.id: [] for row in rows}
        for detail in conn.execute(
            select(DetailRow)
            .where(among(conn.dialect, DetailRow.plan_id, details))
            .order_by(DetailRow.position)
        ):
            details[detail.plan_id].append(detail)
        return [_plan_from_rows(row, details[row.id]) for row in rows]


def among(dialect: Dialect, column: Any, values: Collection[str]) -> ColumnElement[bool]:
    """``column IN (values)`` for a list of plan ids. On PostgreSQL it is sent as
    ``= ANY(%s)`` with one array parameter: psycopg parses a query of 10,000 placeholders
    in about a tenth of a second, every tick, while an array costs nothing."""
    if dialect.name == "postgresql":
        return cast(
            "ColumnElement[bool]", column == any_(literal(list(values), postgresql.ARRAY(String)))
        )
    return cast("ColumnElement[bool]", column.in_(list(values)))


def detail_rows(plan: Plan) -> list[dict[str, Any]]:
    """The plan's ``gray_release_detail`` rows (``live_key`` set while the plan is live)."""
    live = plan.status.is_live
    return [
        {
            "plan_id": plan.id,
            "position": position,
            "config_key": item.config_key,
            "gray_value": item.gray_value,
            "original_value": item.original_value,
            "original_present": item.original_present,
            "status": item.status.value,
            "live_key": live_key(ref) if live else None,
        }
        for position, (item, ref) in enumerate(zip(plan.items, plan.refs, strict=True))
    ]


def plan_row(plan: Plan) -> dict[str, Any]:
    """The plan's whole ``gray_release_plan`` row, as first inserted."""
    return {**_plan_values(plan), "id": plan.id, "version": plan.version}


_PLAN = cast(Table, PlanRow.__table__)
_SAVE_PROGRESS = (
    update(_PLAN)
    .where(
        _PLAN.c.id == bindparam("plan_id"),
        _PLAN.c.version == bindparam("expected_version"),
        _PLAN.c.action_intent.is_(None),
    )
    .values(
        {
            name: bindparam(f"new_{name}")
            for name in (
                "percentage",
                "current_step",
                "next_step_at",
                "analyses",
                "failed_intervals",
                "analyzed_at",
                "top_reached_at",
                "stage_started_at",
                "passed_at",
                "evidence",
                "updated_by",
                "updated_at",
                "version",
            )
        }
    )
)
"""One statement, compiled once, for every plan a tick moves (a Core table: no ORM work)."""


def _claimed(plan_id: str, epoch: int) -> tuple[ColumnElement[bool], ...]:
    """The plan row while claim ``epoch`` is its open one."""
    return (
        PlanRow.id == plan_id,
        PlanRow.action_epoch == epoch,
        PlanRow.action_intent.is_not(None),
    )


def _fenced_out(plan_id: str, epoch: int) -> Conflict:
    return Conflict(
        f"plan {plan_id}: this action's claim (epoch {epoch}) was taken over by recovery; "
        "reload the plan to see how it ended",
        details={"planId": plan_id, "epoch": epoch},
    )


class _Contended(Exception):
    """A batched progress save matched fewer plans than it was given."""


def _progress_params(change: ProgressChange) -> dict[str, Any]:
    """The bound values of ``_SAVE_PROGRESS`` for one plan."""
    plan = change.plan
    return {
        **{f"new_{name}": value for name, value in _progress_values(plan).items()},
        "new_updated_by": plan.updated_by,
        "new_updated_at": plan.updated_at,
        "new_version": change.expected_version + 1,
        "plan_id": plan.id,
        "expected_version": change.expected_version,
    }


def _progress_values(plan: Plan) -> dict[str, Any]:
    """The columns a tick may change without touching the plan's keys or state."""
    progress = plan.progress
    return {
        "percentage": progress.percentage,
        "current_step": progress.step,
        "next_step_at": progress.next_step_at,
        "analyses": progress.analyses,
        "failed_intervals": progress.failures,
        "analyzed_at": progress.analyzed_at,
        "top_reached_at": progress.top_reached_at,
        "stage_started_at": progress.stage_started_at,
        "passed_at": progress.passed_at,
        "evidence": dict(progress.evidence) if progress.evidence else None,
    }


def _plan_values(plan: Plan) -> dict[str, Any]:
    return {
        "plan_name": plan.name,
        "app_name": plan.app_name,
        "environment": plan.environment,
        "group_name": plan.group_name,
        "gray_strategy": plan.strategy,
        "gray_rules": dict(plan.rules),
        "status": plan.status.value,
        **_progress_values(plan),
        "auto_rollback": plan.auto_rollback.to_wire() if plan.auto_rollback else None,
        "notify": plan.notify.to_wire() if plan.notify else None,
        "start_at": plan.start_at,
        "description": plan.description,
        "created_by": plan.created_by,
        "updated_by": plan.updated_by,
        "created_at": plan.created_at,
        "updated_at": plan.updated_at,
        "started_at": plan.started_at,
        "finished_at": plan.finished_at,
    }


def _plan_from_rows(row: Any, details: list[Any]) -> Plan:
    return Plan(
        id=row.id,
        name=row.plan_name,
        app_name=row.app_name,
        environment=row.environment,
        group_name=row.group_name,
        items=tuple(
            PlanItem(
                config_key=d.config_key,
                gray_value=d.gray_value,
                original_value=d.original_value,
                original_present=bool(d.original_present),
                status=ItemStatus(d.status),
            )
            for d in details
        ),
        strategy=row.gray_strategy,
        rules=row.gray_rules,
        status=PlanStatus(row.status),
        progress=Progress(
            percentage=row.percentage,
            step=row.current_step,
            next_step_at=row.next_step_at,
            analyses=row.analyses,
            failures=row.failed_intervals,
            analyzed_at=row.analyzed_at,
            top_reached_at=row.top_reached_at,
            stage_started_at=row.stage_started_at,
            passed_at=row.passed_at,
            evidence=row.evidence,
        ),
        auto_rollback=auto_rollback_from_json(row.auto_rollback),
        notify=routing_from_json(row.notify),
        start_at=row.start_at,
        description=row.description,
        created_by=row.created_by,
        updated_by=row.updated_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        version=row.version,
        epoch=row.action_epoch,
        intent=Intent.from_json(row.action_intent) if row.action_intent is not None else None,
        settle_until=row.settle_until,
    )


def _log_values(log: LogRecord) -> dict[str, Any]:
    return {
        "plan_id": log.plan_id,
        "action": log.action,
        "actor": log.actor,
        "at": log.at,
        "status_before": log.status_before.value if log.status_before else None,
        "status_after": log.status_after.value if log.status_after else None,
        "before": dict(log.before) if log.before is not None else None,
        "after": dict(log.after) if log.after is not None else None,
        "message": log.message,
        "details": dict(log.details) if log.details is not None else None,
        "app_name": log.app_name,
        "environment": log.environment,
    }


def _log_record(r: Any) -> LogRecord:
    return LogRecord(
        plan_id=r.plan_id,
        action=r.action,
        actor=r.actor,
        at=r.at,
        status_before=PlanStatus(r.status_before) if r.status_before else None,
        status_after=PlanStatus(r.status_after) if r.status_after else None,
        before=r.before,
        after=r.after,
        message=r.message,
        details=r.details,
        id=r.id,
        app_name=r.app_name,
        environment=r.environment,
        seq=r.seq,
    )


LIKE_ESCAPE = "/"
"""Not a backslash: MySQL reads one inside a string literal as an escape of its own."""


def _plan_search(text: str) -> Any:
    """Plans whose words or keys contain ``text``, ignoring case, wildcards taken literally."""
    for char in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(char, LIKE_ESCAPE + char)
    pattern = f"%{text}%"
    columns = (
        PlanRow.plan_name,
        PlanRow.id,
        PlanRow.description,
        PlanRow.app_name,
        PlanRow.environment,
        PlanRow.group_name,
        PlanRow.created_by,
    )
    keys = (
        select(DetailRow.id)
        .where(DetailRow.plan_id == PlanRow.id)
        .where(DetailRow.config_key.ilike(pattern, escape=LIKE_ESCAPE))
    )
    return or_(*(c.ilike(pattern, escape=LIKE_ESCAPE) for c in columns), keys.exists())


def _log_filters(query: LogQuery) -> list[Any]:
    where: list[Any] = []
    for column, value in (
        (LogRow.plan_id, query.plan_id),
        (LogRow.actor, query.actor),
        (LogRow.app_name, query.app_name),
        (LogRow.environment, query.environment),
    ):
        if value is not None:
            where.append(column == value)
    if query.actions is not None:
        where.append(LogRow.action.in_(list(query.actions)))
    if query.since is not None:
        where.append(LogRow.at >= query.since)
    if query.until is not None:
        where.append(LogRow.at < query.until)
    return where


def _grant(row: Any) -> Grant:
    return Grant(
        actor=row.actor,
        role=row.role,
        app_name=row.app_name,
        environment=row.environment,
        granted_by=row.granted_by,
        granted_at=row.granted_at,
        id=row.id,
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        actor=row.actor,
        scope=row.scope,
        token_hash=row.token_hash,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        name=row.name,
    )


def _session(row: Any) -> ConsoleSession:
    return ConsoleSession(
        id=row.id,
        actor=row.actor,
        created_at=row.created_at,
        expires_at=row.expires_at,
        token_id=row.token_id,
        ended_at=row.ended_at,
    )


def _queue(conn: Connection, outbox: Sequence[Notification]) -> None:
    """Write notifications into the outbox, in the caller's transaction."""
    if outbox:
        conn.execute(insert(NotificationRow), [_notification_values(n) for n in outbox])


def _notification_values(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "plan_id": notification.plan_id,
        "event": notification.event,
        "channel": notification.channel,
        "recipients": list(notification.recipients),
        "message": notification.message.to_json(),
        "state": notification.state.value,
        "attempts": notification.attempts,
        "created_at": notification.created_at,
        "next_attempt_at": notification.next_attempt_at,
        "lease_until": notification.lease_until,
        "last_error": notification.last_error,
        "delivered_at": notification.delivered_at,
    }


def _notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        plan_id=row.plan_id,
        event=row.event,
        channel=row.channel,
        recipients=tuple(row.recipients),
        message=Message.from_json(row.message),
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        state=DeliveryState(row.state),
        attempts=row.attempts,
        lease_until=row.lease_until,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
    )


def _message_values(message: InboxMessage) -> dict[str, Any]:
    return {
        "recipient": message.recipient,
        "notification_id": message.notification_id,
        "plan_id": message.plan_id,
        "event": message.event,
        "severity": message.severity,
        "title": message.title,
        "body": message.body,
        "link": message.link,
        "created_at": message.created_at,
        "read_at": message.read_at,
    }


def _inbox(row: Any) -> InboxMessage:
    return InboxMessage(
        recipient=row.recipient,
        notification_id=row.notification_id,
        plan_id=row.plan_id,
        event=row.event,
        severity=row.severity,
        title=row.title,
        body=row.body,
        link=row.link,
        created_at=row.created_at,
        read_at=row.read_at,
        id=row.id,
    )


_hit_key = operator.attrgetter("plan_id", "instance_id")


def _columns(rows: list[dict[str, Any]], dialect: Dialect) -> dict[str, list[Any]]:
    """Rows as one list per column, times already naive UTC (converted once per distinct
    value: a flush stamps most of its hits with the same few times)."""
    columns = {name: [row[name] for row in rows] for name in HIT_COLUMNS}
    utc = UtcDateTime()
    naive: dict[datetime, datetime | None] = {}
    for name in ("first_seen", "last_seen"):
        converted = []
        for value in columns[name]:
            if value not in naive:
                naive[value] = utc.process_bind_param(value, dialect)
            converted.append(naive[value])
        columns[name] = converted
    return columns


def _merge(new: Any, earliest: Any, latest: Any) -> dict[str, Any]:
    """How a stored instance row absorbs a new batch row: hits add up, first_seen keeps the
    earliest and last_seen the latest time (processes flush in any order), and the address
    is the one seen last."""
    return {
        "instance_ip": case(
            (new.last_seen >= InstanceRow.last_seen, new.instance_ip),
            else_=InstanceRow.instance_ip,
        ),
        "hits": InstanceRow.hits + new.hits,
        "first_seen": earliest(InstanceRow.first_seen, new.first_seen),
        "last_seen": latest(InstanceRow.last_seen, new.last_seen),
    }


@functools.cache
def _upsert_hits(dialect_name: str) -> Any:
    """Insert new instances, add to the hits of known ones (keeping their first_seen, taking
    the new last_seen and address): one statement per dialect, compiled once.

    PostgreSQL gets each column of a batch as one array, unnested on the server: one
    statement and one round trip for thousands of rows. Elsewhere the statement is run with
    executemany: PyMySQL folds the rows into multi-row INSERTs, sqlite3 loops in C. (A VALUES
    list built per batch is compiled afresh, with thousands of bind parameters, on every flush:
    that wrote under 10,000 hits/s on PostgreSQL; see docs/performance.md.)
    """
    if dialect_name == "postgresql":
        # Unbounded VARCHAR arrays: a cast to VARCHAR(n) would cut an over-long value silently.
        # Times arrive converted by _columns.
        element: dict[str, TypeEngine[Any]] = {
            "first_seen": DateTime(),
            "last_seen": DateTime(),
            "hits": BigInteger(),
        }
        columns = func.unnest(
            *(
                bindparam(name, type_=postgresql.ARRAY(element.get(name, String())))
                for name in HIT_COLUMNS
            )
        )
        rows = columns.table_valued(*HIT_COLUMNS).render_derived()
        pg = postgresql.insert(InstanceRow).from_select(list(HIT_COLUMNS), select(*rows.c))
        return pg.on_conflict_do_update(
            index_elements=[InstanceRow.plan_id, InstanceRow.instance_id],
            set_=_merge(pg.excluded, func.least, func.greatest),
        )
    if dialect_name == "sqlite":
        lite = sqlite.insert(InstanceRow)
        return lite.on_conflict_do_update(
            index_elements=[InstanceRow.plan_id, InstanceRow.instance_id],
            set_=_merge(lite.excluded, func.min, func.max),  # SQLite's two-argument min/max
        )
    if dialect_name in ("mysql", "mariadb"):
        my = mysql.insert(InstanceRow)
        # MySQL applies the assignments in order, each seeing the ones before: the address is
        # decided while last_seen still holds the stored time.
        return my.on_duplicate_key_update(
            list(_merge(my.inserted, func.least, func.greatest).items())
        )
    raise NotImplementedError(
        f"recording instance hits is not written for {dialect_name!r} databases"
    )
