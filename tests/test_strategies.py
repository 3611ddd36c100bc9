"""The five built-in strategies: their rules' validation and their matching."""

from __future__ import annotations

from typing import Any

import pytest

from grayrelease_core import Client, Plan, PlanItem, PlanStatus, Progress, ValidationError
from grayrelease_core.plugin_manager import collect, make_plugin_manager
from grayrelease_core.strategy import StrategyRegistry

REGISTRY = StrategyRegistry.collect(
    collect(make_plugin_manager(load_entrypoints=False), "grayrelease_register_strategies")
)


def compiled(strategy: str, rules: Any, percentage: float | None = None) -> Any:
    chosen = REGISTRY.get(strategy)
    normalized = chosen.validate(rules)
    plan = Plan(
        id="plan-1",
        name="p",
        app_name="a",
        environment="prod",
        group_name="g",
        items=(PlanItem("k", "v"),),
        strategy=strategy,
        rules=normalized,
        status=PlanStatus.ACTIVE,
        progress=Progress(
            percentage=chosen.initial_percentage(normalized) if percentage is None else percentage
        ),
    )
    return chosen.compile(plan)


def field_of(strategy: str, rules: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        REGISTRY.get(strategy).validate(rules)
    assert caught.value.code == "VALIDATION_ERROR"
    return caught.value.field


def test_the_five_strategies_are_registered() -> None:
    assert set(REGISTRY.names) == {
        "IP_WHITELIST",
        "USER_WHITELIST",
        "PERCENTAGE",
        "CANARY",
        "LABEL",
    }


def test_unknown_strategy_names_the_field_and_the_known_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        REGISTRY.get("BLUE_GREEN")
    assert caught.value.field == "grayStrategy"
    assert "PERCENTAGE" in caught.value.message


# --- IP_WHITELIST -----------------------------------------------------------------------------


def test_ip_whitelist_matches_addresses_and_cidr_blocks_v4_and_v6() -> None:
    match = compiled(
        "IP_WHITELIST",
        {"ipWhitelist": ["192.168.1.100", "10.0.0.0/24", "2001:db8::/32", "fe80::1"]},
    )
    assert match(Client("a", "192.168.1.100"))
    assert not match(Client("a", "192.168.1.101"))
    assert match(Client("a", "10.0.0.77"))
    assert not match(Client("a", "10.0.1.1"))
    assert match(Client("a", "2001:db8:ffff::1"))
    assert match(Client("a", "FE80:0:0::1"))  # another spelling of a listed address
    assert match(Client("a", "::ffff:192.168.1.100"))  # IPv4-mapped IPv6
    assert not match(Client("a", "2001:db9::1"))
    assert not match(Client("a", "not-an-ip"))
    assert not match(Client("a", ""))


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"ipWhitelist": []}, "grayRules.ipWhitelist"),
        ({"ipWhitelist": ["192.168.1.300"]}, "grayRules.ipWhitelist[0]"),
        ({"ipWhitelist": ["10.0.0.1", "10.0.0.0/33"]}, "grayRules.ipWhitelist[1]"),
        ({"ipWhitelist": "10.0.0.1"}, "grayRules.ipWhitelist"),
        ({"ipWhitelist": [7]}, "grayRules.ipWhitelist[0]"),
        ({}, "grayRules.ipWhitelist"),
        ({"ipWhitelist": ["10.0.0.1"], "ips": []}, "grayRules.ips"),
        (["10.0.0.1"], "grayRules"),
    ],
)
def test_ip_whitelist_rejects_bad_rules_naming_the_field(rules: Any, field: str) -> None:
    assert field_of("IP_WHITELIST", rules) == field


def test_ip_whitelist_error_carries_the_bad_value() -> None:
    with pytest.raises(ValidationError) as caught:
        REGISTRY.get("IP_WHITELIST").validate({"ipWhitelist": ["192.168.1.300"]})
    assert caught.value.details["value"] == "192.168.1.300"


# --- USER_WHITELIST ---------------------------------------------------------------------------


def test_user_whitelist_matches_the_user_id_only() -> None:
    match = compiled("USER_WHITELIST", {"userWhitelist": ["alice", "u-1001"]})
    assert match(Client("i-1", user_id="alice"))
    assert match(Client("i-2", user_id="u-1001"))
    assert not match(Client("alice"))  # an instance id is not a user id
    assert not match(Client("i-3", user_id="bob"))


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"userWhitelist": []}, "grayRules.userWhitelist"),
        ({"userWhitelist": ["ok", " "]}, "grayRules.userWhitelist[1]"),
        ({"users": ["a"]}, "grayRules.users"),
    ],
)
def test_user_whitelist_rejects_bad_rules(rules: Any, field: str) -> None:
    assert field_of("USER_WHITELIST", rules) == field


# --- PERCENTAGE -------------------------------------------------------------------------------


def test_percentage_normalizes_defaults() -> None:
    assert REGISTRY.get("PERCENTAGE").validate({"percentage": 10}) == {
        "percentage": 10.0,
        "stickiness": "instanceId",
    }


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"percentage": 101}, "grayRules.percentage"),
        ({"percentage": -1}, "grayRules.percentage"),
        ({"percentage": "10"}, "grayRules.percentage"),
        ({"percentage": True}, "grayRules.percentage"),
        ({"percentage": 10.001}, "grayRules.percentage"),
        ({"percentage": float("nan")}, "grayRules.percentage"),
        ({"percentage": 10, "stickiness": "sessionId"}, "grayRules.stickiness"),
        ({"percentage": 10, "salt": ""}, "grayRules.salt"),
        ({"percentage": 10, "rate": 3}, "grayRules.rate"),
        ({}, "grayRules.percentage"),
    ],
)
def test_percentage_rejects_bad_rules(rules: Any, field: str) -> None:
    assert field_of("PERCENTAGE", rules) == field


