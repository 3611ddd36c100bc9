"""The ticker, driven tick by tick with a manual clock: canary steps gated by the judge,
automatic rollback and completion, scheduled starts, promotion, and racing tickers."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from grayrelease_core import (
    Client,
    ConfigRef,
    GrayRelease,
    InvalidTransition,
    ManualClock,
    PlanEvent,
    PlanStatus,
    ValidationError,
    hookimpl,
)
from grayrelease_core.metrics import Check, Counts, MetricQuery, Observation

KEY = ConfigRef("cache-service", "prod", "default", "redis.cluster.nodes")
CANARY_IP = "192.168.1.200"
CLIENTS = [Client(f"pod-{n:04d}", f"10.0.{n // 250}.{n % 250}") for n in range(2000)]


def canary_body(*, checks: list[dict[str, Any]] | None = None, **canary: Any) -> dict[str, Any]:
    """The spec's canary scenario with gray values (and checks when given)."""
    rules = {
        "canaryInstances": [CANARY_IP],
        "stepPercentage": 20,
        "stepInterval": 30,
        **canary,
    }
    body: dict[str, Any] = {
        "planName": "缓存配置金丝雀发布",
        "appName": KEY.app_name,
        "environment": KEY.environment,
        "configKeys": [KEY.config_key],
        "grayStrategy": "CANARY",
        "grayRules": {"canary": rules},
        "grayValues": {KEY.config_key: "10.0.0.9:6379"},
    }
    if checks is not None:
        body["autoRollback"] = {"checks": checks}
    return body


ERROR_RATE = {"metric": "errorRate", "maxIncrease": 0.2, "minSamples": 10}
ERROR_CAP = {"metric": "errorRate", "threshold": 0.05}
"""An absolute check: it still decides at 100%, where the relative one has no baseline."""


class Recorder:
    """A plugin that keeps every plan event."""

    def __init__(self) -> None:
        self.events: list[PlanEvent] = []

    @hookimpl
    def grayrelease_plan_event(self, event: PlanEvent) -> None:
        self.events.append(event)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def tgr(sqlite_url: str, clock: ManualClock, recorder: Recorder) -> Iterator[GrayRelease]:
    settings = {"database_url": sqlite_url, "background_sync": False}
    with GrayRelease.from_settings(
        settings, clock=clock, plugins=(recorder,), load_entrypoints=False
    ) as gr:
        gr.backend.publish(KEY, "10.0.0.1:6379", actor="ops")
        yield gr


def push(
    gr: GrayRelease,
    plan_id: str,
    rng: random.Random,
    *,
    gray_rate: float,
    base_rate: float = 0.01,
    count: int = 20,
    key: ConfigRef = KEY,
) -> None:
    """Error-rate samples of 20 gray and 40 baseline instances, as agents would send them.

    The gray instances first read the key (as canary instances, by address), so the plan
    records them as having received the gray value."""
    for n in range(count):
        assert gr.resolve(key, Client(f"g{n}", CANARY_IP)).gray
    samples = [
        {
            "instanceId": f"g{n}",
            "gray": True,
            "metric": "errorRate",
            "value": rng.gauss(gray_rate, 0.002),
        }
        for n in range(count)
    ] + [
        {
            "instanceId": f"b{n}",
            "gray": False,
            "metric": "errorRate",
            "value": rng.gauss(base_rate, 0.002),
        }
        for n in range(2 * count)
    ]
    assert gr.push_metrics(plan_id, {"samples": samples}, actor="agent") == 3 * count


def interval(
    gr: GrayRelease,
    clock: ManualClock,
    plan_id: str,
    rng: random.Random | None,
    *,
    gray_rate: float = 0.01,
    base_rate: float = 0.01,
) -> None:
    """Half an interval, samples (when ``rng``), the other half, then a tick."""
    clock.advance(timedelta(minutes=15))
    if rng is not None:
        push(gr, plan_id, rng, gray_rate=gray_rate, base_rate=base_rate)
    clock.advance(timedelta(minutes=15))
    gr.tick()


def gray_share(gr: GrayRelease) -> set[str]:
    return {c.instance_id for c in CLIENTS if gr.resolve(KEY, c).gray}


def actions(gr: GrayRelease, plan_id: str) -> list[str]:
    return [row.action for row in gr.plan_logs(plan_id, page_size=200).items]


