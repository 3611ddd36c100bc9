"""Latency of the publishing actions on a three-key plan, beside an action that publishes nothing.

Run: ``make bench-actions`` (or ``.venv/bin/python benchmarks/action_bench.py [--rounds N]
[--database-url URL] [--layout joined|claimed]``; the default URL is the loopback PostgreSQL
of the project's machines). ``joined``: the values in the store's database, one transaction;
``claimed``: the values in a schema of their own, so the action claims, publishes, commits.

Each round creates a plan on three keys of the ``sql`` backend, starts it, and times:
- baseline: ``pause`` then ``resume`` (two one-transaction actions, no backend write), halved;
- ``complete``: snapshot, claim, three publishes, commit;
- ``rollback`` of the completed plan: the same, publishing the originals.

Reported: the median of each in ms and as a multiple of the baseline, measured in the same
process, so the ratio survives a noisy machine. Issue 15's target: complete and rollback no
more than 2x what they took before the claim/intent path (compare the ratios of two runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from grayrelease_core import ConfigRef, GrayRelease

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
KEYS = ("bench.k1", "bench.k2", "bench.k3")


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def pause_and_resume(gr: GrayRelease, plan_id: str) -> None:
    gr.pause(plan_id, actor="bench")
    gr.resume(plan_id, actor="bench")


def run(url: str, rounds: int, values_url: str | None) -> dict[str, list[float]]:
    settings: dict[str, Any] = {"database_url": url, "backend": "sql", "background_sync": False}
    if values_url is not None:
        settings["sql"] = {"database_url": values_url}
    figures: dict[str, list[float]] = {"baseline": [], "complete": [], "rollback": []}
    with GrayRelease.from_settings(settings, load_entrypoints=False) as gr:
        for n in range(rounds):
            for key in KEYS:
                gr.backend.publish(ConfigRef("bench", "prod", "default", key), "old", actor="b")
            plan = gr.create_plan(
                {
                    "planName": f"bench {n}",
                    "appName": "bench",
                    "environment": "prod",
                    "groupName": "default",
                    "configKeys": list(KEYS),
                    "grayStrategy": "PERCENTAGE",
                    "grayRules": {"percentage": 10},
                    "grayValues": {key: f"new-{n}" for key in KEYS},
                },
                actor="bench",
            )
            gr.start(plan.id, actor="bench")
            plan_id = plan.id

            figures["baseline"].append(timed(partial(pause_and_resume, gr, plan_id)) / 2)
            figures["complete"].append(timed(partial(gr.complete, plan_id, actor="bench")))
            figures["rollback"].append(timed(partial(gr.rollback, plan_id, actor="bench")))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--database-url", default=POSTGRES)
    parser.add_argument("--layout", choices=("joined", "claimed"), default="joined")
    options = parser.parse_args()
    schemas = [f"bench_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    admin = create_engine(options.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for schema in schemas:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    plans_url, values_url = (
        make_url(options.database_url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
        for schema in schemas
    )
    try:
        figures = run(
            plans_url, options.rounds, values_url if options.layout == "claimed" else None
        )
    finally:
        with admin.connect() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    base = statistics.median(figures["baseline"])
    print(
        f"3-key plan, sql backend on PostgreSQL ({options.layout}), "
        f"median of {options.rounds} rounds"
    )
    for name, values in figures.items():
        middle = statistics.median(values)
        label = "pause/resume (baseline)" if name == "baseline" else name
        print(f"{label:<26} {middle:8.2f} ms   {middle / base:5.2f}x baseline")


if __name__ == "__main__":
    main()
