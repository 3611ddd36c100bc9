"""The control-path kernel: load, authorize, claim, record the intent, publish, commit, recover.

Every plan action goes through :meth:`ControlPath.act`. An action that publishes nothing
(start, pause, resume, promote, a rollback of a live plan, edits) is one transaction with an
optimistic version check. An action that writes to the config backend (complete, and rollback
of a COMPLETED plan) is, in order:

1. **snapshot**: read what each key holds now (after a backend refresh);
2. **claim**: store an :class:`~.intent.Intent` on the plan row, only if the plan is still at
   the version *and the epoch* it was loaded at, and raise the epoch. The snapshot was read
   after the load, so no other claim came between them: it cannot contain another actor's
   half-published values. A loser of this race is refused before it touches the backend.
3. **publish**: every key, checking before each write that the claim is still ours;
4. **commit**: the new state, its audit row and its notifications, clearing the intent, all in
   one transaction that matches the claim's epoch.

When the backend fails, the actor first records that it is going back (the intent's direction),
then restores the snapshot and releases the claim with a ``*_FAILED`` audit row. When the actor
dies (or the database is unreachable when it would commit or record going back), the intent
stays: :meth:`ControlPath.recover` finishes it from any process, forward (publish again, then
commit; publishing a value is idempotent) unless the intent says back (restore the snapshot).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import attrs

from . import faults, intent, lifecycle
from .backend import SharedDatabaseBackend
from .errors import BackendError, Conflict, GrayReleaseError
from .intent import Direction, Intent
from .lifecycle import Action
from .models import ConfigRef, ItemStatus, LogRecord, Plan, PlanEvent, PlanStatus, Progress
from .store import SharedDatabaseStore

if TYPE_CHECKING:
    from .engine import GrayRelease

log = logging.getLogger("grayrelease")

Mutation = Callable[[Plan, datetime], Plan]
Values = dict[ConfigRef, str | None]
FAILED = {"complete": "COMPLETE_FAILED", "rollback": "ROLLBACK_FAILED"}
"""The audit action of a publishing action that was undone, by the engine's action."""
GIVE_UP_LEASES = 10
"""Recovery carries an action forward for this many leases after its claim (10 minutes by
default); a backend that still refuses it then is taken to refuse it for good, and the
action is undone instead, so that no plan stays pending for ever."""


@attrs.define
class Recovery:
    """What one recovery pass did."""

    finished: list[str] = attrs.Factory(list)
    """Plans whose dead actor's action was carried forward and committed."""
    undone: list[str] = attrs.Factory(list)
    """Plans whose action was undone (the intent said back)."""
    errors: list[str] = attrs.Factory(list)
    """Intents that could not be finished now (tried again at the next tick)."""


