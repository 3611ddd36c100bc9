"""``auth``: roles granted per app and environment, and release approval.

On when the settings have an ``auth`` section::

    {"auth": {"admins": ["alice"], "approval_environments": ["prod"]}}

Then every action needs a grant (``grayrelease grant add``, ``POST /grants``) of a role that
allows it, for the plan's app and environment (a grant's ``*`` covers all):

- ``viewer``: read plans, their logs, instances, metrics and notifications;
- ``editor``: that, and create, edit and delete drafts, and report metrics;
- ``releaser``: read, and start, pause, resume, promote, complete, roll back, approve,
  reject, and report metrics;
- ``admin``: everything, grants included. ``admins`` are admins everywhere.

Scheduling a start (``startAt``) and arming an automatic completion (``autoComplete``) are
release decisions: whoever writes a draft that carries one needs the releaser role, and the
ticker later acts in that person's name, checked again then.

In an approval environment, a plan starts only once a releaser who did not write or edit it
has approved that version of it, and completes only once one has approved its completion since
it started; a rejection stands until a later approval. Rolling back never waits. The ticker
(``system``) may do what its rules say, but waits at the same gates.
"""

from __future__ import annotations

from collections.abc import Mapping

from grayrelease_core import LogRecord, PermissionDenied, Plan, PlanStore, Settings, hookimpl
from grayrelease_core.access import ROLES, Scope, parse_auth_settings
from grayrelease_core.lifecycle import Action
from grayrelease_core.store import LogQuery
from grayrelease_core.ticker import SYSTEM_ACTOR

READ = frozenset({Action.VIEW})
EDIT = frozenset({Action.CREATE, Action.UPDATE, Action.DELETE, Action.REPORT, Action.WRITE_CONFIG})
RELEASE = frozenset(
    {
        Action.START,
        Action.PAUSE,
        Action.RESUME,
        Action.PROMOTE,
        Action.COMPLETE,
        Action.ROLLBACK,
        Action.APPROVE,
        Action.REJECT,
        Action.REPORT,
        Action.SCHEDULE_START,
        Action.AUTO_COMPLETE,
    }
)
ROLE_ACTIONS: Mapping[str, frozenset[Action]] = {
    "viewer": READ,
    "editor": READ | EDIT,
    "releaser": READ | RELEASE,
    "admin": frozenset(Action),
}
"""What each role allows."""
GATED = {Action.START: "start", Action.COMPLETE: "complete"}
DECISIONS = ("APPROVED", "REJECTED")


@hookimpl
def grayrelease_authorize(
    actor: str, action: str, plan: Plan | None, scope: Scope, settings: Settings, store: PlanStore
) -> bool | None:
    auth = parse_auth_settings(settings.sections)
    if not auth.enabled:
        return None
    wanted = Action(action)
    if actor != SYSTEM_ACTOR and actor not in auth.admins:
        _require_role(actor, wanted, scope, store)
    deciding = wanted in (Action.APPROVE, Action.REJECT)
    if plan is not None and deciding and actor in authors(plan, store):
        raise PermissionDenied(
            f"{actor} wrote or edited plan {plan.id} and may not {action} it: a releaser who "
            "did not change its content must",
            details={"action": action, "reason": "author"},
        )
    if plan is not None and wanted in GATED and plan.environment in auth.approval_environments:
        _require_approval(plan, GATED[wanted], store)
    return None


def _require_role(actor: str, action: Action, scope: Scope, store: PlanStore) -> None:
    grants = store.find_grants(actor)
    if any(g.covers(scope) and action in ROLE_ACTIONS[g.role] for g in grants):
        return
    roles = [role for role in ROLES if action in ROLE_ACTIONS[role]]
    raise PermissionDenied(
        f"{actor} may not {action.value} in {scope.app_name}/{scope.environment}: that takes "
        f"the role {' or '.join(roles)} there; ask an admin for a grant",
        details={"action": action.value, "missingRoles": roles},
    )


def _require_approval(plan: Plan, stage: str, store: PlanStore) -> None:
    decision = latest_decision(plan, stage, store)
    if decision is not None and decision.action == "APPROVED":
        return
    if decision is None:
        problem = (
            f"plan {plan.id} needs another releaser's approval to {stage} in {plan.environment}"
        )
    else:
        problem = f"plan {plan.id} was rejected by {decision.actor}: {decision.message}"
    raise PermissionDenied(
        problem + "; ask for it with POST /plan/{planId}/approve",
        details={"approval": stage, "rejectedBy": decision.actor if decision else None},
    )


def authors(plan: Plan, store: PlanStore) -> set[str]:
    """Everyone who wrote the plan's content (keys, gray values, rules, schedule): its
    creator and every editor of the draft. None of them may approve it."""
    # Every edit, however many: a thousand small edits must not hide the author of the last.
    edits = store.each_log(LogQuery(plan_id=plan.id, actions=("UPDATED",)))
    return {plan.created_by, *(row.actor for row in edits if row.actor != SYSTEM_ACTOR)}


def latest_decision(plan: Plan, stage: str, store: PlanStore) -> LogRecord | None:
    """The newest approval or rejection that holds for ``stage`` of the plan as it is now:
    for a start, of this version of the draft; for a completion, since it started."""
    page = store.list_logs(plan.id, page_size=200, actions=DECISIONS, newest_first=True)
    for row in page.items:
        details = row.details or {}
        if details.get("stage") != stage:
            continue
        if stage == "start" and details.get("version") != plan.version:
            continue
        if stage == "complete" and plan.started_at is not None and row.at < plan.started_at:
            continue
        return row
    return None
