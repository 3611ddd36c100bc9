"""Crash safety of the publishing actions: a process killed at each point of a completion or
of a rollback after completion, then a fresh engine that recovers.

Invariants checked after every crash (names from issue 15):

- RECOVERY: no intent is left open once a fresh engine has started;
- QUIESCENT AGREEMENT: the plan's status and the backend agree on every key (COMPLETED: the
  gray values; any other status: the originals), and every client reads the same;
- ONE ROW PER CHANGE: exactly one audit row for the state change (none when nothing changed),
  naming the recovery when recovery made it, and the audit chain verifies.

The child is a real process killed with SIGKILL at the point (tests/crash_child.py), on
SQLite, PostgreSQL and MariaDB, with the ``sql`` backend and the loopback Apollo and Nacos;
the ``memory`` backend lives in one process, so there the crash is an exception no handler
catches and the fresh engine shares the backend object.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import grayrelease_adapters.apollo as apollo_plugin
import grayrelease_adapters.nacos as nacos_plugin
import pytest
from grayrelease_plugins.backends.memory import MemoryBackend

from grayrelease_core import (
    BackendError,
    Client,
    ConfigRef,
    Conflict,
    GrayRelease,
    PlanStatus,
    faults,
    hookimpl,
)

from .databases import fresh_database
from .fake_apollo import FakeApollo
from .fake_nacos import FakeNacos

ROOT = Path(__file__).resolve().parent.parent
APP, ENV, GROUP = "demo-app", "prod", "database"
KEYS = ("k1", "k2", "k3")
ORIGINAL = {key: f"old-{key}" for key in KEYS}
GRAY = {key: f"new-{key}" for key in KEYS}
OUTSIDER = Client("outsider", "10.9.9.9")
"""A client outside the whitelist: it gets the gray value only once the plan completed."""
ONE_BY_ONE = (
    "claim.before",
    "claim.after",
    "publish.key.1",
    "publish.key.2",
    "publish.key.3",
    "commit.before",
    "commit.after",
)
TOGETHER = ("claim.before", "claim.after", "publish.all", "commit.before", "commit.after")
JOINED = ("commit.before", "publish.joined", "commit.after")
"""The points of a backend in the store's own database: one transaction, no claim."""


def ref(key: str) -> ConfigRef:
    return ConfigRef(APP, ENV, GROUP, key)


def plan_body() -> dict[str, Any]:
    return {
        "planName": "crash test",
        "appName": APP,
        "environment": ENV,
        "groupName": GROUP,
        "configKeys": list(KEYS),
        "grayStrategy": "IP_WHITELIST",
        "grayRules": {"ipWhitelist": ["192.168.1.100"]},
        "grayValues": dict(GRAY),
    }


def prepare(gr: GrayRelease, action: str) -> str:
    """Seed the originals, start a plan on three keys (and complete it, for a rollback)."""
    for key, value in ORIGINAL.items():
        gr.backend.publish(ref(key), value, actor="seed")
    plan = gr.start(gr.create_plan(plan_body(), actor="alice").id, actor="alice")
    if action == "rollback":
        gr.complete(plan.id, actor="alice")
    return plan.id


def assert_recovered(
    gr: GrayRelease, plan_id: str, action: str, point: str, *, joined: bool = False
) -> None:
    """RECOVERY, QUIESCENT AGREEMENT and ONE ROW PER CHANGE after a crash at ``point``.

    Once claimed, an action is carried forward by recovery; in one transaction (``joined``)
    it happened only if the crash came after the commit.
    """
    plan = gr.get_plan(plan_id)
    assert plan.intent is None, f"RECOVERY: an intent is still open after {point}"
    acted = point == "commit.after" if joined else point != "claim.before"
    if action == "complete":
        expected_status = PlanStatus.COMPLETED if acted else PlanStatus.ACTIVE
        event = "COMPLETED"
    else:
        expected_status = PlanStatus.ROLLBACK if acted else PlanStatus.COMPLETED
        event = "ROLLED_BACK"
    assert plan.status is expected_status, f"after {point}"
    held = GRAY if expected_status is PlanStatus.COMPLETED else ORIGINAL
    gr.backend.refresh()
    backend = {key: gr.backend.get(ref(key)) for key in KEYS}
    assert backend == held, f"QUIESCENT AGREEMENT after {point}: {backend}"
    gr.sync()
    served = {key: gr.resolve(ref(key), OUTSIDER).value for key in KEYS}
    assert served == held, f"QUIESCENT AGREEMENT (reads) after {point}: {served}"
    logs = gr.plan_logs(plan_id, page_size=200).items
    rows = [log for log in logs if log.action == event]
    assert len(rows) == (1 if acted else 0), f"ONE ROW PER CHANGE after {point}: {logs}"
    if acted and point != "commit.after":
        assert (rows[0].details or {}).get("recovery", {}).get("direction") == "FORWARD"
        assert rows[0].actor == "alice"  # recovery finishes in the asker's name
    assert not [log for log in logs if log.action.endswith("_FAILED")]
    report = gr.verify_audit()
    assert report.ok, report