class ControlPath:
    """Plan actions under races and crashes, for one engine."""

    def __init__(self, engine: GrayRelease, *, lease: float, settle: float) -> None:
        self._engine = engine
        self._store = engine._store
        self._backend = engine._backend
        self._lease = timedelta(seconds=lease)
        self._settle = timedelta(seconds=settle)
        self._give_up = GIVE_UP_LEASES * self._lease
        store, backend = self._store, self._backend
        self._joined: SharedDatabaseBackend | None = (
            backend
            if isinstance(store, SharedDatabaseStore)
            and isinstance(backend, SharedDatabaseBackend)
            and backend.database_url is not None
            and backend.database_url == store.database_url
            else None
        )
        """The backend, when it shares the store's database: then a publishing action is one
        transaction (no claim, no intent, nothing to recover)."""

    # --- acting ----------------------------------------------------------------------------

    def act(
        self,
        plan_id: str,
        action: Action,
        actor: str,
        expected_version: int | None,
        mutate: Mutation,
        event: str,
        *,
        publish: Callable[[Plan], Values] | None = None,
        message: str = "",
        reindex: bool = True,
        now: datetime | None = None,
        progress: Progress | None = None,
        leading: Sequence[LogRecord] = (),
        details: Mapping[str, Any] | None = None,
    ) -> Plan:
        """Load, authorize, check the transition, mutate, then save, or claim, publish and
        commit; reindex and tell.

        The ticker acts as ``system`` for automatic rollbacks, and in the name of whoever
        scheduled a start or armed a completion (authorized like anyone, so roles and approval
        gates hold for it too), with its own ``now``, the ``progress`` it decided and the
        ``leading`` audit rows (its verdict) that are saved in the same transaction.
        """
        engine = self._engine
        plan = engine._load(plan_id, expected_version)
        engine._authorize(actor, action, plan)
        if plan.intent is not None:
            raise intent.busy_error(plan.id, plan.intent, plan.version, expected_version)
        status = lifecycle.target(action, plan.status)
        assert status is not None
        now = now or engine.clock.now()
        engine._coarse_now = now
        if progress is not None:
            plan = attrs.evolve(plan, progress=progress)
        # The version the write will give it, so the audit row's "after" is the stored plan.
        changed = attrs.evolve(
            mutate(plan, now),
            status=status,
            updated_by=actor,
            updated_at=now,
            version=plan.version + 1,
        )
        values = publish(plan) if publish else {}
        if values:  # processes whose backend mirror lags serve the published values meanwhile
            changed = attrs.evolve(changed, settle_until=now + self._settle)
        rows = [*leading, engine._log(plan, changed, event, actor, now, message, details)]
        if values and self._joined is not None:
            saved = self._publish_in_commit(plan, changed, values, action, rows, now)
        elif values:
            saved = self._publish_and_commit(plan, changed, values, action, event, rows, now)
        else:
            saved = self._store.save_plan(
                changed,
                expected_version=plan.version,
                log=rows,
                outbox=engine._outbox(rows, changed),
            )
        if reindex:
            self._reindex(event)
        for row in leading:
            engine._emit(
                PlanEvent(row.action, saved, plan, row.actor, row.at, row.message, row.details)
            )
        engine._emit(PlanEvent(event, saved, plan, actor, now, message, details))
        return saved

    def _publish_and_commit(
        self,
        plan: Plan,
        changed: Plan,
        values: Values,
        action: Action,
        event: str,
        rows: list[LogRecord],
        now: datetime,
    ) -> Plan:
        actor = changed.updated_by
        before = self._snapshot(values)
        claim = Intent(
            epoch=plan.epoch + 1,
            action=action.value,
            event=event,
            actor=actor,
            owner=intent.owner_id(),
            claimed_at=now,
            lease_until=now + self._lease,
            status_before=plan.status,
            status_after=changed.status,
            values={ref.config_key: value for ref, value in values.items()},
            before={ref.config_key: value for ref, value in before.items()},
            message=rows[-1].message,
        )
        faults.reach("claim.before")
        # In flight before the claim is visible: this process's own ticker must never take
        # it for a dead holder's.
        intent.begin(plan.id, claim.epoch)
        try:
            self._store.claim_plan(
                plan.id, expected_version=plan.version, expected_epoch=plan.epoch, intent=claim
            )
            faults.reach("claim.after")
            # This process's readers take the intent's values for every key before the
            # first write: a reader never sees one key published and another not yet.
            # (Other processes see the claim at their next sync, whose backend refresh
            # comes first, or before a watcher lets a pushed change into their mirror.)
            self._reindex("claim")
            written: list[ConfigRef] = []
            try:
                claim = self._write(plan.id, claim, values, _title(plan, action), written)
            except Conflict:
                raise  # our claim was taken over: whoever holds it now decides
            except Exception as exc:
                self._go_back(plan, claim, written, exc, now)
                raise AssertionError("unreachable") from exc
            faults.reach("commit.before")
            saved = self._store.commit_plan(
                changed,
                epoch=claim.epoch,
                log=rows,
                outbox=self._engine._outbox(rows, changed),
            )
            faults.reach("commit.after")
            return attrs.evolve(saved, epoch=claim.epoch)
        finally:
            intent.end(plan.id, claim.epoch)

    def _publish_in_commit(
        self,
        plan: Plan,
        changed: Plan,
        values: Values,
        action: Action,
        rows: list[LogRecord],
        now: datetime,
    ) -> Plan:
        """The values and the new state in one transaction of the shared database: a loser
        of a race or a crash at any point leaves both as they were."""
        joined = self._joined
        assert joined is not None

        def publish(connection: Any) -> None:
            joined.publish_in(connection, values, actor=changed.updated_by)
            faults.reach("publish.joined")

        store = cast(SharedDatabaseStore, self._store)
        faults.reach("commit.before")
        try:
            saved = store.save_plan(
                changed,
                expected_version=plan.version,
                log=rows,
                outbox=self._engine._outbox(rows, changed),
                join=publish,
            )
        except GrayReleaseError:
            raise  # a stale version, an overlap: refused, nothing written
        except Exception as exc:
            reason = f"publishing {', '.join(r.config_key for r in values)} failed: {exc}; "
            reason += "nothing was changed"
            self._failed(plan, FAILED[action.value], changed.updated_by, reason, now)
            raise BackendError(reason, details={"unrestoredKeys": []}) from exc
        faults.reach("commit.after")
        try:
            joined.refresh()
        except Exception:
            # Committed: the next sync refreshes the mirror (the settle overlay serves the
            # new values meanwhile).
            log.exception("grayrelease: backend refresh after publishing plan %s failed", plan.id)
        return saved

    def _failed(self, plan: Plan, event: str, actor: str, reason: str, now: datetime) -> None:
        """A ``*_FAILED`` audit row for an action that changed nothing, and its event."""
        row = _failed_row(plan, event, actor, reason, now)
        self._store.append_log(row, self._engine._outbox([row], plan))
        self._engine._emit(PlanEvent(event, plan, plan, actor, now, reason))

    def _snapshot(self, values: Values) -> Values:
        """What each key holds now: the backend is refreshed first, so a stale mirror is not
        taken for the truth a restore goes back to."""
        self._backend.refresh()
        return {ref: self._engine._read_backend(ref) for ref in values}

    def _write(
        self,
        plan_id: str,
        claim: Intent,
        values: Values,
        title: str,
        written: list[ConfigRef],
    ) -> Intent:
        """Publish ``values``, all together where the backend can, else key by key; the
        claim is checked (and its lease renewed) before each write, so a writer that lost
        it stops. Returns the claim as it now stands."""
        actor = claim.actor
        together = getattr(self._backend, "publish_all", None)
        if together is not None:
            claim = self._fence(plan_id, claim)
            together(values, actor=actor, title=title)
            written.extend(values)
            faults.reach("publish.all")
            return claim
        for n, (ref, value) in enumerate(values.items(), start=1):
            claim = self._fence(plan_id, claim)
            self._backend.publish(ref, value, actor=actor)
            written.append(ref)
            faults.reach(f"publish.key.{n}")
        return claim

    def _fence(self, plan_id: str, claim: Intent) -> Intent:
        """Check the claim is still ours; past half its lease, renew it, so a slow backend
        does not let a process on another host take a live holder for a dead one."""
        now = self._engine.clock.now()
        try:
            if claim.lease_until - now < self._lease / 2:
                renewed = attrs.evolve(claim, lease_until=now + self._lease)
                self._store.replace_intent(plan_id, expected_epoch=claim.epoch, intent=renewed)
                return renewed
            if self._store.holds_claim(plan_id, claim.epoch):
                return claim
        except Conflict:
            pass
        raise Conflict(
            f"plan {plan_id}: this action's claim (epoch {claim.epoch}) was taken over by "
            "recovery; nothing more was published. Reload the plan to see how it ended",
            details={"planId": plan_id, "epoch": claim.epoch},
        )

    def _go_back(
        self, plan: Plan, claim: Intent, written: list[ConfigRef], exc: Exception, now: datetime
    ) -> None:
        """The backend failed: record that the action goes back, restore, release, tell.

        If going back cannot be recorded (the database is unreachable), nothing is restored:
        the intent still says forward, and recovery will finish the action as asked.
        """
        targets = claim.refs(plan.app_name, plan.environment, plan.group_name)
        failing = next((ref for ref in targets if ref not in written), None)
        keys = [failing] if failing is not None else plan.refs
        what = ", ".join(ref.config_key for ref in keys)
        back = attrs.evolve(
            claim, direction=Direction.BACK, lease_until=self._engine.clock.now() + self._lease
        )
        try:
            self._store.replace_intent(plan.id, expected_epoch=claim.epoch, intent=back)
        except Exception as store_exc:
            log.exception("grayrelease: could not record going back on plan %s", plan.id)
            raise BackendError(
                f"publishing {what} failed: {exc}; and the database could not record the undo "
                f"({store_exc}), so the action stays pending: recovery will finish it",
                details={"configKey": keys[0].config_key, "pending": True},
            ) from exc
        restore = {ref: claim.before[ref.config_key] for ref in written}
        unrestored = self._restore(
            restore, claim.actor, f"undo {_title(plan, Action(claim.action))}"
        )
        if unrestored:
            reason = (
                f"publishing {what} failed: {exc}; and restoring {', '.join(unrestored)} failed "
                "too: recovery keeps trying to restore them"
            )
            raise BackendError(
                reason, details={"configKey": keys[0].config_key, "unrestoredKeys": unrestored}
            ) from exc
        reason = f"publishing {what} failed: {exc}; nothing was changed"
        self._release(plan, back, reason, now)
        raise BackendError(
            reason, details={"configKey": keys[0].config_key, "unrestoredKeys": []}
        ) from exc

    def _restore(self, before: Values, actor: str, title: str) -> list[str]:
        """Publish the snapshot back; returns the keys that could not be restored."""
        if not before:
            return []
        together = getattr(self._backend, "publish_all", None)
        if together is not None:
            try:
                together(before, actor=actor, title=title)
            except Exception:
                log.exception("grayrelease: could not restore %s", title)
                return [ref.config_key for ref in before]
            return []
        failed = []
        for ref, value in before.items():
            try:
                self._backend.publish(ref, value, actor=actor)
            except Exception:
                log.exception("grayrelease: could not restore %s", ref)
                failed.append(ref.config_key)
        return failed

    def _release(
        self, plan: Plan, claim: Intent, reason: str, now: datetime, *, gone: str | None = None
    ) -> None:
        """Clear the claim with a ``*_FAILED`` audit row (no state change), and tell."""
        details = _recovery_details(claim, gone) if gone else None
        row = _failed_row(plan, FAILED[claim.action], claim.actor, reason, now, details)
        self._store.release_plan(
            plan.id, epoch=claim.epoch, log=[row], outbox=self._engine._outbox([row], plan)
        )
        self._engine._emit(PlanEvent(row.action, plan, plan, claim.actor, now, reason, row.details))

    def _reindex(self, event: str) -> None:
        try:
            self._engine.refresh_index()
        except Exception:
            # Committed all the same; the next sync rebuilds the index.
            log.exception("grayrelease: index refresh after %s failed", event)

    # --- recovering ------------------------------------------------------------------------

    def recover(self, now: datetime) -> Recovery:
        """Finish every intent whose holder is gone: forward (publish the intent's values
        again, then commit its state with one audit row naming the recovery), or back when
        the intent says so (restore the snapshot, release with a ``*_FAILED`` row)."""
        done = Recovery()
        for plan in self._store.open_intents():
            held = plan.intent
            assert held is not None
            if intent.holder_alive(held, plan.id, now):
                continue
            claim = attrs.evolve(
                held,
                epoch=plan.epoch + 1,
                owner=intent.owner_id(),
                lease_until=now + self._lease,
            )
            intent.begin(plan.id, claim.epoch)
            try:
                try:
                    self._store.replace_intent(plan.id, expected_epoch=plan.epoch, intent=claim)
                except Conflict:
                    continue  # another process is recovering it
                self._reindex("recovery claim")  # this process's readers: the overlay
                faults.reach("recover.before")
                if claim.direction is Direction.FORWARD:
                    try:
                        self._roll_forward(plan, claim, held.owner, now)
                    except Exception as exc:
                        if now - claim.claimed_at < self._give_up:
                            raise
                        self._give_up_forward(plan, claim, held.owner, exc, now)
                        done.undone.append(plan.id)
                    else:
                        done.finished.append(plan.id)
                else:
                    self._roll_back(plan, claim, held.owner, now)
                    done.undone.append(plan.id)
                faults.reach("recover.after")
            except GrayReleaseError as exc:
                done.errors.append(f"{plan.id}: recovery waits: {exc.message}")
            except Exception as exc:
                log.exception("grayrelease: recovering plan %s failed", plan.id)
                done.errors.append(f"{plan.id}: recovery waits: {exc}")
            finally:
                intent.end(plan.id, claim.epoch)
        if done.finished or done.undone:
            self._reindex("recovery")
        return done

    def _roll_forward(self, plan: Plan, claim: Intent, gone: str, now: datetime) -> None:
        engine = self._engine
        values = claim.refs(plan.app_name, plan.environment, plan.group_name)
        self._backend.refresh()
        action = Action(claim.action)
        claim = self._write(plan.id, claim, values, _title(plan, action), [])
        ended = finished if claim.status_after is PlanStatus.COMPLETED else rolled_back
        changed = attrs.evolve(
            ended(plan, now),
            status=claim.status_after,
            updated_by=claim.actor,
            updated_at=now,
            version=plan.version + 1,
            intent=None,
            settle_until=now + self._settle,
        )
        message = claim.message or f"finished by recovery: {gone} stopped half-way"
        row = engine._log(
            attrs.evolve(plan, intent=None),
            changed,
            claim.event,
            claim.actor,
            now,
            message,
            _recovery_details(claim, gone),
        )
        saved = self._store.commit_plan(
            changed, epoch=claim.epoch, log=[row], outbox=engine._outbox([row], changed)
        )
        before = attrs.evolve(plan, intent=None)
        engine._emit(PlanEvent(claim.event, saved, before, claim.actor, now, message, row.details))

    def _give_up_forward(
        self, plan: Plan, claim: Intent, gone: str, exc: Exception, now: datetime
    ) -> None:
        """The backend has refused the action for ``GIVE_UP_LEASES`` leases: record that it
        goes back, then restore the snapshot (a failure there is retried, backwards, at the
        next tick)."""
        back = attrs.evolve(claim, direction=Direction.BACK)
        self._store.replace_intent(plan.id, expected_epoch=claim.epoch, intent=back)
        log.error(
            "grayrelease: plan %s: %s could not be finished since %s (%s); undoing it",
            plan.id,
            claim.action,
            claim.claimed_at.isoformat(),
            exc,
        )
        reason = (
            f"recovery undid {claim.action}: the backend refused it from "
            f"{claim.claimed_at.isoformat()} on (last: {exc}), after {gone} stopped half-way"
        )
        self._roll_back(plan, back, gone, now, reason)

    def _roll_back(
        self, plan: Plan, claim: Intent, gone: str, now: datetime, reason: str = ""
    ) -> None:
        restore = claim.restores(plan.app_name, plan.environment, plan.group_name)
        claim = self._fence(plan.id, claim)
        # Which keys the stopped actor wrote is unknown: restore those that differ (a key
        # never written, on a backend that refuses it, must not block the undo).
        self._backend.refresh()
        restore = {
            ref: value for ref, value in restore.items() if self._engine._read_backend(ref) != value
        }
        unrestored = self._restore(
            restore, claim.actor, f"undo {_title(plan, Action(claim.action))}"
        )
        if unrestored:
            raise BackendError(f"restoring {', '.join(unrestored)} failed")
        keys = ", ".join(sorted(claim.before))
        if not reason:
            reason = f"recovery restored {keys}: {gone} stopped while undoing a failed publish"
        self._release(plan, claim, reason, now, gone=gone)


