"""A plugin that adds a gray strategy, ``HEADER``, and a run of it.

``HEADER`` gives the gray value to clients that sent a request header with one of the listed
values. The host copies the header into ``Client.labels`` under its lower-case name.

Run it: ``python docs/examples/header_strategy.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from grayrelease_core import (
    Client,
    ConfigRef,
    GrayRelease,
    Matcher,
    Plan,
    ValidationError,
    hookimpl,
)

# --- the plugin (in a package of your own: mypkg/plugin.py) ---------------------------------


class HeaderStrategy:
    """``{"header": "X-Gray", "values": ["beta"]}``: clients whose header is one of ``values``."""

    name = "HEADER"

    def validate(self, rules: Any) -> dict[str, Any]:
        if not isinstance(rules, Mapping):
            raise ValidationError("grayRules", "must be a JSON object")
        unknown = sorted(str(key) for key in rules if key not in ("header", "values"))
        if unknown:
            raise ValidationError(f"grayRules.{unknown[0]}", "unknown field; use header, values")
        header = rules.get("header")
        if not isinstance(header, str) or not header.strip():
            raise ValidationError("grayRules.header", "must be a header name", value=header)
        values = rules.get("values")
        if not isinstance(values, list) or not values:
            raise ValidationError("grayRules.values", "must be a non-empty list of strings")
        if not all(isinstance(value, str) for value in values):
            raise ValidationError("grayRules.values", "must be a non-empty list of strings")
        return {"header": header.strip().lower(), "values": sorted(set(values))}

    def initial_percentage(self, rules: Mapping[str, Any]) -> float:
        return 0.0  # a fixed set: no hashed share

    def next_step_at(self, rules: Mapping[str, Any], now: datetime) -> datetime | None:
        return None  # no canary steps

    def compile(self, plan: Plan) -> Matcher:
        header = plan.rules["header"]
        values = frozenset(plan.rules["values"])

        def sent_header(client: Client) -> bool:
            return client.labels.get(header) in values

        return sent_header


@hookimpl
def grayrelease_register_strategies() -> list[HeaderStrategy]:
    return [HeaderStrategy()]


# --- using it -------------------------------------------------------------------------------


def main() -> None:
    this_plugin = sys.modules[__name__]  # this module is the plugin
    settings = {"database_url": "sqlite://", "background_sync": False}
    with GrayRelease.from_settings(settings, plugins=[this_plugin]) as gr:
        ref = ConfigRef("shop", "prod", "default", "checkout.timeout")
        gr.backend.publish(ref, "30", actor="setup")
        plan = gr.create_plan(
            {
                "planName": "Shorter checkout timeout for beta testers",
                "appName": "shop",
                "environment": "prod",
                "configKeys": ["checkout.timeout"],
                "grayStrategy": "HEADER",
                "grayRules": {"header": "X-Gray", "values": ["beta"]},
                "grayValues": {"checkout.timeout": "10"},
            },
            actor="alice",
        )
        gr.start(plan.id, actor="alice")

        beta = gr.resolve(ref, Client("pod-1", "10.0.0.1", labels={"x-gray": "beta"}))
        other = gr.resolve(ref, Client("pod-2", "10.0.0.2"))
        print(f"beta tester: value={beta.value} gray={beta.gray}")
        print(f"other:       value={other.value} gray={other.gray}")
        assert (beta.value, beta.gray) == ("10", True)
        assert (other.value, other.gray) == ("30", False)


if __name__ == "__main__":
    main()