def kill_child_at(
    settings: dict[str, Any], plugins: list[str], plan_id: str, action: str, point: str
) -> None:
    job = {
        "settings": settings,
        "plugins": plugins,
        "action": action,
        "planId": plan_id,
        "point": point,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.crash_child", json.dumps(job)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, (
        f"the child was not killed at {point} (exit {done.returncode}):\n{done.stderr}"
    )


def crash_at_every_point(
    settings_for: Callable[[Path], AbstractContextManager[dict[str, Any]]],
    tmp_path: Path,
    plugins: list[Any],
    action: str,
    points: tuple[str, ...],
    *,
    joined: bool = False,
) -> None:
    """For each point its own database (and fake server): prepare a plan, kill a child there
    (the children run side by side), then let a fresh engine recover and check it."""
    with ExitStack() as stack:
        cases = []
        for point in points:
            (tmp_path / point).mkdir()
            settings = stack.enter_context(settings_for(tmp_path / point))
            with GrayRelease.from_settings(settings, plugins=plugins, load_entrypoints=False) as gr:
                cases.append((point, settings, prepare(gr, action)))
        names = [p.__name__ for p in plugins]
        with ThreadPoolExecutor(max_workers=4) as pool:
            for done in [
                pool.submit(kill_child_at, settings, names, plan_id, action, point)
                for point, settings, plan_id in cases
            ]:
                done.result()
        for point, settings, plan_id in cases:
            # A fresh engine: recovery runs as it starts, before it serves anything.
            with GrayRelease.from_settings(
                settings, plugins=plugins, load_entrypoints=False
            ) as fresh:
                assert_recovered(fresh, plan_id, action, point, joined=joined)


# --- the sql backend, on every database --------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("action", ["complete", "rollback"])
def test_sql_backend_in_the_store_database_is_one_transaction_at_every_point(
    kind: str, action: str, tmp_path: Path
) -> None:
    """The ``sql`` backend in the plan store's database: the values and the plan's state commit
    together, so a kill before the commit leaves both as they were, and nothing is pending."""

    @contextmanager
    def sql_settings(folder: Path) -> Iterator[dict[str, Any]]:
        with fresh_database(kind, folder) as url:
            yield {"database_url": url, "backend": "sql", "background_sync": False}

    crash_at_every_point(sql_settings, tmp_path, [], action, JOINED, joined=True)


@pytest.mark.parametrize("action", ["complete", "rollback"])
def test_sql_backend_in_its_own_database_killed_at_every_point_recovers(
    action: str, tmp_path: Path
) -> None:
    """The ``sql`` backend with a database of its own (``sql.database_url``): claimed, then
    recovered, like any backend outside the store."""

    @contextmanager
    def sql_settings(folder: Path) -> Iterator[dict[str, Any]]:
        yield {
            "database_url": f"sqlite:///{folder / 'plans.db'}",
            "backend": "sql",
            "sql": {"database_url": f"sqlite:///{folder / 'values.db'}"},
            "background_sync": False,
        }

    crash_at_every_point(sql_settings, tmp_path, [], action, ONE_BY_ONE)


# --- Apollo (one release for all keys) and Nacos (key by key) ------------------------------------

APOLLO_TOKEN = "crash-t0ken"


