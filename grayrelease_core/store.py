"""What the engine needs from a plan store. The SQLAlchemy plugin is the built-in one.

Every method that changes a plan is one transaction that also writes its audit row and bumps
the store's generation number, so other processes notice the change and the audit trail can
never miss a committed action.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import attrs

from .access import ApiToken, ConsoleSession, Grant
from .audit import AuditReport
from .checkpoint import Checkpoint
from .errors import ValidationError
from .inbox import InboxMessage
from .intent import Intent
from .models import (
    ConfigRef,
    InstanceHits,
    InstanceRecord,
    LogRecord,
    Page,
    Plan,
    PlanStatus,
    Sample,
)
from .outbox import Attempt, DeliveryState, Notification
from .sequential import CountSums


def _status(value: PlanStatus | str | None) -> PlanStatus | None:
    if value is None or isinstance(value, PlanStatus):
        return value
    if value not in PlanStatus.__members__:
        raise ValidationError("status", f"must be one of {', '.join(PlanStatus)}", value=value)
    return PlanStatus(value)


def _page_number(name: str, value: object, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(name, f"must be a whole number from 1 to {maximum}", value=str(value))


@attrs.frozen
class PlanQuery:
    """Filters and paging for listing plans; ``None`` means any."""

    app_name: str | None = None
    environment: str | None = None
    group_name: str | None = None
    status: PlanStatus | None = attrs.field(default=None, converter=_status)
    """A ``PlanStatus`` or its wire value (``"ACTIVE"``)."""
    page: int = attrs.field(default=1, validator=lambda _, a, v: _page_number(a.name, v, 10**6))
    page_size: int = attrs.field(default=20, validator=lambda _, a, v: _page_number(a.name, v, 200))
    search: str | None = None
    """Text found, ignoring case, in the plan's name, id, description, app, environment, group,
    author or one of its config keys."""


MAX_LOG_PAGE = 10_000
"""Largest page of audit rows (the HTTP API allows less; the ticker's charts read more)."""


@attrs.frozen
class LogQuery:
    """Filters and paging for searching the whole audit trail; ``None`` means any."""

    plan_id: str | None = None
    actor: str | None = None
    app_name: str | None = None
    environment: str | None = None
    actions: tuple[str, ...] | None = None
    since: datetime | None = None
    """Rows at or after this time."""
    until: datetime | None = None
    """Rows before this time."""
    page: int = attrs.field(default=1, validator=lambda _, a, v: _page_number(a.name, v, 10**6))
    page_size: int = attrs.field(
        default=50, validator=lambda _, a, v: _page_number(a.name, v, MAX_LOG_PAGE)
    )
    newest_first: bool = True


@attrs.frozen
class ProgressChange:
    """A tick's change to one plan's progress (not its keys or state), with its audit rows."""

    plan: Plan
    """The plan with its new progress, ``updated_by`` and ``updated_at``."""
    expected_version: int
    """The version the tick judged; a plan changed since is left alone."""
    logs: Sequence[LogRecord] = ()
    outbox: Sequence[Notification] = ()
    """The notifications of ``logs``, written with them."""
    reindex: bool = False
    """Whether the read path must see it (the percentage moved): bumps the generation."""


class PlanStore(Protocol):
    """Durable plans, their audit log and their instance records, the notification outbox
    and the in-system inbox.

    Every write that takes ``outbox`` writes those notifications in the same transaction as
    its audit rows: a committed event is never left untold, a failed one never told.
    """

    def generation(self) -> int:
        """A number that changes whenever any plan changes (in any process)."""
        ...

    def add_plan(self, plan: Plan, log: LogRecord, outbox: Sequence[Notification] = ()) -> None:
        """Insert a new plan with its audit row."""
        ...

    def save_plan(
        self,
        plan: Plan,
        *,
        expected_version: int,
        log: LogRecord | Sequence[LogRecord],
        outbox: Sequence[Notification] = (),
    ) -> Plan:
        """Replace the stored plan if its version is still ``expected_version``; write ``log``
        (one audit row, or several in order) in the same transaction.

        :returns: the plan as stored, with ``version = expected_version + 1``.
        :raises Conflict: the stored version differs, or a live plan already holds one of the
            plan's keys (when the plan is ACTIVE or PAUSED).
        :raises NotFound: the plan is gone.
        """
        ...

    def remove_plan(
        self,
        plan_id: str,
        *,
        expected_version: int,
        log: LogRecord,
        outbox: Sequence[Notification] = (),
    ) -> None:
        """Delete a plan (its audit rows stay)."""
        ...

    # A plan with an open intent belongs to its claimer: ``save_plan``, ``remove_plan`` and
    # ``save_progress`` refuse it (a ``Conflict`` naming the pending action), and only the
    # four calls below, matching the claim's epoch, write it.

    def claim_plan(
        self, plan_id: str, *, expected_version: int, expected_epoch: int, intent: Intent
    ) -> None:
        """Record ``intent`` (whose epoch is ``expected_epoch + 1``) if the plan is still at
        ``expected_version`` and ``expected_epoch`` with no intent open; moves the generation.

        :raises Conflict: the plan changed, or another action holds it.
        """
        ...

    def replace_intent(self, plan_id: str, *, expected_epoch: int, intent: Intent) -> None:
        """Swap the open intent of claim ``expected_epoch`` for ``intent`` (a change of
        direction, or recovery taking over with a new epoch); moves the generation.

        :raises Conflict: the claim is no longer ``expected_epoch``'s.
        """
        ...

    def commit_plan(
        self,
        plan: Plan,
        *,
        epoch: int,
        log: Sequence[LogRecord],
        outbox: Sequence[Notification] = (),
    ) -> Plan:
        """Save ``plan`` (its ``version`` one above the stored one, its ``settle_until``
        included) and clear the intent of claim ``epoch``, with ``log`` and ``outbox``, in one
        transaction.

        :raises Conflict: the claim is no longer ``epoch``'s (recovery took it over).
        """
        ...

    def release_plan(
        self,
        plan_id: str,
        *,
        epoch: int,
        log: Sequence[LogRecord],
        outbox: Sequence[Notification] = (),
    ) -> None:
        """Clear the intent of claim ``epoch`` without changing the plan, writing ``log``.

        :raises Conflict: the claim is no longer ``epoch``'s.
        """
        ...

    def holds_claim(self, plan_id: str, epoch: int) -> bool:
        """Whether claim ``epoch`` is still the plan's open one (checked before each
        backend write)."""
        ...

    def open_intents(self) -> list[Plan]:
        """Every plan with an open intent: what recovery looks at."""
        ...

    def save_progress(self, changes: Sequence[ProgressChange]) -> list[Plan]:
        """Save many plans' progress in one transaction, each only if its version is still
        the expected one (the others are skipped: a concurrent ticker won them).

        :returns: the plans saved, with their new versions.
        """
        ...

    def bump_generation(self) -> None:
        """Move the generation without a plan change, so every process rebuilds its index."""
        ...

    def append_log(self, log: LogRecord, outbox: Sequence[Notification] = ()) -> None:
        """Write an audit row that goes with no plan change (a failed action)."""
        ...

    def get_plan(self, plan_id: str) -> Plan | None: ...

    def scheduled_plans(self, now: datetime) -> list[Plan]:
        """DRAFT plans whose ``start_at`` has come."""
        ...

    def find_plans(self, query: PlanQuery) -> Page[Plan]: ...

    def live_plans(self) -> list[Plan]:
        """Every ACTIVE or PAUSED plan: what the ticker judges."""
        ...

    def served_plans(self, now: datetime) -> list[Plan]:
        """What the read path's index is built from: the live plans, the plans with an open
        intent, and the plans whose ``settle_until`` has not passed."""
        ...

    def live_plans_covering(
        self, refs: Iterable[ConfigRef], *, exclude: str
    ) -> dict[ConfigRef, str]:
        """For each of ``refs`` held by a live plan other than ``exclude``: that plan's id."""
        ...

    def record_hits(self, hits: Sequence[InstanceHits]) -> None:
        """Add buffered gray hits to ``gray_release_instance`` (insert or accumulate)."""
        ...

    def instance_ids(self, plan_id: str) -> frozenset[str]:
        """Ids of every instance recorded as having received the plan's gray value."""
        ...

    def instance_addresses(self, plan_id: str) -> dict[str, str]:
        """``{instance id: address}`` of every instance recorded for the plan."""
        ...

    def list_instances(
        self, plan_id: str, page: int = 1, page_size: int = 50
    ) -> Page[InstanceRecord]: ...

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
        """The plan's audit rows, oldest first (or newest first); only ``actions`` and rows in
        ``[since, until)`` when given."""
        ...

    def find_logs(self, query: LogQuery) -> Page[LogRecord]:
        """Audit rows of any plan matching ``query``, one page."""
        ...

    def last_logs(self, plan_ids: Collection[str]) -> dict[str, LogRecord]:
        """Each plan's newest audit row other than a refused attempt (``DENIED``): what was
        last done to it. Plans without one are left out."""
        ...

    def each_log(self, query: LogQuery) -> Iterator[LogRecord]:
        """Every audit row matching ``query`` (its paging ignored), read in chunks: an
        export of any size in bounded memory."""
        ...

    def verify_audit(self, now: datetime, checkpoints: Sequence[Checkpoint] = ()) -> AuditReport:
        """Walk the audit chain; the first row where it breaks (``grayrelease_core.audit``),
        and whether the chain still holds each checkpoint (``grayrelease_core.checkpoint``)."""
        ...

    def audit_checkpoint(self, now: datetime) -> Checkpoint:
        """The chain's head now, signed with the audit key if there is one, for the operator
        to keep outside the database (also logged to ``grayrelease.audit``)."""
        ...

    def record_samples(self, samples: Sequence[Sample]) -> None:
        """Append metric samples to ``gray_release_monitor``."""
        ...

    def samples(
        self,
        plan_ids: Collection[str],
        metrics: Collection[str] | None,
        since: datetime,
        until: datetime,
        limit: int | None = None,
    ) -> list[Sample]:
        """At most ``limit`` samples of ``plan_ids`` (and ``metrics``; all when ``None``) taken in
        ``[since, until)``."""
        ...

    def sample_values(
        self, plan_ids: Collection[str], metrics: Collection[str], since: datetime, until: datetime
    ) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
        """``{(plan id, metric): (gray means, baseline means)}`` over ``(since, until]`` (a
        sample stamped at a look's moment covers the minute before it, so belongs to it): one
        value per instance, the mean of its samples, since an instance's samples are not
        independent of each other and the judge compares instances."""
        ...

    def sample_counts(
        self, plan_ids: Collection[str], metrics: Collection[str], since: datetime, until: datetime
    ) -> dict[tuple[str, str], tuple[CountSums, CountSums]]:
        """``{(plan id, metric): (gray sums, baseline sums)}`` over ``(since, until]``: each
        instance's events and totals summed over its counted samples (those pushed with
        ``events`` and ``total``), then reduced per group to what the rate test reads
        (:class:`~grayrelease_core.sequential.CountSums`), for rate checks."""
        ...

    def instance_counts(self, plan_ids: Collection[str]) -> dict[str, int]:
        """How many instances are recorded as having received each plan's gray value."""
        ...

    def purge_samples(self, before: datetime) -> int:
        """Delete samples taken before ``before`` (retention); returns how many."""
        ...

    # --- the notification outbox ----------------------------------------------------------

    def due_notifications(
        self, now: datetime, limit: int, skip: Collection[str] = ()
    ) -> list[Notification]:
        """Up to ``limit`` notifications to try now, oldest first: pending ones whose time
        has come, and claimed ones whose lease ran out (their worker died); none of the
        channels in ``skip``."""
        ...

    def claim_notification(
        self, notification: Notification, now: datetime, lease: datetime
    ) -> bool:
        """Take ``notification`` for one attempt until ``lease``, only if it is still as read
        (same attempt count, still due): ``False`` when another worker took it first."""
        ...

    def finish_notification(
        self,
        notification: Notification,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_at: datetime,
    ) -> bool:
        """Record ``attempt`` and the new state, in one transaction; the state only if the
        claim still holds (``False``: another worker reclaimed it meanwhile)."""
        ...

    def list_notifications(
        self, plan_id: str, page: int = 1, page_size: int = 50
    ) -> Page[Notification]:
        """A plan's notifications, newest first, each with its attempts."""
        ...

    # --- the in-system inbox --------------------------------------------------------------

    def add_inbox_messages(self, messages: Sequence[InboxMessage]) -> int:
        """Store messages; one already stored for its notification and recipient is left as
        it is. Returns how many were new."""
        ...

    def list_inbox(
        self, recipient: str, page: int = 1, page_size: int = 20, unread_only: bool = False
    ) -> Page[InboxMessage]:
        """A person's messages: unread first, then the newest events first."""
        ...

    def read_inbox_message(
        self, recipient: str, message_id: int, at: datetime
    ) -> InboxMessage | None:
        """Mark a message read (once: the first time stays); ``None`` if ``recipient`` has
        no such message."""
        ...

    def unread_inbox(self, recipient: str) -> int: ...

    # --- grants and tokens ------------------------------------------------------------------

    def add_grant(self, grant: Grant, log: LogRecord) -> Grant:
        """Store a grant with its audit row. :raises Conflict: the actor already holds it."""
        ...

    def remove_grant(self, grant_id: int, log: LogRecord) -> None:
        """Delete a grant with its audit row. :raises NotFound: there is no such grant."""
        ...

    def find_grants(
        self,
        actor: str | None = None,
        app_name: str | None = None,
        environment: str | None = None,
    ) -> list[Grant]:
        """Grants of ``actor`` (any when ``None``), naming exactly ``app_name`` /
        ``environment`` when given."""
        ...

    def get_grant(self, grant_id: int) -> Grant | None: ...

    def add_token(self, token: ApiToken, log: LogRecord) -> None: ...

    def token_by_hash(self, token_hash: str) -> ApiToken | None: ...

    def get_token(self, token_id: str) -> ApiToken | None: ...

    def revoke_token(self, token_id: str, at: datetime, log: LogRecord) -> None:
        """Mark a token revoked (the first time stays) with its audit row."""
        ...

    def list_tokens(self, actor: str | None = None) -> list[ApiToken]: ...

    # --- console sessions -------------------------------------------------------------------

    def add_session(self, session: ConsoleSession) -> None:
        """Store a new console login; sessions long expired may be deleted on the way."""
        ...

    def get_session(self, session_id: str) -> ConsoleSession | None: ...

    def end_session(self, session_id: str, at: datetime) -> None:
        """Mark a session ended (the first time stays)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SharedDatabaseStore(Protocol):
    """A store whose transaction a backend in the same database may join (see
    :class:`~.backend.SharedDatabaseBackend`)."""

    database_url: str | None
    """The database's name (no password), or ``None`` if no other engine can reach it."""

    def save_plan(
        self,
        plan: Plan,
        *,
        expected_version: int,
        log: LogRecord | Sequence[LogRecord],
        outbox: Sequence[Notification] = (),
        join: Callable[[Any], None] | None = None,
    ) -> Plan:
        """As :meth:`PlanStore.save_plan`; ``join(connection)`` runs in the same transaction,
        after the plan's version check, so the transaction commits both or neither."""
        ...
