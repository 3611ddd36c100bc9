"""Shared fixtures: a manual clock, a real SQLite file per test, and a GrayRelease factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from grayrelease_core import ConfigRef, GrayRelease, ManualClock

from .databases import KINDS, fresh_database

# Every property and fuzz test draws the same examples each run, under CI and under a
# newcomer's `make test` alike: a failure is replayed by running the test again, or from the
# blob hypothesis prints (@reproduce_failure). GRAYRELEASE_HYPOTHESIS=explore draws new
# examples each run (with --hypothesis-seed=N to replay one), to look for new failures.
hypothesis_settings.register_profile("fixed", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", print_blob=True)
hypothesis_settings.load_profile(
    "explore" if os.environ.get("GRAYRELEASE_HYPOTHESIS") == "explore" else "fixed"
)

Factory = Callable[..., GrayRelease]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test is a failure: nothing skipped may be counted as passing."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") == "true" and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("CI=true: skipped tests count as failures", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for the test, once on each of SQLite, PostgreSQL and MariaDB."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file, for tests about something other than the database."""
    return f"sqlite:///{tmp_path / 'gray.db'}"


@pytest.fixture
def make_gr(db_url: str, clock: ManualClock) -> Iterator[Factory]:
    """Build GrayRelease instances on the test's database; all closed at the end."""
    made: list[GrayRelease] = []

    def factory(
        settings: Mapping[str, Any] | None = None, *, plugins: tuple[object, ...] = ()
    ) -> GrayRelease:
        merged = {"database_url": db_url, "background_sync": False, **(settings or {})}
        gr = GrayRelease.from_settings(merged, clock=clock, plugins=plugins, load_entrypoints=False)
        made.append(gr)
        return gr

    yield factory
    for gr in made:
        gr.close()


@pytest.fixture
def gr(make_gr: Factory) -> GrayRelease:
    return make_gr()


def spec_body(**overrides: Any) -> dict[str, Any]:
    """The spec's first API example, with gray values, as a plan body."""
    body: dict[str, Any] = {
        "planName": "数据库配置灰度发布",
        "appName": "demo-app",
        "environment": "prod",
        "groupName": "database",
        "configKeys": ["database.url", "database.username"],
        "grayStrategy": "IP_WHITELIST",
        "grayRules": {"ipWhitelist": ["192.168.1.100", "192.168.1.101"]},
        "description": "数据库配置优化",
        "grayValues": {
            "database.url": "jdbc:mysql://db-new:3306/demo",
            "database.username": "app2",
        },
    }
    body.update(overrides)
    return body


def ref(key: str, app: str = "demo-app", env: str = "prod", group: str = "database") -> ConfigRef:
    return ConfigRef(app, env, group, key)
