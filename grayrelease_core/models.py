"""The domain: plans, their items, clients, config references and resolutions.

These are value objects (``attrs.frozen``). The tables live in the store plugin; the camelCase
wire form lives in :mod:`grayrelease_core.wire`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import attrs

from .checks import AutoRollback
from .routing import Routing

if TYPE_CHECKING:
    from .intent import Intent


class PlanStatus(enum.StrEnum):
    """A plan's lifecycle state; the values are the spec's wire values."""

    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    ROLLBACK = "ROLLBACK"

    @property
    def is_live(self) -> bool:
        """ACTIVE and PAUSED plans take part in resolution and hold their keys."""
        return self in (PlanStatus.ACTIVE, PlanStatus.PAUSED)


class ItemStatus(enum.StrEnum):
    """One config key's state inside a plan."""

    PENDING = "PENDING"
    """Draft: nothing served yet."""
    GRAY = "GRAY"
    """Served to the gray set (ACTIVE or PAUSED plan)."""
    PUBLISHED = "PUBLISHED"
    """The gray value was published to the backend for everyone."""
    ROLLED_BACK = "ROLLED_BACK"
    """Everyone gets the original value again."""


class ConfigRef(NamedTuple):
    """Which config value: the four coordinates of a key in a config center.

    A named tuple rather than an attrs class on purpose: it is the key of the read path's
    index, and a tuple hashes and compares in C, which keeps ``resolve()`` under a microsecond.
    """

    app_name: str
    environment: str
    group_name: str
    config_key: str


def _frozen_labels(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


@attrs.frozen
class Client:
    """The client instance asking for a config value."""

    instance_id: str = attrs.field(converter=str)
    """Stable id of the instance (pod name, host:port, ...); the unit recorded as a gray hit."""
    instance_ip: str = attrs.field(default="", converter=str)
    """The instance's address, matched by IP whitelists and canary instance lists."""
    user_id: str | None = attrs.field(default=None, converter=_str_or_none)
    """The end user on whose behalf the config is read, when known."""
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_labels, eq=False)
    """Free-form labels such as ``zone`` or ``version``, matched by the LABEL strategy."""


class Resolution(NamedTuple):
    """The answer to "which value does this client get?".

    A named tuple, like ``ConfigRef``, because one is made on every resolution.
    """

    value: str | None
    """The value to serve (``None`` when the key has no value anywhere)."""
    gray: bool
    """Whether the value is the gray value of a plan."""
    plan_id: str | None
    """The live plan covering the key, whether or not this client is in its gray set."""


class CurrentValue(NamedTuple):
    """What the config backend holds for a key now, and which live plan is releasing it: what
    an operator compares a gray value with (no client is involved, so nothing is recorded)."""

    config_key: str
    value: str | None
    """The backend's value (``None`` when the key is not set)."""
    plan_id: str | None
    """The ACTIVE or PAUSED plan covering the key, if any."""


@attrs.frozen
class PlanItem:
    """One config key of a plan."""

    config_key: str
    """The key, inside the plan's app, environment and group."""
    gray_value: str | None = None
    """The new value the gray set receives; required before the plan starts."""
    original_value: str | None = None
    """Snapshot of the backend's value taken when the plan started."""
    original_present: bool = False
    """Whether the key existed in the backend at start (``None`` is then a real absence)."""
    status: ItemStatus = ItemStatus.PENDING
    """The key's own state."""


@attrs.frozen
class Progress:
    """How far a plan has gone: the current percentage and the canary step schedule."""

    percentage: float = 0.0
    """The share of clients (0-100) currently hashed into the gray set."""
    step: int = 0
    """Canary steps taken so far (0 before the first widening)."""
    next_step_at: datetime | None = None
    """When the next canary step (or the automatic completion) is due; ``None`` when none is."""
    analyses: int = 0
    """Analyses judged so far: the look count the judge's alpha spending goes by."""
    failures: int = 0
    """Failed analysis intervals so far; the plan rolls back at ``failureThreshold``."""
    analyzed_at: datetime | None = None
    """When the analysis clock last started: the last analysis, the start or the resume."""
    top_reached_at: datetime | None = None
    """When the canary reached its ``maxPercentage``: the bake time counts from here."""
    stage_started_at: datetime | None = None
    """When the current percentage took effect (start, step, promotion, resume): a look
    judges only samples taken since, so a window never mixes two exposures."""
    passed_at: datetime | None = None
    """When an analysis last passed. A plan with checks steps, and completes by itself, only
    after a pass taken in its current stage: missing data never moves it."""
    evidence: Mapping[str, Any] | None = None
    """The sequential evidence of rate checks, by check index
    (:mod:`grayrelease_core.sequential`); ``None`` before the first look."""


