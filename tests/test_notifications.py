"""Notifications end to end: routing, the outbox written with the event, delivery with
retries through real channels (a real SMTP server, the strict DingTalk fake), exactly once
across a restart, and what start-up refuses."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from grayrelease_plugins.stores.sqlalchemy import SqlPlanStore

from grayrelease_core import (
    Conflict,
    GrayRelease,
    LogRecord,
    ManualClock,
    NotFound,
    PlanStatus,
    ValidationError,
)
from grayrelease_core.notify import Message, Severity
from grayrelease_core.outbox import DeliveryState, Notification

from .fake_robots import FakeDingTalk
from .smtp_server import SmtpServer, StartServer, smtp_server, tls_files
from .test_ticker import ERROR_RATE, KEY, canary_body, interval

__all__ = ["smtp_server", "tls_files"]  # the imported fixtures, used by name

TOKEN = "robot-token"
SECRET = "SECrobot-secret"
OPS = "ops@example.com"


def ip_body(name: str = "数据库配置灰度发布", **extra: Any) -> dict[str, Any]:
    return {
        "planName": name,
        "appName": "demo-app",
        "environment": "prod",
        "groupName": "database",
        "configKeys": [f"database.url.{uuid.uuid4().hex[:6]}"],
        "grayStrategy": "IP_WHITELIST",
        "grayRules": {"ipWhitelist": ["192.168.1.100"]},
        "grayValues": {},
        **extra,
    }


def gray(body: dict[str, Any]) -> dict[str, Any]:
    body["grayValues"] = {body["configKeys"][0]: "jdbc:mysql://db-new:3306/demo"}
    return body


@pytest.fixture
def dingtalk(clock: ManualClock) -> Iterator[FakeDingTalk]:
    with FakeDingTalk({TOKEN: SECRET}, clock=clock) as fake:
        yield fake


@pytest.fixture
def smtp(smtp_server: StartServer) -> SmtpServer:
    return smtp_server()


def channel_settings(
    url: str, dingtalk: FakeDingTalk, smtp: SmtpServer, **notify: Any
) -> dict[str, Any]:
    return {
        "database_url": url,
        "background_sync": False,
        "dingtalk": {"webhook_url": dingtalk.webhook_url(TOKEN), "secret": SECRET},
        "email": smtp.settings(security="none"),
        "notify": {
            "routing": {
                "channels": ["dingtalk", "email", "inbox"],
                "recipients": {"email": [OPS]},
            },
            **notify,
        },
    }


def open_engine(settings: dict[str, Any], clock: ManualClock) -> GrayRelease:
    return GrayRelease.from_settings(settings, clock=clock, load_entrypoints=False)


def notifications(gr: GrayRelease, plan_id: str) -> list[Notification]:
    return list(gr.plan_notifications(plan_id, page_size=200).items)


def titles_at_dingtalk(fake: FakeDingTalk) -> list[str]:
    return [str(received.content["title"]) for received in fake.accepted]


def titles_at_smtp(server: SmtpServer) -> list[str]:
    return [str(received.message["Subject"]) for received in server.mailbox.received]


# --- routing and the outbox ---------------------------------------------------------------


def test_an_action_queues_its_notifications_and_delivery_sends_them_later(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp)
    with open_engine(settings, clock) as gr:
        plan = gr.create_plan(gray(ip_body()), actor="alice")
        gr.start(plan.id, actor="alice")
        queued = notifications(gr, plan.id)
        # CREATED is not among the default events; STARTED goes to all three channels.
        assert sorted((n.event, n.channel) for n in queued) == [
            ("STARTED", "dingtalk"),
            ("STARTED", "email"),
            ("STARTED", "inbox"),
        ]
        assert {n.state for n in queued} == {DeliveryState.PENDING}
        assert dingtalk.accepted == []  # the action sent nothing
        assert smtp.mailbox.received == []
        by_channel = {n.channel: n for n in queued}
        assert by_channel["email"].recipients == (OPS,)
        assert by_channel["inbox"].recipients == ("alice",)  # the author, when nobody is named

        report = gr.deliver()
        assert report.errors == []
        assert sorted(report.delivered) == sorted(n.id for n in queued)
        assert titles_at_dingtalk(dingtalk) == [by_channel["dingtalk"].message.title]
        assert "数据库配置灰度发布" in titles_at_dingtalk(dingtalk)[0]
        [mail] = smtp.mailbox.received
        assert mail.rcpt_tos == [OPS]
        assert "数据库配置灰度发布" in str(mail.message["Subject"])
        [inbox] = gr.messages("alice").items
        assert inbox.event == "STARTED"
        assert inbox.read_at is None
        after = notifications(gr, plan.id)
        assert {n.state for n in after} == {DeliveryState.DELIVERED}
        assert all(len(n.history) == 1 and n.history[0].delivered for n in after)
        assert gr.deliver().delivered == []  # nothing is sent twice


def test_a_plan_routing_overrides_the_default_and_severities_filter_channels(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp)
    with open_engine(settings, clock) as gr:
        notify = {
            "channels": ["dingtalk", "inbox"],
            "events": ["STARTED", "PAUSED", "ROLLED_BACK"],
            "recipients": {"inbox": ["bob"]},
            "minSeverity": {"dingtalk": "warning"},
        }
        plan = gr.create_plan(gray(ip_body(notify=notify)), actor="alice")
        assert plan.notify is not None
        assert plan.notify.to_wire() == notify
        gr.start(plan.id, actor="alice")
        gr.pause(plan.id, actor="alice")
        gr.rollback(plan.id, actor="alice", reason="看错了")
        routed = sorted((n.event, n.channel, n.recipients) for n in notifications(gr, plan.id))
        assert routed == [
            ("PAUSED", "inbox", ("bob",)),
            ("ROLLED_BACK", "dingtalk", ()),  # warning: the only one the robot takes
            ("ROLLED_BACK", "inbox", ("bob",)),
            ("STARTED", "inbox", ("bob",)),
        ]
        [rollback] = [n for n in notifications(gr, plan.id) if n.channel == "dingtalk"]
        assert rollback.message.severity is Severity.WARNING
        assert "看错了" in rollback.message.markdown


def test_routing_errors_name_the_field(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp)
    cases = [
        ({"channels": ["sms"]}, "notify.channels[0]"),
        ({"events": ["STARTED", "EXPLODED"]}, "notify.events[1]"),
        ({"recipients": {"email": ["not an address"]}}, "notify.recipients.email[0]"),
        ({"recipients": {"email": []}}, "notify.recipients.email"),
        ({"recipients": {"fax": ["1"]}}, "notify.recipients.fax"),
        ({"minSeverity": {"email": "loud"}}, "notify.minSeverity.email"),
        ({"channel": ["email"]}, "notify.channel"),
        ("email", "notify"),
    ]
    with open_engine(settings, clock) as gr:
        for notify, field in cases:
            with pytest.raises(ValidationError) as caught:
                gr.create_plan(ip_body(notify=notify), actor="alice")
            assert caught.value.field == field, notify
        assert gr.list_plans().total == 0


@pytest.mark.parametrize(
    ("notify", "field"),
    [
        ({"routing": {"channels": ["email"]}}, "settings.notify.routing.recipients.email"),
        ({"routing": {"channels": ["dingtalk"]}}, "settings.notify.routing.channels[0]"),
        ({"language": "fr"}, "settings.notify.language"),
        ({"console_url": "gray.example.com"}, "settings.notify.console_url"),
        ({"max_attempts": 0}, "settings.notify.max_attempts"),
        ({"retry_base": 600, "retry_max": 60}, "settings.notify.retry_max"),
        ({"retries": 3}, "settings.notify.retries"),
    ],
)
def test_bad_notify_settings_fail_at_start_up_naming_the_setting(
    tmp_path: Path, smtp: SmtpServer, notify: dict[str, Any], field: str
) -> None:
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "background_sync": False,
        "email": smtp.settings(security="none"),
        "notify": notify,
    }
    with pytest.raises(ValidationError) as caught:
        GrayRelease.from_settings(settings, load_entrypoints=False)
    assert caught.value.field == field


def test_the_outbox_is_written_in_the_transaction_of_its_audit_rows(db_url: str) -> None:
    """A save that fails leaves neither the change, nor its audit row, nor its messages."""
    clock = ManualClock()
    with GrayRelease.from_settings(
        {"database_url": db_url, "background_sync": False}, clock=clock, load_entrypoints=False
    ) as gr:
        plan = gr.create_plan(gray(ip_body()), actor="alice")
        store = gr._store
        assert isinstance(store, SqlPlanStore)
        now = clock.now()
        row = LogRecord(plan.id, "STARTED", "alice", now, PlanStatus.DRAFT, PlanStatus.ACTIVE)
        first = _notification(plan.id, now)
        changed = attrs.evolve(plan, status=PlanStatus.ACTIVE)
        store.save_plan(changed, expected_version=plan.version, log=row, outbox=[first])
        with pytest.raises(Conflict):  # stale version: nothing of it is written
            store.save_plan(changed, expected_version=plan.version, log=row, outbox=[first])
        with pytest.raises(Conflict):  # the outbox insert fails: the change goes with it
            store.save_plan(
                attrs.evolve(changed, description="changed"),
                expected_version=plan.version + 1,
                log=row,
                outbox=[_notification(plan.id, now), first],  # first's id is taken
            )
        stored = gr.get_plan(plan.id)
        assert stored.version == plan.version + 1
        assert stored.description == ""
        assert [r.action for r in gr.plan_logs(plan.id).items] == ["CREATED", "STARTED"]
        assert [n.id for n in notifications(gr, plan.id)] == [first.id]


def _notification(plan_id: str, now: Any) -> Notification:
    key = uuid.uuid4().hex
    return Notification(
        id=key,
        plan_id=plan_id,
        event="STARTED",
        channel="inbox",
        recipients=("alice",),
        message=Message("t", "x", "m", key=key, plan_id=plan_id, event="STARTED", at=now),
        created_at=now,
        next_attempt_at=now,
    )


# --- delivery -------------------------------------------------------------------------------


def test_a_channel_down_mid_way_loses_nothing_and_sends_each_message_once_after_a_restart(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp)
    plan_ids = []
    with open_engine(settings, clock) as gr:
        for n in range(3):  # delivered while the services are up
            plan_ids.append(
                gr.start(gr.create_plan(gray(ip_body(f"p{n}")), actor="a").id, actor="a").id
            )
        assert len(gr.deliver().delivered) == 9
        dingtalk.fail(502)  # the robot's gateway breaks
        smtp.mailbox.replies["MAIL"] = "451 4.3.0 try again later"  # the relay defers
        for n in range(3, 6):  # the plan operations go on regardless
            plan_ids.append(
                gr.start(gr.create_plan(gray(ip_body(f"p{n}")), actor="a").id, actor="a").id
            )
        for plan_id in plan_ids[:2]:
            gr.rollback(plan_id, actor="a", reason="演练")
        report = gr.deliver()
        # One failure per channel and run, then the channel rests until its backoff is over.
        assert len(report.retrying) == 2
        assert len(report.delivered) == 5  # the inbox is in the database, still reachable
        waiting = [
            n for p in plan_ids for n in notifications(gr, p) if n.state is DeliveryState.PENDING
        ]
        assert len(waiting) == 10
        tried = [n for n in waiting if n.attempts]
        assert len(tried) == 2
        assert all(n.next_attempt_at == clock.now() + timedelta(seconds=30) for n in tried)
        assert {n.history[0].error.split(":")[0] for n in tried} >= {"email via 127.0.0.1"}
    # The worker restarts (a new process) with the services back.
    dingtalk.heal()
    smtp.mailbox.replies.clear()
    clock.advance(timedelta(seconds=31))
    with open_engine(settings, clock) as gr:
        report = gr.deliver()
        assert len(report.delivered) == 10
        assert report.retrying == []
        assert report.failed == []
        assert gr.deliver().delivered == []
        everything = [n for p in plan_ids for n in notifications(gr, p)]
        assert {n.state for n in everything} == {DeliveryState.DELIVERED}
        by_id = {n.id: n for n in everything}
    expected = sorted(n.message.title for n in by_id.values() if n.channel == "dingtalk")
    assert sorted(titles_at_dingtalk(dingtalk)) == expected  # each once: 6 starts, 2 rollbacks
    assert len(expected) == 8
    assert sorted(titles_at_smtp(smtp)) == sorted(
        n.message.title for n in by_id.values() if n.channel == "email"
    )


def test_retries_back_off_exponentially_and_give_up_after_max_attempts(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(
        f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp, max_attempts=3, retry_base=10
    )
    settings["notify"]["routing"]["channels"] = ["dingtalk"]
    with open_engine(settings, clock) as gr:
        plan = gr.start(gr.create_plan(gray(ip_body()), actor="a").id, actor="a")
        dingtalk.fail(503)
        waits = []
        for _ in range(3):
            gr.deliver()
            [n] = notifications(gr, plan.id)
            if n.state is DeliveryState.PENDING:
                waits.append((n.next_attempt_at - clock.now()).total_seconds())
                assert gr.deliver().retrying == []  # not before its time
                clock.advance(timedelta(seconds=waits[-1]))
        assert waits == [10, 20]
        [given_up] = notifications(gr, plan.id)
        assert given_up.state is DeliveryState.FAILED
        assert [a.number for a in given_up.history] == [1, 2, 3]
        assert all(not a.delivered and a.retryable and "503" in a.error for a in given_up.history)
        dingtalk.heal()
        clock.advance(timedelta(hours=1))
        assert gr.deliver().delivered == []  # failed stays failed, listed for operators
        assert dingtalk.accepted == []


def test_a_refusal_that_cannot_change_is_not_retried(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp)
    settings["dingtalk"]["secret"] = "SECthe-wrong-secret"
    with open_engine(settings, clock) as gr:
        plan = gr.start(gr.create_plan(gray(ip_body()), actor="a").id, actor="a")
        report = gr.deliver()
        [refused] = [n for n in notifications(gr, plan.id) if n.channel == "dingtalk"]
        assert refused.state is DeliveryState.FAILED
        assert refused.attempts == 1
        assert "310000" in refused.last_error
        assert refused.id in report.failed
        assert len(report.delivered) == 2


def test_the_rate_limit_answer_is_waited_out_and_the_channel_rests(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp)
    settings["notify"]["routing"]["channels"] = ["dingtalk"]
    with open_engine(settings, clock) as gr:
        plans = [
            gr.start(gr.create_plan(gray(ip_body(f"p{n}")), actor="a").id, actor="a")
            for n in range(23)
        ]
        report = gr.deliver()
        assert len(report.delivered) == 20  # the robot's 20 a minute
        assert len(report.retrying) == 1  # the 21st was refused; the other two were not tried
        queued = [n for p in plans for n in notifications(gr, p.id)]
        [limited] = [n for n in queued if n.attempts == 1 and n.state is DeliveryState.PENDING]
        assert "130101" in limited.last_error
        # DingTalk throttles the robot for 10 minutes; its answer says so and is obeyed.
        assert limited.next_attempt_at == clock.now() + timedelta(minutes=10)
        assert sum(1 for n in queued if n.attempts == 0) == 2
        clock.advance(timedelta(minutes=5))
        assert gr.deliver().delivered == []  # resting, not hammering the throttled robot
        clock.advance(timedelta(minutes=5, seconds=1))
        assert len(gr.deliver().delivered) == 3
        assert len(dingtalk.accepted) == 23


def test_two_workers_at_once_send_each_notification_once(
    db_url: str, clock: ManualClock, smtp: SmtpServer
) -> None:
    settings = {
        "database_url": db_url,
        "background_sync": False,
        "email": smtp.settings(security="none"),
        "notify": {"routing": {"channels": ["email"], "recipients": {"email": [OPS]}}},
    }
    with open_engine(settings, clock) as first, open_engine(settings, clock) as second:
        for n in range(12):
            first.start(first.create_plan(gray(ip_body(f"p{n}")), actor="a").id, actor="a")
        reports = []
        barrier = threading.Barrier(2)

        def work(gr: GrayRelease) -> None:
            barrier.wait()
            reports.append(gr.deliver())

        threads = [threading.Thread(target=work, args=(gr,)) for gr in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    delivered = [key for report in reports for key in report.delivered]
    assert len(delivered) == len(set(delivered)) == 12
    subjects = titles_at_smtp(smtp)
    assert len(subjects) == len(set(subjects)) == 12


def test_an_automatic_rollback_tells_the_failing_metric_at_once(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp, language="en")
    settings["notify"]["routing"] = {"channels": ["dingtalk"]}
    with open_engine(settings, clock) as gr:
        gr.backend.publish(KEY, "10.0.0.1:6379", actor="ops")
        plan = gr.start(gr.create_plan(canary_body(checks=[ERROR_RATE]), actor="a").id, actor="a")
        gr.deliver()
        rng = random.Random(3)
        interval(gr, clock, plan.id, rng, gray_rate=0.01)
        interval(gr, clock, plan.id, rng, gray_rate=0.03)  # this tick rolls back, and tells
        assert gr.get_plan(plan.id).status is PlanStatus.ROLLBACK
    told = titles_at_dingtalk(dingtalk)
    assert told[0].startswith("[Gray release] Started")
    assert told[-2].startswith("[CRITICAL] [Gray release] Analysis failed")
    assert told[-1].startswith("[CRITICAL] [Gray release] Rolled back automatically")
    text = dingtalk.accepted[-1].content["text"]
    assert "errorRate" in text  # the metric, never the values
    assert "10.0.0.9" not in text


def test_a_deleted_plans_notifications_stay_listed(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp)
    settings["notify"]["routing"]["events"] = ["DELETED"]
    with open_engine(settings, clock) as gr:
        plan = gr.create_plan(ip_body(), actor="alice")
        gr.delete_plan(plan.id, actor="alice")
        assert {n.event for n in notifications(gr, plan.id)} == {"DELETED"}
        gr.deliver()
        assert {n.state for n in notifications(gr, plan.id)} == {DeliveryState.DELIVERED}
        with pytest.raises(NotFound):
            gr.plan_notifications("no-such-plan")


def test_a_dead_channels_backlog_does_not_hold_back_the_channels_that_work(
    tmp_path: Path, clock: ManualClock, dingtalk: FakeDingTalk, smtp: SmtpServer
) -> None:
    settings = channel_settings(f"sqlite:///{tmp_path / 'g.db'}", dingtalk, smtp, batch=5)
    with open_engine(settings, clock) as gr:
        robot_only = {"channels": ["dingtalk"]}
        for n in range(8):  # more robot messages than a batch, all older than the mail
            gr.start(
                gr.create_plan(gray(ip_body(f"r{n}", notify=robot_only)), actor="a").id, actor="a"
            )
        clock.advance(timedelta(seconds=1))
        mailed = gr.create_plan(gray(ip_body("m", notify={"channels": ["email"]})), actor="a")
        gr.start(mailed.id, actor="a")
        dingtalk.fail(502)
        report = gr.deliver()
        assert len(report.retrying) == 1  # one try at the robot, then it rests
        [mail] = notifications(gr, mailed.id)
        assert mail.state is DeliveryState.DELIVERED
        assert mail.id in report.delivered
        assert titles_at_smtp(smtp) == [mail.message.title]
