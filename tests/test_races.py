"""Four processes race on one plan, round after round, on PostgreSQL and MariaDB.

Each round puts a three-key plan in a state (DRAFT, ACTIVE, PAUSED or COMPLETED), then four
operator processes, released together by a barrier, each do one action on it: complete,
rollback, pause, resume, update, delete, promote or tick. The actions are drawn from a seeded
generator (``GRAYRELEASE_RACE_SEED``, printed on failure). After every round:

- ONE ACTION AT A TIME: every refused actor got CONFLICT, INVALID_TRANSITION or NOT_FOUND,
  and none wrote to the backend: the backend's write counter moved only for the publishing
  actions that succeeded (once each when the ``sql`` backend shares the store's database and
  joins its transaction; once per key when it has a database of its own and is claimed);
- QUIESCENT AGREEMENT: no intent is open, and the plan's status and the backend agree on
  every key (COMPLETED: the gray values; otherwise the originals);
- ONE ROW PER CHANGE: one audit row per action that succeeded, and the chain verifies.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from grayrelease_core import ConfigRef, GrayRelease, GrayReleaseError, PlanStatus

from .databases import fresh_database

APP, ENV, GROUP = "race-app", "prod", "default"
KEYS = ("r1", "r2", "r3")
WORKERS = 4
ROUNDS = 16
SEED = int(os.environ.get("GRAYRELEASE_RACE_SEED", "20261203"))
ACTIONS = ("complete", "rollback", "pause", "resume", "update", "delete", "promote", "tick")
REFUSALS = {"CONFLICT", "INVALID_TRANSITION", "NOT_FOUND"}
STATE_ROWS = {
    "UPDATED",
    "DELETED",
    "STARTED",
    "PAUSED",
    "RESUMED",
    "COMPLETED",
    "ROLLED_BACK",
    "PROMOTED",
}


def ref(key: str) -> ConfigRef:
    return ConfigRef(APP, ENV, GROUP, key)


def settings(url: str, values_url: str) -> dict[str, Any]:
    """The ``sql`` backend in the store's database (its publish joins the plan's transaction)
    or in a database of its own (claimed, published, committed)."""
    found = {"database_url": url, "backend": "sql", "background_sync": False}
    if values_url != url:
        found["sql"] = {"database_url": values_url}
    return found


def act(gr: GrayRelease, action: str, plan_id: str, name: str) -> tuple[str, Any]:
    try:
        if action == "tick":
            report = gr.tick()
            return "ok-tick", report.recovered
        if action == "update":
            plan = gr.update_plan(plan_id, {"description": f"edited by {name}"}, actor=name)
        elif action == "delete":
            gr.delete_plan(plan_id, actor=name)
            return "ok", None
        elif action == "promote":
            plan = gr.promote(plan_id, actor=name, full=True)
        else:
            plan = getattr(gr, action)(plan_id, actor=name)
    except GrayReleaseError as exc:
        return exc.code, exc.message
    except Exception as exc:  # reported to the test, which fails on it
        return "crash", repr(exc)
    return "ok", plan.status.value


def racer(config: dict[str, Any], name: str, barrier: Any, commands: Any, results: Any) -> None:
    """An operator process with its own engine: waits at the barrier, then acts."""
    with GrayRelease.from_settings(config, load_entrypoints=False) as gr:
        results.put((name, "ready", None))
        for action, plan_id in iter(commands.get, None):
            barrier.wait(timeout=60)
            code, payload = act(gr, action, plan_id, name)
            results.put((name, action, (code, payload)))


def backend_writes(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT value FROM gray_config_revision")) or 0)
    finally:
        engine.dispose()


def put_in_state(gr: GrayRelease, n: int, state: str) -> str:
    for key in KEYS:
        gr.backend.publish(ref(key), f"old-{key}-{n}", actor="seed")
    plan = gr.create_plan(
        {
            "planName": f"race {n}",
            "appName": APP,
            "environment": ENV,
            "groupName": GROUP,
            "configKeys": list(KEYS),
            "grayStrategy": "PERCENTAGE",
            "grayRules": {"percentage": 10},
            "grayValues": {key: f"new-{key}-{n}" for key in KEYS},
        },
        actor="seed",
    )
    if state != "DRAFT":
        gr.start(plan.id, actor="seed")
    if state == "PAUSED":
        gr.pause(plan.id, actor="seed")
    if state == "COMPLETED":
        gr.complete(plan.id, actor="seed")
    return plan.id


@pytest.mark.parametrize("layout", ["joined", "separate"])
@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_four_processes_racing_on_one_plan_keep_every_promise(
    kind: str, layout: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    ctx = multiprocessing.get_context("spawn")
    names = [f"op{n}" for n in range(WORKERS)]
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(kind, tmp_path))
        values_url = url
        if layout == "separate":
            (tmp_path / "values").mkdir()
            values_url = stack.enter_context(fresh_database(kind, tmp_path / "values"))
        config = settings(url, values_url)
        # One backend write per publishing action when it joins the plan's transaction (the
        # revision moves once); one per key when published key by key after a claim.
        writes_per_action = 1 if layout == "joined" else len(KEYS)
        gr = stack.enter_context(GrayRelease.from_settings(config, load_entrypoints=False))
        barrier = ctx.Barrier(WORKERS)
        results = ctx.Queue()
        commands = {name: ctx.Queue() for name in names}
        workers = [
            ctx.Process(target=racer, args=(config, name, barrier, commands[name], results))
            for name in names
        ]
        for worker in workers:
            worker.start()

        def stop() -> None:
            for queue in commands.values():
                queue.put(None)
            for worker in workers:
                worker.join(timeout=20)
                if worker.is_alive():
                    worker.kill()
                    worker.join()

        stack.callback(stop)
        assert sorted(results.get(timeout=90)[0] for _ in names) == names

        for n in range(ROUNDS):
            state = rng.choice(["DRAFT", "ACTIVE", "ACTIVE", "PAUSED", "COMPLETED"])
            drawn = [rng.choice(ACTIONS) for _ in names]
            where = f"seed {SEED}, round {n}: {state} with {drawn}"
            plan_id = put_in_state(gr, n, state)
            rows_before = gr.plan_logs(plan_id, page_size=500).total
            writes_before = backend_writes(values_url)
            for name, action in zip(names, drawn, strict=True):
                commands[name].put((action, plan_id))
            answers = {}
            for _ in names:
                name, action, answer = results.get(timeout=120)
                answers[name] = (action, *answer)
            assert not [a for a in answers.values() if a[1] == "crash"], f"{where}: {answers}"
            refused = [a for a in answers.values() if not a[1].startswith("ok")]
            assert all(a[1] in REFUSALS for a in refused), f"{where}: {answers}"
            won = [a for a in answers.values() if a[1] == "ok"]

            # ONE ACTION AT A TIME: only winning publishing actions wrote to the backend.
            publishing = [
                a
                for a in won
                if a[0] == "complete" or (a[0] == "rollback" and state == "COMPLETED")
            ]
            moved = backend_writes(values_url) - writes_before
            assert moved == writes_per_action * len(publishing), f"{where}: {moved}, {answers}"

            # QUIESCENT AGREEMENT
            gr.backend.refresh()
            held = {key: gr.backend.get(ref(key)) for key in KEYS}
            plan = gr._store.get_plan(plan_id)
            if plan is None:
                assert any(a[0] == "delete" for a in won), f"{where}: {answers}"
                assert held == {key: f"old-{key}-{n}" for key in KEYS}, where
                continue
            assert plan.intent is None, f"{where}: an intent is left open"
            expected = "new" if plan.status is PlanStatus.COMPLETED else "old"
            assert held == {key: f"{expected}-{key}-{n}" for key in KEYS}, f"{where}: {held}"

            # ONE ROW PER CHANGE, and the winners form one serial history: each row starts
            # from the state the previous one left (two completes cannot both have won).
            rows = gr.plan_logs(plan_id, page_size=500).items[rows_before:]
            changes = [row for row in rows if row.action in STATE_ROWS]
            assert len(changes) == len(won), f"{where}: rows {changes} for {answers}"
            status = PlanStatus(state)
            for row in changes:
                assert row.status_before is status, f"{where}: {[r.action for r in changes]}"
                status = row.status_after or status
            assert status is plan.status, where
            assert gr.verify_audit().ok, where
            if plan.status.is_live:  # the next round's plan needs the keys
                gr.rollback(plan_id, actor="seed")