@contextmanager
def apollo_settings(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with FakeApollo(tokens={APOLLO_TOKEN: [APP]}, config_env="PRO", hold=0.3) as fake:
        fake.create_namespace("PRO", APP, "default", GROUP)
        yield {
            "database_url": f"sqlite:///{tmp_path / 'g.db'}",
            "background_sync": False,
            "backend": "apollo",
            "apollo": {
                "portal": fake.base_url,
                "token": APOLLO_TOKEN,
                "envs": {ENV: "PRO"},
                "config_services": {"PRO": fake.base_url},
                "timeout": 5,
            },
        }


@contextmanager
def nacos_settings(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with FakeNacos({"nacos": "s3cret"}, token_ttl=3600, min_hold=0.2) as fake:
        yield {
            "database_url": f"sqlite:///{tmp_path / 'g.db'}",
            "background_sync": False,
            "backend": "nacos",
            "nacos": {
                "server": fake.base_url,
                "username": "nacos",
                "password": "s3cret",
                "namespace": "{environment}",
                "poll_timeout": 1,
            },
        }


@pytest.mark.parametrize("action", ["complete", "rollback"])
def test_apollo_killed_at_every_point_recovers(action: str, tmp_path: Path) -> None:
    crash_at_every_point(apollo_settings, tmp_path, [apollo_plugin], action, TOGETHER)


@pytest.mark.parametrize("action", ["complete", "rollback"])
def test_nacos_killed_at_every_point_recovers(action: str, tmp_path: Path) -> None:
    crash_at_every_point(nacos_settings, tmp_path, [nacos_plugin], action, ONE_BY_ONE)


# --- the memory backend: one process, so the crash is an exception nothing catches ---------------


class Crash(BaseException):
    """Stands for the process dying: not an ``Exception``, so no handler on the way sees it."""


class SharedMemory:
    """Provides one MemoryBackend to every engine built with it (the process's only copy)."""

    def __init__(self, backend: MemoryBackend | None = None) -> None:
        self.backend = backend or MemoryBackend()

    @hookimpl
    def grayrelease_make_backend(self, settings: Any) -> MemoryBackend:
        return self.backend


@pytest.fixture
def unarm() -> Iterator[None]:
    yield
    faults.arm(None)


@pytest.mark.parametrize("action", ["complete", "rollback"])
@pytest.mark.parametrize("point", ONE_BY_ONE)
def test_memory_backend_crash_at_every_point_recovers(
    action: str, point: str, tmp_path: Path, unarm: None
) -> None:
    shared = SharedMemory()
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "backend": "memory",
        "background_sync": False,
    }
    crashed = GrayRelease.from_settings(settings, plugins=[shared], load_entrypoints=False)
    plan_id = prepare(crashed, action)

    def die(reached: str) -> None:
        if reached == point:
            raise Crash(point)

    faults.arm(die)
    with pytest.raises(Crash):
        getattr(crashed, action)(plan_id, actor="alice")
    faults.arm(None)
    with GrayRelease.from_settings(settings, plugins=[shared], load_entrypoints=False) as fresh:
        assert_recovered(fresh, plan_id, action, point)
    crashed.close()


# --- while an intent is open, and faults that are not crashes ------------------------------------


def test_reads_serve_the_intent_values_while_it_is_open(tmp_path: Path, unarm: None) -> None:
    """Between the claim and the commit every client reads the values being published, for
    every key of the plan: never some keys old and some new."""
    shared = SharedMemory()
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "backend": "memory",
        "background_sync": False,
    }
    acting = GrayRelease.from_settings(settings, plugins=[shared], load_entrypoints=False)
    plan_id = prepare(acting, "complete")
    with GrayRelease.from_settings(settings, plugins=[shared], load_entrypoints=False) as other:
        seen: list[dict[str, str | None]] = []

        def look(reached: str) -> None:
            if reached.startswith("publish.key."):
                other.sync()
                seen.append({key: other.resolve(ref(key), OUTSIDER).value for key in KEYS})

        faults.arm(look)
        acting.complete(plan_id, actor="alice")
    acting.close()
    assert seen == [GRAY, GRAY, GRAY]


def test_database_gone_between_publish_and_commit_is_finished_by_recovery(
    tmp_path: Path,
) -> None:
    shared = SharedMemory()
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "backend": "memory",
        "background_sync": False,
    }
    with GrayRelease.from_settings(settings, plugins=[shared], load_entrypoints=False) as gr:
        plan_id = prepare(gr, "complete")
        real = gr._store.commit_plan

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise OSError("could not connect to server")

        gr._store.commit_plan = unreachable  # type: ignore[method-assign]
        with pytest.raises(OSError, match="could not connect"):
            gr.complete(plan_id, actor="alice")
        gr._store.commit_plan = real  # type: ignore[method-assign]
        pending = gr.get_plan(plan_id)
        assert pending.intent is not None
        assert pending.status is PlanStatus.ACTIVE
        gr.sync()
        assert {k: gr.resolve(ref(k), OUTSIDER).value for k in KEYS} == GRAY
        report = gr.tick()
        assert report.recovered == [plan_id]
        assert_recovered(gr, plan_id, "complete", "commit.before")


