"""What a gray strategy is, and the registry that collects them from the plugins.

A strategy validates its rules when a plan is created and compiles a started plan into a
matcher: a plain function ``Client -> bool`` that the read path calls on every resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import attrs
import mmh3

from .errors import ValidationError
from .hashing import BUCKETS, threshold
from .models import Client, Plan
from .plugin_manager import by_name

Matcher = Callable[[Client], bool]


@runtime_checkable
class Strategy(Protocol):
    """A gray strategy, contributed through ``grayrelease_register_strategies``."""

    name: str
    """Wire name, e.g. ``PERCENTAGE``; unique across all plugins."""

    def validate(self, rules: Any) -> dict[str, Any]:
        """Check and normalize ``grayRules``; raise ``ValidationError`` naming the field."""
        ...

    def initial_percentage(self, rules: Mapping[str, Any]) -> float:
        """The hashed percentage a plan starts with (0 for strategies that do not hash)."""
        ...

    def next_step_at(self, rules: Mapping[str, Any], now: datetime) -> datetime | None:
        """When the next step is due if the plan (re)starts at ``now``; ``None`` if never."""
        ...

    def compile(self, plan: Plan) -> Matcher:
        """A matcher for the plan's normalized rules and its current progress."""
        ...


GROWTHS = ("linear", "exponential")


@attrs.frozen
class StepSchedule:
    """How a stepped strategy's hashed share widens; the ticker follows it."""

    step_percentage: float
    """The first step's size; every later step adds it (linear) or doubles (exponential)."""
    interval: int
    """Minutes between steps, each gated by the analysis of its interval."""
    max_percentage: float = 100.0
    growth: str = "linear"
    auto_complete: bool = False
    """Complete the plan once it has stayed at ``max_percentage`` for ``bake_time``."""
    bake_time: int = 0
    """Minutes watched at the top before completing (AWS AppConfig's bake time)."""
    first_stage: int | None = None
    """Instances (or addresses) named for the stage before the first step (the canary
    instances), when the rules name them one by one; ``None`` when unknown (CIDR blocks)."""

    def percentage_after(self, step: int) -> float:
        """The share after ``step`` steps: 20, 40, 60... or, exponential, 2, 4, 8, 16..."""
        if step <= 0:
            return 0.0
        if self.growth == "exponential":
            raw = self.step_percentage * float(2 ** min(step - 1, 64))
        else:
            raw = self.step_percentage * step
        return round(min(self.max_percentage, raw), 2)


@runtime_checkable
class SteppedStrategy(Protocol):
    """A strategy whose share the ticker widens step by step (``CANARY``)."""

    def step_schedule(self, rules: Mapping[str, Any]) -> StepSchedule:
        """The schedule the plan's normalized rules describe."""
        ...


class FixedSetStrategy:
    """Defaults for strategies that select a fixed set (no hashed share, no steps)."""

    name: str

    def initial_percentage(self, rules: Mapping[str, Any]) -> float:
        return 0.0

    def next_step_at(self, rules: Mapping[str, Any], now: datetime) -> datetime | None:
        return None


class StrategyRegistry:
    """Strategies by wire name."""

    def __init__(self, strategies: Mapping[str, Strategy]) -> None:
        self._strategies = dict(strategies)

    @classmethod
    def collect(cls, contributions: list[tuple[str, Any]]) -> StrategyRegistry:
        """Build from ``(plugin name, strategy)`` pairs; a name claimed twice is an error."""
        return cls(
            by_name(
                contributions,
                "strategy",
                Strategy,
                "name, validate, initial_percentage, next_step_at and compile",
            )
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._strategies))

    def get(self, name: Any, field: str = "grayStrategy") -> Strategy:
        """The strategy called ``name``; an unknown name is a validation error of ``field``."""
        strategy = self._strategies.get(name) if isinstance(name, str) else None
        if strategy is None:
            raise ValidationError(
                field, f"unknown strategy; known strategies are {', '.join(self.names)}", value=name
            )
        return strategy


def hashed_matcher(percentage: float, salt: str, stickiness: str) -> Matcher:
    """The percentage rule: a client is in when its bucket is below ``percentage * 100``.

    Written as closures over precomputed values because it runs on every resolution.
    """
    limit = threshold(percentage)
    if limit <= 0:
        return _never
    if limit >= BUCKETS:
        return _always_with_identity(stickiness)
    prefix = f"{salt}:"
    murmur = mmh3.hash

    if stickiness == "instanceIp":

        def by_ip(client: Client) -> bool:
            return bool(client.instance_ip) and (
                murmur(prefix + client.instance_ip, signed=False) % BUCKETS < limit
            )

        return by_ip
    if stickiness == "userId":

        def by_user(client: Client) -> bool:
            user = client.user_id
            return user is not None and murmur(prefix + user, signed=False) % BUCKETS < limit

        return by_user

    def by_instance(client: Client) -> bool:
        return murmur(prefix + client.instance_id, signed=False) % BUCKETS < limit

    return by_instance


def _never(client: Client) -> bool:
    return False


def _always_with_identity(stickiness: str) -> Matcher:
    if stickiness == "userId":
        return lambda client: client.user_id is not None
    if stickiness == "instanceIp":
        return lambda client: bool(client.instance_ip)
    return lambda client: True
