"""Bad input gets a clear error that names the field, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grayrelease_core import GrayRelease, GrayReleaseError, Settings, ValidationError
from grayrelease_core.wire import EDITABLE_FIELDS, MAX_KEYS, plan_to_wire

from .conftest import spec_body


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """These tests are about input and plugins, not databases: SQLite is enough."""
    return sqlite_url


CAP = {"metric": "errorRate", "threshold": 0.05}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"planName": ""}, "planName"),
        ({"planName": "x" * 129}, "planName"),
        ({"appName": 7}, "appName"),
        ({"environment": "pr\nod"}, "environment"),
        ({"environment": "pr\x00od"}, "environment"),
        ({"configKeys": []}, "configKeys"),
        ({"configKeys": "database.url"}, "configKeys"),
        ({"configKeys": ["a", "a"]}, "configKeys[1]"),
        ({"configKeys": ["a", ""]}, "configKeys[1]"),
        ({"configKeys": [f"k{n}" for n in range(MAX_KEYS + 1)]}, "configKeys"),
        ({"grayStrategy": "RANDOM"}, "grayStrategy"),
        ({"grayStrategy": None}, "grayStrategy"),
        ({"grayRules": {"ipWhitelist": ["1.2.3"]}}, "grayRules.ipWhitelist[0]"),
        ({"grayRules": None}, "grayRules"),
        ({"description": 5}, "description"),
        ({"grayValues": ["x"]}, "grayValues"),
        ({"grayValues": {"database.url": {"nested": 1}}}, "grayValues.database.url"),
        ({"grayValues": {"database.url": None}}, "grayValues.database.url"),
        ({"grayValues": {"other.key": "1"}}, "grayValues.other.key"),
        ({"status": "ACTIVE"}, "status"),
        ({"autoRollback": {}}, "autoRollback.checks"),
        ({"autoRollback": "on"}, "autoRollback"),
        ({"autoRollback": [{"metric": "errorRate"}]}, "autoRollback.checks[0]"),
        (
            {"autoRollback": [{"metric": "errorRate", "threshold": 1, "maxIncrease": 1}]},
            "autoRollback.checks[0].maxIncrease",
        ),
        ({"autoRollback": [{"metric": "x", "threshold": "1"}]}, "autoRollback.checks[0].threshold"),
        (
            {"autoRollback": [{"metric": "x", "threshold": 1, "window": 0}]},
            "autoRollback.checks[0].window",
        ),
        (
            {"autoRollback": [{"metric": "x", "threshold": 1, "direction": "up"}]},
            "autoRollback.checks[0].direction",
        ),
        (
            {"autoRollback": [{"metric": "x", "threshold": 1, "source": "graphite"}]},
            "autoRollback.checks[0].source",
        ),
        (
            {"autoRollback": [{"metric": "x", "threshold": 1, "query": "up"}]},
            "autoRollback.checks[0].query",
        ),
        ({"autoRollback": {"checks": []}}, "autoRollback.checks"),
        (
            {"autoRollback": {"checks": [CAP], "failureThreshold": 0}},
            "autoRollback.failureThreshold",
        ),
        ({"autoRollback": {"checks": [CAP], "alpha": 0.9}}, "autoRollback.alpha"),
        (
            {"autoRollback": [{"metric": "x", "threshold": 10**400}]},
            "autoRollback.checks[0].threshold",
        ),
        ({"startAt": "0001-01-01T00:00:00+01:00"}, "startAt"),
        ({"startAt": "2026-12-01T08:00:00Z", "grayValues": {}}, "startAt"),
        ({"startAt": "tomorrow"}, "startAt"),
        ({"startAt": "2026-12-01T08:00:00"}, "startAt"),
        ({"startAt": 1700000000}, "startAt"),
    ],
)
def test_create_names_the_bad_field(gr: GrayRelease, change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        gr.create_plan(spec_body(**change), actor="a")
    assert caught.value.field == field
    assert caught.value.to_dict()["details"]["field"] == field
    assert gr.list_plans().total == 0


@pytest.mark.parametrize(
    "missing", ["planName", "appName", "environment", "configKeys", "grayStrategy", "grayRules"]
)
def test_create_names_a_missing_required_field(gr: GrayRelease, missing: str) -> None:
    body = spec_body()
    del body[missing]
    with pytest.raises(ValidationError) as caught:
        gr.create_plan(body, actor="a")
    assert caught.value.field == missing
    assert caught.value.problem == "is required"


def test_body_must_be_an_object(gr: GrayRelease) -> None:
    with pytest.raises(ValidationError) as caught:
        gr.create_plan(["not", "an", "object"], actor="a")  # type: ignore[arg-type]
    assert caught.value.field == "body"


def test_actor_is_required(gr: GrayRelease) -> None:
    with pytest.raises(ValidationError) as caught:
        gr.create_plan(spec_body(), actor=" ")
    assert caught.value.field == "actor"


def test_scalar_gray_values_become_config_text(gr: GrayRelease) -> None:
    plan = gr.create_plan(
        spec_body(
            configKeys=["a", "b", "c", "d"],
            grayValues={"a": True, "b": 50, "c": 0.25, "d": "text"},
        ),
        actor="x",
    )
    assert [i.gray_value for i in plan.items] == ["true", "50", "0.25", "text"]


def test_the_wire_form_is_camel_case_and_round_trips_json(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    wire = plan_to_wire(gr.start(plan.id, actor="a"))
    assert wire["planId"] == plan.id
    assert wire["status"] == "ACTIVE"
    assert wire["grayRules"] == {"ipWhitelist": ["192.168.1.100", "192.168.1.101"]}
    assert wire["items"][0]["configKey"] == "database.url"
    assert wire["startedAt"].endswith("Z")
    assert wire["progress"] == {
        "percentage": 0.0,
        "step": 0,
        "nextStepAt": None,
        "analyses": 0,
        "failedAnalyses": 0,
        "lastAnalysisAt": wire["startedAt"],
        "topReachedAt": None,
        "stageStartedAt": wire["startedAt"],
        "lastPassedAt": None,
    }


@pytest.mark.parametrize(
    ("settings_in", "field"),
    [
        ({"cache_ttl": -1}, "settings.cache_ttl"),
        ({"cache_ttl": "1s"}, "settings.cache_ttl"),
        ({"hit_flush_interval": True}, "settings.hit_flush_interval"),
        ({"background_sync": "yes"}, "settings.background_sync"),
        ({"database_url": ""}, "settings.database_url"),
        ({"databse_url": "sqlite://"}, "settings.databse_url"),
        ({"database_url": "not a url"}, "settings.database_url"),
        ({"backend": "nope"}, "settings.backend"),
        ({"memory": {"values": {"no-slashes": "v"}}}, "settings.memory.values.no-slashes"),
    ],
)
def test_bad_settings_name_the_setting(
    settings_in: dict[str, Any], field: str, db_url: str
) -> None:
    merged = {"database_url": db_url, "background_sync": False, **settings_in}
    with pytest.raises(ValidationError) as caught:
        GrayRelease.from_settings(merged, load_entrypoints=False).close()
    assert caught.value.field == field


def test_settings_keep_plugin_sections() -> None:
    settings = Settings.from_mapping({"nacos": {"server": "http://127.0.0.1:8848"}})
    assert settings.section("nacos")["server"] == "http://127.0.0.1:8848"
    assert settings.section("apollo") == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


DEPENDENT = {"configKeys": ("grayValues",), "grayStrategy": ("grayRules",)}


@pytest.fixture(scope="module")
def shared_gr() -> Iterator[GrayRelease]:
    """One in-memory instance for the many examples below (plans pile up; that is fine)."""
    gr = GrayRelease.from_settings(
        {"database_url": "sqlite://", "background_sync": False}, load_entrypoints=False
    )
    yield gr
    gr.close()


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(EDITABLE_FIELDS), value=json_values)
def test_any_json_in_any_field_is_accepted_or_refused_by_name(
    shared_gr: GrayRelease, field: str, value: Any
) -> None:
    # Changing the keys can orphan grayValues; changing the strategy makes its rules foreign.
    blamable = {field, "body", *DEPENDENT.get(field, ())}
    outcome: GrayReleaseError | None = None
    try:
        shared_gr.create_plan(spec_body(**{field: value}), actor="fuzz")
    except GrayReleaseError as exc:
        outcome = exc
    if outcome is not None:
        assert isinstance(outcome, ValidationError), outcome.code
        assert outcome.field.split(".")[0].split("[")[0] in blamable


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"planName": "bad \ud800 name"}, "planName"),
        ({"grayRules": {"ipWhitelist": ["10.0.0.1"], "x\udfff": 1}}, "grayRules"),
        ({"grayValues": {"database.url": "\udc80"}}, "grayValues.database.url"),
    ],
)
def test_lone_surrogates_are_refused_before_the_database(
    gr: GrayRelease, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        gr.create_plan(spec_body(**change), actor="a")
    assert caught.value.field == field  # named where it is, not just "body"
    assert gr.list_plans().total == 0


def test_a_rollback_reason_must_be_valid_unicode(gr: GrayRelease) -> None:
    plan = gr.create_plan(spec_body(), actor="a")
    gr.start(plan.id, actor="a")
    with pytest.raises(ValidationError) as caught:
        gr.rollback(plan.id, actor="a", reason="oops \ud83d")
    assert caught.value.field == "reason"


@pytest.mark.parametrize(
    ("filters", "field"),
    [({"status": "RUNNING"}, "status"), ({"page": 0}, "page"), ({"page_size": 500}, "page_size")],
)
def test_plan_queries_are_validated(gr: GrayRelease, filters: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        gr.list_plans(**filters)
    assert caught.value.field == field


def test_plan_queries_take_status_names(gr: GrayRelease) -> None:
    gr.create_plan(spec_body(), actor="a")
    assert gr.list_plans(status="DRAFT").total == 1
    assert gr.list_plans(status="ACTIVE").total == 0


def test_actor_names_fit_the_audit_columns(gr: GrayRelease) -> None:
    for actor in ("x" * 129, "two\nlines"):
        with pytest.raises(ValidationError) as caught:
            gr.create_plan(spec_body(), actor=actor)
        assert caught.value.field == "actor"
