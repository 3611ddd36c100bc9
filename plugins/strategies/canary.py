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
from grayrelease_core.strategy import GROWTHS, StepSchedule, hashed_matcher

FIELDS = (
    "canaryInstances",
    "stepPercentage",
    "stepInterval",
    "maxPercentage",
    "stickiness",
    "salt",
    "growth",
    "autoComplete",
    "bakeTime",
)
MAX_INTERVAL_MINUTES = 7 * 24 * 60


class CanaryStrategy:
    """``{"canary": {"canaryInstances": [...], "stepPercentage": 20, "stepInterval": 30}}``.

    ``canaryInstances`` are instance ids, IP addresses or CIDR blocks; they get the gray value
    from the start. ``stepInterval`` is in minutes; the percentage grows by ``stepPercentage``
    per step up to ``maxPercentage`` (default 100), or doubles per step with
    ``"growth": "exponential"``. ``"autoComplete": true`` completes the plan once it has
    stayed ``bakeTime`` minutes at the top. The ticker takes each step only when the plan's
    analysis of that interval passed.
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
        growth = data.get("growth", "linear")
        if growth not in GROWTHS:
            raise ValidationError(
                f"{base}.growth", f"must be one of {', '.join(GROWTHS)}", value=growth
            )
        canary["growth"] = growth
        auto_complete = data.get("autoComplete", False)
        if not isinstance(auto_complete, bool):
            raise ValidationError(
                f"{base}.autoComplete", "must be true or false", value=auto_complete
            )
        canary["autoComplete"] = auto_complete
        bake = data.get("bakeTime", 0)
        canary["bakeTime"] = (
            0
            if bake == 0 and not isinstance(bake, bool)
            else positive_int(bake, f"{base}.bakeTime", maximum=MAX_INTERVAL_MINUTES)
        )
        return {"canary": canary}

    def step_schedule(self, rules: Mapping[str, Any]) -> StepSchedule:
        canary = rules["canary"]
        return StepSchedule(
            step_percentage=float(canary["stepPercentage"]),
            interval=int(canary["stepInterval"]),
            max_percentage=float(canary["maxPercentage"]),
            growth=canary.get("growth", "linear"),
            auto_complete=bool(canary.get("autoComplete", False)),
            bake_time=int(canary.get("bakeTime", 0)),
            first_stage=(
                None
                if any("/" in entry for entry in canary["canaryInstances"])
                else len(canary["canaryInstances"])
            ),
        )

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
