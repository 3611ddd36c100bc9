"""The facade: ``GrayRelease`` ties the store, the backend, the strategies and the index.

Control path: authorize -> state machine -> store (one transaction, version check, audit row)
-> index refresh -> events. Read path: ``resolve()`` reads only the in-memory index.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any, cast

import attrs
import pluggy

from . import collector, lifecycle, ticker
from .access import (
    ANY,
    MAX_TOKEN_DAYS,
    TOKEN_SCOPES,
    ApiToken,
    ConsoleSession,
    Grant,
    Scope,
    actor_field,
    check_role,
    parse_auth_settings,
    scope_allows,
    token_hash,
)
from .analysis import analyze
from .audit import AuditReport
from .backend import ConfigBackend
from .checkpoint import Checkpoint
from .checks import AutoRollback, parse_auto_rollback
from .clock import Clock, SystemClock
from .context import request_source, request_token_scope
from .control import ControlPath, Recovery, finished, rolled_back
from .decidable import PlanWarning, undecidable
from .errors import (
    BackendError,
    ConfigurationError,
    Conflict,
    GrayReleaseError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from .guard import SECTION as GUARD_SECTION
from .guard import parse_analysis_defaults
from .hits import HitBuffer, HitRecord
from .inbox import InboxMessage
from .index import IndexEntry, build_entries
from .lifecycle import Action
from .limits import parse_limits
from .messages import LANGUAGES, render
from .metrics import MetricSource
from .models import (
    Client,
    ConfigRef,
    CurrentValue,
    InstanceRecord,
    ItemStatus,
    LogRecord,
    Page,
    Plan,
    PlanEvent,
    PlanItem,
    PlanStatus,
    Progress,
    Resolution,
)
from .notify import Notifier
from .outbox import (
    Deliverer,
    DeliveryReport,
    Notification,
    notification_id,
    parse_notify_settings,
)
from .plugin_manager import by_name, collect, implementations, make_plugin_manager
from .routing import Routing, check_routing, parse_routing, route, severity_of
from .rules import positive_int
from .samples import PlanMetrics, parse_samples, plan_metrics
from .settings import Settings
from .store import LogQuery, PlanQuery, PlanStore, ProgressChange
from .strategy import SteppedStrategy, StepSchedule, StrategyRegistry
from .sync import BackgroundSync
from .ticker import SYSTEM_ACTOR, Decision, Due, Move, TickReport
from .wire import (
    name_field,
    parse_plan_body,
    plan_to_wire,
    require_storable,
    storable_text,
    timestamp,
)

log = logging.getLogger("grayrelease")

Mutation = Callable[[Plan, datetime], Plan]
MAX_ACTOR = 128
"""Longest actor name (the audit columns' width)."""


class GrayRelease:
    """Gray release of configuration: plans, their lifecycle, and per-client resolution."""

    def __init__(
        self,
        *,
        settings: Settings,
        plugin_manager: pluggy.PluginManager,
        store: PlanStore,
        backend: ConfigBackend,
        strategies: StrategyRegistry,
        clock: Clock,
        metric_sources: Mapping[str, MetricSource] | None = None,
        notifiers: Mapping[str, Notifier] | None = None,
    ) -> None:
        self.settings = settings
        self.plugin_manager = plugin_manager
        self.strategies = strategies
        self.metric_sources: Mapping[str, MetricSource] = dict(metric_sources or {})
        """Metric sources by name, for the judge's checks."""
        self.limits = parse_limits(settings.section("limits"))
        """Input limits lowered by the installation (``limits`` section)."""
        self.analysis_defaults = parse_analysis_defaults(settings.section(GUARD_SECTION))
        """The checks a plan gets when it brings none (``analysis`` section)."""
        for entry in self.analysis_defaults.entries:
            self._check_sources(entry.auto_rollback, f"{entry.field}.autoRollback")
        self.auth = parse_auth_settings(settings.sections)
        """The ``auth`` section: whether roles are on, the first admins, approval
        environments (validated here, at start-up)."""
        self.notifiers: Mapping[str, Notifier] = dict(notifiers or {})
        """Notification channels by name."""
        self.notify_settings = parse_notify_settings(settings.section("notify"), LANGUAGES)
        self._recipient_checks: dict[str, Callable[[str], None] | None] = {
            name: getattr(notifier, "check_recipient", None)
            for name, notifier in self.notifiers.items()
        }
        """Each channel's check of one recipient, if it has one (routing uses them)."""
        self._default_routing = (
            parse_routing(
                self.notify_settings.routing,
                "settings.notify.routing",
                channels=self._recipient_checks,
            )
            or Routing()
        )
        check_routing(
            self._default_routing,
            "settings.notify.routing",
            needs_recipients=self._needs_recipients,
        )
        self._deliverer = Deliverer(
            store, self.notifiers, self.notify_settings.policy, clock.monotonic
        )
        self._stepped: dict[str, bool] = {}
        self.clock = clock
        self._store = store
        self._backend = backend
        self._backend_get = backend.get
        self._hits = HitBuffer()
        self._entries: dict[ConfigRef, IndexEntry] = {}
        self._generation: int | None = None
        self._live_plans: list[Plan] = []
        self._coarse_now = clock.now()
        self._refresh_lock = threading.Lock()
        self._last_flush = clock.monotonic()
        self._closed = False
        self._settling: dict[ConfigRef, tuple[str | None, datetime]] = {}
        """Keys served from a settling plan's overlay: the value and until when."""
        self._control = ControlPath(self, lease=settings.action_lease, settle=settings.settle_time)
        if hasattr(backend, "before_change"):
            backend.before_change = self._backend_changing
        self.refresh_index()
        self._recover_quietly(clock.now())
        self._sync = (
            BackgroundSync(self.sync, settings.cache_ttl) if settings.background_sync else None
        )

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any] | Settings | None = None,
        *,
        clock: Clock | None = None,
        plugins: tuple[object, ...] | list[object] = (),
        load_entrypoints: bool = True,
    ) -> GrayRelease:
        """Build an instance from settings (see :class:`Settings`) and extra plugin objects."""
        if not isinstance(settings, Settings):
            settings = Settings.from_mapping(settings)
        pm = make_plugin_manager(plugins, load_entrypoints=load_entrypoints)
        strategies = StrategyRegistry.collect(collect(pm, "grayrelease_register_strategies"))
        store = pm.hook.grayrelease_make_store(settings=settings)
        if store is None:
            raise ConfigurationError(
                f"no plugin provides a store for database_url {settings.database_url!r}",
                details={"field": "settings.database_url"},
            )
        with ExitStack() as cleanup:  # whatever was built is released if a later step fails
            cleanup.callback(store.close)
            backend = pm.hook.grayrelease_make_backend(settings=settings)
            if backend is None:
                raise ValidationError(
                    "settings.backend",
                    "no installed plugin provides this backend",
                    value=settings.backend,
                )
            cleanup.callback(backend.close)
            # A backend is a plugin too: it may hear plan events (Nacos's beta offload).
            pm.register(backend, name=f"backend:{settings.backend}")
            sources = by_name(
                collect(pm, "grayrelease_register_metric_sources", settings=settings, store=store),
                "metric source",
                MetricSource,
                "name, validate_check and fetch",
            )
            clock = clock or SystemClock()
            notifiers = by_name(
                collect(
                    pm,
                    "grayrelease_register_notifiers",
                    settings=settings,
                    store=store,
                    clock=clock,
                ),
                "notifier",
                Notifier,
                "name and send",
            )
            engine = cls(
                settings=settings,
                plugin_manager=pm,
                store=store,
                backend=backend,
                strategies=strategies,
                clock=clock,
                metric_sources=sources,
                notifiers=notifiers,
            )
            cleanup.pop_all()
        return engine

    # --- read path ------------------------------------------------------------------------

    def resolve(self, ref: ConfigRef, client: Client) -> Resolution:
        """The value ``client`` gets for ``ref``: the gray value or the backend's value."""
        entry = self._entries.get(ref)
        if entry is None:
            return Resolution(self._backend_get(ref), False, None)
        if entry.matcher(client):
            record = entry.tracker.get(client.instance_id)
            if record is None:
                entry.tracker.setdefault(
                    client.instance_id, HitRecord(client.instance_ip, self._coarse_now)
                )
            else:
                record.count += 1
                record.last_seen = self._coarse_now
            return entry.gray
        return Resolution(self._backend_get(ref), False, entry.plan_id)

    @property
    def generation(self) -> int:
        """The store generation the read path serves: it grows with every plan change, and
        every process on the database agrees on it (0 before the first index)."""
        return self._generation or 0

    def live_plans_in(self, app_name: str, environment: str, group_name: str) -> list[Plan]:
        """The live plans of one group, as the read path serves them now (a client endpoint
        that answers a whole namespace finds its gray keys here)."""
        group = (app_name, environment, group_name)
        return [p for p in self._live_plans if (p.app_name, p.environment, p.group_name) == group]

    def current_values(
        self, app_name: str, environment: str, group_name: str, keys: Sequence[str], *, actor: str
    ) -> list[CurrentValue]:
        """What the backend holds for ``keys`` now and which live plan covers each: the values
        a plan would snapshot, for an operator to compare with. Unlike ``resolve`` it serves no
        gray value and records no instance; it needs ``view`` in the app and environment."""
        self._authorize(actor, Action.VIEW, None, Scope(app_name, environment))
        refs = [ConfigRef(app_name, environment, group_name, key) for key in keys]
        holders = self._store.live_plans_covering(refs, exclude="")  # ids are never empty
        return [
            CurrentValue(ref.config_key, self._read_backend(ref), holders.get(ref)) for ref in refs
        ]

    @property
    def backend(self) -> ConfigBackend:
        """The config backend (``get(ref)``, ``publish(ref, value, actor=...)``)."""
        return self._backend

    # --- plans ----------------------------------------------------------------------------

    def create_plan(self, body: Mapping[str, Any], *, actor: str) -> Plan:
        """Create a DRAFT plan from the spec's JSON body (plus ``grayValues``)."""
        fields = parse_plan_body(body, creating=True).fields
        self._authorize(actor, Action.CREATE, None, Scope(fields["appName"], fields["environment"]))
        strategy = self.strategies.get(fields["grayStrategy"])
        now = self.clock.now()
        gray = fields.get("grayValues", {})
        _check_gray_keys(gray, fields["configKeys"])
        auto_rollback, guard_message, guard_details = self._guarded(
            fields, fields["appName"], fields["environment"]
        )
        notify = self._plan_routing(fields.get("notify"))
        if fields.get("startAt") is not None:
            _check_schedulable(fields["configKeys"], gray)
        rules = strategy.validate(fields["grayRules"])
        self.limits.check_plan(fields, rules)
        plan = Plan(
            id=uuid.uuid4().hex,
            name=fields["planName"],
            app_name=fields["appName"],
            environment=fields["environment"],
            group_name=fields.get("groupName", self.settings.default_group),
            items=tuple(PlanItem(key, gray_value=gray.get(key)) for key in fields["configKeys"]),
            strategy=strategy.name,
            rules=rules,
            auto_rollback=auto_rollback,
            notify=notify,
            start_at=fields.get("startAt"),
            description=fields.get("description", ""),
            created_by=actor,
            updated_by=actor,
            created_at=now,
            updated_at=now,
        )
        self._authorize_release_decisions(actor, plan)
        row = self._log(None, plan, "CREATED", actor, now, guard_message, guard_details)
        self._store.add_plan(plan, row, self._outbox([row], plan))
        self._emit(PlanEvent("CREATED", plan, None, actor, now))
        return plan

    def update_plan(
        self,
        plan_id: str,
        body: Mapping[str, Any],
        *,
        actor: str,
        expected_version: int | None = None,
    ) -> Plan:
        """Change a DRAFT plan; fields not in ``body`` keep their value."""
        fields = parse_plan_body(body, creating=False).fields

        def edit(plan: Plan, now: datetime) -> Plan:
            moved = Scope(
                fields.get("appName", plan.app_name), fields.get("environment", plan.environment)
            )
            if moved != Scope(plan.app_name, plan.environment):
                self._authorize(actor, Action.CREATE, None, moved)  # moving in is creating there
            strategy_name = fields.get("grayStrategy", plan.strategy)
            strategy = self.strategies.get(strategy_name)
            if "grayRules" in fields:
                rules = strategy.validate(fields["grayRules"])
            elif strategy.name != plan.strategy:
                raise ValidationError("grayRules", "is required when grayStrategy changes")
            else:
                rules = dict(plan.rules)
            self.limits.check_plan(fields, rules if "grayRules" in fields else None)
            keys = fields.get("configKeys", plan.config_keys)
            gray = {i.config_key: i.gray_value for i in plan.items if i.gray_value is not None}
            gray.update(fields.get("grayValues", {}))
            _check_gray_keys(fields.get("grayValues", {}), keys)
            auto_rollback = plan.auto_rollback
            if "autoRollback" in fields or (
                auto_rollback is None and moved != Scope(plan.app_name, plan.environment)
            ):
                # Its own rules, an opt-out, or (moved without checks) the new scope's
                # defaults: a draft moved into prod is guarded as one created there.
                auto_rollback, _, said = self._guarded(fields, moved.app_name, moved.environment)
                guard.update(said or {})
            notify = self._plan_routing(fields["notify"]) if "notify" in fields else plan.notify
            start_at = fields.get("startAt", plan.start_at)
            if start_at is not None:
                _check_schedulable(keys, gray)
            edited = attrs.evolve(
                plan,
                name=fields.get("planName", plan.name),
                app_name=fields.get("appName", plan.app_name),
                environment=fields.get("environment", plan.environment),
                group_name=fields.get("groupName", plan.group_name),
                items=tuple(PlanItem(key, gray_value=gray.get(key)) for key in keys),
                strategy=strategy.name,
                rules=rules,
                auto_rollback=auto_rollback,
                notify=notify,
                start_at=start_at,
                description=fields.get("description", plan.description),
            )
            self._authorize_release_decisions(actor, edited)
            return edited

        # Filled by ``edit``: an explicit opt-out of the default checks is said in the row.
        guard: dict[str, Any] = {}
        moving = "appName" in fields or "environment" in fields
        options = {"details": guard} if moving or fields.get("autoRollback", False) is None else {}
        return self._act(
            plan_id, Action.UPDATE, actor, expected_version, edit, "UPDATED", **options
        )

    def _authorize_release_decisions(self, actor: str, plan: Plan) -> None:
        """A draft that will start or complete by itself carries a release decision: whoever
        writes it (and so becomes who the ticker acts for) needs the right to take it."""
        if plan.start_at is not None:
            self._authorize(actor, Action.SCHEDULE_START, plan)
        schedule = self._schedule(plan)
        if schedule is not None and schedule.auto_complete:
            self._authorize(actor, Action.AUTO_COMPLETE, plan)

    def _decided_by(self, plan: Plan) -> str:
        """Who wrote the plan's schedule and rules: the author of its last content change
        (only drafts change), in whose name the ticker starts or completes it."""
        rows = self._store.list_logs(
            plan.id, page_size=1, actions=("CREATED", "UPDATED"), newest_first=True
        ).items
        return rows[0].actor if rows else plan.created_by

    def delete_plan(self, plan_id: str, *, actor: str, expected_version: int | None = None) -> None:
        """Delete a DRAFT plan; its audit rows stay."""
        plan = self._load(plan_id, expected_version)
        self._authorize(actor, Action.DELETE, plan)
        lifecycle.target(Action.DELETE, plan.status)
        now = self.clock.now()
        row = self._log(plan, None, "DELETED", actor, now)
        self._store.remove_plan(
            plan.id, expected_version=plan.version, log=row, outbox=self._outbox([row], plan)
        )
        self._emit(PlanEvent("DELETED", plan, plan, actor, now))

    def get_plan(self, plan_id: str) -> Plan:
        """The plan, or ``NotFound``."""
        return self._load(plan_id, None)

    def plan_warnings(self, plan: Plan) -> tuple[PlanWarning, ...]:
        """What the plan's checks can never decide (:mod:`grayrelease_core.decidable`): the
        API answers them with the plan, so its author learns it before the plan holds."""
        try:
            schedule = self._schedule(plan)
        except GrayReleaseError:  # its strategy is no longer installed: nothing to say
            return ()
        return undecidable(plan, schedule)

    def list_plans(self, query: PlanQuery | None = None, **filters: Any) -> Page[Plan]:
        """Plans, newest first, filtered by app, environment, group and status."""
        return self._store.find_plans(query or PlanQuery(**filters))

    def last_actions(self, plan_ids: Sequence[str]) -> dict[str, LogRecord]:
        """Each plan's newest audit row that is not a refused attempt: what a plan list shows
        as its last action (one query for a whole page of plans)."""
        return self._store.last_logs(plan_ids)

    def plan_logs(self, plan_id: str, page: int = 1, page_size: int = 50) -> Page[LogRecord]:
        """The plan's audit rows, oldest first."""
        return self._store.list_logs(plan_id, page, page_size)

    def find_logs(self, query: LogQuery | None = None, **filters: Any) -> Page[LogRecord]:
        """The whole audit trail, newest first, filtered by plan, actor, app, environment,
        actions and time (``LogQuery``)."""
        return self._store.find_logs(query or LogQuery(**filters))

    def export_logs(self, query: LogQuery) -> Iterator[LogRecord]:
        """Every audit row ``query`` matches (its paging ignored), read a chunk at a time."""
        return self._store.each_log(query)

    def verify_audit(self, checkpoints: Sequence[Checkpoint] = ()) -> AuditReport:
        """Walk the audit chain; the report names the first row altered, deleted or added
        around the store, if any, and each checkpoint the chain no longer holds (the newest
        rows deleted with the head moved back, which the chain alone cannot show)."""
        return self._store.verify_audit(self.clock.now(), checkpoints)

    def audit_checkpoint(self) -> Checkpoint:
        """The audit chain's head now, signed with ``audit.key``: keep it outside the
        database and give it to ``verify_audit`` later."""
        return self._store.audit_checkpoint(self.clock.now())

    def plan_instances(
        self, plan_id: str, page: int = 1, page_size: int = 50
    ) -> Page[InstanceRecord]:
        """The instances that received the plan's gray value (after flushing this process)."""
        self.flush_hits(plan_id)
        return self._store.list_instances(plan_id, page, page_size)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, plan_id: str, *, actor: str, expected_version: int | None = None) -> Plan:
        """DRAFT -> ACTIVE: snapshot the original values and start serving the gray set."""
        return self._act(plan_id, Action.START, actor, expected_version, self._begin, "STARTED")

    def _begin(self, plan: Plan, now: datetime) -> Plan:
        missing = [item.config_key for item in plan.items if item.gray_value is None]
        if missing:
            raise ValidationError(
                "grayValues",
                "every key needs a gray value before the plan starts; "
                f"missing: {', '.join(missing)}",
                details={"missingKeys": missing},
            )
        self._refuse_overlap(plan, "starting")
        self._backend.refresh()
        items = []
        for item, ref in zip(plan.items, plan.refs, strict=True):
            original = self._read_backend(ref)
            items.append(
                attrs.evolve(
                    item,
                    original_value=original,
                    original_present=original is not None,
                    status=ItemStatus.GRAY,
                )
            )
        strategy = self.strategies.get(plan.strategy)
        return attrs.evolve(
            plan,
            items=tuple(items),
            started_at=now,
            progress=Progress(
                percentage=strategy.initial_percentage(plan.rules),
                next_step_at=strategy.next_step_at(plan.rules, now),
                analyzed_at=now,
                stage_started_at=now,
            ),
        )

    def pause(self, plan_id: str, *, actor: str, expected_version: int | None = None) -> Plan:
        """ACTIVE -> PAUSED: recorded instances keep the gray value, no new one enters."""

        def hold(plan: Plan, now: datetime) -> Plan:
            self.flush_hits(plan.id)
            return attrs.evolve(plan, progress=attrs.evolve(plan.progress, next_step_at=None))

        return self._act(plan_id, Action.PAUSE, actor, expected_version, hold, "PAUSED")

    def resume(self, plan_id: str, *, actor: str, expected_version: int | None = None) -> Plan:
        """PAUSED -> ACTIVE: the strategy's rules apply again; the canary clock restarts."""

        def go_on(plan: Plan, now: datetime) -> Plan:
            # The step and analysis clocks restart: the paused time was not watched. At the
            # top, the bake time paused too (the last update was the pause).
            progress = plan.progress
            next_at = self.strategies.get(plan.strategy).next_step_at(plan.rules, now)
            top = progress.top_reached_at
            if top is not None and plan.updated_at is not None:
                top = top + (now - plan.updated_at)
                schedule = self._schedule(plan)
                auto = schedule is not None and schedule.auto_complete
                next_at = top + timedelta(minutes=schedule.bake_time) if auto and schedule else None
            return attrs.evolve(
                plan,
                progress=attrs.evolve(
                    progress,
                    next_step_at=next_at,
                    analyzed_at=now,
                    top_reached_at=top,
                    stage_started_at=now,
                ),
            )

        return self._act(plan_id, Action.RESUME, actor, expected_version, go_on, "RESUMED")

    def complete(self, plan_id: str, *, actor: str, expected_version: int | None = None) -> Plan:
        """ACTIVE/PAUSED -> COMPLETED: publish every gray value to the backend, all or none."""
        return self._act(
            plan_id,
            Action.COMPLETE,
            actor,
            expected_version,
            self._finish,
            "COMPLETED",
            publish=_gray_values,
        )

    def _finish(self, plan: Plan, now: datetime) -> Plan:
        self._flush_before_ending(plan)
        return finished(plan, now)

    def rollback(
        self,
        plan_id: str,
        *,
        actor: str,
        reason: str = "",
        force: bool = False,
        expected_version: int | None = None,
    ) -> Plan:
        """Everyone gets the original values at once.

        From ACTIVE or PAUSED the gray set simply ends. From COMPLETED the snapshotted
        originals are published again, refused with a ``Conflict`` if a key's backend value
        changed since the plan completed, unless ``force``.
        """
        if not isinstance(reason, str) or len(reason) > 2000:
            raise ValidationError("reason", "must be a string of at most 2000 characters")
        require_storable(reason, "reason")

        return self._act(
            plan_id,
            Action.ROLLBACK,
            actor,
            expected_version,
            lambda plan, now: self._undo(plan, now, force=force),
            "ROLLED_BACK",
            publish=_original_values,
            message=reason,
        )

    def _undo(self, plan: Plan, now: datetime, *, force: bool) -> Plan:
        self._flush_before_ending(plan)
        if plan.status is PlanStatus.COMPLETED:
            # A newer plan releasing these keys has snapshotted our values as its originals.
            self._refuse_overlap(plan, "rolling back")
            self._backend.refresh()
            if not force:
                self._refuse_drift(plan)
        return rolled_back(plan, now)

    def promote(
        self,
        plan_id: str,
        *,
        actor: str,
        full: bool = False,
        expected_version: int | None = None,
    ) -> Plan:
        """Widen an ACTIVE plan now: one canary step, or (``full``) to 100% of clients.

        The gray values are still served by the library, not published: ``complete`` does
        that. A stepped plan's schedule restarts from here.
        """
        if not isinstance(full, bool):
            raise ValidationError("full", "must be true or false", value=full)

        def widen(plan: Plan, now: datetime) -> Plan:
            schedule = self._schedule(plan)
            if full:
                if plan.strategy != "PERCENTAGE" and schedule is None:
                    raise self._not_promotable(plan)
                progress = ticker.to_top(plan.progress, 100.0, schedule, now)
            elif schedule is None:
                if plan.strategy == "PERCENTAGE":
                    raise ValidationError(
                        "full", "a PERCENTAGE plan has no steps: promote it with full=true"
                    )
                raise self._not_promotable(plan)
            elif plan.progress.percentage >= schedule.max_percentage:
                raise InvalidTransition(
                    f"plan {plan.id} is at its maxPercentage ({schedule.max_percentage:g}%); "
                    "promote it with full=true or complete it",
                    details={"planId": plan.id, "percentage": plan.progress.percentage},
                )
            else:
                progress = ticker.advance(plan.progress, schedule, now)
            return attrs.evolve(plan, progress=progress)

        return self._act(
            plan_id,
            Action.PROMOTE,
            actor,
            expected_version,
            widen,
            "PROMOTED",
            reindex=True,
            message="to 100%" if full else "one step",
        )

    def _not_promotable(self, plan: Plan) -> InvalidTransition:
        return InvalidTransition(
            f"a {plan.strategy} plan selects a fixed set of clients and has no percentage to "
            "widen; complete it to give everyone the gray values",
            details={"planId": plan.id, "grayStrategy": plan.strategy},
        )

    # --- housekeeping ---------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickReport:
        """One round of the ticker: start scheduled plans, then for each ACTIVE plan whose
        analysis or canary step is due, collect its metrics, judge them, and roll back, hold,
        step or complete. Also writes buffered hits and purges expired metric samples.

        Safe to run in several processes at once: every decision is saved only if the plan is
        still at the version that was judged, so one ticker wins each step or rollback.

        :param now: an aware datetime (the engine's clock when omitted).
        """
        now = self._tick_time(now)
        with collector.paused():
            return self._tick(now)

    def _tick(self, now: datetime) -> TickReport:
        self.flush_hits()  # the judge and the metric sources see every recorded instance
        self.sync()
        report = TickReport(now)
        recovery = self._recover_quietly(now)
        if recovery is not None:
            report.recovered = recovery.finished + recovery.undone
            report.errors.extend(recovery.errors)
        self._start_scheduled(now, report)
        generation = self._store.generation()  # before the read: see _reindex_after_tick
        plans = self._store.served_plans(now)
        work: list[tuple[Plan, StepSchedule | None, Due]] = []
        for plan in plans:
            if plan.status is not PlanStatus.ACTIVE or plan.intent is not None:
                continue
            schedule = self._schedule(plan)
            when = ticker.due(plan, schedule, now)
            if when:
                work.append((plan, schedule, when))
        verdicts = analyze(
            [(p, s) for p, s, _ in work if p.auto_rollback], self.metric_sources, self._store, now
        )
        changes: list[ProgressChange] = []
        ended = False
        for plan, schedule, when in work:
            verdict = verdicts.get(plan.id)
            decision = ticker.decide(plan, schedule, verdict, when, now)
            rows = [ticker.verdict_log(plan, verdict, now)] if verdict else []
            report.count(plan.id, verdict, decision)
            if decision.move in (Move.ROLLBACK, Move.COMPLETE):
                retry = self._tick_act(plan, decision, rows, now, report)
                if retry is None:
                    ended = True
                else:
                    changes.append(retry)
            else:
                changes.append(ticker.progress_change(plan, decision, rows, now))
        saved = self._save_progress(changes, report)
        self._reindex_after_tick(plans, saved, generation, ended=ended)
        self._purge_samples(now)
        report.notifications = self._deliver_quietly(now)
        self._coarse_now = now
        return report

    def recover(self, now: datetime | None = None) -> Recovery:
        """Finish the publishing actions whose process stopped half-way (see
        :mod:`grayrelease_core.control`); run at engine start and at every tick."""
        return self._control.recover(self._tick_time(now))

    def _recover_quietly(self, now: datetime) -> Recovery | None:
        try:
            return self._control.recover(now)
        except Exception:
            log.exception("grayrelease: recovery failed; the next tick tries again")
            return None

    def _tick_time(self, now: datetime | None) -> datetime:
        if now is None:
            return self.clock.now()
        if not isinstance(now, datetime) or now.tzinfo is None:
            raise ValidationError("now", "must be an aware datetime (UTC)", value=str(now))
        return now

    def _schedule(self, plan: Plan) -> StepSchedule | None:
        strategy = self.strategies.get(plan.strategy)
        stepped = self._stepped.get(plan.strategy)
        if stepped is None:  # a Protocol isinstance is slow; once per strategy is enough
            stepped = self._stepped[plan.strategy] = isinstance(strategy, SteppedStrategy)
        return cast(SteppedStrategy, strategy).step_schedule(plan.rules) if stepped else None

    def _reindex_after_tick(
        self, plans: list[Plan], saved: list[Plan], generation: int, *, ended: bool
    ) -> None:
        """Show the tick's steps to the read path. When the store's generation moved only by
        the tick's own write since ``plans`` were read, the index is built from them with the
        saved changes applied, instead of reading every live plan again."""
        if not saved and not ended:
            return
        try:
            with self._refresh_lock:
                # Only when this process's index is the one ``plans`` were read at, and the
                # tick's write is the only change since: otherwise a sync may have installed
                # something newer, or another process changed a plan.
                fast = (
                    not ended
                    and self._generation == generation
                    and self._store.generation() == generation + 1
                )
                if fast:
                    changed = {plan.id: plan for plan in saved}
                    self._rebuild([changed.get(plan.id, plan) for plan in plans])
                    self._generation = generation + 1
            if not fast:
                self.refresh_index()
        except Exception:
            log.exception("grayrelease: index refresh after a tick failed")

    def _start_scheduled(self, now: datetime, report: TickReport) -> None:
        for plan in self._store.scheduled_plans(now):
            assert plan.start_at is not None
            # The ticker acts for whoever scheduled the start, checked again now: a role
            # revoked since then means no start.
            scheduler = self._decided_by(plan)
            message = (
                f"started by the ticker as {scheduler} scheduled it for {timestamp(plan.start_at)}"
            )
            try:
                # The decision itself (a role may allow starting but not scheduling), then
                # the start, with its approval gate, inside _act.
                self._authorize(scheduler, Action.SCHEDULE_START, plan)
                self._act(
                    plan.id,
                    Action.START,
                    scheduler,
                    plan.version,
                    self._begin,
                    "STARTED",
                    now=now,
                    message=message,
                )
                report.started.append(plan.id)
            except Conflict as exc:
                if "expectedVersion" in exc.details or "version" in exc.details:
                    continue  # another ticker (or an operator) got there first
                self._unschedule(plan, exc, now, report)
            except BackendError as exc:
                # The config backend may be back at the next tick: try again then.
                report.errors.append(f"{plan.id}: scheduled start waits: {exc.message}")
            except GrayReleaseError as exc:
                self._unschedule(plan, exc, now, report)

    def _unschedule(
        self, plan: Plan, error: GrayReleaseError, now: datetime, report: TickReport
    ) -> None:
        """A scheduled start that cannot happen is recorded once and cleared, not retried
        every tick; the operator fixes the plan and schedules it again."""
        reason = f"scheduled start failed: {error.message}"
        report.errors.append(f"{plan.id}: {reason}")
        with contextlib.suppress(Conflict, NotFound, InvalidTransition):
            # Changed meanwhile: whoever changed it decides.
            self._act(
                plan.id,
                Action.UPDATE,
                SYSTEM_ACTOR,
                plan.version,
                lambda p, _: attrs.evolve(p, start_at=None),
                "START_FAILED",
                now=now,
                message=reason,
                reindex=False,
            )

    def _save_progress(self, changes: list[ProgressChange], report: TickReport) -> list[Plan]:
        """Save what the tick decided short of ending plans; returns the plans that moved the
        read path (a step), saved at their new versions."""
        if not changes:
            return []
        changes = [
            attrs.evolve(change, outbox=self._outbox(change.logs, change.plan))
            for change in changes
        ]
        saved = self._store.save_progress(changes)
        by_id = {change.plan.id: change for change in changes}
        for plan in saved:
            change = by_id[plan.id]
            if any(row.action == "STEPPED" for row in change.logs):
                report.stepped.append(plan.id)
            for row in change.logs:
                self._emit(_event_of(row, plan, change.plan))
        report.lost.extend(sorted(set(by_id) - {plan.id for plan in saved}))
        return [plan for plan in saved if by_id[plan.id].reindex]

    def _tick_act(
        self,
        plan: Plan,
        decision: Decision,
        rows: list[LogRecord],
        now: datetime,
        report: TickReport,
    ) -> ProgressChange | None:
        """An automatic rollback or completion, saved only if nobody changed the plan since
        it was judged. When it fails, the progress to save instead (the verdict, a retry)."""
        # A rollback on failed checks is the engine's own safety net (it never waits); an
        # automatic completion is a release decision, taken for whoever armed it.
        actor = SYSTEM_ACTOR
        if decision.move is Move.ROLLBACK:
            action, event, done = Action.ROLLBACK, "AUTO_ROLLBACK", report.rolled_back
            mutate: Mutation = lambda p, t: self._undo(p, t, force=False)  # noqa: E731
            publish = _original_values
        else:
            action, event, done = Action.COMPLETE, "COMPLETED", report.completed
            mutate, publish = self._finish, _gray_values
            actor = self._decided_by(plan)
        try:
            if actor != SYSTEM_ACTOR:  # whoever armed it must still hold that right
                self._authorize(actor, Action.AUTO_COMPLETE, plan)
            self._act(
                plan.id,
                action,
                actor,
                plan.version,
                mutate,
                event,
                publish=publish,
                message=decision.reason
                if actor == SYSTEM_ACTOR
                else f"by the ticker: {decision.reason}",
                reindex=False,  # once, at the end of the tick
                now=now,
                progress=decision.progress,
                leading=rows,
                details=_failed_metrics(rows) if decision.move is Move.ROLLBACK else None,
            )
            done.append(plan.id)
        except (Conflict, NotFound, InvalidTransition):
            report.lost.append(plan.id)  # changed since it was judged: that change stands
        except GrayReleaseError as exc:
            # A publish that failed was logged and told by the control path; the plan stays live.
            # Its verdict is kept, and the next try waits an analysis interval, so a backend
            # that is down does not get a try (and an audit row) every tick.
            report.errors.append(f"{plan.id}: {exc.message}")
            schedule = self._schedule(plan)
            retry = now + ticker.analysis_interval(plan, schedule)
            progress = decision.progress
            if schedule is not None:
                progress = attrs.evolve(progress, next_step_at=retry)
            return ProgressChange(attrs.evolve(plan, progress=progress), plan.version, tuple(rows))
        return None

    def _purge_samples(self, now: datetime) -> None:
        try:
            self._store.purge_samples(now - timedelta(hours=self.settings.metric_retention))
        except Exception:
            log.exception("grayrelease: purging expired metric samples failed")

    # --- metrics --------------------------------------------------------------------------

    def push_metrics(self, plan_id: str, body: Any, *, actor: str) -> int:
        """Store samples that instances or agents report for a live plan.

        ``body`` is ``{"samples": [...]}`` or a list of samples, each ``{"instanceId",
        "metric", "value"[, "gray"][, "timestamp"]}``, or a counted one with ``"events"`` and
        ``"total"`` (errors of requests since the instance's last sample; ``value`` then
        defaults to their ratio) for rate checks. A sample without ``gray`` counts as gray
        when its instance is recorded as having received the plan's gray value.

        :returns: how many samples were stored.
        """
        plan = self._load(plan_id, None)
        self._authorize(actor, Action.REPORT, plan)
        if not plan.status.is_live:
            raise InvalidTransition(
                f"plan {plan.id} is {plan.status.value}: only ACTIVE and PAUSED plans take "
                "metric samples",
                details={"planId": plan.id, "status": plan.status.value},
            )
        now = self.clock.now()
        samples = parse_samples(
            body,
            plan_id=plan.id,
            now=now,
            oldest=now - timedelta(hours=self.settings.metric_retention),
            members=lambda: self._members(plan.id),
        )
        self._store.record_samples(samples)
        return len(samples)

    def plan_metrics(
        self,
        plan_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket_seconds: int = 60,
    ) -> PlanMetrics:
        """The plan's pushed samples as gray and baseline series, and every verdict."""
        plan = self._load(plan_id, None)
        return plan_metrics(
            self._store, plan, now=self.clock.now(), since=since, until=until, bucket=bucket_seconds
        )

    def _auto_rollback(self, raw: Any) -> AutoRollback | None:
        """``autoRollback`` from a body, each check accepted by the source it names."""
        rules = parse_auto_rollback(raw)
        if rules is None:
            return None
        self._check_sources(rules, "autoRollback")
        return rules

    def _check_sources(self, rules: AutoRollback, prefix: str) -> None:
        for index, check in enumerate(rules.checks):
            field = f"{prefix}.checks[{index}]"
            source = self.metric_sources.get(check.source)
            if source is None:
                raise ValidationError(
                    f"{field}.source",
                    "no such metric source is installed or configured; known sources are "
                    + ", ".join(sorted(self.metric_sources)),
                    value=check.source,
                )
            source.validate_check(check, field)

    def _guarded(
        self, fields: Mapping[str, Any], app_name: str, environment: str
    ) -> tuple[AutoRollback | None, str, dict[str, Any] | None]:
        """A new or moved plan's rules: its own, else the default for its app and environment
        (``settings.analysis.defaults``); with the audit message and details that say which,
        or that the body opted out."""
        default = self.analysis_defaults.for_scope(app_name, environment)
        if "autoRollback" not in fields:
            if default is None:
                return None, "", None
            return (
                default.auto_rollback,
                f"checks from {default.field}",
                {"defaultChecks": default.field},
            )
        rules = self._auto_rollback(fields["autoRollback"])
        if rules is None and default is not None:
            return (
                None,
                f"opted out of the default checks ({default.field})",
                {"optedOutOf": default.field},
            )
        return rules, "", None

    # --- approval -----------------------------------------------------------------------------

    def approve(self, plan_id: str, *, actor: str, reason: str = "") -> LogRecord:
        """Approve the plan's next gated step: its start (a DRAFT) or its completion (a live
        plan). Only the version approved may start: editing a DRAFT asks for a new approval.
        """
        return self._decide(plan_id, actor, reason, Action.APPROVE, "APPROVED")

    def reject(self, plan_id: str, *, actor: str, reason: str) -> LogRecord:
        """Refuse the plan's next gated step, with a reason; a later approval lifts it."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("reason", "is required: say why the plan is rejected")
        return self._decide(plan_id, actor, reason, Action.REJECT, "REJECTED")

    def _decide(
        self, plan_id: str, actor: str, reason: str, action: Action, event: str
    ) -> LogRecord:
        if not isinstance(reason, str) or len(reason) > 2000:
            raise ValidationError("reason", "must be a string of at most 2000 characters")
        require_storable(reason, "reason")
        plan = self._load(plan_id, None)
        stage = approval_stage(plan)
        if stage is None:
            raise InvalidTransition(
                f"plan {plan.id} is {plan.status.value}: only a DRAFT (to start) or a live plan "
                "(to complete) can be approved or rejected",
                details={"action": action.value, "status": plan.status.value},
            )
        self._authorize(actor, action, plan)
        now = self.clock.now()
        row = LogRecord(
            plan.id,
            event,
            actor,
            now,
            plan.status,
            plan.status,
            message=reason,
            details={"stage": stage, "version": plan.version},
            app_name=plan.app_name,
            environment=plan.environment,
        )
        self._store.append_log(row, self._outbox([row], plan))
        self._emit(_event_of(row, plan, plan))
        return row

    # --- grants and tokens ------------------------------------------------------------------

    def grant(
        self, *, actor: str, grantee: str, role: str, app_name: str, environment: str
    ) -> Grant:
        """Give ``grantee`` a role for an app and an environment (``*`` for all)."""
        scope = Scope(name_field(app_name, "appName"), name_field(environment, "environment"))
        grantee = actor_field(grantee, "actor")
        self._authorize(actor, Action.GRANT, None, scope)
        now = self.clock.now()
        grant = Grant(grantee, check_role(role), scope.app_name, scope.environment, actor, now)
        return self._store.add_grant(grant, self._grant_log("GRANTED", grant, actor, now))

    def revoke(self, grant_id: int, *, actor: str) -> Grant:
        """Take a grant back."""
        grant = self._store.get_grant(grant_id)
        if grant is None:
            raise NotFound(f"grant {grant_id} does not exist", details={"grantId": grant_id})
        self._authorize(actor, Action.GRANT, None, Scope(grant.app_name, grant.environment))
        now = self.clock.now()
        self._store.remove_grant(grant_id, self._grant_log("REVOKED", grant, actor, now))
        return grant

    def grants(
        self,
        *,
        actor: str,
        grantee: str | None = None,
        app_name: str | None = None,
        environment: str | None = None,
    ) -> list[Grant]:
        """Grants, filtered; seeing them takes the right to manage them in that scope."""
        scope = Scope(app_name or ANY, environment or ANY)
        self._authorize(actor, Action.GRANT, None, scope)
        return self._store.find_grants(grantee, app_name, environment)

    def _grant_log(self, event: str, grant: Grant, actor: str, now: datetime) -> LogRecord:
        return LogRecord(
            "",
            event,
            actor,
            now,
            details={"grantee": grant.actor, "role": grant.role},
            app_name=grant.app_name,
            environment=grant.environment,
        )

    def create_token(
        self,
        *,
        actor: str,
        owner: str | None = None,
        scope: str = "read",
        days: int = 90,
        name: str = "",
    ) -> tuple[str, ApiToken]:
        """A new API token for ``owner`` (default: ``actor`` itself; another's takes the
        right to grant). Returns the token, shown once, and its stored record."""
        owner = actor_field(owner, "owner") if owner is not None else actor
        if request_token_scope.get() is not None:
            # Minting by token is refused: a token that could mint could widen its own scope,
            # outlive its own expiry, and leave children behind when it is revoked.
            denied = PermissionDenied(
                "an API token may not make API tokens: sign in with a configured token, or "
                "make it with the CLI (grayrelease token create)",
                details={"action": "create-token", "reason": "token-mints-token"},
            )
            self._record_denial(actor, Action.GRANT, None, Scope(ANY, ANY), denied)
            raise denied
        if scope not in TOKEN_SCOPES:
            raise ValidationError("scope", f"must be one of {', '.join(TOKEN_SCOPES)}", value=scope)
        days = positive_int(days, "days", maximum=MAX_TOKEN_DAYS)
        if not isinstance(name, str) or len(name) > 128 or any(ch < " " for ch in name):
            raise ValidationError("name", "must be one line of at most 128 characters")
        if owner != actor:  # one's own needs no right: it can do no more than its owner
            self._authorize(actor, Action.GRANT, None)
        now = self.clock.now()
        secret = "grt_" + secrets.token_urlsafe(32)
        token = ApiToken(
            id=secrets.token_hex(8),
            actor=owner,
            scope=scope,
            token_hash=token_hash(secret),
            created_by=actor,
            created_at=now,
            expires_at=now + timedelta(days=days),
            name=name,
        )
        self._store.add_token(token, self._token_log("TOKEN_CREATED", token, actor, now))
        return secret, token

    def revoke_token(self, token_id: str, *, actor: str) -> ApiToken:
        """Revoke a token: one's own, or anyone's with the right to grant."""
        token = self._store.get_token(token_id) if isinstance(token_id, str) else None
        if token is None:
            raise NotFound(f"token {token_id} does not exist", details={"tokenId": token_id})
        if token.actor != actor:
            self._authorize(actor, Action.GRANT, None)
        now = self.clock.now()
        self._store.revoke_token(token.id, now, self._token_log("TOKEN_REVOKED", token, actor, now))
        return attrs.evolve(token, revoked_at=token.revoked_at or now)

    def tokens(self, *, actor: str, owner: str | None = None) -> list[ApiToken]:
        """Tokens of ``owner`` (one's own; anyone's, or all, with the right to grant)."""
        if owner != actor:
            self._authorize(actor, Action.GRANT, None)
        return self._store.list_tokens(owner)

    def get_token(self, token_id: str) -> ApiToken | None:
        """A token's record by its id (valid or not)."""
        return self._store.get_token(token_id)

    def identify_token(self, secret: str) -> ApiToken | None:
        """The valid (unexpired, unrevoked) token whose secret this is, if any."""
        token = self._store.token_by_hash(token_hash(secret))
        return token if token is not None and token.valid_at(self.clock.now()) else None

    # --- console sessions: kept in the store so a logout holds in every process ------------

    def open_session(self, actor: str, token_id: str | None, lifetime: timedelta) -> ConsoleSession:
        """Record a console login that lasts ``lifetime``; its id goes into the cookie."""
        now = self.clock.now()
        session = ConsoleSession(secrets.token_hex(16), actor, now, now + lifetime, token_id)
        self._store.add_session(session)
        return session

    def active_session(self, session_id: str) -> ConsoleSession | None:
        """The session of this id if it has neither ended nor expired."""
        found = self._store.get_session(session_id)
        return found if found is not None and found.active_at(self.clock.now()) else None

    def end_session(self, session_id: str) -> None:
        """Log out: every copy of the session's cookie is refused from now on."""
        self._store.end_session(session_id, self.clock.now())

    def record_refused_login(self, source: str | None, message: str, **details: Any) -> None:
        """A failed or throttled console login goes into the audit trail with its address
        (as ``_record_denial`` does for refused actions); a failure to write it is logged."""
        try:
            self._store.append_log(
                LogRecord(
                    "",
                    "LOGIN_REFUSED",
                    "(unknown)",
                    self.clock.now(),
                    message=message,
                    details={"source": source, **details},
                )
            )
        except Exception:
            log.exception("grayrelease: could not record a refused login from %s", source)

    def _token_log(self, event: str, token: ApiToken, actor: str, now: datetime) -> LogRecord:
        return LogRecord(
            "",
            event,
            actor,
            now,
            details={
                "tokenId": token.id,
                "owner": token.actor,
                "scope": token.scope,
                "expiresAt": timestamp(token.expires_at),
            },
        )

    # --- notifications --------------------------------------------------------------------

    def deliver(self, now: datetime | None = None) -> DeliveryReport:
        """Send the notifications that are due (each tick does this; so does ``grayrelease
        notify`` from cron): retries with backoff, records every attempt."""
        return self._deliverer.run(self._tick_time(now))

    def _deliver_quietly(self, now: datetime) -> DeliveryReport | None:
        """A delivery run inside a tick: its failure is logged, never the tick's."""
        try:
            return self._deliverer.run(now)
        except Exception:
            log.exception("grayrelease: delivering notifications failed; the next tick retries")
            return None

    def plan_notifications(
        self, plan_id: str, page: int = 1, page_size: int = 50
    ) -> Page[Notification]:
        """The plan's notifications, newest first, with their delivery state and attempts
        (a deleted plan's too: its last ones tell of the deletion)."""
        if not isinstance(plan_id, str) or not plan_id:
            raise ValidationError("planId", "must be a non-empty string", value=plan_id)
        storable_text(plan_id, "planId")
        found = self._store.list_notifications(plan_id, page, page_size)
        if found.total == 0:
            self._load(plan_id, None)  # a 404 unless the plan exists
        return found

    def messages(
        self, recipient: str, page: int = 1, page_size: int = 20, *, unread_only: bool = False
    ) -> Page[InboxMessage]:
        """``recipient``'s in-system messages, unread first, then newest first."""
        return self._store.list_inbox(recipient, page, page_size, unread_only)

    def read_message(self, recipient: str, message_id: int) -> InboxMessage:
        """Mark one of ``recipient``'s messages read; ``NotFound`` for anyone else's."""
        message = self._store.read_inbox_message(recipient, message_id, self.clock.now())
        if message is None:
            raise NotFound(
                f"message {message_id} does not exist or is not yours",
                details={"messageId": message_id},
            )
        return message

    def unread_messages(self, recipient: str) -> int:
        """How many of ``recipient``'s messages are unread (the console's badge)."""
        return self._store.unread_inbox(recipient)

    def _plan_routing(self, raw: Any) -> Routing | None:
        """A plan's ``notify``, checked against the channels; with the installation's
        default filled in, it must be able to send."""
        routing = parse_routing(raw, "notify", channels=self._recipient_checks)
        if routing is not None:
            check_routing(
                routing.over(self._default_routing),
                "notify",
                needs_recipients=self._needs_recipients,
            )
        return routing

    def _needs_recipients(self, channel: str) -> bool:
        return bool(getattr(self.notifiers.get(channel), "requires_recipients", False))

    def _outbox(self, rows: Sequence[LogRecord], plan: Plan) -> list[Notification]:
        """The notifications ``rows`` cause under the plan's routing, rendered now in the
        installation's language, to be written in the same transaction as the rows."""
        routing = plan.notify.over(self._default_routing) if plan.notify else self._default_routing
        author = plan.created_by if plan.created_by != SYSTEM_ACTOR else None
        queued: list[Notification] = []
        for row in rows:
            try:
                targets = route(
                    row.action, routing, author=author, needs_recipients=self._needs_recipients
                )
                if not targets:
                    continue
                message = render(
                    row,
                    plan,
                    severity=severity_of(row.action),
                    language=self.notify_settings.language,
                    console_url=self.notify_settings.console_url,
                )
            except Exception:
                # A message that cannot be written must not stop the release it tells of.
                log.exception("grayrelease: could not write the %s notification", row.action)
                continue
            for channel, recipients in targets:
                key = notification_id(row.at)
                queued.append(
                    Notification(
                        id=key,
                        plan_id=plan.id,
                        event=row.action,
                        channel=channel,
                        recipients=recipients,
                        message=attrs.evolve(
                            message, key=key, plan_id=plan.id, event=row.action, at=row.at
                        ),
                        created_at=row.at,
                        next_attempt_at=row.at,
                    )
                )
        return queued

    def sync(self) -> None:
        """Refresh the index if the store changed, refresh the backend, flush due hits."""
        self._coarse_now = self.clock.now()
        try:
            self._backend.refresh()
            self.refresh_index(only_if_changed=True)
            if self.clock.monotonic() - self._last_flush >= self.settings.hit_flush_interval:
                self.flush_hits()
        except Exception:
            # The read path keeps serving the last good index; the next sync tries again.
            log.exception("grayrelease: sync failed; serving the last known plans")

    def _backend_changing(self) -> None:
        """A watcher is about to let a change pushed by the config center into the backend's
        mirror: look at the store first. A publishing action claims its plan before its first
        write, so the claim's overlay serves every key here before any of them changes."""
        if self._closed:
            return
        try:
            self.refresh_index(only_if_changed=True)
        except Exception:
            log.exception("grayrelease: index refresh before a pushed change failed")

    def refresh_index(self, *, only_if_changed: bool = False) -> None:
        """Rebuild the read path's index from the store's live plans (with ``only_if_changed``:
        only when the store's generation moved)."""
        with self._refresh_lock:
            generation = self._store.generation()
            if only_if_changed and generation == self._generation and not self._settled():
                return
            plans = self._store.served_plans(self.clock.now())
            stopped = self._stopped_admitting(plans)
            self._rebuild(plans)  # first: from here on no new instance is admitted
            self._generation = generation
            self._write_late_members(stopped)

    def _rebuild(self, plans: list[Plan]) -> None:
        # Under the flush lock: a flush in between could forget a tracker being created here.
        with self._hits.flush_lock:
            entries = build_entries(
                plans, self.strategies, self._hits, self._members, self._backend.get
            )
            until = {
                plan.id: plan.settle_until
                for plan in plans
                if plan.settle_until is not None and not plan.status.is_live
            }
            self._settling = {
                ref: (entry.gray.value, until[entry.plan_id])
                for ref, entry in entries.items()
                if entry.plan_id in until and entry.gray.plan_id is None
            }
            self._entries = entries
            self._live_plans = [plan for plan in plans if plan.status.is_live]

    def _settled(self) -> bool:
        """Whether a settling overlay can go: its time is up, or this process's backend now
        shows the published value (its mirror caught up)."""
        if not self._settling:
            return False
        now = self.clock.now()
        for ref, (value, until) in self._settling.items():
            if now > until:
                return True
            try:
                if self._backend.get(ref) == value:
                    return True
            except Exception:
                continue
        return False

    def _stopped_admitting(self, plans: list[Plan]) -> list[str]:
        """Plans this process served as ACTIVE that are now paused or ended."""
        still_active = {plan.id for plan in plans if plan.status is PlanStatus.ACTIVE}
        return [
            plan.id
            for plan in self._live_plans
            if plan.status is PlanStatus.ACTIVE and plan.id not in still_active
        ]

    def _write_late_members(self, plan_ids: list[str]) -> None:
        """Write at once the hits of plans that stopped admitting, and if that added anything,
        move the generation: every process then reloads the paused plans' members, so an
        instance that got the gray value anywhere before the pause is a member everywhere."""
        wrote = 0
        for plan_id in plan_ids:
            try:
                wrote += self.flush_hits(plan_id)
            except Exception:
                log.exception("grayrelease: could not write the hits of plan %s", plan_id)
        if wrote:
            self._store.bump_generation()

    def flush_hits(self, plan_id: str | None = None) -> int:
        """Write buffered gray hits to the store; returns how many instance rows changed."""
        self._coarse_now = self.clock.now()
        with self._hits.flush_lock:
            pending = self._hits.pending(plan_id)
            if pending:
                self._store.record_hits(pending)
                self._hits.mark_written(pending)
            if plan_id is None:
                self._last_flush = self.clock.monotonic()
                self._hits.forget({plan.id for plan in self._live_plans})
            return len(pending)

    def close(self) -> None:
        """Stop the background sync, write buffered hits, release the store and backend."""
        if self._closed:
            return
        self._closed = True
        if self._sync is not None:
            self._sync.stop()
        try:
            self.flush_hits()
        finally:
            self._backend.close()
            self._store.close()

    def __enter__(self) -> GrayRelease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------

    def _act(
        self,
        plan_id: str,
        action: Action,
        actor: str,
        expected_version: int | None,
        mutate: Mutation,
        event: str,
        **options: Any,
    ) -> Plan:
        """Every plan action, through the control-path kernel (:class:`ControlPath`)."""
        return self._control.act(plan_id, action, actor, expected_version, mutate, event, **options)

    def _flush_before_ending(self, plan: Plan) -> None:
        """Record the plan's hits before it ends; a failure here must not block a rollback."""
        try:
            self.flush_hits(plan.id)
        except Exception:
            log.exception("grayrelease: could not write the hits of plan %s; going on", plan.id)

    def _load(self, plan_id: str, expected_version: int | None) -> Plan:
        if not isinstance(plan_id, str) or not plan_id:
            raise ValidationError("planId", "must be a non-empty string", value=plan_id)
        storable_text(plan_id, "planId")
        plan = self._store.get_plan(plan_id)
        if plan is None:
            raise NotFound(
                f"plan {plan_id} does not exist; list plans to find its id",
                details={"planId": plan_id},
            )
        if expected_version is not None and expected_version != plan.version:
            raise Conflict(
                f"plan {plan_id} changed: it is at version {plan.version}, not {expected_version}; "
                "reload it and try again",
                details={
                    "planId": plan_id,
                    "version": plan.version,
                    "expectedVersion": expected_version,
                },
            )
        return plan

    def authorize(
        self, actor: str, action: Action, plan: Plan | None = None, scope: Scope | None = None
    ) -> None:
        """Refuse with ``PermissionDenied`` (recorded in the audit trail) unless ``actor`` may
        do ``action`` on ``plan`` or in ``scope`` (``*`` for all apps or environments). The
        engine calls it for every action; adapters call it for what they read."""
        self._authorize(actor, action, plan, scope)

    def _authorize(
        self, actor: str, action: Action, plan: Plan | None, scope: Scope | None = None
    ) -> None:
        if not isinstance(actor, str) or not actor.strip():
            raise ValidationError("actor", "must name who acts")
        if len(actor) > MAX_ACTOR or any(ch < " " for ch in actor):
            raise ValidationError("actor", f"must be one line of at most {MAX_ACTOR} characters")
        if scope is None:
            scope = Scope(plan.app_name, plan.environment) if plan else Scope(ANY, ANY)
        target = f" plan {plan.id}" if plan else f" in {scope.app_name}/{scope.environment}"
        token_scope = request_token_scope.get()
        try:
            if not scope_allows(token_scope, action):
                raise PermissionDenied(
                    f"this token's scope ({token_scope}) does not allow {action.value}; "
                    "use a token with a wider scope",
                    details={"action": action.value, "tokenScope": token_scope},
                )
            answers = self.plugin_manager.hook.grayrelease_authorize(
                actor=actor,
                action=action.value,
                plan=plan,
                scope=scope,
                settings=self.settings,
                store=self._store,
            )
            if any(answer is False for answer in answers):
                raise PermissionDenied(
                    f"{actor} may not {action.value}{target}; "
                    "ask an administrator for the permission",
                    details={"action": action.value},
                )
        except PermissionDenied as denied:
            denied.details.update(
                actor=actor,
                planId=plan.id if plan else None,
                appName=scope.app_name,
                environment=scope.environment,
            )
            self._record_denial(actor, action, plan, scope, denied)
            raise

    def _record_denial(
        self,
        actor: str,
        action: Action,
        plan: Plan | None,
        scope: Scope,
        denied: PermissionDenied,
    ) -> None:
        """A refused attempt goes into the audit trail: who, what, from where. Its failure
        to be written is logged and does not change the answer."""
        try:
            self._store.append_log(
                LogRecord(
                    plan.id if plan else "",
                    "DENIED",
                    actor,
                    self.clock.now(),
                    plan.status if plan else None,
                    plan.status if plan else None,
                    message=denied.message,
                    details={
                        "action": action.value,
                        "source": request_source.get(),
                        **{
                            k: v
                            for k, v in denied.details.items()
                            if k not in ("actor", "planId", "appName", "environment")
                        },
                    },
                    app_name=scope.app_name,
                    environment=scope.environment,
                )
            )
        except Exception:
            log.exception("grayrelease: could not record the denied %s of %s", action, actor)

    def _refuse_overlap(self, plan: Plan, doing: str) -> None:
        holders = self._store.live_plans_covering(plan.refs, exclude=plan.id)
        if holders:
            keys = sorted(ref.config_key for ref in holders)
            others = sorted(set(holders.values()))
            raise Conflict(
                f"plan {others[0]} is releasing {', '.join(keys)}; "
                f"complete or roll it back before {doing} this one",
                details={"conflictingPlanIds": others, "configKeys": keys},
            )

    def _refuse_drift(self, plan: Plan) -> None:
        drifted = [
            ref.config_key
            for item, ref in zip(plan.items, plan.refs, strict=True)
            if self._read_backend(ref) != item.gray_value
        ]
        if drifted:
            raise Conflict(
                f"{', '.join(drifted)} changed in the config backend since the plan completed; "
                "rolling back would overwrite that change. "
                "Check the values, then roll back with force",
                details={"driftedKeys": drifted},
            )

    def _read_backend(self, ref: ConfigRef) -> str | None:
        try:
            return self._backend.get(ref)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"reading {ref.config_key} from the backend failed: {exc}") from exc

    def _members(self, plan_id: str) -> frozenset[str]:
        return self._store.instance_ids(plan_id) | self._hits.instance_ids(plan_id)

    def _log(
        self,
        before: Plan | None,
        after: Plan | None,
        action: str,
        actor: str,
        now: datetime,
        message: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> LogRecord:
        subject = after or before
        assert subject is not None
        return LogRecord(
            plan_id=subject.id,
            action=action,
            actor=actor,
            at=now,
            status_before=before.status if before else None,
            status_after=after.status if after else None,
            before=plan_to_wire(before) if before else None,
            after=plan_to_wire(after) if after else None,
            message=message,
            details=details,
            app_name=subject.app_name,
            environment=subject.environment,
        )

    def _emit(self, event: PlanEvent) -> None:
        """Tell every plugin; one that fails is logged and does not stop the others."""
        for plugin_name, call in implementations(
            self.plugin_manager, "grayrelease_plan_event", event=event
        ):
            try:
                call()
            except Exception:
                log.exception("grayrelease: plugin %s failed on %s", plugin_name, event.action)


def _check_gray_keys(gray: Mapping[str, str], keys: tuple[str, ...] | Any) -> None:
    stray = sorted(set(gray) - set(keys))
    if stray:
        raise ValidationError(
            f"grayValues.{stray[0]}",
            "is not one of the plan's configKeys",
            details={"unknown": stray},
        )


def _gray_values(plan: Plan) -> dict[ConfigRef, str | None]:
    return {ref: item.gray_value for item, ref in zip(plan.items, plan.refs, strict=True)}


def _original_values(plan: Plan) -> dict[ConfigRef, str | None]:
    """What a rollback publishes: the snapshotted originals, and only after a completion."""
    if plan.status is not PlanStatus.COMPLETED:
        return {}
    return {ref: item.original_value for item, ref in zip(plan.items, plan.refs, strict=True)}


def _event_of(row: LogRecord, plan: Plan, previous: Plan | None) -> PlanEvent:
    return PlanEvent(row.action, plan, previous, row.actor, row.at, row.message, row.details)


def approval_stage(plan: Plan) -> str | None:
    """Which gated step an approval of ``plan`` is for now: ``start`` or ``complete``."""
    if plan.status is PlanStatus.DRAFT:
        return "start"
    if plan.status.is_live:
        return "complete"
    return None


def _failed_metrics(rows: Sequence[LogRecord]) -> dict[str, Any]:
    """What an automatic rollback's audit row names: the metrics whose checks failed."""
    failed = [
        check["metric"]
        for row in rows
        for check in (row.details or {}).get("checks", ())
        if check.get("outcome") == "FAIL"
    ]
    return {"failedMetrics": failed}


def _check_schedulable(keys: Sequence[str], gray: Mapping[str, str | None]) -> None:
    """A plan scheduled to start must be able to: refused now rather than failing later."""
    missing = [key for key in keys if gray.get(key) is None]
    if missing:
        raise ValidationError(
            "startAt",
            "every key needs a gray value before the plan can be scheduled; "
            f"missing: {', '.join(missing)}",
            details={"missingKeys": missing},
        )