class FailingMemory(MemoryBackend):
    """A memory backend that refuses to publish the keys in ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[str] = set()

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        if ref.config_key in self.down or "*" in self.down:
            raise BackendError(f"{ref.config_key}: connection refused")
        super().publish(ref, value, actor=actor)


def test_backend_failing_on_key_2_of_3_restores_key_1_and_stays_active(tmp_path: Path) -> None:
    provider = SharedMemory(FailingMemory())
    settings = {"database_url": f"sqlite:///{tmp_path / 'g.db'}", "background_sync": False}
    with GrayRelease.from_settings(settings, plugins=[provider], load_entrypoints=False) as gr:
        plan_id = prepare(gr, "complete")
        cast(FailingMemory, provider.backend).down = {"k2"}
        with pytest.raises(BackendError, match="nothing was changed"):
            gr.complete(plan_id, actor="alice")
        plan = gr.get_plan(plan_id)
        assert (plan.status, plan.intent) == (PlanStatus.ACTIVE, None)
        assert {k: gr.backend.get(ref(k)) for k in KEYS} == ORIGINAL
        failed = [log for log in gr.plan_logs(plan_id).items if log.action == "COMPLETE_FAILED"]
        assert len(failed) == 1
        assert gr.verify_audit().ok


def test_a_failed_undo_stays_pending_until_recovery_restores(tmp_path: Path) -> None:
    """Key 2 fails, and the backend goes down before key 1 is restored: the intent stays open,
    going back; the next tick after the backend returns restores key 1 and releases it."""
    provider = SharedMemory(FailingMemory())
    settings = {"database_url": f"sqlite:///{tmp_path / 'g.db'}", "background_sync": False}
    with GrayRelease.from_settings(settings, plugins=[provider], load_entrypoints=False) as gr:
        plan_id = prepare(gr, "complete")
        backend = cast(FailingMemory, provider.backend)
        original_publish = FailingMemory.publish

        def publish_then_fall(ref_: ConfigRef, value: str | None, *, actor: str) -> None:
            original_publish(backend, ref_, value, actor=actor)
            if ref_.config_key == "k1":
                backend.down = {"*"}  # everything fails from now on, restores included

        backend.publish = publish_then_fall  # type: ignore[method-assign,assignment]
        with pytest.raises(BackendError, match="recovery keeps trying"):
            gr.complete(plan_id, actor="alice")
        pending = gr.get_plan(plan_id).intent
        assert pending is not None
        assert pending.direction.value == "BACK"
        assert gr.tick().recovered == []  # still down: nothing to do yet
        backend.down = set()
        del backend.publish
        assert gr.tick().recovered == [plan_id]
        plan = gr.get_plan(plan_id)
        assert (plan.status, plan.intent) == (PlanStatus.ACTIVE, None)
        assert {k: gr.backend.get(ref(k)) for k in KEYS} == ORIGINAL
        failed = [log for log in gr.plan_logs(plan_id).items if log.action == "COMPLETE_FAILED"]
        assert len(failed) == 1
        assert "recovery restored" in failed[0].message
        assert gr.verify_audit().ok


# --- VISIBILITY: once complete or rollback returns, every process serves its outcome -------------


class FrozenMirror:
    """Holds a backend's ``refresh`` back, as a Nacos or Apollo watcher that has not yet heard
    of a publish: the process's mirror keeps the values it had."""

    def __init__(self, gr: GrayRelease) -> None:
        self.backend = gr.backend
        self.real = gr.backend.refresh
        self.backend.refresh = lambda: None  # type: ignore[method-assign]

    def thaw(self) -> None:
        self.backend.refresh = self.real  # type: ignore[method-assign]


