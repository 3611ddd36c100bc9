"""The control path's edges found by review (issue 15): what readers see while a claim is
being published, which database a backend may share, whose overlay wins, who counts as gone,
how long recovery insists, and what the events of recovery carry.

Each test names the invariant it holds; each failed on the code before its fix.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import grayrelease_adapters.nacos as nacos_plugin
import pytest
from sqlalchemy import create_engine

from grayrelease_core import (
    BackendError,
    GrayRelease,
    ManualClock,
    PlanEvent,
    PlanStatus,
    faults,
    hookimpl,
    intent,
)
from grayrelease_core.control import GIVE_UP_LEASES
from grayrelease_core.sql import shared_name

from .test_crash_safety import (
    GRAY,
    KEYS,
    ORIGINAL,
    OUTSIDER,
    Crash,
    FailingMemory,
    SharedMemory,
    nacos_settings,
    plan_body,
    prepare,
    ref,
)


@pytest.fixture
def unarm() -> Any:
    yield
    faults.arm(None)


def memory_settings(tmp_path: Path) -> dict[str, Any]:
    return {"database_url": f"sqlite:///{tmp_path / 'g.db'}", "background_sync": False}


# --- readers never see a mix of old and new across one plan's keys ---------------------------


def test_the_acting_process_serves_the_intent_from_the_claim_on(
    tmp_path: Path, unarm: None
) -> None:
    """NO MIXED READS (acting process): between the first and the last key's write, a reader
    in the process that publishes gets the new value of every key, without a sync. (The index
    was refreshed only after the commit: a reader got k1 new, k2 and k3 old.)"""
    provider = SharedMemory()
    with GrayRelease.from_settings(
        {**memory_settings(tmp_path), "backend": "memory"},
        plugins=[provider],
        load_entrypoints=False,
    ) as gr:
        plan_id = prepare(gr, "complete")
        seen: list[dict[str, str | None]] = []

        def look(reached: str) -> None:
            if reached.startswith("publish.key."):
                seen.append({key: gr.resolve(ref(key), OUTSIDER).value for key in KEYS})

        faults.arm(look)
        gr.complete(plan_id, actor="alice")
    assert seen == [GRAY, GRAY, GRAY]


def test_a_watching_process_sees_the_claim_before_the_pushed_change(
    tmp_path: Path, unarm: None
) -> None:
    """NO MIXED READS (another process, pushed mirror): when Nacos tells a watching process
    that k1 changed while k2 and k3 are not yet written, that process already serves the
    intent for every key, though its own sync has not run. (It served k1 new beside k2 and
    k3 old until its next sync.)"""
    with nacos_settings(tmp_path) as settings:
        plugins: list[object] = [nacos_plugin]
        acting = GrayRelease.from_settings(settings, plugins=plugins, load_entrypoints=False)
        plan_id = prepare(acting, "complete")
        with GrayRelease.from_settings(settings, plugins=plugins, load_entrypoints=False) as other:
            assert {key: other.resolve(ref(key), OUTSIDER).value for key in KEYS} == ORIGINAL
            time.sleep(0.3)  # its watcher is listening for the three configs now
            seen: list[dict[str, str | None]] = []

            def look(reached: str) -> None:
                if reached != "publish.key.1":
                    return
                deadline = time.monotonic() + 10
                while other.backend.get(ref("k1")) != GRAY["k1"]:
                    assert time.monotonic() < deadline, "the watcher never saw k1 change"
                    time.sleep(0.02)
                seen.append({key: other.resolve(ref(key), OUTSIDER).value for key in KEYS})

            faults.arm(look)
            acting.complete(plan_id, actor="alice")
            faults.arm(None)
        acting.close()
    assert seen == [GRAY]


# --- a backend joins the store's transaction only where they share one database --------------


def test_in_memory_sqlite_store_and_sql_backend_are_two_databases(tmp_path: Path) -> None:
    """ALL OR NOTHING without a shared database: ``sqlite://`` gives the store and the sql
    backend one in-memory database each, so the backend must not join the store's
    transaction. (It did, and completing failed: no such table gray_config_value.)"""
    settings = {"database_url": "sqlite://", "backend": "sql", "background_sync": False}
    with GrayRelease.from_settings(settings, load_entrypoints=False) as gr:
        plan_id = prepare(gr, "complete")
        gr.complete(plan_id, actor="alice")
        assert gr.get_plan(plan_id).status is PlanStatus.COMPLETED
        assert {key: gr.backend.get(ref(key)) for key in KEYS} == GRAY


def test_the_name_a_database_is_compared_by_holds_no_password() -> None:
    engine = create_engine("postgresql+psycopg://gray:s3cret-pw@127.0.0.1:5432/test")
    try:
        name = shared_name(engine)
    finally:
        engine.dispose()
    assert name is not None
    assert "s3cret-pw" not in name
    assert shared_name(create_engine("sqlite://")) is None


# --- settling overlays: the plan that ended last owns a key ----------------------------------


def test_a_later_plan_on_the_same_key_owns_it_while_both_settle(tmp_path: Path) -> None:
    """VISIBILITY, newest wins: two plans complete one after the other on the same keys; the
    backend shows the second's values, and readers get them. (The first plan's settling
    overlay found the backend "lagging" behind its own values and served them instead.)"""
    with GrayRelease.from_settings(
        {**memory_settings(tmp_path), "backend": "memory"},
        plugins=[SharedMemory()],
        load_entrypoints=False,
    ) as gr:
        prepare(gr, "rollback")  # the first plan: completed, settling
        second = {key: f"newer-{key}" for key in KEYS}
        plan = gr.create_plan({**plan_body(), "grayValues": second}, actor="alice")
        gr.start(plan.id, actor="alice")
        gr.complete(plan.id, actor="alice")
        gr.sync()
        assert {key: gr.backend.get(ref(key)) for key in KEYS} == second
        assert {key: gr.resolve(ref(key), OUTSIDER).value for key in KEYS} == second


# --- who counts as gone ----------------------------------------------------------------------


def held_by(owner: str, lease_left: float) -> intent.Intent:
    now = ManualClock().now()
    return intent.Intent(
        epoch=3,
        action="complete",
        event="COMPLETED",
        actor="alice",
        owner=owner,
        claimed_at=now,
        lease_until=now + timedelta(seconds=lease_left),
        status_before=PlanStatus.ACTIVE,
        status_after=PlanStatus.COMPLETED,
        values={},
        before={},
    )


def test_a_holder_with_our_pid_but_another_nonce_is_another_process() -> None:
    """WHO COUNTS AS GONE: two containers with one host name both run as pid 1; an intent
    held by the other is not ours. (With ``host:pid:start`` it was taken for this process's
    own, and, with no thread carrying it, for a dead one at once.)"""
    now = ManualClock().now()
    mine = intent.owner_id()
    machine, pid, start, nonce = mine.rsplit(":", 3)
    assert int(pid) == os.getpid()
    intent.begin("p", 3)
    try:
        assert intent.holder_alive(held_by(mine, 60), "p", now)
        # Same host name, another pid namespace (another container): only the lease tells.
        elsewhere = f"{machine}x:{pid}:{start}:{nonce}"
        assert intent.holder_alive(held_by(elsewhere, 60), "p", now)
        assert not intent.holder_alive(held_by(elsewhere, -1), "p", now)
        # Here, our pid with another nonce: an earlier process that had our pid, gone.
        assert not intent.holder_alive(held_by(f"{machine}:{pid}:{start}:00000000", 60), "p", now)
        # An owner written by an older version: the lease.
        assert intent.holder_alive(held_by(f"host:{pid}:{start}", 60), "p", now)
    finally:
        intent.end("p", 3)


class SlowMemory(FailingMemory):
    """Each publish takes ``step`` on the engine's manual clock."""

    def __init__(self, clock: ManualClock, step: timedelta) -> None:
        super().__init__()
        self.clock, self.step = clock, step
        self.leases: list[Any] = []
        self.store: Any = None
        self.plan_id = ""

    def publish(self, ref_: Any, value: str | None, *, actor: str) -> None:
        if self.store is not None:
            held = self.store.get_plan(self.plan_id).intent
            self.leases.append(held.lease_until if held else None)
        self.clock.advance(self.step)
        super().publish(ref_, value, actor=actor)