def test_a_healthy_canary_widens_step_by_step_then_completes_after_its_bake_time(
    tgr: GrayRelease, clock: ManualClock, recorder: Recorder
) -> None:
    body = canary_body(checks=[ERROR_RATE, ERROR_CAP], autoComplete=True, bakeTime=60)
    plan = tgr.start(tgr.create_plan(body, actor="alice").id, actor="alice")
    rng = random.Random(7)
    assert gray_share(tgr) == set()
    assert tgr.resolve(KEY, Client("canary-1", CANARY_IP)).gray
    previous: set[str] = set()
    for expected in (20, 40, 60, 80, 100):
        interval(tgr, clock, plan.id, rng, gray_rate=0.01)
        current = tgr.get_plan(plan.id)
        assert current.progress.percentage == expected
        share = gray_share(tgr)
        assert abs(len(share) / len(CLIENTS) - expected / 100) < 0.05
        assert previous <= share  # widening never drops a client
        previous = share
    interval(tgr, clock, plan.id, rng, gray_rate=0.01)  # 30 of 60 minutes baked
    assert tgr.get_plan(plan.id).status is PlanStatus.ACTIVE
    interval(tgr, clock, plan.id, rng, gray_rate=0.01)
    done = tgr.get_plan(plan.id)
    assert done.status is PlanStatus.COMPLETED
    assert tgr.backend.get(KEY) == "10.0.0.9:6379"
    log = actions(tgr, plan.id)
    assert log.count("STEPPED") == 5
    assert log.count("ANALYSIS_PASSED") == 7
    assert "ANALYSIS_FAILED" not in log
    assert log[-2:] == ["ANALYSIS_PASSED", "COMPLETED"]
    completed = tgr.plan_logs(plan.id, page_size=200).items[-1]
    assert completed.actor == plan.created_by  # who armed the completion; the ticker acts
    assert "by the ticker" in completed.message
    assert "after 60 minutes" in completed.message
    stepped = [e for e in recorder.events if e.action == "STEPPED"]
    assert [e.details["toPercentage"] for e in stepped if e.details] == [20, 40, 60, 80, 100]


def test_a_canary_whose_gray_error_rate_rises_rolls_back_on_its_own(
    tgr: GrayRelease, clock: ManualClock, recorder: Recorder
) -> None:
    plan = tgr.start(tgr.create_plan(canary_body(checks=[ERROR_RATE]), actor="a").id, actor="a")
    rng = random.Random(3)
    interval(tgr, clock, plan.id, rng, gray_rate=0.01)
    assert tgr.get_plan(plan.id).progress.percentage == 20
    interval(tgr, clock, plan.id, rng, gray_rate=0.03)
    rolled = tgr.get_plan(plan.id)
    assert rolled.status is PlanStatus.ROLLBACK
    assert rolled.progress.percentage == 20  # it stopped where it was
    assert rolled.progress.failures == 1
    assert gray_share(tgr) == set()
    assert not tgr.resolve(KEY, Client("canary-1", CANARY_IP)).gray
    assert tgr.backend.get(KEY) == "10.0.0.1:6379"
    rows = tgr.plan_logs(plan.id, page_size=200).items
    assert [r.action for r in rows[-2:]] == ["ANALYSIS_FAILED", "AUTO_ROLLBACK"]
    verdict, rollback = rows[-2:]
    assert verdict.details is not None
    check = verdict.details["checks"][0]
    assert check["outcome"] == "FAIL"
    assert check["grayMean"] > 0.025 > 0.015 > check["baselineMean"]
    assert check["pValue"] < check["alpha"] == pytest.approx(0.025 / 6)  # the second look
    assert rollback.actor == "system"
    assert "errorRate" in rollback.message
    told_verdict, told_rollback = recorder.events[-2:]
    assert [told_verdict.action, told_rollback.action] == ["ANALYSIS_FAILED", "AUTO_ROLLBACK"]
    assert told_verdict.details == verdict.details  # plugins hear the numbers, as the log has


