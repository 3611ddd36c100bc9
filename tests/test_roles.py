"""Roles per app and environment, approval, and API tokens, through the Python API (the REST
API and the CLI go through the same checks: tests/test_access_api.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from grayrelease_adapters.flask.cli import cli

from grayrelease_core import (
    GrayRelease,
    InvalidTransition,
    ManualClock,
    PermissionDenied,
    PlanStatus,
    ValidationError,
)
from grayrelease_core.lifecycle import Action
from grayrelease_core.store import LogQuery

from .conftest import Factory, spec_body

AUTH = {"auth": {"admins": ["root"], "approval_environments": ["prod"]}}


def body(env: str = "prod", app: str = "demo-app", key: str = "database.url") -> dict[str, Any]:
    return spec_body(appName=app, environment=env, configKeys=[key], grayValues={key: "v2"})


@pytest.fixture
def gr(make_gr: Factory) -> GrayRelease:
    gr = make_gr(AUTH)
    gr.grant(actor="root", grantee="ed", role="editor", app_name="demo-app", environment="*")
    gr.grant(actor="root", grantee="rel", role="releaser", app_name="demo-app", environment="*")
    gr.grant(actor="root", grantee="rel2", role="releaser", app_name="*", environment="prod")
    gr.grant(actor="root", grantee="vic", role="viewer", app_name="demo-app", environment="prod")
    return gr


def denied(call: Any, *args: Any, **kwargs: Any) -> PermissionDenied:
    with pytest.raises(PermissionDenied) as caught:
        call(*args, **kwargs)
    return caught.value


def test_each_role_does_what_it_is_granted_and_nothing_more(gr: GrayRelease) -> None:
    assert denied(gr.create_plan, body("test"), actor="vic").details["missingRoles"] == [
        "editor",
        "admin",
    ]
    refusal = denied(gr.create_plan, body("test"), actor="rel")
    assert refusal.details["missingRoles"] == ["editor", "admin"]
    assert "editor or admin" in refusal.message
    plan = gr.create_plan(body("test"), actor="ed")
    assert denied(gr.start, plan.id, actor="ed").details["missingRoles"] == ["releaser", "admin"]
    gr.start(plan.id, actor="rel")  # test needs no approval
    gr.pause(plan.id, actor="rel")
    denied(gr.resume, plan.id, actor="vic")
    gr.rollback(plan.id, actor="rel")
    # A grant for another app or environment does not reach this one.
    other = gr.create_plan(body("test", app="shop"), actor="root")
    denied(gr.start, other.id, actor="rel")
    denied(gr.update_plan, other.id, {"description": "x"}, actor="ed")
    with pytest.raises(PermissionDenied):
        gr.authorize("vic", Action.VIEW, other)
    gr.authorize("vic", Action.VIEW, gr.create_plan(body("prod", key="k2"), actor="ed"))


def test_denials_are_in_the_audit_trail(gr: GrayRelease) -> None:
    denied(gr.create_plan, body("test"), actor="vic")
    [row] = gr.find_logs(LogQuery(actions=("DENIED",))).items
    assert row.actor == "vic"
    assert row.details is not None
    assert row.details["action"] == "create"
    assert row.details["missingRoles"] == ["editor", "admin"]
    assert (row.app_name, row.environment) == ("demo-app", "test")
    assert gr.verify_audit().ok


def test_a_prod_plan_needs_another_releasers_approval_to_start_and_to_complete(
    gr: GrayRelease, clock: ManualClock
) -> None:
    plan = gr.create_plan(body(key="k.prod"), actor="ed")
    refusal = denied(gr.start, plan.id, actor="rel")
    assert refusal.details["approval"] == "start"
    assert "approval" in refusal.message
    assert denied(gr.approve, plan.id, actor="ed").details["missingRoles"] == ["releaser", "admin"]
    gr.approve(plan.id, actor="rel2", reason="reviewed")
    started = gr.start(plan.id, actor="rel")
    assert started.status is PlanStatus.ACTIVE
    assert denied(gr.complete, plan.id, actor="rel").details["approval"] == "complete"
    gr.reject(plan.id, actor="rel2", reason="error rate up")
    refusal = denied(gr.complete, plan.id, actor="rel")
    assert "rejected by rel2: error rate up" in refusal.message
    clock.advance(timedelta(minutes=1))
    gr.approve(plan.id, actor="rel2")
    assert gr.complete(plan.id, actor="rel").status is PlanStatus.COMPLETED
    actions = [row.action for row in gr.plan_logs(plan.id).items]
    assert actions == [
        "CREATED",
        "DENIED",  # start without approval
        "DENIED",  # the editor approving
        "APPROVED",
        "STARTED",
        "DENIED",  # complete without approval
        "REJECTED",
        "DENIED",  # complete after the rejection
        "APPROVED",
        "COMPLETED",
    ]


def test_the_author_may_not_approve_and_an_edit_needs_a_new_approval(gr: GrayRelease) -> None:
    gr.grant(actor="root", grantee="ed", role="releaser", app_name="demo-app", environment="prod")
    plan = gr.create_plan(body(), actor="ed")
    refusal = denied(gr.approve, plan.id, actor="ed")
    assert refusal.details["reason"] == "author"
    gr.approve(plan.id, actor="rel")
    gr.update_plan(plan.id, {"description": "changed after the review"}, actor="ed")
    assert denied(gr.start, plan.id, actor="ed").details["approval"] == "start"
    gr.approve(plan.id, actor="rel")
    assert gr.start(plan.id, actor="ed").status is PlanStatus.ACTIVE


def test_an_emergency_rollback_never_waits_for_approval(gr: GrayRelease) -> None:
    plan = gr.create_plan(body(), actor="ed")
    gr.approve(plan.id, actor="rel")
    gr.start(plan.id, actor="rel2")
    rolled = gr.rollback(plan.id, actor="rel2", reason="pager")
    assert rolled.status is PlanStatus.ROLLBACK
    with pytest.raises(InvalidTransition):
        gr.approve(plan.id, actor="rel")  # nothing left to approve
    with pytest.raises(ValidationError):
        gr.reject(gr.create_plan(body(key="k9"), actor="ed").id, actor="rel", reason=" ")


def test_the_ticker_waits_at_the_approval_gate_too(gr: GrayRelease, clock: ManualClock) -> None:
    scheduled = body(key="k.scheduled")
    scheduled["startAt"] = (clock.now() + timedelta(minutes=5)).isoformat()
    # Scheduling a start is a release decision: an editor alone may not (test_attacks.py).
    gr.grant(actor="root", grantee="ed", role="releaser", app_name="demo-app", environment="*")
    plan = gr.create_plan(scheduled, actor="ed")
    clock.advance(timedelta(minutes=6))
    report = gr.tick()
    assert report.started == []
    assert gr.get_plan(plan.id).status is PlanStatus.DRAFT
    assert "approval" in report.errors[0]


def test_grants_are_managed_by_admins_of_their_scope(gr: GrayRelease) -> None:
    gr.grant(actor="root", grantee="boss", role="admin", app_name="demo-app", environment="*")
    gr.grant(actor="boss", grantee="new", role="viewer", app_name="demo-app", environment="test")
    denied(
        gr.grant, actor="boss", grantee="new", role="viewer", app_name="shop", environment="test"
    )
    denied(
        gr.grant, actor="rel", grantee="x", role="viewer", app_name="demo-app", environment="prod"
    )
    denied(gr.grants, actor="boss", grantee="new")  # all apps: beyond boss's scope
    listed = gr.grants(actor="boss", grantee="new", app_name="demo-app")
    assert [(g.role, g.app_name, g.environment) for g in listed] == [("viewer", "demo-app", "test")]
    with pytest.raises(ValidationError) as caught:
        gr.grant(actor="root", grantee="x", role="owner", app_name="*", environment="*")
    assert caught.value.field == "role"
    revoked = gr.revoke(listed[0].id or 0, actor="boss")
    assert revoked.actor == "new"
    assert gr.grants(actor="root", grantee="new") == []
    events = [row.action for row in gr.find_logs(LogQuery(actions=("GRANTED", "REVOKED"))).items]
    assert events[:2] == ["REVOKED", "GRANTED"]


def test_without_an_auth_section_everyone_may_do_everything(make_gr: Factory) -> None:
    gr = make_gr()
    plan = gr.create_plan(body(), actor="anyone")
    assert gr.start(plan.id, actor="anyone").status is PlanStatus.ACTIVE


def test_tokens_are_stored_hashed_expire_and_can_be_revoked(
    gr: GrayRelease, clock: ManualClock
) -> None:
    secret, token = gr.create_token(actor="rel", scope="release", days=1, name="ci")
    assert token.actor == "rel"
    assert secret not in repr(token)
    assert token.token_hash != secret
    assert gr.identify_token(secret) == token
    assert gr.identify_token(secret + "x") is None
    clock.advance(timedelta(days=1, seconds=1))
    assert gr.identify_token(secret) is None  # expired
    second, _ = gr.create_token(actor="rel", scope="read")
    gr.revoke_token(gr.identify_token(second).id, actor="rel")  # type: ignore[union-attr]
    assert gr.identify_token(second) is None
    denied(gr.create_token, actor="rel", owner="vic")  # another's token takes the grant right
    _, for_vic = gr.create_token(actor="root", owner="vic", scope="read")
    assert for_vic.actor == "vic"
    assert sorted(t.actor for t in gr.tokens(actor="root")) == ["rel", "rel", "vic"]
    with pytest.raises(ValidationError):
        gr.create_token(actor="rel", scope="admin")


def test_the_cli_obeys_the_same_roles_and_manages_grants_and_tokens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(AUTH), encoding="utf-8")
    runner = CliRunner()

    def run(actor: str, *args: str) -> Any:
        return runner.invoke(
            cli, ["--database-url", url, "--settings", str(settings), "--actor", actor, *args]
        )

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(body("test")), encoding="utf-8")
    refused = run("ed", "plan", "create", "-f", str(plan_file))
    assert refused.exit_code == 1
    assert "PERMISSION_DENIED" in refused.output
    assert "editor or admin" in refused.output
    granted = run("root", "grant", "add", "ed", "editor", "--app", "demo-app")
    assert granted.exit_code == 0, granted.output
    grant_id = json.loads(granted.output)["id"]
    created = run("ed", "plan", "create", "-f", str(plan_file))
    assert created.exit_code == 0, created.output
    listed = run("root", "grant", "list", "--actor", "ed")
    assert [g["role"] for g in json.loads(listed.output)] == ["editor"]
    assert run("ed", "grant", "list").exit_code == 1
    made = run("ed", "token", "create", "--scope", "write", "--days", "7")
    assert made.exit_code == 0, made.output
    token = json.loads(made.output)
    assert token["token"].startswith("grt_")
    assert token["token"] not in run("ed", "token", "list").output
    assert run("ed", "token", "revoke", token["id"]).exit_code == 0
    assert json.loads(run("ed", "token", "list").output)[0]["revokedAt"] is not None
    assert run("root", "grant", "remove", str(grant_id)).exit_code == 0
    assert run("ed", "plan", "create", "-f", str(plan_file)).exit_code == 1


def test_an_automatic_completion_waits_for_its_approval(
    gr: GrayRelease, clock: ManualClock
) -> None:
    canary = body(key="k.canary")
    canary["grayStrategy"] = "CANARY"
    canary["grayRules"] = {
        "canary": {
            "canaryInstances": ["10.0.0.1"],
            "stepPercentage": 100,
            "stepInterval": 1,
            "autoComplete": True,
            "bakeTime": 0,
        }
    }
    # Arming the completion is a release decision: its author needs the releaser role too.
    gr.grant(actor="root", grantee="ed", role="releaser", app_name="demo-app", environment="*")
    plan = gr.create_plan(canary, actor="ed")
    gr.approve(plan.id, actor="rel")
    gr.start(plan.id, actor="rel2")
    for _ in range(3):
        clock.advance(timedelta(minutes=1))
        gr.tick()
    waiting = gr.get_plan(plan.id)
    assert waiting.status is PlanStatus.ACTIVE
    assert waiting.progress.percentage == 100
    denials = gr.find_logs(LogQuery(plan_id=plan.id, actions=("DENIED",))).items
    assert denials
    assert {row.actor for row in denials} == {"ed"}  # the ticker acts for who armed it
    gr.approve(plan.id, actor="rel")
    clock.advance(timedelta(minutes=1))
    gr.tick()
    assert gr.get_plan(plan.id).status is PlanStatus.COMPLETED
