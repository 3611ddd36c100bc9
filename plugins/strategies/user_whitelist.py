"""``USER_WHITELIST``: clients reading on behalf of a listed user."""

from __future__ import annotations

from typing import Any

from grayrelease_core import Client, Matcher, Plan, hookimpl
from grayrelease_core.rules import RULES, rules_object, string_list
from grayrelease_core.strategy import FixedSetStrategy


class UserWhitelistStrategy(FixedSetStrategy):
    """``{"userWhitelist": ["u-1001", "alice"]}``; matched against ``Client.user_id``."""

    name = "USER_WHITELIST"

    def validate(self, rules: Any) -> dict[str, Any]:
        data = rules_object(rules, allowed=("userWhitelist",), required=("userWhitelist",))
        return {"userWhitelist": string_list(data["userWhitelist"], f"{RULES}.userWhitelist")}

    def compile(self, plan: Plan) -> Matcher:
        users = frozenset(plan.rules["userWhitelist"])

        def listed(client: Client) -> bool:
            return client.user_id in users

        return listed


@hookimpl
def grayrelease_register_strategies() -> list[UserWhitelistStrategy]:
    return [UserWhitelistStrategy()]
