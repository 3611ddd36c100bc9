"""The read path: what resolve() serves, and how fast other processes' changes reach it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from grayrelease_core import Client, ConfigRef, GrayRelease, ManualClock, PlanStatus

from .conftest import Factory, ref, spec_body

LISTED = Client("i-100", "192.168.1.100")


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``condition`` (a callable) until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_key_with_no_plan_gets_the_backend_value(gr: GrayRelease) -> None:
    key = ConfigRef("a", "prod", "g", "k")
    assert gr.resolve(key, LISTED) == (None, False, None)
    gr.backend.publish(key, "v1", actor="ops")
    assert gr.resolve(key, LISTED) == ("v1", False, None)


def test_a_plan_in_one_app_does_not_touch_the_same_key_elsewhere(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    gr.start(plan.id, actor="a")
    assert gr.resolve(ref("database.url"), LISTED).gray
    assert not gr.resolve(ref("database.url", app="other-app"), LISTED).gray
    assert not gr.resolve(ref("database.url", group="cache"), LISTED).gray
    assert not gr.resolve(ref("database.url", env="staging"), LISTED).gray


def test_another_process_sees_a_change_after_its_next_sync(make_gr: Factory) -> None:
    operator, server = make_gr(), make_gr()
    plan = operator.create_plan(spec_body(), actor="a")
    operator.start(plan.id, actor="a")
    assert not server.resolve(ref("database.url"), LISTED).gray  # not yet synced
    server.sync()
    assert server.resolve(ref("database.url"), LISTED).gray
    operator.rollback(plan.id, actor="a")
    assert server.resolve(ref("database.url"), LISTED).gray
    server.sync()
    assert not server.resolve(ref("database.url"), LISTED).gray


def test_background_sync_brings_changes_within_the_cache_ttl(make_gr: Factory) -> None:
    operator = make_gr()
    server = make_gr({"background_sync": True, "cache_ttl": 0.05})
    plan = operator.create_plan(spec_body(), actor="a")
    operator.start(plan.id, actor="a")
    assert wait_until(lambda: server.resolve(ref("database.url"), LISTED).gray)
    operator.pause(plan.id, actor="a")
    operator.rollback(plan.id, actor="a")
    assert wait_until(lambda: not server.resolve(ref("database.url"), LISTED).gray)


def test_background_sync_flushes_hits(make_gr: Factory, clock: ManualClock) -> None:
    server = make_gr({"background_sync": True, "cache_ttl": 0.02, "hit_flush_interval": 0})
    plan = server.create_plan(spec_body(), actor="a")
    server.start(plan.id, actor="a")
    server.resolve(ref("database.url"), LISTED)
    reader = make_gr()
    assert wait_until(lambda: reader._store.instance_ids(plan.id) == {"i-100"})


def test_a_failing_sync_keeps_serving_the_last_known_plans(
    make_gr: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    gr = make_gr()
    plan = gr.create_plan(spec_body(), actor="a")
    gr.start(plan.id, actor="a")

    def broken() -> int:
        raise OSError("database unreachable")

    gr._store.generation = broken  # type: ignore[method-assign]
    gr.sync()
    assert gr.resolve(ref("database.url"), LISTED).gray
    assert "sync failed" in caplog.text


def test_hits_are_flushed_when_the_interval_has_passed(
    make_gr: Factory, clock: ManualClock
) -> None:
    gr = make_gr({"hit_flush_interval": 5})
    plan = gr.create_plan(spec_body(), actor="a")
    gr.start(plan.id, actor="a")
    gr.resolve(ref("database.url"), LISTED)
    gr.sync()
    assert gr._store.instance_ids(plan.id) == frozenset()
    clock.advance(5)
    gr.sync()
    assert gr._store.instance_ids(plan.id) == {"i-100"}


def test_close_flushes_buffered_hits(make_gr: Factory) -> None:
    gr = make_gr({"hit_flush_interval": 3600})
    plan = gr.create_plan(spec_body(), actor="a")
    gr.start(plan.id, actor="a")
    gr.resolve(ref("database.url"), LISTED)
    gr.close()
    assert {r.instance_id for r in make_gr().plan_instances(plan.id).items} == {"i-100"}


def test_sql_backend_values_reach_other_processes(make_gr: Factory) -> None:
    one, two = make_gr({"backend": "sql"}), make_gr({"backend": "sql"})
    key = ref("database.url")
    one.backend.publish(key, "v1", actor="ops")
    assert two.resolve(key, LISTED).value is None
    two.sync()
    assert two.resolve(key, LISTED).value == "v1"
    one.backend.publish(key, None, actor="ops")
    two.sync()
    assert two.backend.get(key) is None


def test_sql_backend_serves_a_full_release(make_gr: Factory) -> None:
    gr = make_gr({"backend": "sql"})
    gr.backend.publish(ref("database.url"), "old-url", actor="ops")
    gr.backend.publish(ref("database.username"), "old-user", actor="ops")
    plan = gr.create_plan(spec_body(), actor="a")
    gr.start(plan.id, actor="a")
    gr.complete(plan.id, actor="a")
    assert (
        make_gr({"backend": "sql"}).backend.get(ref("database.url"))
        == "jdbc:mysql://db-new:3306/demo"
    )
    gr.rollback(plan.id, actor="a")
    assert gr.get_plan(plan.id).status is PlanStatus.ROLLBACK
    assert make_gr({"backend": "sql"}).backend.get(ref("database.username")) == "old-user"


def test_memory_backend_can_be_seeded_from_settings(make_gr: Factory) -> None:
    gr = make_gr({"memory": {"values": {"demo-app/prod/database/database.url": "seeded"}}})
    assert gr.resolve(ref("database.url"), LISTED).value == "seeded"


def test_two_processes_publishing_a_new_key_at_once_both_succeed(make_gr: Factory) -> None:
    import threading

    one, two = make_gr({"backend": "sql"}), make_gr({"backend": "sql"})
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def publish(gr: GrayRelease, value: str) -> None:
        barrier.wait()
        try:
            gr.backend.publish(ref("brand.new.key"), value, actor="ops")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(g, v)) for g, v in ((one, "a"), (two, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    one.sync()
    assert one.backend.get(ref("brand.new.key")) in {"a", "b"}