def test_percentage_salt_decides_who_is_picked() -> None:
    clients = [Client(f"i-{n}") for n in range(2000)]
    one = compiled("PERCENTAGE", {"percentage": 50, "salt": "one"})
    two = compiled("PERCENTAGE", {"percentage": 50, "salt": "two"})
    assert [one(c) for c in clients] != [two(c) for c in clients]


# --- CANARY -----------------------------------------------------------------------------------

CANARY = {
    "canary": {
        "canaryInstances": ["192.168.1.200", "pod-7"],
        "stepPercentage": 20,
        "stepInterval": 30,
    }
}


def test_canary_normalizes_and_starts_at_zero_percent() -> None:
    strategy = REGISTRY.get("CANARY")
    rules = strategy.validate(CANARY)
    assert rules["canary"]["maxPercentage"] == 100
    assert rules["canary"]["stickiness"] == "instanceId"
    assert strategy.initial_percentage(rules) == 0


def test_canary_instances_by_ip_or_id_then_the_hashed_share() -> None:
    at_start = compiled("CANARY", CANARY)
    others = [Client(f"i-{n}", f"10.0.{n // 250}.{n % 250}") for n in range(1000)]
    assert at_start(Client("x", "192.168.1.200"))
    assert at_start(Client("pod-7", "10.9.9.9"))
    assert not any(at_start(c) for c in others)
    widened = compiled("CANARY", CANARY, percentage=40)
    share = sum(widened(c) for c in others) / len(others)
    assert 0.3 < share < 0.5
    assert widened(Client("pod-7"))


@pytest.mark.parametrize(
    ("canary", "field"),
    [
        (
            {"canaryInstances": [], "stepPercentage": 20, "stepInterval": 30},
            "grayRules.canary.canaryInstances",
        ),
        (
            {"canaryInstances": ["a"], "stepPercentage": 0, "stepInterval": 30},
            "grayRules.canary.stepPercentage",
        ),
        (
            {"canaryInstances": ["a"], "stepPercentage": 20, "stepInterval": 0},
            "grayRules.canary.stepInterval",
        ),
        (
            {"canaryInstances": ["a"], "stepPercentage": 20, "stepInterval": 1.5},
            "grayRules.canary.stepInterval",
        ),
        (
            {
                "canaryInstances": ["a"],
                "stepPercentage": 50,
                "stepInterval": 5,
                "maxPercentage": 30,
            },
            "grayRules.canary.stepPercentage",
        ),
        ({"canaryInstances": ["a"], "stepPercentage": 20}, "grayRules.canary.stepInterval"),
        (
            {"canaryInstances": ["a"], "stepPercentage": 20, "stepInterval": 5, "speed": 1},
            "grayRules.canary.speed",
        ),
    ],
)
def test_canary_rejects_bad_rules(canary: Any, field: str) -> None:
    assert field_of("CANARY", {"canary": canary}) == field


def test_canary_rules_must_be_nested_under_canary() -> None:
    assert field_of("CANARY", {"canaryInstances": ["a"]}) == "grayRules.canaryInstances"


# --- LABEL ------------------------------------------------------------------------------------


def test_label_requires_every_listed_label_to_match_one_value() -> None:
    match = compiled("LABEL", {"labels": {"zone": ["hz-a"], "version": ["2.1.0", "2.1.1"]}})
    assert match(Client("i", labels={"zone": "hz-a", "version": "2.1.1", "extra": "x"}))
    assert not match(Client("i", labels={"zone": "hz-b", "version": "2.1.1"}))
    assert not match(Client("i", labels={"zone": "hz-a"}))
    assert not match(Client("i"))


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"labels": {}}, "grayRules.labels"),
        ({"labels": {"zone": []}}, "grayRules.labels.zone"),
        ({"labels": {"zone": "hz-a"}}, "grayRules.labels.zone"),
        ({"labels": ["zone"]}, "grayRules.labels"),
        ({"labels": {"zone": ["a"]}, "match": "any"}, "grayRules.match"),
    ],
)
def test_label_rejects_bad_rules(rules: Any, field: str) -> None:
    assert field_of("LABEL", rules) == field


def test_canary_instances_may_be_cidr_blocks() -> None:
    match = compiled(
        "CANARY",
        {
            "canary": {
                "canaryInstances": ["10.0.0.0/24", "pod-1"],
                "stepPercentage": 10,
                "stepInterval": 5,
            }
        },
    )
    assert match(Client("x", "10.0.0.7"))
    assert match(Client("pod-1", "172.16.0.1"))
    assert not match(Client("x", "10.0.1.7"))


def test_canary_refuses_a_malformed_cidr_block() -> None:
    bad = {"canaryInstances": ["pod-1", "10.0.0.0/33"], "stepPercentage": 10, "stepInterval": 5}
    assert field_of("CANARY", {"canary": bad}) == "grayRules.canary.canaryInstances[1]"


def test_an_ipv4_mapped_whitelist_entry_matches_both_spellings() -> None:
    match = compiled("IP_WHITELIST", {"ipWhitelist": ["::ffff:10.0.0.1"]})
    assert match(Client("a", "10.0.0.1"))
    assert match(Client("a", "::ffff:10.0.0.1"))
    assert not match(Client("a", "10.0.0.2"))


def test_label_names_that_differ_only_by_spaces_are_refused() -> None:
    assert (
        field_of("LABEL", {"labels": {"zone": ["a"], " zone": ["b"]}}) == "grayRules.labels. zone"
    )