def test_a_slow_publish_renews_its_lease_between_writes(tmp_path: Path, clock: ManualClock) -> None:
    """WHO COUNTS AS GONE, seen from another host: a holder still writing keeps its lease
    ahead of the clock, so recovery elsewhere never takes a live action for a dead one. (The
    lease was set once at the claim: three 40 s writes outlived a 60 s lease.)"""
    backend = SlowMemory(clock, timedelta(seconds=40))
    with GrayRelease.from_settings(
        memory_settings(tmp_path),
        clock=clock,
        plugins=[SharedMemory(backend)],
        load_entrypoints=False,
    ) as gr:
        plan_id = prepare(gr, "complete")
        backend.store, backend.plan_id = gr._store, plan_id
        before = clock.now()
        gr.complete(plan_id, actor="alice")
    leases = backend.leases
    assert len(leases) == 3
    # At each write the lease reaches past the time the write ends.
    for n, lease in enumerate(leases):
        assert lease > before + (n + 1) * timedelta(seconds=40), leases


# --- recovery does not insist for ever -------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[PlanEvent] = []

    @hookimpl
    def grayrelease_plan_event(self, event: PlanEvent) -> None:
        self.events.append(event)


def test_recovery_undoes_an_action_the_backend_refuses_for_good(
    tmp_path: Path, clock: ManualClock, unarm: None
) -> None:
    """RECOVERY ENDS: a crash after k1, then a backend that refuses k2 for good. Recovery
    carries the completion forward for GIVE_UP_LEASES leases, then undoes it: the plan is
    ACTIVE again, every key original, with one COMPLETE_FAILED row saying so. (The plan
    stayed pending for ever, every action on it refused.)"""
    backend = FailingMemory()
    recorder = Recorder()
    plugins = [SharedMemory(backend), recorder]
    settings = memory_settings(tmp_path)
    crashed = GrayRelease.from_settings(
        settings, clock=clock, plugins=plugins, load_entrypoints=False
    )
    plan_id = prepare(crashed, "complete")

    def die(reached: str) -> None:
        if reached == "publish.key.1":
            raise Crash(reached)

    faults.arm(die)
    with pytest.raises(Crash):
        crashed.complete(plan_id, actor="alice")
    faults.arm(None)
    backend.down = {"k2"}
    with GrayRelease.from_settings(
        settings, clock=clock, plugins=plugins, load_entrypoints=False
    ) as gr:
        assert gr.get_plan(plan_id).intent is not None  # recovery at start failed: k2 refused
        clock.advance(timedelta(minutes=5))
        report = gr.tick()
        assert report.recovered == []
        assert report.errors
        assert gr.get_plan(plan_id).intent is not None
        clock.advance(timedelta(seconds=GIVE_UP_LEASES * 60))
        report = gr.tick()
        assert report.recovered == [plan_id], report
        plan = gr.get_plan(plan_id)
        assert (plan.status, plan.intent) == (PlanStatus.ACTIVE, None)
        assert {key: gr.backend.get(ref(key)) for key in KEYS} == ORIGINAL
        gr.sync()
        assert {key: gr.resolve(ref(key), OUTSIDER).value for key in KEYS} == ORIGINAL
        failed = [row for row in gr.plan_logs(plan_id).items if row.action == "COMPLETE_FAILED"]
        assert len(failed) == 1
        assert "refused" in failed[0].message
        assert cast(dict[str, Any], failed[0].details)["recovery"]["direction"] == "BACK"
        assert gr.verify_audit().ok
    crashed.close()
    told = [event for event in recorder.events if event.action == "COMPLETE_FAILED"]
    assert told
    assert told[-1].details == failed[0].details


