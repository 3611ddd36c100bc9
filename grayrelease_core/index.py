"""The read path's in-memory index: ``ConfigRef -> compiled plan entry``.

Rebuilt from the store's live plans whenever the store's generation changes; between
rebuilds ``resolve()`` touches nothing but these dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from .errors import GrayReleaseError
from .hits import HitBuffer, HitRecord, Tracker
from .intent import Direction
from .models import Client, ConfigRef, Plan, PlanStatus, Resolution
from .strategy import Matcher, StrategyRegistry

log = logging.getLogger("grayrelease")


class IndexEntry:
    """One key of one live plan, ready for the read path."""

    __slots__ = ("gray", "matcher", "plan_id", "tracker")

    def __init__(self, plan_id: str, matcher: Matcher, gray: Resolution, tracker: Tracker) -> None:
        self.plan_id = plan_id
        self.matcher = matcher
        """Whether a client gets the gray value (strategy rules, or membership when paused)."""
        self.gray = gray
        """The answer for a client in the gray set, made once."""
        self.tracker = tracker
        """Where hits of clients in the gray set are recorded."""


def paused_matcher(members: frozenset[str], rules: Matcher) -> Matcher:
    """While paused, instances already recorded keep the gray value; no new one gets it.

    The rules still apply on top: a recorded instance reading for a user outside a user
    whitelist (or outside a user-sticky percentage) does not get it either.
    """

    def is_member(client: Client) -> bool:
        return client.instance_id in members and rules(client)

    return is_member


class _Untracked(dict[str, HitRecord]):
    """The tracker of an overlay: everyone gets its value, so nobody is recorded."""

    def setdefault(self, key: str, default: HitRecord | None = None) -> HitRecord:
        return default  # type: ignore[return-value]


def _everyone(client: Client) -> bool:
    return True


_UNTRACKED = _Untracked()


def overlay_entries(
    plan: Plan, values: Mapping[str, str | None], gray: bool, plan_id: str | None
) -> dict[ConfigRef, IndexEntry]:
    """Entries that give every client ``values`` (an open intent's targets, or what a plan
    just published while this process's backend mirror catches up)."""
    entries: dict[ConfigRef, IndexEntry] = {}
    for ref in plan.refs:
        if ref.config_key in values:
            answer = Resolution(values[ref.config_key], gray, plan_id)
            entries[ref] = IndexEntry(plan.id, _everyone, answer, _UNTRACKED)
    return entries


def published_values(plan: Plan) -> dict[str, str | None]:
    """What a plan that ended by publishing put in the backend: the gray values of a
    COMPLETED plan; the originals of a plan rolled back after its completion."""
    if plan.status is PlanStatus.COMPLETED:
        return {item.config_key: item.gray_value for item in plan.items}
    return {item.config_key: item.original_value for item in plan.items}


def build_entries(
    plans: Iterable[Plan],
    strategies: StrategyRegistry,
    hits: HitBuffer,
    members_of: Callable[[str], frozenset[str]],
    backend_get: Callable[[ConfigRef], str | None] | None = None,
) -> dict[ConfigRef, IndexEntry]:
    """Compile the served plans into index entries, one per config key.

    - A plan with an open intent going forward: every client gets the intent's values, so
      no reader sees some keys old and some new while they are published one by one.
    - A live plan: its strategy decides.
    - A plan that ended by publishing and is still settling: every client gets what it
      published, for the keys this process's backend does not show yet and no plan that
      ended later covers.
    """
    entries: dict[ConfigRef, IndexEntry] = {}
    acting = [plan for plan in plans if plan.status.is_live or _forward(plan)]
    # Settling plans first, newest first: a key that a later plan published is that plan's
    # alone (an older plan's value there is history, even where the backend lags); live and
    # pending plans after them override both.
    settling = sorted(
        (plan for plan in plans if not (plan.status.is_live or _forward(plan))),
        key=lambda plan: (plan.finished_at or plan.updated_at, plan.updated_at),
        reverse=True,
    )
    covered: set[ConfigRef] = set()
    for plan in settling:
        if plan.settle_until is not None and backend_get is not None:
            lagging = {
                key: value
                for key, value in published_values(plan).items()
                if _ref(plan, key) not in covered and _read(backend_get, plan, key) != value
            }
            entries.update(overlay_entries(plan, lagging, False, None))
        covered.update(plan.refs)
    for plan in acting:
        pending = plan.intent
        if pending is not None and _forward(plan):
            gray = pending.status_after is PlanStatus.COMPLETED
            entries.update(overlay_entries(plan, pending.values, gray, plan.id))
            continue
        try:
            matcher = strategies.get(plan.strategy).compile(plan)
        except GrayReleaseError:
            # A plan this process cannot judge (its strategy's plugin is not installed here)
            # must not take the other plans down with it: its keys serve the original value.
            log.error(
                "grayrelease: plan %s uses strategy %s, which is not installed in this "
                "process; its keys get their original values here",
                plan.id,
                plan.strategy,
            )
            continue
        if plan.status is PlanStatus.PAUSED:
            matcher = paused_matcher(members_of(plan.id), matcher)
        tracker = hits.tracker(plan.id)
        for item, ref in zip(plan.items, plan.refs, strict=True):
            answer = Resolution(item.gray_value, True, plan.id)
            entries[ref] = IndexEntry(plan.id, matcher, answer, tracker)
    return entries


def _forward(plan: Plan) -> bool:
    """Whether the plan has an open intent going forward (its values are being published)."""
    return plan.intent is not None and plan.intent.direction is Direction.FORWARD


def _ref(plan: Plan, key: str) -> ConfigRef:
    return ConfigRef(plan.app_name, plan.environment, plan.group_name, key)


def _read(backend_get: Callable[[ConfigRef], str | None], plan: Plan, key: str) -> object:
    """The backend's value, or a marker that matches nothing when it cannot be read."""
    try:
        return backend_get(_ref(plan, key))
    except Exception:
        return _UNREADABLE


_UNREADABLE = object()
