"""The plan lifecycle through the public API: transitions, their effects, and their refusals."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from typing import Any

import pytest

from grayrelease_core import (
    BackendError,
    Client,
    Conflict,
    GrayRelease,
    InvalidTransition,
    ItemStatus,
    ManualClock,
    NotFound,
    PlanStatus,
    ValidationError,
    hookimpl,
)
from grayrelease_core.lifecycle import TRANSITIONS, Action, allowed_actions

from .conftest import Factory, ref, spec_body
from .plugins.failing_backend import FailingBackend, FailingBackendPlugin

LISTED = Client("i-100", "192.168.1.100")
OTHER = Client("i-200", "192.168.1.200")


def started(gr: GrayRelease, **overrides: Any) -> str:
    gr.backend.publish(ref("database.url"), "jdbc:mysql://db-old:3306/demo", actor="ops")
    gr.backend.publish(ref("database.username"), "app", actor="ops")
    plan = gr.create_plan(spec_body(**overrides), actor="alice")
    gr.start(plan.id, actor="alice")
    return plan.id


def test_transition_table_matches_the_design() -> None:
    expected = {
        PlanStatus.DRAFT: ["update", "delete", "start"],
        PlanStatus.ACTIVE: ["pause", "promote", "complete", "rollback"],
        PlanStatus.PAUSED: ["resume", "complete", "rollback"],
        PlanStatus.COMPLETED: ["rollback"],
        PlanStatus.ROLLBACK: [],
    }
    assert {status: allowed_actions(status) for status in PlanStatus} == expected
    assert TRANSITIONS[Action.START][1] is PlanStatus.ACTIVE


def test_create_accepts_the_spec_body_verbatim(gr: GrayRelease, clock: ManualClock) -> None:
    body = spec_body()
    del body["grayValues"]
    plan = gr.create_plan(body, actor="alice")
    assert plan.status is PlanStatus.DRAFT
    assert plan.config_keys == ("database.url", "database.username")
    assert plan.group_name == "database"
    assert plan.created_by == "alice"
    assert plan.created_at == clock.now()
    assert all(item.status is ItemStatus.PENDING and item.gray_value is None for item in plan.items)
    assert gr.get_plan(plan.id) == plan


def test_group_defaults_when_the_spec_body_omits_it(gr: GrayRelease) -> None:
    body = spec_body()
    del body["groupName"]
    assert gr.create_plan(body, actor="a").group_name == "default"


def test_start_snapshots_originals_and_serves_the_gray_set(gr: GrayRelease) -> None:
    plan_id = started(gr)
    plan = gr.get_plan(plan_id)
    assert plan.status is PlanStatus.ACTIVE
    url = plan.item("database.url")
    assert (url.original_value, url.original_present, url.status) == (
        "jdbc:mysql://db-old:3306/demo",
        True,
        ItemStatus.GRAY,
    )
    listed = gr.resolve(ref("database.url"), LISTED)
    assert listed.gray
    assert listed.value == "jdbc:mysql://db-new:3306/demo"
    assert listed.plan_id == plan_id
    other = gr.resolve(ref("database.url"), OTHER)
    assert (other.value, other.gray, other.plan_id) == (
        "jdbc:mysql://db-old:3306/demo",
        False,
        plan_id,
    )


def test_start_records_an_absent_original(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    started_plan = gr.start(plan.id, actor="a")
    assert started_plan.item("database.url").original_present is False
    assert gr.resolve(ref("database.url"), OTHER).value is None


def test_start_without_gray_values_names_the_missing_keys(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(grayValues={"database.url": "x"}), actor="a")
    with pytest.raises(ValidationError) as caught:
        gr.start(plan.id, actor="a")
    assert caught.value.details["missingKeys"] == ["database.username"]
    assert "database.username" in caught.value.message
    assert gr.get_plan(plan.id).status is PlanStatus.DRAFT


def test_start_refuses_keys_held_by_another_live_plan_naming_it(gr: GrayRelease) -> None:
    first = started(gr)
    second = gr.create_plan(
        spec_body(configKeys=["database.username"], grayValues={"database.username": "x"}),
        actor="b",
    )
    with pytest.raises(Conflict) as caught:
        gr.start(second.id, actor="b")
    assert first in caught.value.message
    assert caught.value.details == {
        "conflictingPlanIds": [first],
        "configKeys": ["database.username"],
    }
    gr.pause(first, actor="a")
    with pytest.raises(Conflict):
        gr.start(second.id, actor="b")
    gr.rollback(first, actor="a")
    assert gr.start(second.id, actor="b").status is PlanStatus.ACTIVE


def test_same_key_in_another_environment_does_not_conflict(gr: GrayRelease) -> None:
    started(gr)
    other_env = gr.create_plan(spec_body(environment="staging"), actor="b")
    assert gr.start(other_env.id, actor="b").status is PlanStatus.ACTIVE


def test_pause_keeps_recorded_instances_and_admits_no_new_one(gr: GrayRelease) -> None:
    plan_id = started(gr, grayStrategy="PERCENTAGE", grayRules={"percentage": 100})
    seen = [Client(f"early-{n}") for n in range(20)]
    for client in seen:
        assert gr.resolve(ref("database.url"), client).gray
    gr.pause(plan_id, actor="alice")
    assert all(gr.resolve(ref("database.url"), c).gray for c in seen)
    assert all(gr.resolve(ref("database.username"), c).gray for c in seen)
    late = Client("late-1")
    assert not gr.resolve(ref("database.url"), late).gray
    gr.resume(plan_id, actor="alice")
    assert gr.resolve(ref("database.url"), late).gray


def test_pause_membership_is_read_from_the_store(make_gr: Factory) -> None:
    # A second process pausing sees the instances this one flushed before the pause.
    serving = make_gr()
    plan_id = started(serving, grayStrategy="PERCENTAGE", grayRules={"percentage": 100})
    for n in range(5):
        serving.resolve(ref("database.url"), Client(f"i-{n}"))
    serving.flush_hits()
    operator = make_gr()
    operator.pause(plan_id, actor="ops")
    assert operator.resolve(ref("database.url"), Client("i-3")).gray
    assert not operator.resolve(ref("database.url"), Client("i-9")).gray


def test_complete_publishes_every_key_and_ends_the_gray_set(
    gr: GrayRelease, clock: ManualClock
) -> None:
    plan_id = started(gr)
    clock.advance(timedelta(minutes=5))
    plan = gr.complete(plan_id, actor="bob")
    assert plan.status is PlanStatus.COMPLETED
    assert plan.finished_at == clock.now()
    assert all(item.status is ItemStatus.PUBLISHED for item in plan.items)
    for client in (LISTED, OTHER):
        answer = gr.resolve(ref("database.url"), client)
        assert (answer.value, answer.gray, answer.plan_id) == (
            "jdbc:mysql://db-new:3306/demo",
            False,
            None,
        )


def test_complete_from_paused(gr: GrayRelease) -> None:
    plan_id = started(gr)
    gr.pause(plan_id, actor="a")
    assert gr.complete(plan_id, actor="a").status is PlanStatus.COMPLETED


def test_complete_publishes_all_keys_or_none(make_gr: Factory) -> None:
    gr = make_gr({"backend": "failing"}, plugins=(FailingBackendPlugin(),))
    backend = gr.backend
    assert isinstance(backend, FailingBackend)
    plan_id = started(gr)
    backend.fail_on = {"database.username"}
    with pytest.raises(BackendError) as caught:
        gr.complete(plan_id, actor="bob")
    assert "database.username" in caught.value.message
    # The first key was published, then restored; the plan did not move.
    assert backend.published[-2:] == [
        ("database.url", "jdbc:mysql://db-new:3306/demo"),
        ("database.url", "jdbc:mysql://db-old:3306/demo"),
    ]
    assert backend.get(ref("database.url")) == "jdbc:mysql://db-old:3306/demo"
    assert gr.get_plan(plan_id).status is PlanStatus.ACTIVE
    assert gr.resolve(ref("database.url"), LISTED).gray
    assert [r.action for r in gr.plan_logs(plan_id).items][-1] == "COMPLETE_FAILED"
    backend.fail_on = set()
    assert gr.complete(plan_id, actor="bob").status is PlanStatus.COMPLETED


def test_rollback_from_active_gives_everyone_the_original(gr: GrayRelease) -> None:
    plan_id = started(gr)
    plan = gr.rollback(plan_id, actor="bob", reason="error rate up")
    assert plan.status is PlanStatus.ROLLBACK
    assert all(item.status is ItemStatus.ROLLED_BACK for item in plan.items)
    assert gr.resolve(ref("database.url"), LISTED) == ("jdbc:mysql://db-old:3306/demo", False, None)
    assert gr.plan_logs(plan_id).items[-1].message == "error rate up"


def test_rollback_after_complete_republishes_originals(gr: GrayRelease) -> None:
    plan_id = started(gr)
    gr.complete(plan_id, actor="bob")
    gr.rollback(plan_id, actor="bob")
    assert gr.backend.get(ref("database.url")) == "jdbc:mysql://db-old:3306/demo"
    assert gr.backend.get(ref("database.username")) == "app"


def test_rollback_after_complete_removes_keys_that_did_not_exist(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    gr.start(plan.id, actor="a")
    gr.complete(plan.id, actor="a")
    assert gr.backend.get(ref("database.url")) == "jdbc:mysql://db-new:3306/demo"
    gr.rollback(plan.id, actor="a")
    assert gr.backend.get(ref("database.url")) is None


def test_rollback_after_complete_refuses_drift_unless_forced(gr: GrayRelease) -> None:
    plan_id = started(gr)
    gr.complete(plan_id, actor="bob")
    gr.backend.publish(ref("database.username"), "hand-edited", actor="someone")
    with pytest.raises(Conflict) as caught:
        gr.rollback(plan_id, actor="bob")
    assert caught.value.details == {"driftedKeys": ["database.username"]}
    assert gr.get_plan(plan_id).status is PlanStatus.COMPLETED
    assert gr.backend.get(ref("database.url")) == "jdbc:mysql://db-new:3306/demo"
    gr.rollback(plan_id, actor="bob", force=True)
    assert gr.backend.get(ref("database.username")) == "app"


def test_rollback_after_complete_is_all_or_none(make_gr: Factory) -> None:
    gr = make_gr({"backend": "failing"}, plugins=(FailingBackendPlugin(),))
    backend = gr.backend
    assert isinstance(backend, FailingBackend)
    plan_id = started(gr)
    gr.complete(plan_id, actor="bob")
    backend.fail_on = {"database.username"}
    with pytest.raises(BackendError):
        gr.rollback(plan_id, actor="bob")
    assert backend.get(ref("database.url")) == "jdbc:mysql://db-new:3306/demo"
    assert gr.get_plan(plan_id).status is PlanStatus.COMPLETED
    assert gr.plan_logs(plan_id).items[-1].action == "ROLLBACK_FAILED"


@pytest.mark.parametrize(
    ("steps", "action", "status"),
    [
        ([], "pause", "DRAFT"),
        ([], "complete", "DRAFT"),
        ([], "rollback", "DRAFT"),
        (["start"], "start", "ACTIVE"),
        (["start"], "resume", "ACTIVE"),
        (["start", "pause"], "pause", "PAUSED"),
        (["start", "complete"], "pause", "COMPLETED"),
        (["start", "complete"], "complete", "COMPLETED"),
        (["start", "rollback"], "rollback", "ROLLBACK"),
        (["start", "rollback"], "resume", "ROLLBACK"),
    ],
)
def test_invalid_transitions_name_the_state_and_the_allowed_actions(
    gr: GrayRelease, steps: list[str], action: str, status: str
) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    for step in steps:
        getattr(gr, step)(plan.id, actor="a")
    before = gr.get_plan(plan.id)
    with pytest.raises(InvalidTransition) as caught:
        getattr(gr, action)(plan.id, actor="a")
    assert caught.value.details["status"] == status
    assert caught.value.details["allowedActions"] == allowed_actions(PlanStatus(status))
    assert status in caught.value.message
    assert gr.get_plan(plan.id) == before


def test_update_and_delete_only_in_draft(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    updated = gr.update_plan(
        plan.id, {"grayRules": {"ipWhitelist": ["10.0.0.0/8"]}, "planName": "renamed"}, actor="b"
    )
    assert updated.rules == {"ipWhitelist": ["10.0.0.0/8"]}
    assert updated.name == "renamed"
    assert updated.version == plan.version + 1
    assert updated.updated_by == "b"
    gr.start(plan.id, actor="a")
    with pytest.raises(InvalidTransition):
        gr.update_plan(plan.id, {"planName": "x"}, actor="a")
    with pytest.raises(InvalidTransition):
        gr.delete_plan(plan.id, actor="a")


def test_update_keeps_gray_values_of_kept_keys(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    updated = gr.update_plan(plan.id, {"configKeys": ["database.url", "database.pool"]}, actor="a")
    assert updated.item("database.url").gray_value == "jdbc:mysql://db-new:3306/demo"
    assert updated.item("database.pool").gray_value is None


def test_update_validates_like_create(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    with pytest.raises(ValidationError) as caught:
        gr.update_plan(plan.id, {"grayStrategy": "PERCENTAGE"}, actor="a")
    assert caught.value.field == "grayRules"
    with pytest.raises(ValidationError) as caught:
        gr.update_plan(plan.id, {"grayValues": {"nope": "1"}}, actor="a")
    assert caught.value.field == "grayValues.nope"
    assert gr.get_plan(plan.id) == plan


def test_delete_removes_the_plan_but_keeps_its_audit(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    gr.delete_plan(plan.id, actor="b")
    with pytest.raises(NotFound):
        gr.get_plan(plan.id)
    assert [r.action for r in gr.plan_logs(plan.id).items] == ["CREATED", "DELETED"]


def test_stale_version_is_a_conflict_and_changes_nothing(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    gr.update_plan(plan.id, {"planName": "v2"}, actor="a", expected_version=plan.version)
    with pytest.raises(Conflict) as caught:
        gr.update_plan(plan.id, {"planName": "v3"}, actor="b", expected_version=plan.version)
    assert caught.value.details["version"] == plan.version + 1
    with pytest.raises(Conflict):
        gr.start(plan.id, actor="b", expected_version=plan.version)
    assert gr.get_plan(plan.id).name == "v2"


def test_unknown_plan_is_not_found(gr: GrayRelease) -> None:
    with pytest.raises(NotFound) as caught:
        gr.start("no-such-plan", actor="a")
    assert caught.value.code == "NOT_FOUND"


def test_every_action_writes_an_audit_row_with_before_and_after(
    gr: GrayRelease, clock: ManualClock
) -> None:
    plan_id = started(gr)
    clock.advance(60)
    gr.pause(plan_id, actor="bob")
    gr.resume(plan_id, actor="carol")
    gr.complete(plan_id, actor="dave")
    rows = gr.plan_logs(plan_id).items
    assert [(r.action, r.actor) for r in rows] == [
        ("CREATED", "alice"),
        ("STARTED", "alice"),
        ("PAUSED", "bob"),
        ("RESUMED", "carol"),
        ("COMPLETED", "dave"),
    ]
    paused = rows[2]
    assert paused.at == clock.now()
    assert (paused.status_before, paused.status_after) == (PlanStatus.ACTIVE, PlanStatus.PAUSED)
    assert paused.before is not None
    assert paused.after is not None
    assert paused.before["status"] == "ACTIVE"
    assert paused.after["status"] == "PAUSED"
    assert rows[0].before is None
    assert rows[0].after is not None


def test_instances_that_got_the_gray_value_are_recorded(
    gr: GrayRelease, clock: ManualClock
) -> None:
    plan_id = started(gr)
    gr.sync()
    for _ in range(3):
        gr.resolve(ref("database.url"), LISTED)
    gr.resolve(ref("database.url"), OTHER)
    page = gr.plan_instances(plan_id)
    assert [(r.instance_id, r.instance_ip, r.hits) for r in page.items] == [
        ("i-100", "192.168.1.100", 3)
    ]
    clock.advance(30)
    gr.sync()
    gr.resolve(ref("database.username"), LISTED)
    record = gr.plan_instances(plan_id).items[0]
    assert record.hits == 4
    assert record.last_seen - record.first_seen == timedelta(seconds=30)


def test_pause_keeps_the_rules_on_top_of_membership(gr: GrayRelease) -> None:
    plan = gr.create_plan(
        spec_body(grayStrategy="USER_WHITELIST", grayRules={"userWhitelist": ["alice"]}), actor="a"
    )
    gr.start(plan.id, actor="a")
    assert gr.resolve(ref("database.url"), Client("i-1", user_id="alice")).gray
    gr.pause(plan.id, actor="a")
    assert gr.resolve(ref("database.url"), Client("i-1", user_id="alice")).gray
    assert not gr.resolve(ref("database.url"), Client("i-1", user_id="mallory")).gray
    assert not gr.resolve(ref("database.url"), Client("i-2", user_id="alice")).gray


def test_rollback_after_complete_refuses_while_a_newer_plan_holds_the_keys(gr: GrayRelease) -> None:
    first = started(gr)
    gr.complete(first, actor="a")
    newer = gr.create_plan(
        spec_body(grayValues={"database.url": "v3", "database.username": "u3"}), actor="b"
    )
    gr.start(newer.id, actor="b")
    with pytest.raises(Conflict) as caught:
        gr.rollback(first, actor="a")
    assert caught.value.details["conflictingPlanIds"] == [newer.id]
    assert "rolling back" in caught.value.message
    assert gr.backend.get(ref("database.url")) == "jdbc:mysql://db-new:3306/demo"


def test_start_snapshots_the_latest_backend_value_of_another_process(make_gr: Factory) -> None:
    editor, operator = make_gr({"backend": "sql"}), make_gr({"backend": "sql"})
    editor.backend.publish(ref("database.url"), "edited-elsewhere", actor="ops")
    plan = operator.create_plan(spec_body(), actor="a")
    started_plan = operator.start(plan.id, actor="a")  # no sync in between
    assert started_plan.item("database.url").original_value == "edited-elsewhere"


def test_an_index_refresh_failure_does_not_undo_a_committed_action(
    gr: GrayRelease, caplog: pytest.LogCaptureFixture
) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    real = gr._store.served_plans

    def unreachable(now: Any) -> list[Any]:
        raise OSError("connection reset")

    gr._store.served_plans = unreachable  # type: ignore[method-assign]
    assert gr.start(plan.id, actor="a").status is PlanStatus.ACTIVE
    assert "index refresh after STARTED failed" in caplog.text
    gr._store.served_plans = real  # type: ignore[method-assign]
    gr.sync()
    assert gr.resolve(ref("database.url"), LISTED).gray


class BarrierBackend:
    """A memory backend whose first publishes wait for each other, so two completes overlap."""

    name = "barrier"

    def __init__(self) -> None:
        self.values: dict[Any, str] = {}
        self.barrier = threading.Barrier(2, timeout=10)

    def get(self, ref: Any) -> str | None:
        return self.values.get(ref)

    def publish(self, ref: Any, value: str | None, *, actor: str) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            self.barrier.wait()  # a lone publish (a wrong restore) waits out the timeout
        if value is None:
            self.values.pop(ref, None)
        else:
            self.values[ref] = value

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_two_concurrent_completes_leave_the_new_value_published(make_gr: Factory) -> None:
    backend = BarrierBackend()

    class Provider:
        @hookimpl
        def grayrelease_make_backend(self, settings: Any) -> BarrierBackend:
            return backend

    gr = make_gr({"backend": "barrier"}, plugins=(Provider(),))
    plan = gr.create_plan(
        spec_body(configKeys=["database.url"], grayValues={"database.url": "new"}), actor="a"
    )
    backend.values[ref("database.url")] = "old"
    gr.start(plan.id, actor="a")
    outcomes: list[str] = []

    def complete() -> None:
        try:
            gr.complete(plan.id, actor="a")
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=complete) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backend.barrier.abort()
    assert sorted(outcomes) == ["conflict", "ok"]
    assert gr.get_plan(plan.id).status is PlanStatus.COMPLETED
    assert backend.values[ref("database.url")] == "new"  # the loser did not "restore" old


def test_a_plan_whose_strategy_is_missing_here_spares_the_others(make_gr: Factory) -> None:
    from .plugins import sample_strategy

    with_plugin = make_gr(plugins=(sample_strategy,))
    odd = with_plugin.create_plan(
        spec_body(grayStrategy="INSTANCE_PREFIX", grayRules={"prefix": "c-"}), actor="a"
    )
    with_plugin.start(odd.id, actor="a")
    normal = with_plugin.create_plan(spec_body(appName="other-app"), actor="a")
    with_plugin.start(normal.id, actor="a")

    without = make_gr()  # starts although one live plan is foreign to it
    assert not without.resolve(ref("database.url"), Client("c-1")).gray
    assert without.resolve(ref("database.url", app="other-app"), LISTED).gray
    assert without.rollback(odd.id, actor="a").status is PlanStatus.ROLLBACK


def test_a_failing_hit_write_blocks_pause_but_not_rollback(gr: GrayRelease) -> None:
    plan_id = started(gr, grayStrategy="PERCENTAGE", grayRules={"percentage": 100})
    gr.resolve(ref("database.url"), Client("i-1"))

    def down(hits: Any) -> None:
        raise OSError("database unreachable")

    real = gr._store.record_hits
    gr._store.record_hits = down  # type: ignore[method-assign]
    with pytest.raises(OSError, match="unreachable"):
        gr.pause(plan_id, actor="a")  # membership would be wrong without the write
    assert gr.get_plan(plan_id).status is PlanStatus.ACTIVE
    assert gr.rollback(plan_id, actor="a", reason="emergency").status is PlanStatus.ROLLBACK
    gr._store.record_hits = real  # type: ignore[method-assign]
    gr.flush_hits()
    assert [r.instance_id for r in gr.plan_instances(plan_id).items] == ["i-1"]


def test_unstorable_instance_ids_do_not_poison_the_hit_writes(gr: GrayRelease) -> None:
    plan_id = started(gr, grayStrategy="PERCENTAGE", grayRules={"percentage": 100})
    for client in (
        Client("nul\x00id"),
        Client("x" * 300),
        Client("bad-ip", "10.0.0.1\x00"),
        Client("i-\ud800"),
        Client("bad-ip-2", "\udc80"),
        Client("fine-1"),
    ):
        assert gr.resolve(ref("database.url"), client).gray
    gr.pause(plan_id, actor="a")
    assert [r.instance_id for r in gr.plan_instances(plan_id).items] == ["fine-1"]


def test_instances_another_process_served_join_a_pause_everywhere(make_gr: Factory) -> None:
    server, operator = make_gr(), make_gr()
    plan_id = started(operator, grayStrategy="PERCENTAGE", grayRules={"percentage": 100})
    server.sync()
    assert server.resolve(ref("database.url"), Client("seen-by-server")).gray  # buffered only
    operator.pause(plan_id, actor="ops")
    assert not operator.resolve(ref("database.url"), Client("seen-by-server")).gray
    server.sync()  # sees the pause: writes what it served under the ACTIVE rules at once
    operator.sync()  # reloads the members of its paused plans
    assert operator.resolve(ref("database.url"), Client("seen-by-server")).gray
    assert server.resolve(ref("database.url"), Client("seen-by-server")).gray
    assert not operator.resolve(ref("database.url"), Client("never-seen")).gray
