"""What one tick decides for one ACTIVE plan, as pure functions of the plan, its verdict and
the time: the engine does the reading and writing around them.

A plan is analyzed every analysis interval (``autoRollback.interval``, else the canary's
``stepInterval`` up to 30 minutes, else 5 minutes). A stepped plan (``CANARY``) with checks
takes its next step when the step is due *and* an analysis has passed since the current stage
began; completes by itself only after a pass since it reached the top. An inconclusive or
failed analysis, or none, holds it: missing data never moves a plan. Failed intervals count
towards ``failureThreshold``; a failed critical check rolls the plan back at once.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from .access import SYSTEM_ACTOR as SYSTEM_ACTOR
from .judge import Outcome, Verdict, evidence_key
from .models import LogRecord, Plan, Progress
from .outbox import DeliveryReport
from .store import ProgressChange
from .strategy import StepSchedule
from .wire import timestamp

"""The actor of what the ticker does on its own (steps, verdicts, automatic rollbacks)."""
DEFAULT_ANALYSIS_MINUTES = 5
MAX_DEFAULT_MINUTES = 30


class Move(enum.StrEnum):
    WAIT = "WAIT"
    """Nothing to do but record the verdict, if any."""
    HOLD = "HOLD"
    """A step was due but the analysis did not pass: try again next interval."""
    STEP = "STEP"
    COMPLETE = "COMPLETE"
    ROLLBACK = "ROLLBACK"


@attrs.frozen
class Due:
    analysis: bool
    step: bool

    def __bool__(self) -> bool:
        return self.analysis or self.step


@attrs.frozen
class Decision:
    move: Move
    progress: Progress
    """The plan's progress after the decision (analysis counters included)."""
    reason: str = ""


@attrs.define
class TickReport:
    """What one tick did, for the CLI, the logs and the tests."""

    at: datetime
    started: list[str] = attrs.Factory(list)
    stepped: list[str] = attrs.Factory(list)
    completed: list[str] = attrs.Factory(list)
    rolled_back: list[str] = attrs.Factory(list)
    held: list[str] = attrs.Factory(list)
    analyses: dict[str, int] = attrs.Factory(dict)
    """Verdicts reached, by outcome (``PASS``, ``INCONCLUSIVE``, ``FAIL``)."""
    lost: list[str] = attrs.Factory(list)
    """Plans another process (or an operator) changed first; their decisions stand."""
    recovered: list[str] = attrs.Factory(list)
    """Plans whose half-done action (its process stopped) this tick finished or undid."""
    errors: list[str] = attrs.Factory(list)
    notifications: DeliveryReport | None = None
    """What the tick's delivery run sent (``None``: it failed, see the log)."""

    def count(self, plan_id: str, verdict: Verdict | None, decision: Decision) -> None:
        if verdict is not None:
            key = verdict.outcome.value
            self.analyses[key] = self.analyses.get(key, 0) + 1
        if decision.move is Move.HOLD:
            self.held.append(plan_id)

    def to_wire(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat(),
            "started": self.started,
            "stepped": self.stepped,
            "completed": self.completed,
            "rolledBack": self.rolled_back,
            "recovered": self.recovered,
            "held": self.held,
            "analyses": self.analyses,
            "lost": self.lost,
            "errors": self.errors,
            "notifications": self.notifications.to_wire() if self.notifications else None,
        }


def analysis_interval(plan: Plan, schedule: StepSchedule | None) -> timedelta:
    """``autoRollback.interval``; else the step interval, at most ``MAX_DEFAULT_MINUTES`` (a
    week-long step must not leave a failure unseen for a week); else 5 minutes."""
    rules = plan.auto_rollback
    if rules is not None and rules.interval is not None:
        return timedelta(minutes=rules.interval)
    if schedule is not None:
        return timedelta(minutes=min(schedule.interval, MAX_DEFAULT_MINUTES))
    return timedelta(minutes=DEFAULT_ANALYSIS_MINUTES)


def due(plan: Plan, schedule: StepSchedule | None, now: datetime) -> Due:
    """Whether ``plan`` needs an analysis, a step (or both) at ``now``."""
    progress = plan.progress
    origin = progress.analyzed_at or plan.started_at
    has_checks = plan.auto_rollback is not None and bool(plan.auto_rollback.checks)
    analysis = (
        has_checks and origin is not None and now >= origin + analysis_interval(plan, schedule)
    )
    step = (
        schedule is not None and progress.next_step_at is not None and progress.next_step_at <= now
    )
    return Due(analysis, step)


