"""Input limits an installation lowers: each refused with a 400 naming the field and the limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grayrelease_core import GrayRelease, ManualClock, ValidationError

from .conftest import spec_body
from .test_http_api import API, AUTH, make_app

LIMITS = {
    "keys_per_plan": 2,
    "list_items": 3,
    "name_length": 12,
    "value_length": 5,
    "description_length": 4,
}


@pytest.fixture
def gr(sqlite_url: str, clock: ManualClock) -> Any:
    settings = {"database_url": sqlite_url, "background_sync": False, "limits": LIMITS}
    with GrayRelease.from_settings(settings, clock=clock, load_entrypoints=False) as gr:
        yield gr


@pytest.mark.parametrize(
    ("overrides", "field", "limit"),
    [
        ({"configKeys": ["a", "b", "c"], "grayValues": {}}, "configKeys", "keys_per_plan"),
        ({"planName": "a" * 13}, "planName", "name_length"),
        ({"appName": "a" * 13}, "appName", "name_length"),
        ({"description": "12345"}, "description", "description_length"),
        ({"grayValues": {"database.url": "123456"}}, "grayValues.database.url", "value_length"),
        (
            {"grayRules": {"ipWhitelist": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]}},
            "grayRules.ipWhitelist",
            "list_items",
        ),
        (
            {
                "grayStrategy": "CANARY",
                "grayRules": {
                    "canary": {
                        "canaryInstances": ["a", "b", "c", "d"],
                        "stepPercentage": 20,
                        "stepInterval": 30,
                    }
                },
            },
            "grayRules.canary.canaryInstances",
            "list_items",
        ),
    ],
)
def test_a_plan_over_a_limit_is_refused_naming_it(
    gr: GrayRelease, overrides: dict[str, Any], field: str, limit: str
) -> None:
    body = spec_body(**{"description": "", "grayValues": {"database.url": "v"}, **overrides})
    with pytest.raises(ValidationError) as caught:
        gr.create_plan(body, actor="a")
    assert caught.value.field == field
    assert caught.value.details["limit"] == limit
    assert limit in caught.value.message
    assert gr.list_plans().total == 0
    plan = gr.create_plan(spec_body(description="", grayValues={}), actor="a")
    with pytest.raises(ValidationError) as edited:
        gr.update_plan(plan.id, overrides, actor="a")
    assert edited.value.field == field
    assert gr.get_plan(plan.id).version == 1


def test_within_the_limits_a_plan_is_taken(gr: GrayRelease) -> None:
    body = spec_body(
        planName="a" * 12,
        description="1234",
        configKeys=["k1", "k2"],
        grayValues={"k1": "12345"},
        grayRules={"ipWhitelist": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]},
    )
    assert gr.create_plan(body, actor="a").name == "a" * 12


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"keys_per_plan": 0}, "settings.limits.keys_per_plan"),
        ({"keys_per_plan": 201}, "settings.limits.keys_per_plan"),
        ({"name_length": "10"}, "settings.limits.name_length"),
        ({"list_length": 5}, "settings.limits.list_length"),
    ],
)
def test_bad_limits_fail_at_start_up(sqlite_url: str, limits: dict[str, Any], field: str) -> None:
    settings = {"database_url": sqlite_url, "background_sync": False, "limits": limits}
    with pytest.raises(ValidationError) as caught:
        GrayRelease.from_settings(settings, load_entrypoints=False)
    assert caught.value.field == field


def test_the_http_answer_names_the_limit(tmp_path: Path, clock: ManualClock) -> None:
    app = make_app(tmp_path, clock, GRAYRELEASE_SETTINGS={"limits": LIMITS})
    try:
        answer = app.test_client().post(
            f"{API}/plan",
            json=spec_body(configKeys=["a", "b", "c"], grayValues={}),
            headers=AUTH,
        )
        assert answer.status_code == 400
        assert answer.json is not None
        details = answer.json["error"]["details"]
        assert (details["field"], details["limit"], details["maximum"]) == (
            "configKeys",
            "keys_per_plan",
            2,
        )
    finally:
        app.extensions["grayrelease"].close(app)
