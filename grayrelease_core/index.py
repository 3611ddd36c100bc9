"""The read path's in-memory index: ``ConfigRef -> compiled plan entry``.

Rebuilt from the store's live plans whenever the store's generation changes; between
rebuilds ``resolve()`` touches nothing but these dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .errors import GrayReleaseError
from .hits import HitBuffer, Tracker
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


def build_entries(
    plans: Iterable[Plan],
    strategies: StrategyRegistry,
    hits: HitBuffer,
    members_of: Callable[[str], frozenset[str]],
) -> dict[ConfigRef, IndexEntry]:
    """Compile every live plan into index entries, one per config key."""
    entries: dict[ConfigRef, IndexEntry] = {}
    for plan in plans:
        if not plan.status.is_live:
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
            gray = Resolution(item.gray_value, True, plan.id)
            entries[ref] = IndexEntry(plan.id, matcher, gray, tracker)
    return entries
