"""Plan events as people read them: one audit row in, one :class:`Message` in Chinese or English.

Every channel gets the same message, so what an event says is decided here once. A message
names the plan and where it stands, never the keys' values: gray and original values may be
passwords, and notifications end up in mailboxes and group chats. Everything that comes from
a row or a plan is operator input, so single-line fields are folded onto one line (a plan
name cannot add a Markdown heading) and the HTML body escapes every value.

The channels add the console link themselves (a button, a footer), and put the title where
their format wants it; so ``text`` and ``html`` carry neither the link nor, for ``text``,
the title.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from .models import LogRecord, Plan
from .notify import Message, Severity
from .ticker import SYSTEM_ACTOR

LANGUAGES = ("zh", "en")
"""The languages messages are written in; settings are checked against this."""
TEMPLATE_PARAM_LIMIT = 35
"""Longest template parameter: Aliyun SMS refuses variables much longer than this."""
ELLIPSIS = "…"

_EVENTS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "zh": MappingProxyType(
            {
                "CREATED": "创建",
                "UPDATED": "更新",
                "DELETED": "删除",
                "STARTED": "开始灰度",
                "PAUSED": "暂停",
                "RESUMED": "恢复",
                "STEPPED": "扩大灰度",
                "PROMOTED": "手动扩大",
                "HELD": "暂停步进",
                "COMPLETED": "全量发布完成",
                "ROLLED_BACK": "回滚",
                "AUTO_ROLLBACK": "自动回滚",
                "ANALYSIS_PASSED": "分析通过",
                "ANALYSIS_INCONCLUSIVE": "分析无结论",
                "ANALYSIS_FAILED": "分析失败",
                "START_FAILED": "启动失败",
                "COMPLETE_FAILED": "全量发布失败",
                "ROLLBACK_FAILED": "回滚失败",
                "APPROVED": "审批通过",
                "REJECTED": "审批驳回",
            }
        ),
        "en": MappingProxyType(
            {
                "CREATED": "Created",
                "UPDATED": "Updated",
                "DELETED": "Deleted",
                "STARTED": "Started",
                "PAUSED": "Paused",
                "RESUMED": "Resumed",
                "STEPPED": "Widened",
                "PROMOTED": "Promoted",
                "HELD": "Step held",
                "COMPLETED": "Completed",
                "ROLLED_BACK": "Rolled back",
                "AUTO_ROLLBACK": "Rolled back automatically",
                "ANALYSIS_PASSED": "Analysis passed",
                "ANALYSIS_INCONCLUSIVE": "Analysis inconclusive",
                "ANALYSIS_FAILED": "Analysis failed",
                "START_FAILED": "Start failed",
                "COMPLETE_FAILED": "Completion failed",
                "ROLLBACK_FAILED": "Rollback failed",
                "APPROVED": "Approved",
                "REJECTED": "Rejected",
            }
        ),
    }
)
"""Each action's name per language; an action missing here is shown as it is."""

_WORDS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "zh": MappingProxyType(
            {
                "product": "[灰度发布]",
                "critical": "【严重】",
                "plan": "计划",
                "plan_id": "计划 ID",
                "app": "应用",
                "environment": "环境",
                "group": "分组",
                "keys": "配置项",
                "strategy": "策略",
                "progress": "进度",
                "step": "第 {step} 步",
                "actor": "操作人",
                "system": "系统",
                "time": "时间",
                "reason": "原因",
                "error": "错误",
                "note": "说明",
                "failed_metrics": "失败指标",
                "failed_checks": "失败检查",
                "step_change": "步进",
                "next_step_at": "下一步时间",
                "gray_mean": "灰度均值",
                "baseline_mean": "基线均值",
                "threshold": "阈值",
                "max_increase": "允许增幅",
                "p_value": "p 值",
            }
        ),
        "en": MappingProxyType(
            {
                "product": "[Gray release]",
                "critical": "[CRITICAL] ",
                "plan": "Plan",
                "plan_id": "Plan ID",
                "app": "App",
                "environment": "Environment",
                "group": "Group",
                "keys": "Config keys",
                "strategy": "Strategy",
                "progress": "Progress",
                "step": "step {step}",
                "actor": "By",
                "system": "the system",
                "time": "Time",
                "reason": "Reason",
                "error": "Error",
                "note": "Note",
                "failed_metrics": "Failed metrics",
                "failed_checks": "Failed checks",
                "step_change": "Step",
                "next_step_at": "Next step at",
                "gray_mean": "gray mean",
                "baseline_mean": "baseline mean",
                "threshold": "threshold",
                "max_increase": "max increase",
                "p_value": "p-value",
            }
        ),
    }
)