@pytest.mark.parametrize("action", ["complete", "rollback"])
def test_a_process_whose_mirror_lags_serves_the_outcome_after_one_sync(
    action: str, tmp_path: Path
) -> None:
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "backend": "sql",
        "background_sync": False,
    }
    with (
        GrayRelease.from_settings(settings, load_entrypoints=False) as acting,
        GrayRelease.from_settings(settings, load_entrypoints=False) as other,
    ):
        plan_id = prepare(acting, "rollback" if action == "rollback" else "complete")
        other.backend.refresh()
        other.sync()
        before = GRAY if action == "rollback" else ORIGINAL
        assert {k: other.resolve(ref(k), OUTSIDER).value for k in KEYS} == before
        frozen = FrozenMirror(other)
        getattr(acting, action)(plan_id, actor="alice")
        outcome = ORIGINAL if action == "rollback" else GRAY
        assert {k: other.backend.get(ref(k)) for k in KEYS} == before  # the mirror lags
        other.sync()  # what the sync thread does every cache_ttl
        answers = [other.resolve(ref(k), OUTSIDER) for k in KEYS]
        assert {k: a.value for k, a in zip(KEYS, answers, strict=True)} == outcome
        assert not any(a.gray for a in answers)  # the plan is over: the value is everyone's
        frozen.thaw()
        other.sync()  # the mirror caught up: the overlay goes, the backend answers
        assert other._settling == {}
        assert {k: other.resolve(ref(k), OUTSIDER).value for k in KEYS} == outcome


def test_a_settling_overlay_ends_at_settle_time_even_if_the_mirror_never_agrees(
    tmp_path: Path,
) -> None:
    from grayrelease_core import ManualClock

    clock = ManualClock()
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "backend": "sql",
        "background_sync": False,
        "settle_time": 30,
    }
    with (
        GrayRelease.from_settings(settings, load_entrypoints=False, clock=clock) as acting,
        GrayRelease.from_settings(settings, load_entrypoints=False, clock=clock) as other,
    ):
        plan_id = prepare(acting, "complete")
        other.backend.refresh()
        FrozenMirror(other)
        acting.complete(plan_id, actor="alice")
        other.sync()
        assert other.resolve(ref("k1"), OUTSIDER).value == GRAY["k1"]
        clock.advance(timedelta(seconds=31))
        other.sync()
        # Someone else's later value may be in the backend: after settle_time it is served.
        assert other.resolve(ref("k1"), OUTSIDER).value == ORIGINAL["k1"]


class SlowMemory(MemoryBackend):
    """A memory backend whose publishes wait until the test lets them go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()
        self.writers: list[str] = []

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        self.writers.append(actor)
        self.entered.set()
        assert self.go.wait(30)
        super().publish(ref, value, actor=actor)


def test_while_a_slow_complete_publishes_every_other_action_is_refused_untouched(
    tmp_path: Path,
) -> None:
    """ONE ACTION AT A TIME: a rollback, a pause, a second complete and a tick sent while a
    completion is publishing get CONFLICT naming it, and none of them writes to the backend."""
    slow = SlowMemory()
    settings = {"database_url": f"sqlite:///{tmp_path / 'g.db'}", "background_sync": False}
    with GrayRelease.from_settings(
        settings, plugins=[SharedMemory(slow)], load_entrypoints=False
    ) as gr:
        for key, value in ORIGINAL.items():
            MemoryBackend.publish(slow, ref(key), value, actor="seed")
        plan_id = gr.start(gr.create_plan(plan_body(), actor="alice").id, actor="alice").id
        outcome: list[Any] = []

        def complete() -> None:
            outcome.append(gr.complete(plan_id, actor="alice"))

        worker = threading.Thread(target=complete)
        worker.start()
        assert slow.entered.wait(30)
        attempts: list[tuple[str, Callable[[], object]]] = [
            ("bob", partial(gr.rollback, plan_id, actor="bob", reason="stop")),
            ("carol", partial(gr.pause, plan_id, actor="carol")),
            ("dave", partial(gr.complete, plan_id, actor="dave")),
        ]
        for name, attempt in attempts:
            with pytest.raises(Conflict, match="complete is under way") as refused:
                attempt()
            assert refused.value.details["pendingAction"]["actor"] == "alice", name
        assert gr.tick().recovered == []  # alive and in flight here: not taken over
        slow.go.set()
        worker.join(30)
        assert outcome[0].status is PlanStatus.COMPLETED
        assert set(slow.writers) == {"alice"}
        assert {k: slow.get(ref(k)) for k in KEYS} == GRAY
