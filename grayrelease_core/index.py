"""The read path's in-memory index: ``ConfigRef -> compiled plan entry``.

Rebuilt from the store's live plans whenever the store's generation changes; between
rebuilds ``resolve()`` touches nothing but these dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .hits import HitBuffer, Tracker
from .models import Client, ConfigRef, Plan, PlanStatus, Resolution
from .strategy import Matcher, StrategyRegistry


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


def paused_matcher(members: frozenset[str]) -> Matcher:
    """While paused, exactly the instances already recorded keep the gray value."""

    def is_member(client: Client) -> bool:
        return client.instance_id in members

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
        if plan.status is PlanStatus.PAUSED:
            matcher = paused_matcher(members_of(plan.id))
        elif plan.status is PlanStatus.ACTIVE:
            matcher = strategies.get(plan.strategy).compile(plan)
        else:
            continue
        tracker = hits.tracker(plan.id)
        for item, ref in zip(plan.items, plan.refs, strict=True):
            gray = Resolution(item.gray_value, True, plan.id)
            entries[ref] = IndexEntry(plan.id, matcher, gray, tracker)
    return entries