_PROMOTIONS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"zh": MappingProxyType({"one step": "一步", "to 100%": "到 100%"}), "en": MappingProxyType({})}
)
"""PROMOTED rows' messages are the engine's own English words; the rest are shown as they are."""

_REASON_ACTIONS = frozenset(
    {"AUTO_ROLLBACK", "ROLLED_BACK", "HELD", "ANALYSIS_INCONCLUSIVE", "REJECTED"}
)
"""Their message is why it happened."""
_ERROR_ACTIONS = frozenset({"START_FAILED", "COMPLETE_FAILED", "ROLLBACK_FAILED"})
"""Their message is the error that stopped the operation."""
_STEPPED_STRATEGY = "CANARY"
"""The strategy whose progress has steps worth naming (the core cannot import the plugin)."""


@attrs.frozen
class _Field:
    """One labelled line of the body; a tuple value is a sub-list (the failed checks)."""

    label: str
    value: str | tuple[str, ...]


def render(
    row: LogRecord,
    plan: Plan,
    *,
    severity: Severity,
    language: str = "zh",
    console_url: str | None = None,
) -> Message:
    """The message telling of ``row``, an event of ``plan`` (the plan after it; before it
    for a deletion or a failure).

    :param severity: how serious the event is (routing decides; the title marks critical).
    :param language: one of :data:`LANGUAGES`.
    :param console_url: the console's public base URL; without it the message has no link.
    :raises ValueError: ``language`` is not one of :data:`LANGUAGES`.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}: expected one of {', '.join(LANGUAGES)}")
    words = _WORDS[language]
    event = _EVENTS[language].get(row.action, row.action)
    marker = words["critical"] if severity is Severity.CRITICAL else ""
    title = _line(
        f"{marker}{words['product']} {event}: {plan.name} ({plan.app_name}/{plan.environment})"
    )
    fields = _fields(row, plan, language)
    link = None
    if console_url is not None:
        link = f"{console_url.rstrip('/')}/#/plans/{urllib.parse.quote(plan.id, safe='')}"
    params = (
        ("plan", plan.name),
        ("app", plan.app_name),
        ("env", plan.environment),
        ("event", event),
        ("actor", _actor(row.actor, words)),
        ("percentage", _percent(plan.progress.percentage)),
        ("reason", _short_reason(row)),
    )
    return Message(
        title=title,
        text=_text(fields),
        markdown=_markdown(title, fields),
        html=_html(title, fields),
        severity=severity,
        link=link,
        template_params=tuple((name, _truncate(_line(value))) for name, value in params),
        plan_id=plan.id,
        event=row.action,
    )


# --- what the message says ---------------------------------------------------------------------


def _fields(row: LogRecord, plan: Plan, language: str) -> list[_Field]:
    words = _WORDS[language]
    progress = _percent(plan.progress.percentage)
    if plan.strategy == _STEPPED_STRATEGY or plan.progress.step:
        progress += f" ({words['step'].format(step=plan.progress.step)})"
    fields = [
        _Field(words["plan"], plan.name),
        _Field(words["plan_id"], plan.id),
        _Field(words["app"], plan.app_name),
        _Field(words["environment"], plan.environment),
        _Field(words["group"], plan.group_name),
        _Field(words["keys"], ", ".join(plan.config_keys)),
        _Field(words["strategy"], plan.strategy),
        _Field(words["progress"], progress),
        _Field(words["actor"], _actor(row.actor, words)),
        _Field(words["time"], _iso(row.at)),
    ]
    return fields + _event_fields(row, language)


def _event_fields(row: LogRecord, language: str) -> list[_Field]:
    """What this kind of event adds: why, which metrics failed, how far a step went."""
    words = _WORDS[language]
    details = row.details or {}
    fields: list[_Field] = []
    if row.action == "STEPPED" and details:
        change = (
            f"{_percent(details.get('fromPercentage'))} → {_percent(details.get('toPercentage'))}"
        )
        if details.get("step") is not None:
            change += f" ({words['step'].format(step=details['step'])})"
        fields.append(_Field(words["step_change"], change))
    elif row.action == "ANALYSIS_FAILED":
        checks = tuple(_check_line(check, words) for check in _failed_checks(details))
        if checks:
            fields.append(_Field(words["failed_checks"], checks))
        elif row.message:
            fields.append(_Field(words["reason"], row.message))
    elif row.action in _REASON_ACTIONS:
        if row.message:
            fields.append(_Field(words["reason"], row.message))
        metrics = _failed_metrics(details)
        if row.action == "AUTO_ROLLBACK" and metrics:
            fields.append(_Field(words["failed_metrics"], ", ".join(metrics)))
    elif row.action in _ERROR_ACTIONS:
        if row.message:
            fields.append(_Field(words["error"], row.message))
    elif row.action == "PROMOTED" and row.message:
        fields.append(_Field(words["note"], _PROMOTIONS[language].get(row.message, row.message)))
    elif row.message:
        fields.append(_Field(words["note"], row.message))
    if row.action in ("STEPPED", "HELD") and details.get("nextStepAt"):
        fields.append(_Field(words["next_step_at"], str(details["nextStepAt"])))
    return fields


def _failed_checks(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The verdict's failed checks; old or hand-made rows may lack any part of it."""
    checks = details.get("checks")
    if not isinstance(checks, Sequence) or isinstance(checks, str):
        return []
    return [c for c in checks if isinstance(c, Mapping) and c.get("outcome") == "FAIL"]


