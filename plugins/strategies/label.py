"""``LABEL``: clients whose labels match, e.g. one zone and two versions."""

from __future__ import annotations

from typing import Any

from grayrelease_core import Client, Matcher, Plan, ValidationError, hookimpl
from grayrelease_core.rules import RULES, rules_object, string_list
from grayrelease_core.strategy import FixedSetStrategy

MAX_LABELS = 32


class LabelStrategy(FixedSetStrategy):
    """``{"labels": {"zone": ["hz-a"], "version": ["2.1.0", "2.1.1"]}}``.

    A client matches when, for every listed label name, its label has one of the values.
    """

    name = "LABEL"

    def validate(self, rules: Any) -> dict[str, Any]:
        data = rules_object(rules, allowed=("labels",), required=("labels",))
        field = f"{RULES}.labels"
        labels = data["labels"]
        if not isinstance(labels, dict) or not labels:
            raise ValidationError(field, "must be a non-empty object of label: [values]")
        if len(labels) > MAX_LABELS:
            raise ValidationError(
                field, f"must name at most {MAX_LABELS} labels", value=len(labels)
            )
        normalized: dict[str, list[str]] = {}
        for name, values in labels.items():
            if not isinstance(name, str) or not name.strip():
                raise ValidationError(field, "label names must be non-empty strings", value=name)
            if name.strip() in normalized:
                raise ValidationError(f"{field}.{name}", "names a label twice (after trimming)")
            normalized[name.strip()] = string_list(values, f"{field}.{name}")
        return {"labels": normalized}

    def compile(self, plan: Plan) -> Matcher:
        wanted = tuple((name, frozenset(values)) for name, values in plan.rules["labels"].items())

        def labelled(client: Client) -> bool:
            labels = client.labels
            return all(labels.get(name) in values for name, values in wanted)

        return labelled


@hookimpl
def grayrelease_register_strategies() -> list[LabelStrategy]:
    return [LabelStrategy()]
