"""The spec's three scenarios, each through start, pause, resume, complete and rollback."""

from __future__ import annotations

from datetime import timedelta

from grayrelease_core import Client, ConfigRef, GrayRelease, ManualClock, PlanStatus
from grayrelease_core.hashing import bucket, threshold


def values(gr: GrayRelease, key: ConfigRef, clients: list[Client]) -> list[tuple[str | None, bool]]:
    return [(r.value, r.gray) for r in (gr.resolve(key, c) for c in clients)]


def test_database_config_by_ip_whitelist(gr: GrayRelease) -> None:
    pool = ConfigRef("user-service", "prod", "default", "database.maxPoolSize")
    timeout = ConfigRef("user-service", "prod", "default", "database.connectionTimeout")
    gr.backend.publish(pool, "20", actor="ops")
    gr.backend.publish(timeout, "3000", actor="ops")
    plan = gr.create_plan(
        {
            "planName": "数据库连接池配置优化",
            "appName": "user-service",
            "environment": "prod",
            "configKeys": ["database.maxPoolSize", "database.connectionTimeout"],
            "grayStrategy": "IP_WHITELIST",
            "grayRules": {"ipWhitelist": ["192.168.1.100", "192.168.1.101"]},
            "grayValues": {"database.maxPoolSize": 50, "database.connectionTimeout": "5000"},
        },
        actor="dba",
    )
    a, b = Client("us-1", "192.168.1.100"), Client("us-2", "192.168.1.101")
    c, late = Client("us-3", "192.168.1.102"), Client("us-4", "192.168.1.101")
    clients = [a, b, c]
    assert values(gr, pool, clients) == [("20", False)] * 3

    gr.start(plan.id, actor="dba")
    assert values(gr, pool, clients) == [("50", True), ("50", True), ("20", False)]
    assert values(gr, timeout, clients) == [("5000", True), ("5000", True), ("3000", False)]

    gr.pause(plan.id, actor="dba")
    assert values(gr, pool, [*clients, late]) == [
        ("50", True),
        ("50", True),
        ("20", False),
        ("20", False),
    ]

    gr.resume(plan.id, actor="dba")
    assert values(gr, pool, [*clients, late]) == [
        ("50", True),
        ("50", True),
        ("20", False),
        ("50", True),
    ]

    gr.complete(plan.id, actor="dba")
    assert values(gr, pool, clients) == [("50", False)] * 3
    assert values(gr, timeout, clients) == [("5000", False)] * 3

    gr.rollback(plan.id, actor="dba", reason="connection storms")
    assert values(gr, pool, clients) == [("20", False)] * 3
    assert values(gr, timeout, clients) == [("3000", False)] * 3
    assert {r.instance_id for r in gr.plan_instances(plan.id).items} == {"us-1", "us-2", "us-4"}


def test_feature_switch_at_ten_percent(gr: GrayRelease) -> None:
    key = ConfigRef("order-service", "prod", "default", "feature.newPayment.enabled")
    gr.backend.publish(key, "false", actor="ops")
    plan = gr.create_plan(
        {
            "planName": "新功能开关灰度",
            "appName": "order-service",
            "environment": "prod",
            "configKeys": ["feature.newPayment.enabled"],
            "grayStrategy": "PERCENTAGE",
            "grayRules": {"percentage": 10},
            "grayValues": {"feature.newPayment.enabled": True},
        },
        actor="pm",
    )
    gr.start(plan.id, actor="pm")
    clients = [Client(f"order-{n}") for n in range(2000)]
    expected_in = {c.instance_id for c in clients if bucket(plan.id, c.instance_id) < threshold(10)}
    got = {c.instance_id for c in clients if gr.resolve(key, c).gray}
    assert got == expected_in
    assert 140 < len(got) < 260
    assert all(gr.resolve(key, c).value == "true" for c in clients if c.instance_id in got)

    gr.pause(plan.id, actor="pm")
    newcomers = [Client(f"new-{n}") for n in range(2000)]
    assert not any(gr.resolve(key, c).gray for c in newcomers)
    assert {c.instance_id for c in clients if gr.resolve(key, c).gray} == got

    gr.resume(plan.id, actor="pm")
    assert any(gr.resolve(key, c).gray for c in newcomers)

    gr.complete(plan.id, actor="pm")
    assert {gr.resolve(key, c).value for c in clients} == {"true"}
    gr.rollback(plan.id, actor="pm")
    assert {gr.resolve(key, c).value for c in clients} == {"false"}


def test_canary_release(gr: GrayRelease, clock: ManualClock) -> None:
    key = ConfigRef("cache-service", "prod", "default", "redis.cluster.nodes")
    gr.backend.publish(key, "10.0.0.1:6379", actor="ops")
    plan = gr.create_plan(
        {
            "planName": "缓存配置金丝雀发布",
            "appName": "cache-service",
            "environment": "prod",
            "configKeys": ["redis.cluster.nodes"],
            "grayStrategy": "CANARY",
            "grayRules": {
                "canary": {
                    "canaryInstances": ["192.168.1.200"],
                    "stepPercentage": 20,
                    "stepInterval": 30,
                }
            },
            "grayValues": {"redis.cluster.nodes": "10.0.0.1:6379,10.0.0.2:6379"},
        },
        actor="sre",
    )
    started = gr.start(plan.id, actor="sre")
    assert started.progress.percentage == 0
    assert started.progress.next_step_at == clock.now() + timedelta(minutes=30)
    canary, fleet = (
        Client("cache-1", "192.168.1.200"),
        [Client(f"cache-{n}", f"10.1.0.{n}") for n in range(2, 200)],
    )
    assert gr.resolve(key, canary) == ("10.0.0.1:6379,10.0.0.2:6379", True, plan.id)
    assert not any(gr.resolve(key, c).gray for c in fleet)

    clock.advance(timedelta(minutes=10))
    paused = gr.pause(plan.id, actor="sre")
    assert paused.progress.next_step_at is None
    assert gr.resolve(key, canary).gray
    assert not gr.resolve(
        key, Client("cache-new", "192.168.1.200")
    ).gray  # a new instance on the canary IP

    clock.advance(timedelta(minutes=10))
    resumed = gr.resume(plan.id, actor="sre")
    assert resumed.progress.next_step_at == clock.now() + timedelta(minutes=30)
    assert gr.resolve(key, Client("cache-new", "192.168.1.200")).gray

    done = gr.complete(plan.id, actor="sre")
    assert done.status is PlanStatus.COMPLETED
    assert done.progress.percentage == 100
    assert {gr.resolve(key, c).value for c in [canary, *fleet]} == {"10.0.0.1:6379,10.0.0.2:6379"}
    gr.rollback(plan.id, actor="sre")
    assert {gr.resolve(key, c).value for c in [canary, *fleet]} == {"10.0.0.1:6379"}