def _failed_metrics(details: Mapping[str, Any]) -> list[str]:
    metrics = details.get("failedMetrics")
    if not isinstance(metrics, Sequence) or isinstance(metrics, str):
        return []
    return [str(metric) for metric in metrics]


def _check_line(check: Mapping[str, Any], words: Mapping[str, str]) -> str:
    """``metric: gray mean 0.2, baseline mean 0.1, max increase 0.2, p-value 0.003``."""
    parts = [f"{words['gray_mean']} {_number(check.get('grayMean'))}"]
    for key, word in (
        ("baselineMean", "baseline_mean"),
        ("threshold", "threshold"),
        ("maxIncrease", "max_increase"),
        ("pValue", "p_value"),
    ):
        if check.get(key) is not None:
            parts.append(f"{words[word]} {_number(check[key])}")
    return f"{check.get('metric', '?')}: {', '.join(parts)}"


def _short_reason(row: LogRecord) -> str:
    """The SMS ``reason``: the failing metrics when known (they fit where a sentence would be
    cut), else the row's reason or error; nothing for events that have no reason."""
    details = row.details or {}
    if row.action == "ANALYSIS_FAILED":
        metrics = [str(check.get("metric", "?")) for check in _failed_checks(details)]
        return ", ".join(dict.fromkeys(metrics)) or row.message
    if row.action == "AUTO_ROLLBACK":
        return ", ".join(_failed_metrics(details)) or row.message
    if row.action in _REASON_ACTIONS or row.action in _ERROR_ACTIONS:
        return row.message
    return ""


def _actor(actor: str, words: Mapping[str, str]) -> str:
    return words["system"] if actor == SYSTEM_ACTOR else actor


def _percent(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}%"
    return "?"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _iso(value: datetime) -> str:
    # Rows carry aware UTC times; a naive one can only be UTC too (the clock's), not local.
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- formats -----------------------------------------------------------------------------------


def _line(value: str) -> str:
    """One line: every run of whitespace (line breaks included) becomes one space."""
    return " ".join(value.split())


def _truncate(value: str) -> str:
    if len(value) <= TEMPLATE_PARAM_LIMIT:
        return value
    return value[: TEMPLATE_PARAM_LIMIT - len(ELLIPSIS)] + ELLIPSIS


def _lines(value: str | tuple[str, ...]) -> tuple[str, ...] | str:
    return tuple(_line(item) for item in value) if isinstance(value, tuple) else _line(value)


def _text(fields: Sequence[_Field]) -> str:
    return _listing(fields, "{}")


def _markdown(title: str, fields: Sequence[_Field]) -> str:
    return f"### {title}\n\n" + _listing(fields, "- **{}**")


def _listing(fields: Sequence[_Field], label: str) -> str:
    """One ``label: value`` line per field (``label`` formats the field's label), a
    sub-list indented under its label."""
    out: list[str] = []
    for field in fields:
        value = _lines(field.value)
        if isinstance(value, tuple):
            out.append(f"{label.format(field.label)}:")
            out.extend(f"  - {item}" for item in value)
        else:
            out.append(f"{label.format(field.label)}: {value or '-'}")
    return "\n".join(out)


def _html(title: str, fields: Sequence[_Field]) -> str:
    rows: list[str] = []
    for field in fields:
        value = _lines(field.value)
        if isinstance(value, tuple):
            items = "".join(f"<li>{html.escape(item)}</li>" for item in value)
            cell = f"<ul>{items}</ul>"
        else:
            cell = html.escape(value or "-")
        rows.append(f"<tr><th>{html.escape(field.label)}</th><td>{cell}</td></tr>")
    return f"<h3>{html.escape(title)}</h3>\n<table>\n" + "\n".join(rows) + "\n</table>"