def decide(
    plan: Plan, schedule: StepSchedule | None, verdict: Verdict | None, when: Due, now: datetime
) -> Decision:
    """Roll back, complete, step, hold, or only record the verdict."""
    progress = plan.progress
    if verdict is not None:
        # Only a look at which a per-look relative test ran spends alpha, so only it counts.
        progress = attrs.evolve(
            progress,
            analyses=progress.analyses + int(verdict.tested),
            # Never backwards: a ticker whose clock lags another's must not reopen a window.
            analyzed_at=max(now, progress.analyzed_at) if progress.analyzed_at else now,
            passed_at=now if verdict.outcome is Outcome.PASS else progress.passed_at,
            evidence=_evidence_after(progress, verdict),
        )
        if verdict.outcome is Outcome.FAIL:
            progress = attrs.evolve(progress, failures=progress.failures + 1)
            assert plan.auto_rollback is not None
            threshold = plan.auto_rollback.failure_threshold
            if verdict.critical_failure:
                return Decision(Move.ROLLBACK, progress, f"critical check failed: {_why(verdict)}")
            if progress.failures >= threshold:
                return Decision(
                    Move.ROLLBACK,
                    progress,
                    f"{progress.failures} failed analyses (failureThreshold {threshold}): "
                    + _why(verdict),
                )
    if not when.step or schedule is None:
        return Decision(Move.WAIT, progress)
    guarded = plan.auto_rollback is not None and bool(plan.auto_rollback.checks)
    at_top = progress.percentage >= schedule.max_percentage
    # The stage starts at every step, at the top, and at a resume (the paused time was not
    # watched): a pass from before it says nothing about what clients get now.
    since = progress.stage_started_at or (progress.top_reached_at if at_top else None)
    passed = progress.passed_at is not None and (since is None or progress.passed_at > since)
    if guarded and (verdict is None or verdict.outcome is not Outcome.PASS) and not passed:
        retry = now + min(timedelta(minutes=schedule.interval), analysis_interval(plan, schedule))
        what = verdict.outcome.value.lower() if verdict is not None else "not run"
        return Decision(
            Move.HOLD,
            attrs.evolve(progress, next_step_at=retry),
            f"{'completion' if at_top else 'step'} held: analysis {what}, and none has "
            f"passed since this stage began",
        )
    if verdict is not None and verdict.outcome is not Outcome.PASS:
        retry = now + min(timedelta(minutes=schedule.interval), analysis_interval(plan, schedule))
        return Decision(
            Move.HOLD,
            attrs.evolve(progress, next_step_at=retry),
            f"step held: analysis {verdict.outcome.value.lower()}",
        )
    if at_top:
        bake_end = (progress.top_reached_at or now) + timedelta(minutes=schedule.bake_time)
        if schedule.auto_complete and now >= bake_end:
            return Decision(
                Move.COMPLETE,
                attrs.evolve(progress, next_step_at=None),
                f"completed automatically after {schedule.bake_time} minutes at "
                f"{progress.percentage:g}%",
            )
        next_at = bake_end if schedule.auto_complete else None
        return Decision(Move.WAIT, attrs.evolve(progress, next_step_at=next_at))
    return Decision(Move.STEP, advance(progress, schedule, now))


def advance(progress: Progress, schedule: StepSchedule, now: datetime) -> Progress:
    """One step up the schedule; at the top, the bake time (or nothing) is what comes next."""
    step = progress.step + 1
    percentage = max(progress.percentage, schedule.percentage_after(step))
    if percentage >= schedule.max_percentage:
        return to_top(attrs.evolve(progress, step=step), percentage, schedule, now)
    return attrs.evolve(
        progress,
        step=step,
        percentage=percentage,
        next_step_at=now + timedelta(minutes=schedule.interval),
        stage_started_at=now,
    )


def to_top(
    progress: Progress, percentage: float, schedule: StepSchedule | None, now: datetime
) -> Progress:
    """At the top: the bake time starts now; the plan completes after it if it auto-completes."""
    auto = schedule is not None and schedule.auto_complete
    bake = timedelta(minutes=schedule.bake_time if schedule else 0)
    return attrs.evolve(
        progress,
        percentage=percentage,
        top_reached_at=now,
        next_step_at=now + bake if auto else None,
        stage_started_at=now,
    )


def _evidence_after(progress: Progress, verdict: Verdict) -> Mapping[str, Any] | None:
    """The rate checks' sequential evidence with this look's added (others kept as they were)."""
    updated = {
        evidence_key(index, result.check): result.evidence.to_json()
        for index, result in enumerate(verdict.results)
        if result.evidence is not None
    }
    if not updated:
        return progress.evidence
    return {**(progress.evidence or {}), **updated}


def _why(verdict: Verdict) -> str:
    return "; ".join(f"{r.check.metric}: {r.reason}" for r in verdict.failed)


def verdict_log(plan: Plan, verdict: Verdict, now: datetime) -> LogRecord:
    """The audit row of a verdict: its summary, and every check's inputs and statistics."""
    action = {Outcome.PASS: "ANALYSIS_PASSED", Outcome.FAIL: "ANALYSIS_FAILED"}.get(
        verdict.outcome, "ANALYSIS_INCONCLUSIVE"
    )
    return LogRecord(
        plan.id,
        action,
        SYSTEM_ACTOR,
        now,
        plan.status,
        plan.status,
        message=verdict.summary(),
        details=verdict.to_wire(),
        app_name=plan.app_name,
        environment=plan.environment,
    )


def progress_change(
    plan: Plan, decision: Decision, rows: list[LogRecord], now: datetime
) -> ProgressChange:
    """What to save for a decision short of ending the plan, with its audit rows."""
    changed = attrs.evolve(plan, progress=decision.progress)
    if decision.move is Move.STEP:
        changed = attrs.evolve(changed, updated_by=SYSTEM_ACTOR, updated_at=now)
        # The step is all the details say; a copy of the plan per step and plan would make a
        # tick over many plans mostly JSON encoding.
        rows.append(
            LogRecord(
                plan.id,
                "STEPPED",
                SYSTEM_ACTOR,
                now,
                plan.status,
                plan.status,
                message=f"{plan.progress.percentage:g}% -> {decision.progress.percentage:g}%",
                details={
                    "fromPercentage": plan.progress.percentage,
                    "toPercentage": decision.progress.percentage,
                    "step": decision.progress.step,
                    "nextStepAt": timestamp(decision.progress.next_step_at),
                },
                app_name=plan.app_name,
                environment=plan.environment,
            )
        )
    elif decision.move is Move.HOLD:
        rows.append(
            LogRecord(
                plan.id,
                "HELD",
                SYSTEM_ACTOR,
                now,
                plan.status,
                plan.status,
                message=decision.reason,
                details={"nextStepAt": timestamp(decision.progress.next_step_at)},
                app_name=plan.app_name,
                environment=plan.environment,
            )
        )
    return ProgressChange(changed, plan.version, tuple(rows), reindex=decision.move is Move.STEP)
