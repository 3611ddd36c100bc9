"""An end-to-end walk through a gray release on the embedded SQLite default (``make run``).

Creates the spec's feature-switch plan at 40%, shows what eight clients get, pauses,
resumes, completes and rolls back, printing each client's value at every step. The plans
land in ``grayrelease.db`` (the default ``database_url``) unless a settings URL is given.
"""

from __future__ import annotations

import sys

from grayrelease_core import Client, ConfigRef, GrayRelease
from grayrelease_core.hashing import bucket, threshold

KEY = ConfigRef("order-service", "prod", "default", "feature.newPayment.enabled")
CLIENTS = [Client(f"order-{n:02d}", f"192.168.1.{100 + n}") for n in range(1, 9)]
SALT = "newPayment-2026"
"""A fixed bucketing salt (the plan id by default) so every run picks the same clients."""


def show(gr: GrayRelease, step: str) -> None:
    answers = [gr.resolve(KEY, client) for client in CLIENTS]
    cells = " ".join(
        f"{c.instance_id}={'*' if a.gray else ' '}{a.value}"
        for c, a in zip(CLIENTS, answers, strict=True)
    )
    print(f"{step:<10} {cells}")


def main(settings: dict[str, object]) -> None:
    with GrayRelease.from_settings(settings) as gr:
        gr.backend.publish(KEY, "false", actor="ops")
        plan = gr.create_plan(
            {
                "planName": "新功能开关灰度",
                "appName": KEY.app_name,
                "environment": KEY.environment,
                "configKeys": [KEY.config_key],
                "grayStrategy": "PERCENTAGE",
                "grayRules": {"percentage": 40, "salt": SALT},
                "grayValues": {KEY.config_key: "true"},
            },
            actor="alice",
        )
        print(f"plan {plan.id} ({plan.name}) is {plan.status}; * marks a gray value")
        show(gr, "DRAFT")
        gr.start(plan.id, actor="alice")
        show(gr, "ACTIVE")
        gr.pause(plan.id, actor="alice")
        # A client the 40% rule would pick, arriving only now: paused plans admit no one new.
        late = next(
            Client(f"order-{n:02d}")
            for n in range(9, 1000)
            if bucket(SALT, f"order-{n:02d}") < threshold(40)
        )
        print(
            f"{'PAUSED':<10} recorded instances keep the gray value; {late.instance_id}, "
            f"new but inside the 40%, gets {gr.resolve(KEY, late).value!r}"
        )
        show(gr, "PAUSED")
        gr.resume(plan.id, actor="alice")
        show(gr, "RESUMED")
        done = gr.complete(plan.id, actor="bob")
        show(gr, done.status)
        undone = gr.rollback(plan.id, actor="bob", reason="demo: undo the release")
        show(gr, undone.status)
        instances = gr.plan_instances(plan.id)
        print(
            f"{instances.total} instances got the gray value: "
            + ", ".join(r.instance_id for r in instances.items)
        )
        print(
            "audit: " + " -> ".join(f"{r.action}({r.actor})" for r in gr.plan_logs(plan.id).items)
        )


if __name__ == "__main__":
    main({"database_url": sys.argv[1]} if len(sys.argv) > 1 else {})
