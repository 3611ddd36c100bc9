"""``IP_WHITELIST``: clients whose address is listed, exactly or inside a CIDR block."""

from __future__ import annotations

from typing import Any

from grayrelease_core import Client, Matcher, Plan, hookimpl
from grayrelease_core.addresses import AddressSet, parse_entry
from grayrelease_core.rules import RULES, rules_object, string_list
from grayrelease_core.strategy import FixedSetStrategy


class IpWhitelistStrategy(FixedSetStrategy):
    """``{"ipWhitelist": ["192.168.1.100", "10.0.0.0/24", "2001:db8::/32"]}``."""

    name = "IP_WHITELIST"

    def validate(self, rules: Any) -> dict[str, Any]:
        data = rules_object(rules, allowed=("ipWhitelist",), required=("ipWhitelist",))
        field = f"{RULES}.ipWhitelist"
        entries = string_list(data["ipWhitelist"], field)
        normalized = [str(parse_entry(entry, f"{field}[{i}]")) for i, entry in enumerate(entries)]
        return {"ipWhitelist": list(dict.fromkeys(normalized))}

    def compile(self, plan: Plan) -> Matcher:
        addresses = AddressSet(
            parse_entry(entry, "ipWhitelist") for entry in plan.rules["ipWhitelist"]
        )

        def listed(client: Client) -> bool:
            return client.instance_ip in addresses

        return listed


@hookimpl
def grayrelease_register_strategies() -> list[IpWhitelistStrategy]:
    return [IpWhitelistStrategy()]
