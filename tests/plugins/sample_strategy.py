"""A sample third-party strategy plugin: clients whose instance id starts with a prefix."""

from __future__ import annotations

from typing import Any

from grayrelease_core import Client, Matcher, Plan, ValidationError, hookimpl
from grayrelease_core.rules import RULES, rules_object
from grayrelease_core.strategy import FixedSetStrategy


class PrefixStrategy(FixedSetStrategy):
    """``{"prefix": "canary-"}``."""

    name = "INSTANCE_PREFIX"

    def validate(self, rules: Any) -> dict[str, Any]:
        data = rules_object(rules, allowed=("prefix",), required=("prefix",))
        if not isinstance(data["prefix"], str) or not data["prefix"]:
            raise ValidationError(f"{RULES}.prefix", "must be a non-empty string")
        return {"prefix": data["prefix"]}

    def compile(self, plan: Plan) -> Matcher:
        prefix = plan.rules["prefix"]

        def starts_with(client: Client) -> bool:
            return client.instance_id.startswith(prefix)

        return starts_with


@hookimpl
def grayrelease_register_strategies() -> list[PrefixStrategy]:
    return [PrefixStrategy()]