@attrs.frozen
class Plan:
    """A release plan: some keys of one app, environment and group, and how to roll them out."""

    id: str
    """Stable plan id; also the default hash salt."""
    name: str
    """The operator's name for the plan (``planName``)."""
    app_name: str
    environment: str
    group_name: str
    items: tuple[PlanItem, ...]
    """Per-key values and states, in the order the keys were given."""
    strategy: str
    """Strategy name (``IP_WHITELIST``, ``PERCENTAGE``, ...)."""
    rules: Mapping[str, Any]
    """The strategy's rules, normalized by the strategy at validation."""
    status: PlanStatus = PlanStatus.DRAFT
    progress: Progress = Progress()
    auto_rollback: AutoRollback | None = None
    """The checks the ticker judges the plan by; ``None`` when it only follows its schedule."""
    notify: Routing | None = None
    """The plan's own notification routing over the installation's default (``None``: the
    default as it is)."""
    start_at: datetime | None = None
    """A DRAFT plan with this set is started by the ticker once the time has come."""
    description: str = ""
    created_by: str = ""
    updated_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    version: int = 1
    """Optimistic-lock counter; every saved change increments it."""
    epoch: int = 0
    """Claim counter of publishing actions (the fence an :class:`Intent` carries)."""
    intent: Intent | None = None
    """The publishing action under way, recorded before its first backend write."""
    settle_until: datetime | None = None
    """Until when the read path serves what the plan last published (COMPLETED: its gray
    values; ROLLBACK after completion: the originals) where the local backend lags."""

    @property
    def config_keys(self) -> tuple[str, ...]:
        return tuple(item.config_key for item in self.items)

    @property
    def refs(self) -> tuple[ConfigRef, ...]:
        """The plan's keys as full config references."""
        return tuple(
            ConfigRef(self.app_name, self.environment, self.group_name, item.config_key)
            for item in self.items
        )

    def item(self, config_key: str) -> PlanItem:
        for item in self.items:
            if item.config_key == config_key:
                return item
        raise KeyError(config_key)


@attrs.frozen
class LogRecord:
    """One audit row: who did what to which plan, with the plan before and after."""

    plan_id: str
    action: str
    actor: str
    at: datetime
    status_before: PlanStatus | None = None
    status_after: PlanStatus | None = None
    before: Mapping[str, Any] | None = None
    """The plan's wire form before the action (``None`` on creation)."""
    after: Mapping[str, Any] | None = None
    """The plan's wire form after the action (``None`` on deletion)."""
    message: str = ""
    details: Mapping[str, Any] | None = None
    """Structured facts of the action (an analysis verdict's inputs and statistics, ...)."""
    id: int | None = None
    app_name: str | None = None
    """The plan's app and environment, so the trail can be searched by them (and a deleted
    plan's rows still can)."""
    environment: str | None = None
    seq: int | None = None
    """The row's place in the audit chain (set by the store)."""


@attrs.frozen
class InstanceRecord:
    """An instance that received a plan's gray value."""

    plan_id: str
    instance_id: str
    instance_ip: str
    first_seen: datetime
    last_seen: datetime
    hits: int


@attrs.frozen
class InstanceHits:
    """Gray hits of one instance buffered since the last flush."""

    plan_id: str
    instance_id: str
    instance_ip: str
    first_seen: datetime
    last_seen: datetime
    hits: int
    """Hits since the previous flush (added to the stored count)."""


class Sample(NamedTuple):
    """One metric sample of one instance, pushed for a plan (``gray_release_monitor``).

    A named tuple: the judge reads them by the ten thousand every tick.
    """

    plan_id: str
    metric: str
    value: float
    gray: bool
    """Whether the instance was in the plan's gray group when it reported."""
    instance_id: str | None
    at: datetime
    events: float | None = None
    """For a counted sample: the events (errors) among ``total`` (requests) in its interval;
    ``value`` is then their ratio."""
    total: float | None = None


@attrs.frozen
class PlanEvent:
    """Something happened to a plan; passed to ``grayrelease_plan_event`` after commit."""

    action: str
    """``CREATED``, ``UPDATED``, ``DELETED``, ``STARTED``, ``PAUSED``, ``RESUMED``,
    ``PROMOTED``, ``STEPPED``, ``COMPLETED``, ``ROLLED_BACK``, ``AUTO_ROLLBACK``,
    ``ANALYSIS_PASSED``, ``ANALYSIS_INCONCLUSIVE``, ``ANALYSIS_FAILED``, ``START_FAILED``,
    ``COMPLETE_FAILED`` or ``ROLLBACK_FAILED``."""
    plan: Plan
    """The plan after the action (before it, for ``DELETED`` and failures)."""
    previous: Plan | None
    actor: str
    at: datetime
    message: str = ""
    details: Mapping[str, Any] | None = None
    """Structured facts, as in the audit row (a verdict's checks, a step's percentages)."""


T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    """One page of a listing."""

    items: tuple[T, ...]
    total: int
    page: int
    page_size: int
