"""Rendering plan events into messages: what each language says, and what operator input
cannot do to it (leak a value, inject HTML, add a Markdown heading, overflow an SMS)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from grayrelease_core.messages import LANGUAGES, TEMPLATE_PARAM_LIMIT, render
from grayrelease_core.models import LogRecord, Plan, PlanItem, PlanStatus, Progress
from grayrelease_core.notify import Message, Severity
from grayrelease_core.routing import EVENT_SEVERITY

AT = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
GRAY = "gray-pa55word-9f3a"
ORIGINAL = "orig-pa55word-77c1"
KEYS = ("redis.cluster.nodes", "redis.password")
SYSTEM = {"zh": "系统", "en": "the system"}
ROLLBACK_REASON = "critical check failed: error_rate: gray mean 0.2 above threshold 0.05"


def make_plan(name: str = "缓存配置金丝雀发布", plan_id: str = "plan-42") -> Plan:
    return Plan(
        id=plan_id,
        name=name,
        app_name="cache-service",
        environment="prod",
        group_name="infra-group",
        items=tuple(
            PlanItem(key, gray_value=GRAY, original_value=ORIGINAL, original_present=True)
            for key in KEYS
        ),
        strategy="CANARY",
        rules={"canary": {"stepPercentage": 20}},
        status=PlanStatus.ACTIVE,
        progress=Progress(percentage=20.0, step=1),
        created_by="alice",
    )


def make_row(
    action: str,
    message: str = "",
    details: Mapping[str, Any] | None = None,
    actor: str = "system",
) -> LogRecord:
    # The row carries the plan's wire form with its values, as real audit rows do: the
    # message must not take them from there either.
    wire = {"planId": "plan-42", "grayValues": dict.fromkeys(KEYS, GRAY)}
    return LogRecord(
        "plan-42",
        action,
        actor,
        AT,
        PlanStatus.ACTIVE,
        PlanStatus.ACTIVE,
        before={**wire, "originalValues": dict.fromkeys(KEYS, ORIGINAL)},
        after=wire,
        message=message,
        details=details,
    )


FAILED_CHECK = {
    "metric": "error_rate",
    "source": "samples",
    "kind": "relative",
    "critical": True,
    "outcome": "FAIL",
    "reason": "gray worse than baseline",
    "grayCount": 12,
    "baselineCount": 40,
    "grayMean": 0.2,
    "baselineMean": 0.01,
    "threshold": None,
    "maxIncrease": 0.1,
    "u": 460.0,
    "pValue": 0.0012,
    "alpha": 0.01,
}
PASSED_CHECK = {
    **FAILED_CHECK,
    "metric": "latency_p99_ms",
    "outcome": "PASS",
    "grayMean": 812.5,
    "pValue": 0.61,
}
ROWS = {
    "AUTO_ROLLBACK": make_row(
        "AUTO_ROLLBACK", ROLLBACK_REASON, {"failedMetrics": ["error_rate", "cpu_load"]}
    ),
    "ANALYSIS_FAILED": make_row(
        "ANALYSIS_FAILED",
        "analysis 2 FAIL",
        {
            "outcome": "FAIL",
            "look": 2,
            "windowStart": "2024-05-01T09:55:00.000Z",
            "windowEnd": "2024-05-01T10:00:00.000Z",
            "checks": [FAILED_CHECK, PASSED_CHECK],
        },
    ),
    "STEPPED": make_row(
        "STEPPED",
        "20% -> 40%",
        {
            "fromPercentage": 20.0,
            "toPercentage": 40.0,
            "step": 2,
            "nextStepAt": "2024-05-01T10:30:00.000Z",
        },
    ),
    "HELD": make_row("HELD", "waiting for analysis", {"nextStepAt": "2024-05-01T10:05:00.000Z"}),
    "ROLLED_BACK": make_row("ROLLED_BACK", "customers report timeouts", actor="bob"),
    "START_FAILED": make_row("START_FAILED", "backend unreachable: nacos timed out"),
    "STARTED": make_row("STARTED", "", actor="alice"),
}


def bodies(message: Message) -> dict[str, str]:
    return {
        "title": message.title,
        "text": message.text,
        "markdown": message.markdown,
        "html": message.html,
    }


def everything(message: Message) -> str:
    params = " ".join(value for _, value in message.template_params)
    return "\n".join([*bodies(message).values(), params, message.link or ""])


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("action", sorted(ROWS))
def test_bodies_name_the_plan_and_its_keys(language: str, action: str) -> None:
    row = ROWS[action]
    message = render(row, make_plan(), severity=Severity.INFO, language=language)
    actor = SYSTEM[language] if row.actor == "system" else row.actor
    assert "缓存配置金丝雀发布" in message.title
    assert "cache-service/prod" in message.title
    assert "\n" not in message.title
    for name, body in bodies(message).items():
        if name == "title":
            continue
        for expected in (
            "缓存配置金丝雀发布",
            "plan-42",
            "cache-service",
            "prod",
            "infra-group",
            *KEYS,
            "CANARY",
            "20%",
            actor,
            "2024-05-01T10:00:00Z",
        ):
            assert expected in body, (name, expected)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_system_is_named_in_the_language_and_a_person_as_is(language: str) -> None:
    by_system = render(ROWS["HELD"], make_plan(), severity=Severity.INFO, language=language)
    by_bob = render(ROWS["ROLLED_BACK"], make_plan(), severity=Severity.INFO, language=language)
    assert SYSTEM[language] in by_system.text
    assert "system" not in by_system.text.replace(SYSTEM[language], "")
    assert "bob" in by_bob.text
    assert ("actor", SYSTEM[language]) in by_system.template_params


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("action", sorted(ROWS))
def test_no_value_ever_appears(language: str, action: str) -> None:
    message = render(
        ROWS[action],
        make_plan(),
        severity=Severity.CRITICAL,
        language=language,
        console_url="https://config.example.com/gray-release/",
    )
    assert GRAY not in everything(message)
    assert ORIGINAL not in everything(message)


@pytest.mark.parametrize("language", LANGUAGES)
def test_auto_rollback_gives_the_reason_and_the_failed_metrics(language: str) -> None:
    message = render(
        ROWS["AUTO_ROLLBACK"], make_plan(), severity=Severity.CRITICAL, language=language
    )
    event = {"zh": "自动回滚", "en": "Rolled back automatically"}[language]
    assert event in message.title
    for name, body in bodies(message).items():
        if name == "title":
            continue
        assert ROLLBACK_REASON in body, name
        # Only failedMetrics names this one; the reason does not.
        assert "cpu_load" in body, name
    assert ("reason", "error_rate, cpu_load") in message.template_params


@pytest.mark.parametrize("language", LANGUAGES)
def test_auto_rollback_of_an_old_row_without_details_still_gives_the_reason(
    language: str,
) -> None:
    row = make_row("AUTO_ROLLBACK", ROLLBACK_REASON, None)
    message = render(row, make_plan(), severity=Severity.CRITICAL, language=language)
    assert ROLLBACK_REASON in message.markdown
    assert ("reason", ROLLBACK_REASON[:34] + "…") in message.template_params


@pytest.mark.parametrize("language", LANGUAGES)
def test_analysis_failed_shows_the_failing_checks_and_their_numbers(language: str) -> None:
    message = render(
        ROWS["ANALYSIS_FAILED"], make_plan(), severity=Severity.CRITICAL, language=language
    )
    event = {"zh": "分析失败", "en": "Analysis failed"}[language]
    assert event in message.title
    for name, body in bodies(message).items():
        if name == "title":
            continue
        for expected in ("error_rate", "0.2", "0.01", "0.1", "0.0012"):
            assert expected in body, (name, expected)
        # The passing check is not what anyone needs to read about.
        assert "latency_p99_ms" not in body, name
        assert "812.5" not in body, name
    assert ("reason", "error_rate") in message.template_params


def test_analysis_failed_numbers_are_labelled_in_the_language() -> None:
    zh = render(ROWS["ANALYSIS_FAILED"], make_plan(), severity=Severity.CRITICAL, language="zh")
    en = render(ROWS["ANALYSIS_FAILED"], make_plan(), severity=Severity.CRITICAL, language="en")
    assert "灰度均值 0.2" in zh.text
    assert "基线均值 0.01" in zh.text
    assert "p 值 0.0012" in zh.text
    assert "gray mean 0.2" in en.text
    assert "baseline mean 0.01" in en.text
    assert "p-value 0.0012" in en.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_absolute_check_shows_its_threshold(language: str) -> None:
    check = {**FAILED_CHECK, "kind": "absolute", "threshold": 0.05, "maxIncrease": None}
    check.update(baselineMean=None, pValue=None, u=None)
    row = make_row("ANALYSIS_FAILED", "analysis 1 FAIL", {"checks": [check]})
    message = render(row, make_plan(), severity=Severity.CRITICAL, language=language)
    threshold = {"zh": "阈值 0.05", "en": "threshold 0.05"}[language]
    assert threshold in message.text
    assert "None" not in message.text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("ROLLED_BACK", "customers report timeouts"),
        ("START_FAILED", "backend unreachable: nacos timed out"),
        ("HELD", "waiting for analysis"),
    ],
)
def test_rollbacks_failures_and_holds_give_the_reason(
    language: str, action: str, reason: str
) -> None:
    message = render(ROWS[action], make_plan(), severity=Severity.WARNING, language=language)
    for name, body in bodies(message).items():
        if name != "title":
            assert reason in body, name
    expected = reason if len(reason) <= 35 else reason[:34] + "…"
    assert ("reason", expected) in message.template_params


@pytest.mark.parametrize("language", LANGUAGES)
def test_stepped_shows_the_step_change(language: str) -> None:
    message = render(ROWS["STEPPED"], make_plan(), severity=Severity.INFO, language=language)
    step = {"zh": "第 2 步", "en": "step 2"}[language]
    for name, body in bodies(message).items():
        if name != "title":
            assert "20% → 40%" in body, name
            assert step in body, name
            assert "2024-05-01T10:30:00.000Z" in body, name
    assert ("reason", "") in message.template_params


@pytest.mark.parametrize("language", LANGUAGES)
def test_html_escapes_operator_input(language: str) -> None:
    plan = make_plan(name='<script>alert("x")</script>')
    row = make_row("ROLLED_BACK", "<img src=x onerror=alert(1)>", actor="<b>eve</b>")
    message = render(row, plan, severity=Severity.WARNING, language=language)
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in message.html
    assert "<img" not in message.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in message.html
    assert "<b>eve" not in message.html
    assert "&lt;b&gt;eve&lt;/b&gt;" in message.html


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_line_break_in_operator_input_cannot_add_a_markdown_heading(language: str) -> None:
    plan = make_plan(name="innocent\n### fake heading\n- **App**: evil")
    row = make_row("ROLLED_BACK", "oops\n\n# Another fake\r\nline", actor="bob\n## x")
    message = render(row, plan, severity=Severity.WARNING, language=language)
    lines = message.markdown.splitlines()
    headings = [line for line in lines if line.lstrip().startswith("#")]
    assert headings == [lines[0]]
    assert lines[0].startswith("### ")
    assert "innocent ### fake heading - **App**: evil" in message.markdown
    assert not any(line.startswith("- **App**: evil") for line in lines)
    assert "oops # Another fake line" in message.markdown
    assert "\n" not in message.title
    assert not any(line.startswith("#") for line in message.text.splitlines())


@pytest.mark.parametrize("language", LANGUAGES)
def test_template_params_are_named_and_short(language: str) -> None:
    long_name = "缓存配置金丝雀发布-" + "x" * 60
    plan = make_plan(name=long_name)
    message = render(ROWS["AUTO_ROLLBACK"], plan, severity=Severity.CRITICAL, language=language)
    params = dict(message.template_params)
    assert [name for name, _ in message.template_params] == [
        "plan",
        "app",
        "env",
        "event",
        "actor",
        "percentage",
        "reason",
    ]
    assert params["plan"] == long_name[: TEMPLATE_PARAM_LIMIT - 1] + "…"
    assert len(params["plan"]) == TEMPLATE_PARAM_LIMIT == 35
    assert all(len(value) <= 35 for value in params.values())
    assert params["app"] == "cache-service"
    assert params["env"] == "prod"
    assert params["event"] == {"zh": "自动回滚", "en": "Rolled back automatically"}[language]
    assert params["percentage"] == "20%"


def test_a_value_of_exactly_the_limit_is_kept_whole() -> None:
    name = "n" * TEMPLATE_PARAM_LIMIT
    message = render(ROWS["STARTED"], make_plan(name=name), severity=Severity.INFO)
    assert ("plan", name) in message.template_params


def test_an_unknown_language_is_refused_naming_the_known_ones() -> None:
    assert LANGUAGES == ("zh", "en")
    with pytest.raises(ValueError, match=r"'fr'.*zh, en"):
        render(ROWS["STARTED"], make_plan(), severity=Severity.INFO, language="fr")


@pytest.mark.parametrize(
    "console_url",
    ["https://config.example.com/gray-release/", "https://config.example.com/gray-release"],
)
def test_the_link_is_built_from_the_console_url(console_url: str) -> None:
    message = render(ROWS["STARTED"], make_plan(), severity=Severity.INFO, console_url=console_url)
    assert message.link == "https://config.example.com/gray-release/#/plans/plan-42"


def test_no_console_url_no_link() -> None:
    message = render(ROWS["STARTED"], make_plan(), severity=Severity.INFO)
    assert message.link is None


def test_a_plan_id_cannot_leave_the_link_fragment() -> None:
    message = render(
        ROWS["STARTED"],
        make_plan(plan_id="a b/../?x=1"),
        severity=Severity.INFO,
        console_url="https://config.example.com/",
    )
    assert message.link == "https://config.example.com/#/plans/a%20b%2F..%2F%3Fx%3D1"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("action", sorted(EVENT_SEVERITY))
def test_every_event_has_a_name_in_every_language(language: str, action: str) -> None:
    message = render(make_row(action), make_plan(), severity=Severity.INFO, language=language)
    assert action not in message.title
    assert message.event == action
    assert message.plan_id == "plan-42"


def test_an_unknown_action_is_shown_as_it_is() -> None:
    message = render(make_row("FROBNICATED"), make_plan(), severity=Severity.INFO, language="en")
    assert "FROBNICATED" in message.title
    assert ("event", "FROBNICATED") in message.template_params


@pytest.mark.parametrize(("language", "marker"), [("zh", "【严重】"), ("en", "[CRITICAL]")])
def test_critical_events_are_marked_in_the_title(language: str, marker: str) -> None:
    critical = render(
        ROWS["AUTO_ROLLBACK"], make_plan(), severity=Severity.CRITICAL, language=language
    )
    warning = render(
        ROWS["AUTO_ROLLBACK"], make_plan(), severity=Severity.WARNING, language=language
    )
    assert critical.title.startswith(marker)
    assert critical.severity is Severity.CRITICAL
    assert marker not in warning.title
    assert warning.severity is Severity.WARNING


def test_the_time_is_shown_in_utc() -> None:
    row = make_row("STARTED")
    shanghai = timezone(timedelta(hours=8))
    local = LogRecord(row.plan_id, row.action, row.actor, datetime(2024, 5, 1, 18, tzinfo=shanghai))
    message = render(local, make_plan(), severity=Severity.INFO, language="en")
    assert "2024-05-01T10:00:00Z" in message.text


def test_promoted_explains_how_far_in_the_language() -> None:
    row = make_row("PROMOTED", "to 100%", actor="alice")
    zh = render(row, make_plan(), severity=Severity.INFO, language="zh")
    en = render(row, make_plan(), severity=Severity.INFO, language="en")
    assert "到 100%" in zh.text
    assert "手动扩大" in zh.title
    assert "to 100%" in en.text