def finished(plan: Plan, now: datetime) -> Plan:
    """A plan as its completion leaves it (every key published, 100%)."""
    return attrs.evolve(
        plan,
        items=tuple(attrs.evolve(i, status=ItemStatus.PUBLISHED) for i in plan.items),
        progress=attrs.evolve(plan.progress, percentage=100.0, next_step_at=None),
        finished_at=now,
    )


def rolled_back(plan: Plan, now: datetime) -> Plan:
    """A plan as its rollback leaves it (every key back to its original)."""
    return attrs.evolve(
        plan,
        items=tuple(attrs.evolve(i, status=ItemStatus.ROLLED_BACK) for i in plan.items),
        progress=attrs.evolve(plan.progress, next_step_at=None),
        finished_at=now,
    )


def _failed_row(
    plan: Plan,
    event: str,
    actor: str,
    reason: str,
    now: datetime,
    details: Mapping[str, Any] | None = None,
) -> LogRecord:
    """The audit row of a publishing action that left the plan as it was."""
    return LogRecord(
        plan.id,
        event,
        actor,
        now,
        plan.status,
        plan.status,
        message=reason,
        details=details,
        app_name=plan.app_name,
        environment=plan.environment,
    )


def _title(plan: Plan, action: Action) -> str:
    """How a publish names itself in the config center's history (an Apollo release)."""
    return f"{action.value} {plan.name} ({plan.id})"


def _recovery_details(claim: Intent, gone: str) -> dict[str, Any]:
    """What an audit row written by recovery says about it."""
    return {
        "recovery": {
            "direction": claim.direction.value,
            "epoch": claim.epoch,
            "by": claim.owner,
            "stoppedOwner": gone,
            "claimedAt": claim.claimed_at.isoformat(),
        }
    }
