"""``CANARY``: named canary instances at once, then a hashed share widened step by step."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from grayrelease_core import Client, Matcher, Plan, ValidationError, hookimpl
from grayrelease_core.addresses import AddressSet, ip_entry, parse_entry
from grayrelease_core.rules import (
    RULES,
    percentage,
    positive_int,
    rules_object,
    salt,
    stickiness,
    string_list,
)
from grayrelease_core.strategy import hashed_matcher

FIELDS = (
    "canaryInstances",
    "stepPercentage",
    "stepInterval",
    "maxPercentage",
    "stickiness",
    "salt",
)
MAX_INTERVAL_MINUTES = 7 * 24 * 60


class CanaryStrategy:
    """``{"canary": {"canaryInstances": [...], "stepPercentage": 20, "stepInterval": 30}}``.

    ``canaryInstances`` are instance ids, IP addresses or CIDR blocks; they get the gray value
    from the start. ``stepInterval`` is in minutes; the percentage grows by ``stepPercentage``
    per step up to ``maxPercentage`` (default 100). The current percentage and the next step
    time live in the plan's progress; the ticker that advances them is a separate feature.
    """

    name = "CANARY"

    def validate(self, rules: Any) -> dict[str, Any]:
        outer = rules_object(rules, allowed=("canary",), required=("canary",))
        base = f"{RULES}.canary"
        data = rules_object(
            outer["canary"],
            allowed=FIELDS,
            required=("canaryInstances", "stepPercentage", "stepInterval"),
            field=base,
        )
        instances = string_list(data["canaryInstances"], f"{base}.canaryInstances")
        for index, entry in enumerate(instances):
            if "/" in entry:  # instance ids have no slash: this must be a CIDR block
                parse_entry(entry, f"{base}.canaryInstances[{index}]")
        step = percentage(data["stepPercentage"], f"{base}.stepPercentage", allow_zero=False)
        maximum = percentage(
            data.get("maxPercentage", 100), f"{base}.maxPercentage", allow_zero=False
        )
        if step > maximum:
            raise ValidationError(
                f"{base}.stepPercentage", f"must not exceed maxPercentage ({maximum})", value=step
            )
        canary: dict[str, Any] = {
            "canaryInstances": instances,
            "stepPercentage": step,
            "stepInterval": positive_int(
                data["stepInterval"], f"{base}.stepInterval", maximum=MAX_INTERVAL_MINUTES
            ),
            "maxPercentage": maximum,
            "stickiness": stickiness(data.get("stickiness", "instanceId"), f"{base}.stickiness"),
        }
        if "salt" in data:
            canary["salt"] = salt(data["salt"], f"{base}.salt")
        return {"canary": canary}

    def initial_percentage(self, rules: Mapping[str, Any]) -> float:
        return 0.0

    def next_step_at(self, rules: Mapping[str, Any], now: datetime) -> datetime | None:
        return now + timedelta(minutes=int(rules["canary"]["stepInterval"]))

    def compile(self, plan: Plan) -> Matcher:
        canary = plan.rules["canary"]
        instances = canary["canaryInstances"]
        parsed = {entry: ip_entry(entry) for entry in instances}
        addresses = AddressSet(ip for ip in parsed.values() if ip is not None)
        ids = frozenset(entry for entry, ip in parsed.items() if ip is None)
        hashed = hashed_matcher(
            plan.progress.percentage, canary.get("salt", plan.id), canary["stickiness"]
        )

        def canary_or_hashed(client: Client) -> bool:
            return client.instance_id in ids or client.instance_ip in addresses or hashed(client)

        return canary_or_hashed


@hookimpl
def grayrelease_register_strategies() -> list[CanaryStrategy]:
    return [CanaryStrategy()]