def test_a_recovered_completion_tells_its_details_and_the_plan_before_without_the_intent(
    tmp_path: Path, unarm: None
) -> None:
    """EVENTS AS THE AUDIT ROW: the event of a completion finished by recovery carries the
    row's ``details.recovery``, and its previous plan is the plan as it stood, no intent."""
    recorder = Recorder()
    plugins = [SharedMemory(), recorder]
    settings = {**memory_settings(tmp_path), "backend": "memory"}
    crashed = GrayRelease.from_settings(settings, plugins=plugins, load_entrypoints=False)
    plan_id = prepare(crashed, "complete")

    def die(reached: str) -> None:
        if reached == "publish.key.2":
            raise Crash(reached)

    faults.arm(die)
    with pytest.raises(Crash):
        crashed.complete(plan_id, actor="alice")
    faults.arm(None)
    with GrayRelease.from_settings(settings, plugins=plugins, load_entrypoints=False):
        pass
    crashed.close()
    done = [event for event in recorder.events if event.action == "COMPLETED"]
    assert len(done) == 1
    assert done[0].details is not None
    assert done[0].details["recovery"]["direction"] == "FORWARD"
    assert done[0].previous is not None
    assert done[0].previous.intent is None


# --- a joined publish that committed is not reported as failed -------------------------------


def test_a_failing_mirror_refresh_after_a_joined_commit_does_not_fail_the_action(
    tmp_path: Path,
) -> None:
    """ALL OR NOTHING, told truly: in the store's own database the values and the state
    commit together; a mirror refresh failing after that commit must not turn a done
    completion into an error. (It was raised out of complete.)"""
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "backend": "sql",
        "background_sync": False,
    }
    with GrayRelease.from_settings(settings, load_entrypoints=False) as gr:
        for key, value in ORIGINAL.items():
            gr.backend.publish(ref(key), value, actor="seed")
        plan = gr.start(gr.create_plan(plan_body(), actor="alice").id, actor="alice")
        real = gr.backend.refresh

        def down() -> None:
            raise BackendError("database gone for a moment")

        gr.backend.refresh = down  # type: ignore[method-assign]
        done = gr.complete(plan.id, actor="alice")
        gr.backend.refresh = real  # type: ignore[method-assign]
        assert done.status is PlanStatus.COMPLETED
        gr.sync()
        assert {key: gr.resolve(ref(key), OUTSIDER).value for key in KEYS} == GRAY
