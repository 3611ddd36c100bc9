"""``PERCENTAGE``: a stable share of clients, by a murmur3 bucket of their identity."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from grayrelease_core import Matcher, Plan, hookimpl
from grayrelease_core.rules import RULES, percentage, rules_object, salt, stickiness
from grayrelease_core.strategy import hashed_matcher


class PercentageStrategy:
    """``{"percentage": 10, "stickiness": "instanceId", "salt": "<plan id>"}``.

    ``stickiness`` picks the hashed identity (``instanceId``, ``instanceIp`` or ``userId``);
    ``salt`` defaults to the plan id, so two plans at 10% pick different clients.
    """

    name = "PERCENTAGE"

    def validate(self, rules: Any) -> dict[str, Any]:
        data = rules_object(
            rules, allowed=("percentage", "stickiness", "salt"), required=("percentage",)
        )
        normalized: dict[str, Any] = {
            "percentage": percentage(data["percentage"], f"{RULES}.percentage"),
            "stickiness": stickiness(data.get("stickiness", "instanceId"), f"{RULES}.stickiness"),
        }
        if "salt" in data:
            normalized["salt"] = salt(data["salt"], f"{RULES}.salt")
        return normalized

    def initial_percentage(self, rules: Mapping[str, Any]) -> float:
        return float(rules["percentage"])

    def next_step_at(self, rules: Mapping[str, Any], now: datetime) -> datetime | None:
        return None

    def compile(self, plan: Plan) -> Matcher:
        return hashed_matcher(
            plan.progress.percentage, plan.rules.get("salt", plan.id), plan.rules["stickiness"]
        )


@hookimpl
def grayrelease_register_strategies() -> list[PercentageStrategy]:
    return [PercentageStrategy()]