def test_missing_metrics_hold_the_canary_and_never_roll_it_back(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    plan = tgr.start(tgr.create_plan(canary_body(checks=[ERROR_RATE]), actor="a").id, actor="a")
    for _ in range(4):
        interval(tgr, clock, plan.id, None)
    held = tgr.get_plan(plan.id)
    assert (held.status, held.progress.percentage, held.progress.failures) == (
        PlanStatus.ACTIVE,
        0,
        0,
    )
    log = actions(tgr, plan.id)
    assert log.count("ANALYSIS_INCONCLUSIVE") == 4
    assert log.count("HELD") == 4
    assert "no instance has received the gray value" in tgr.plan_logs(plan.id).items[-2].message
    interval(tgr, clock, plan.id, random.Random(1), gray_rate=0.01)
    assert tgr.get_plan(plan.id).progress.percentage == 20  # data came back: it moves on


class BrokenSource:
    """A metric source that always fails, as a down server does."""

    name = "broken"
    wants_instances = False

    def validate_check(self, check: object, field: str) -> None:
        return None

    def fetch(self, queries: Sequence[MetricQuery]) -> list[Observation | Exception]:
        raise TimeoutError("no answer within 10 s")

    @hookimpl
    def grayrelease_register_metric_sources(self) -> list[BrokenSource]:
        return [self]


def test_a_failing_metric_source_is_inconclusive_never_a_pass_nor_a_rollback(
    sqlite_url: str, clock: ManualClock
) -> None:
    settings = {"database_url": sqlite_url, "background_sync": False}
    with GrayRelease.from_settings(
        settings, clock=clock, plugins=(BrokenSource(),), load_entrypoints=False
    ) as gr:
        check = {"metric": "errorRate", "source": "broken", "threshold": 0.05, "critical": True}
        plan = gr.start(gr.create_plan(canary_body(checks=[check]), actor="a").id, actor="a")
        for _ in range(3):
            interval(gr, clock, plan.id, None)
        held = gr.get_plan(plan.id)
        assert (held.status, held.progress.percentage) == (PlanStatus.ACTIVE, 0)
        verdict = gr.plan_logs(plan.id).items[-2]
        assert verdict.action == "ANALYSIS_INCONCLUSIVE"
        assert "no answer within 10 s" in verdict.message


def test_failure_threshold_counts_failed_intervals_and_a_critical_check_needs_one(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    lenient = canary_body(checks=[ERROR_RATE])
    lenient["autoRollback"]["failureThreshold"] = 2
    plan = tgr.start(tgr.create_plan(lenient, actor="a").id, actor="a")
    rng = random.Random(5)
    interval(tgr, clock, plan.id, rng, gray_rate=0.03)
    first = tgr.get_plan(plan.id)
    assert (first.status, first.progress.failures, first.progress.percentage) == (
        PlanStatus.ACTIVE,
        1,
        0,
    )
    interval(tgr, clock, plan.id, rng, gray_rate=0.03)
    assert tgr.get_plan(plan.id).status is PlanStatus.ROLLBACK

    strict = canary_body(checks=[{**ERROR_RATE, "critical": True}])
    strict["autoRollback"]["failureThreshold"] = 3
    other = tgr.start(tgr.create_plan(strict, actor="a").id, actor="a")
    interval(tgr, clock, other.id, rng, gray_rate=0.03)
    rolled = tgr.get_plan(other.id)
    assert rolled.status is PlanStatus.ROLLBACK
    assert "critical check failed" in tgr.plan_logs(other.id).items[-1].message


def test_an_absolute_threshold_fails_on_the_gray_mean_alone(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    check = {"metric": "errorRate", "threshold": 0.05}
    plan = tgr.start(tgr.create_plan(canary_body(checks=[check]), actor="a").id, actor="a")
    rng = random.Random(2)
    interval(tgr, clock, plan.id, rng, gray_rate=0.04, base_rate=0.04)
    assert tgr.get_plan(plan.id).progress.percentage == 20
    interval(tgr, clock, plan.id, rng, gray_rate=0.06, base_rate=0.06)
    assert tgr.get_plan(plan.id).status is PlanStatus.ROLLBACK
    assert "> threshold 0.05" in tgr.plan_logs(plan.id).items[-2].message


def test_exponential_growth_doubles_each_step_up_to_the_maximum(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    body = canary_body(stepPercentage=2, growth="exponential", maxPercentage=50)
    plan = tgr.start(tgr.create_plan(body, actor="a").id, actor="a")
    seen = []
    for _ in range(7):
        interval(tgr, clock, plan.id, None)
        seen.append(tgr.get_plan(plan.id).progress.percentage)
    assert seen == [2, 4, 8, 16, 32, 50, 50]
    final = tgr.get_plan(plan.id)
    assert (final.status, final.progress.next_step_at) == (PlanStatus.ACTIVE, None)


def test_a_paused_canary_does_not_step_and_its_clock_restarts_on_resume(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    plan = tgr.start(tgr.create_plan(canary_body(), actor="a").id, actor="a")
    tgr.pause(plan.id, actor="a")
    for _ in range(3):
        interval(tgr, clock, plan.id, None)
    assert tgr.get_plan(plan.id).progress.percentage == 0
    tgr.resume(plan.id, actor="a")
    clock.advance(timedelta(minutes=29))
    tgr.tick()
    assert tgr.get_plan(plan.id).progress.percentage == 0
    clock.advance(timedelta(minutes=1))
    tgr.tick()
    assert tgr.get_plan(plan.id).progress.percentage == 20


def test_a_scheduled_plan_starts_when_its_time_comes(tgr: GrayRelease, clock: ManualClock) -> None:
    at = clock.now() + timedelta(hours=2)
    plan = tgr.create_plan({**canary_body(), "startAt": at.isoformat()}, actor="alice")
    assert plan.start_at == at
    clock.advance(timedelta(hours=1, minutes=59))
    assert tgr.tick().started == []
    assert tgr.get_plan(plan.id).status is PlanStatus.DRAFT
    clock.advance(timedelta(minutes=1))
    assert tgr.tick().started == [plan.id]
    started = tgr.get_plan(plan.id)
    assert (started.status, started.started_at) == (PlanStatus.ACTIVE, at)
    row = tgr.plan_logs(plan.id).items[-1]
    assert (row.action, row.actor) == ("STARTED", "alice")  # for whoever scheduled it
    assert "by the ticker as alice scheduled it" in row.message
    assert tgr.tick().started == []


def test_a_scheduled_start_that_cannot_happen_is_recorded_once_and_cleared(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    holder = tgr.start(tgr.create_plan(canary_body(), actor="a").id, actor="a")
    later = clock.now() + timedelta(minutes=5)
    plan = tgr.create_plan({**canary_body(), "startAt": later.isoformat()}, actor="a")
    clock.advance(timedelta(minutes=5))
    report = tgr.tick()
    assert report.started == []
    assert holder.id in report.errors[0]
    failed = tgr.get_plan(plan.id)
    assert (failed.status, failed.start_at) == (PlanStatus.DRAFT, None)
    assert actions(tgr, plan.id)[-1] == "START_FAILED"
    tgr.tick()
    assert actions(tgr, plan.id).count("START_FAILED") == 1


def test_promote_takes_one_step_now_or_goes_to_everyone(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    plan = tgr.start(tgr.create_plan(canary_body(), actor="a").id, actor="a")
    clock.advance(timedelta(minutes=10))
    stepped = tgr.promote(plan.id, actor="bob")
    assert (stepped.progress.percentage, stepped.progress.step) == (20, 1)
    assert stepped.progress.next_step_at == clock.now() + timedelta(minutes=30)
    assert abs(len(gray_share(tgr)) / len(CLIENTS) - 0.2) < 0.05
    full = tgr.promote(plan.id, actor="bob", full=True)
    assert full.progress.percentage == 100
    assert len(gray_share(tgr)) == len(CLIENTS)
    assert full.status is PlanStatus.ACTIVE  # still served by the library until complete
    with pytest.raises(InvalidTransition):
        tgr.promote(plan.id, actor="bob")  # at the top: nothing left to step
    row = tgr.plan_logs(plan.id).items[-1]
    assert (row.action, row.actor, row.message) == ("PROMOTED", "bob", "to 100%")


def test_promote_refuses_what_has_no_percentage_and_plans_that_are_not_active(
    tgr: GrayRelease,
) -> None:
    whitelist = {
        **canary_body(),
        "grayStrategy": "IP_WHITELIST",
        "grayRules": {"ipWhitelist": [CANARY_IP]},
    }
    fixed = tgr.start(tgr.create_plan(whitelist, actor="a").id, actor="a")
    with pytest.raises(InvalidTransition) as caught:
        tgr.promote(fixed.id, actor="a", full=True)
    assert caught.value.details["grayStrategy"] == "IP_WHITELIST"
    tgr.rollback(fixed.id, actor="a")
    share = {**whitelist, "grayStrategy": "PERCENTAGE", "grayRules": {"percentage": 10}}
    percent = tgr.start(tgr.create_plan(share, actor="a").id, actor="a")
    with pytest.raises(ValidationError) as refused:
        tgr.promote(percent.id, actor="a")
    assert refused.value.field == "full"
    assert tgr.promote(percent.id, actor="a", full=True).progress.percentage == 100
    tgr.pause(percent.id, actor="a")
    with pytest.raises(InvalidTransition):
        tgr.promote(percent.id, actor="a", full=True)


def test_tick_refuses_a_naive_time(tgr: GrayRelease) -> None:
    with pytest.raises(ValidationError) as caught:
        tgr.tick(tgr.clock.now().replace(tzinfo=None))
    assert caught.value.field == "now"


# --- several tickers at once ---------------------------------------------------------------


def race(engines: list[GrayRelease], when: Any) -> None:
    """Every engine ticks at the same moment, from its own thread."""
    barrier = threading.Barrier(len(engines))
    failures: list[BaseException] = []

    def run(gr: GrayRelease) -> None:
        barrier.wait()
        try:
            gr.tick(when)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(gr,)) for gr in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_racing_tickers_take_each_step_and_each_rollback_once(
    make_gr: Any, clock: ManualClock
) -> None:
    engines = [make_gr() for _ in range(3)]
    first = engines[0]
    first.backend.publish(KEY, "10.0.0.1:6379", actor="ops")
    plan = first.start(first.create_plan(canary_body(), actor="a").id, actor="a")
    for _ in range(3):
        when = clock.advance(timedelta(minutes=30))
        race(engines, when)
    assert first.get_plan(plan.id).progress.percentage == 60
    assert actions(first, plan.id).count("STEPPED") == 3

    other = {**canary_body(checks=[ERROR_RATE]), "configKeys": ["other.key"]}
    other["grayValues"] = {"other.key": "v2"}
    failing = first.start(first.create_plan(other, actor="a").id, actor="a")
    clock.advance(timedelta(minutes=15))
    other_key = KEY._replace(config_key="other.key")
    push(first, failing.id, random.Random(9), gray_rate=0.03, key=other_key)
    first.flush_hits()  # every ticker sees the gray instances recorded, not only the first
    race(engines, clock.advance(timedelta(minutes=15)))
    log = actions(first, failing.id)
    assert log.count("AUTO_ROLLBACK") == 1
    assert log.count("ANALYSIS_FAILED") == 1
    assert first.get_plan(failing.id).status is PlanStatus.ROLLBACK


def test_a_plan_changed_between_the_ticks_read_and_write_keeps_that_change(
    make_gr: Any, clock: ManualClock
) -> None:
    ticking, operator = make_gr(), make_gr()
    plans = []
    for n in range(3):
        body = {**canary_body(), "configKeys": [f"k{n}"], "grayValues": {f"k{n}": "new"}}
        plans.append(ticking.start(ticking.create_plan(body, actor="a").id, actor="a"))
    paused = plans[1]
    store = ticking._store
    save = store.save_progress

    def pause_first(changes: Any) -> Any:  # an operator acts while the tick is deciding
        operator.pause(paused.id, actor="bob")
        return save(changes)

    store.save_progress = pause_first
    report = ticking.tick(clock.advance(timedelta(minutes=30)))
    assert sorted(report.stepped) == sorted([plans[0].id, plans[2].id])
    assert report.lost == [paused.id]
    kept = ticking.get_plan(paused.id)
    assert (kept.status, kept.progress.percentage) == (PlanStatus.PAUSED, 0)
    assert actions(ticking, paused.id)[-1] == "PAUSED"  # no step or verdict row after it
    assert [ticking.get_plan(p.id).progress.percentage for p in (plans[0], plans[2])] == [20, 20]


def test_a_rollback_by_another_process_during_a_tick_is_in_the_index_after_it(
    make_gr: Any, clock: ManualClock
) -> None:
    ticking, operator = make_gr(), make_gr()
    first = ticking.start(ticking.create_plan(canary_body(), actor="a").id, actor="a")
    other = {**canary_body(), "configKeys": ["other"], "grayValues": {"other": "new"}}
    second = ticking.start(ticking.create_plan(other, actor="a").id, actor="a")
    canary = Client("canary-1", CANARY_IP)
    other_key = KEY._replace(config_key="other")
    assert ticking.resolve(other_key, canary).gray
    store = ticking._store
    save = store.save_progress

    def rollback_and_sync(changes: Any) -> Any:
        operator.rollback(second.id, actor="bob", reason="bad")
        ticking.refresh_index(only_if_changed=True)  # this process's sync sees it
        return save(changes)

    store.save_progress = rollback_and_sync
    ticking.tick(clock.advance(timedelta(minutes=30)))
    assert ticking.get_plan(first.id).progress.percentage == 20
    assert not ticking.resolve(other_key, canary).gray  # the rollback stands in the index
    assert abs(len(gray_share(ticking)) / len(CLIENTS) - 0.2) < 0.05


def test_time_spent_paused_does_not_count_as_bake_time(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    body = canary_body(stepPercentage=100, autoComplete=True, bakeTime=60)
    plan = tgr.start(tgr.create_plan(body, actor="a").id, actor="a")
    interval(tgr, clock, plan.id, None)
    assert tgr.get_plan(plan.id).progress.percentage == 100
    clock.advance(timedelta(minutes=10))
    tgr.pause(plan.id, actor="a")
    clock.advance(timedelta(hours=5))
    tgr.resume(plan.id, actor="a")
    clock.advance(timedelta(minutes=49))
    tgr.tick()
    assert tgr.get_plan(plan.id).status is PlanStatus.ACTIVE  # 10 + 49 minutes baked
    clock.advance(timedelta(minutes=1))
    tgr.tick()
    assert tgr.get_plan(plan.id).status is PlanStatus.COMPLETED


def test_a_scheduled_start_waits_out_a_backend_failure(
    tgr: GrayRelease, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = clock.now() + timedelta(minutes=1)
    plan = tgr.create_plan({**canary_body(), "startAt": at.isoformat()}, actor="a")
    clock.advance(timedelta(minutes=1))

    def down(ref: ConfigRef) -> str:
        raise ConnectionError("config backend unreachable")

    monkeypatch.setattr(tgr.backend, "get", down)
    report = tgr.tick()
    assert report.started == []
    assert "unreachable" in report.errors[0]
    waiting = tgr.get_plan(plan.id)
    assert (waiting.status, waiting.start_at) == (PlanStatus.DRAFT, at)
    monkeypatch.undo()
    assert tgr.tick().started == [plan.id]


def test_a_failing_automatic_completion_is_retried_an_interval_later_not_every_tick(
    tgr: GrayRelease, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = canary_body(stepPercentage=100, autoComplete=True)
    plan = tgr.start(tgr.create_plan(body, actor="a").id, actor="a")
    interval(tgr, clock, plan.id, None)  # to the top; bake time 0: complete at the next tick

    def refuse(ref: ConfigRef, value: str | None, *, actor: str) -> None:
        raise ConnectionError("config backend unreachable")

    monkeypatch.setattr(tgr.backend, "publish", refuse)
    for _ in range(5):
        clock.advance(timedelta(seconds=30))
        tgr.tick()
    assert actions(tgr, plan.id).count("COMPLETE_FAILED") == 1
    assert tgr.get_plan(plan.id).status is PlanStatus.ACTIVE
    monkeypatch.undo()
    clock.advance(timedelta(minutes=30))
    tgr.tick()
    assert tgr.get_plan(plan.id).status is PlanStatus.COMPLETED


# --- issue 17: missing data never moves a plan; looks never straddle a step --------------------

RATE = {"metric": "errorRate", "maxIncrease": 0.2, "measure": "rate"}


def counted(gr: GrayRelease, plan_id: str, *, gray: int, base: int, at_gray: bool = True) -> None:
    """One minute of counted samples: 2 canary instances and 8 baseline ones, 600 requests each,
    ``gray``/``base`` errors per instance."""
    samples = [
        {
            "instanceId": f"g{n}",
            "gray": at_gray,
            "metric": "errorRate",
            "events": gray,
            "total": 600,
        }
        for n in range(2)
    ] + [
        {"instanceId": f"b{n}", "gray": False, "metric": "errorRate", "events": base, "total": 600}
        for n in range(8)
    ]
    assert gr.push_metrics(plan_id, {"samples": samples}, actor="agent") == 10


@pytest.mark.parametrize("pushed", ["nothing", "baseline only", "gray only"])
def test_invariant_a_canary_with_checks_never_steps_on_missing_data(
    tgr: GrayRelease, clock: ManualClock, pushed: str
) -> None:
    """Issue 17: with a relative check and a canary below minSamples, 100 of 100 canaries
    stepped to 20% with nothing pushed, with only baseline data, and with only gray data."""
    body = canary_body(checks=[ERROR_RATE, {**RATE, "metric": "errors"}], stepInterval=5)
    plan = tgr.start(tgr.create_plan(body, actor="a").id, actor="a")
    assert tgr.resolve(KEY, Client("canary-1", CANARY_IP)).gray
    for _ in range(12):
        clock.advance(timedelta(minutes=1))
        if pushed == "baseline only":
            counted(tgr, plan.id, gray=1, base=1, at_gray=False)
        elif pushed == "gray only":
            samples = [
                {"instanceId": "canary-1", "gray": True, "metric": m, "events": 1, "total": 600}
                for m in ("errorRate", "errors")
            ]
            tgr.push_metrics(plan.id, {"samples": samples}, actor="agent")
        tgr.tick()
    current = tgr.get_plan(plan.id)
    assert current.progress.percentage == 0
    assert current.progress.step == 0
    log = actions(tgr, plan.id)
    assert "STEPPED" not in log
    assert "ANALYSIS_PASSED" not in log
    assert "HELD" in log


def test_invariant_auto_completion_needs_a_pass_in_the_last_stage(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    """Issue 17: with pushes stopping at 100%, 97 of 100 canaries auto-completed after the bake
    time with no data. A pass before the top does not count for the completion."""
    body = canary_body(
        checks=[{"metric": "errorRate", "threshold": 0.05, "measure": "rate"}],
        stepPercentage=100,
        stepInterval=5,
        autoComplete=True,
        bakeTime=10,
    )
    plan = tgr.start(tgr.create_plan(body, actor="a").id, actor="a")
    assert tgr.resolve(KEY, Client("canary-1", CANARY_IP)).gray
    for _ in range(5):
        clock.advance(timedelta(minutes=1))
        counted(tgr, plan.id, gray=1, base=1)
        tgr.tick()
    assert tgr.get_plan(plan.id).progress.percentage == 100  # stepped on a pass
    for _ in range(40):  # far past the bake time, nothing pushed
        clock.advance(timedelta(minutes=1))
        tgr.tick()
    stuck = tgr.get_plan(plan.id)
    assert stuck.status is PlanStatus.ACTIVE
    assert stuck.progress.passed_at is not None
    assert stuck.progress.stage_started_at is not None
    assert stuck.progress.passed_at <= stuck.progress.stage_started_at  # the pass that stepped
    clock.advance(timedelta(minutes=1))
    counted(tgr, plan.id, gray=1, base=1)
    clock.advance(timedelta(minutes=5))
    tgr.tick()
    assert tgr.get_plan(plan.id).status is PlanStatus.COMPLETED


def test_invariant_a_look_never_reads_samples_from_before_the_step(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    """Issue 17: ``window: 10`` with a 5-minute interval averaged pre-step samples into the
    look after the step. The value check here would fail on the old samples (gray far above
    the cap) and pass on the new ones."""
    cap = {"metric": "latency", "threshold": 100, "window": 30, "minSamples": 1}
    body = canary_body(checks=[cap], stepInterval=5)
    plan = tgr.start(tgr.create_plan(body, actor="a").id, actor="a")
    assert tgr.resolve(KEY, Client("canary-1", CANARY_IP)).gray

    def latency(value: float) -> None:
        sample = {"instanceId": "canary-1", "gray": True, "metric": "latency", "value": value}
        tgr.push_metrics(plan.id, [sample], actor="agent")

    clock.advance(timedelta(minutes=4))
    latency(50)
    clock.advance(timedelta(minutes=1))
    tgr.tick()
    assert tgr.get_plan(plan.id).progress.percentage == 20
    stepped_at = clock.now()
    clock.advance(timedelta(minutes=2))
    latency(90)
    # A sample from before the step, far above the cap, arriving late (agents batch): the
    # window (30 minutes, clipped to the 5-minute interval) covers its time, the stage not.
    tgr.push_metrics(
        plan.id,
        [
            {
                "instanceId": "canary-1",
                "gray": True,
                "metric": "latency",
                "value": 10_000,
                "timestamp": (stepped_at - timedelta(minutes=1)).isoformat(),
            }
        ],
        actor="agent",
    )
    clock.advance(timedelta(minutes=3))
    tgr.tick()
    log = tgr.plan_logs(plan.id, page_size=200).items
    verdicts = [row for row in log if row.action.startswith("ANALYSIS_")]
    assert [row.action for row in verdicts] == ["ANALYSIS_PASSED", "ANALYSIS_PASSED"]
    details = verdicts[-1].details
    assert details is not None
    assert details["checks"][0]["grayMean"] == 90
    assert tgr.get_plan(plan.id).progress.percentage == 40


def test_invariant_a_relative_only_canary_never_completes_by_itself_at_100(
    tgr: GrayRelease, clock: ManualClock
) -> None:
    """Issue 17: at 100% a relative check has no baseline; it was SKIPPED and all-skipped was a
    PASS, so 97 of 100 canaries auto-completed after the bake time with no data."""
    body = canary_body(
        checks=[RATE], stepPercentage=100, stepInterval=5, autoComplete=True, bakeTime=10
    )
    plan = tgr.start(tgr.create_plan(body, actor="a").id, actor="a")
    assert tgr.resolve(KEY, Client("canary-1", CANARY_IP)).gray
    for _ in range(5):
        clock.advance(timedelta(minutes=1))
        counted(tgr, plan.id, gray=1, base=1)
        tgr.tick()
    assert tgr.get_plan(plan.id).progress.percentage == 100
    for _ in range(60):
        clock.advance(timedelta(minutes=1))
        tgr.tick()
    assert tgr.get_plan(plan.id).status is PlanStatus.ACTIVE
    held = [row for row in tgr.plan_logs(plan.id, page_size=200).items if row.action == "HELD"]
    assert held
    assert "completion held" in (held[-1].message or "")


class FlakySource:
    """A counting source that fails on its first ``failures`` calls, and keeps the windows
    it was asked for."""

    name = "flaky"
    wants_instances = False

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.windows: list[tuple[datetime, datetime]] = []

    def validate_check(self, check: Check, field: str) -> None:
        pass

    def fetch(self, queries: Sequence[MetricQuery]) -> list[Observation | Exception]:
        self.windows.extend((q.start, q.end) for q in queries)
        if self.failures:
            self.failures -= 1
            raise TimeoutError("no answer within 10 s")
        minutes = (queries[0].end - queries[0].start).total_seconds() / 60
        gray = Counts((minutes,), (100.0 * minutes,))
        baseline = Counts((minutes,) * 4, (100.0 * minutes,) * 4)
        return [Observation((), (), gray, baseline) for _ in queries]

    @hookimpl
    def grayrelease_register_metric_sources(self) -> list[FlakySource]:
        return [self]


def test_invariant_a_failed_look_loses_no_counts_the_next_look_covers_its_window(
    sqlite_url: str, clock: ManualClock
) -> None:
    """Issue 17 review: a rate look's window started at the last analysis even when that
    analysis could not count (source down), so those requests were never judged."""
    source = FlakySource(failures=1)
    settings = {"database_url": sqlite_url, "background_sync": False}
    with GrayRelease.from_settings(
        settings, clock=clock, plugins=(source,), load_entrypoints=False
    ) as gr:
        check = {"metric": "errors", "source": "flaky", "maxIncrease": 0.2, "measure": "rate"}
        body = canary_body(checks=[check], stepInterval=60)
        body["autoRollback"] = {"checks": [check], "interval": 5}
        plan = gr.start(gr.create_plan(body, actor="a").id, actor="a")
        assert gr.resolve(KEY, Client("canary-1", CANARY_IP)).gray
        started = clock.now()
        for _ in range(2):
            clock.advance(timedelta(minutes=5))
            gr.tick()
        first, second = source.windows
        assert first == (started, started + timedelta(minutes=5))
        assert second == (started, started + timedelta(minutes=10))  # the failed 5 included
        evidence = gr.get_plan(plan.id).progress.evidence
        assert evidence is not None
        (stored,) = evidence.values()
        assert stored["looks"] == 1
        assert stored["worseTotal"] == 1000.0  # ten minutes of 100 requests
        assert stored["until"] == (started + timedelta(minutes=10)).timestamp()
