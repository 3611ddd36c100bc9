"""Guarded by default (issue 17): ``settings.analysis.defaults`` gives every plan that brings
no checks of its own the rules of its app and environment; an explicit opt-out is audited."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from grayrelease_core import GrayRelease, ManualClock, ValidationError

RATE = {"metric": "errorRate", "maxIncrease": 0.2, "measure": "rate"}
CAP = {"metric": "errorRate", "threshold": 0.05, "measure": "rate"}
DEFAULTS = [
    {"environment": "prod", "autoRollback": {"checks": [RATE]}},
    {"appName": "payment", "environment": "prod", "autoRollback": {"checks": [RATE, CAP]}},
    {"appName": "payment", "autoRollback": {"checks": [CAP], "failureThreshold": 2}},
]


def body(app: str = "shop", environment: str = "prod", **extra: Any) -> dict[str, Any]:
    return {
        "planName": "guarded",
        "appName": app,
        "environment": environment,
        "configKeys": ["k"],
        "grayStrategy": "CANARY",
        "grayRules": {
            "canary": {"canaryInstances": ["10.0.0.1"], "stepPercentage": 20, "stepInterval": 5}
        },
        "grayValues": {"k": "new"},
        **extra,
    }


@pytest.fixture
def gr(sqlite_url: str, clock: ManualClock) -> Iterator[GrayRelease]:
    settings = {
        "database_url": sqlite_url,
        "background_sync": False,
        "analysis": {"defaults": DEFAULTS},
    }
    with GrayRelease.from_settings(settings, clock=clock, load_entrypoints=False) as engine:
        yield engine


def created_row(gr: GrayRelease, plan_id: str) -> Any:
    (row,) = [r for r in gr.plan_logs(plan_id).items if r.action == "CREATED"]
    return row


def test_a_plan_without_checks_gets_the_most_specific_default_and_the_row_names_it(
    gr: GrayRelease,
) -> None:
    shop = gr.create_plan(body("shop"), actor="alice")
    assert shop.auto_rollback is not None
    assert [c.to_wire() for c in shop.auto_rollback.checks] == [
        {
            "metric": "errorRate",
            "source": "push",
            "direction": "increase",
            "minSamples": 3,
            "critical": False,
            "measure": "rate",
            "maxIncrease": 0.2,
        }
    ]
    assert created_row(gr, shop.id).details == {"defaultChecks": "settings.analysis.defaults[0]"}
    payment = gr.create_plan(body("payment"), actor="alice")
    assert payment.auto_rollback is not None
    assert len(payment.auto_rollback.checks) == 2  # app and environment beat environment
    staging = gr.create_plan(body("payment", "staging"), actor="alice")
    assert staging.auto_rollback is not None
    assert staging.auto_rollback.failure_threshold == 2
    assert gr.create_plan(body("shop", "staging"), actor="alice").auto_rollback is None
    own = gr.create_plan(body("shop", autoRollback=[CAP]), actor="alice")
    assert own.auto_rollback is not None
    assert [c.threshold for c in own.auto_rollback.checks] == [0.05]
    assert created_row(gr, own.id).details is None


def test_invariant_an_opt_out_of_the_default_checks_is_audited(gr: GrayRelease) -> None:
    bare = gr.create_plan(body("shop", autoRollback=None), actor="alice")
    assert bare.auto_rollback is None
    row = created_row(gr, bare.id)
    assert row.details == {"optedOutOf": "settings.analysis.defaults[0]"}
    assert "opted out" in row.message
    guarded = gr.create_plan(body("shop"), actor="bob")
    gr.update_plan(guarded.id, {"autoRollback": None}, actor="bob")
    updated = [r for r in gr.plan_logs(guarded.id).items if r.action == "UPDATED"]
    assert updated[-1].details == {"optedOutOf": "settings.analysis.defaults[0]"}
    assert gr.get_plan(guarded.id).auto_rollback is None


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"defaults": {}}, "settings.analysis.defaults"),
        ({"default": []}, "settings.analysis.default"),
        ({"defaults": [{"environment": "prod"}]}, "settings.analysis.defaults[0].autoRollback"),
        (
            {"defaults": [{"env": "prod", "autoRollback": [RATE]}]},
            "settings.analysis.defaults[0].env",
        ),
        (
            {"defaults": [{"appName": "", "autoRollback": [RATE]}]},
            "settings.analysis.defaults[0].appName",
        ),
        (
            {"defaults": [{"autoRollback": [{**RATE, "maxIncrease": -1}]}]},
            "settings.analysis.defaults[0].autoRollback.checks[0].maxIncrease",
        ),
        (
            {"defaults": [{"autoRollback": [{**RATE, "source": "nowhere"}]}]},
            "settings.analysis.defaults[0].autoRollback.checks[0].source",
        ),
    ],
)
def test_bad_defaults_are_refused_at_start_up_naming_the_setting(
    sqlite_url: str, section: dict[str, Any], field: str
) -> None:
    settings = {"database_url": sqlite_url, "background_sync": False, "analysis": section}
    with pytest.raises(ValidationError) as caught:
        GrayRelease.from_settings(settings, load_entrypoints=False)
    assert caught.value.field == field


def test_invariant_a_draft_moved_into_a_guarded_scope_gets_its_defaults(gr: GrayRelease) -> None:
    """Issue 17 review: a draft made in staging (no defaults) and moved to prod arrived
    unguarded, with nothing in the audit trail."""
    draft = gr.create_plan(body("shop", "staging"), actor="alice")
    assert draft.auto_rollback is None
    moved = gr.update_plan(draft.id, {"environment": "prod"}, actor="alice")
    assert moved.auto_rollback is not None
    assert [c.max_increase for c in moved.auto_rollback.checks] == [0.2]
    updated = [r for r in gr.plan_logs(draft.id).items if r.action == "UPDATED"]
    assert updated[-1].details == {"defaultChecks": "settings.analysis.defaults[0]"}
    own = gr.create_plan(body("shop", "staging", autoRollback=[CAP]), actor="alice")
    kept = gr.update_plan(own.id, {"environment": "prod"}, actor="alice")
    assert kept.auto_rollback is not None
    assert [c.threshold for c in kept.auto_rollback.checks] == [0.05]  # its own rules stay
