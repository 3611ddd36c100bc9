"""The documentation stays true to the code: hooks, settings, strategies, lifecycle, example."""

from __future__ import annotations

import ast
import inspect
import json
import re
import runpy
from pathlib import Path

import attrs
import pytest
import yaml

from grayrelease_core import GrayRelease, ManualClock, Settings, hookspecs
from grayrelease_core.lifecycle import TRANSITIONS
from grayrelease_core.plugin_manager import collect, make_plugin_manager
from grayrelease_core.strategy import StrategyRegistry

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOKS_MD = DOCS / "hooks.md"
CONCEPTS_MD = DOCS / "concepts.md"
EXAMPLE = DOCS / "examples" / "header_strategy.py"

HEADING = re.compile(r"### `([^`]+)`\s*")
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def hook_names() -> list[str]:
    pm = make_plugin_manager(load_entrypoints=False)
    return sorted(name for name in vars(pm.hook) if name.startswith("grayrelease_"))


def sections(text: str) -> dict[str, str]:
    """Level-3 headings that are one name in backticks -> their text up to the next heading.

    Lines inside code fences are never headings (a ``# comment`` in a python block is not).
    """
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_fence = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and re.match(r"#{1,6} ", line):
            heading = HEADING.fullmatch(line.rstrip("\n"))
            current = found.setdefault(heading.group(1), []) if heading else None
            continue
        if current is not None:
            current.append(line)
    return {name: "".join(lines) for name, lines in found.items()}


def documented_def(section: str) -> ast.FunctionDef:
    """The ``def`` line of a hook section's first python block, parsed."""
    block = CODE_BLOCK.search(section)
    assert block is not None, "no python code block"
    lines = [line for line in block.group(1).splitlines() if line.startswith("def ")]
    assert len(lines) == 1, f"expected one def line, found {lines}"
    node = ast.parse(lines[0] + ": ...").body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def annotation_text(annotation: object) -> str:
    """An annotation as normalized source text (hookspecs use postponed annotations)."""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return ast.unparse(ast.parse(text, mode="eval"))


@pytest.fixture(scope="module")
def hook_sections() -> dict[str, str]:
    return {
        name: body
        for name, body in sections(HOOKS_MD.read_text(encoding="utf-8")).items()
        if name.startswith("grayrelease_")
    }


@pytest.fixture(scope="module")
def concepts() -> str:
    return CONCEPTS_MD.read_text(encoding="utf-8")


# --- hooks.md -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_heading_in_hooks_md(name: str, hook_sections: dict[str, str]) -> None:
    assert name in hook_sections, f"docs/hooks.md needs a '### `{name}`' section"


@pytest.mark.parametrize("name", hook_names())
def test_documented_hook_signature_matches_the_hookspec(
    name: str, hook_sections: dict[str, str]
) -> None:
    documented = documented_def(hook_sections[name])
    spec = inspect.signature(getattr(hookspecs, name))

    assert documented.name == name
    assert [arg.arg for arg in documented.args.args] == list(spec.parameters)
    assert [
        ast.unparse(arg.annotation) if arg.annotation else None for arg in documented.args.args
    ] == [annotation_text(p.annotation) for p in spec.parameters.values()]
    assert documented.returns is not None
    assert ast.unparse(documented.returns) == annotation_text(spec.return_annotation)


@pytest.mark.parametrize("name", hook_names())
def test_documented_firstresult_matches_the_hookspec(
    name: str, hook_sections: dict[str, str]
) -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    spec = getattr(pm.hook, name).spec
    assert spec is not None
    line = re.search(r"\*\*firstresult:\*\*\s*(yes|no)", hook_sections[name])
    assert line is not None, f"the {name} section must say '**firstresult:** yes' or 'no'"
    assert (line.group(1) == "yes") is bool(spec.opts["firstresult"])


def test_hooks_md_documents_no_hook_that_does_not_exist(hook_sections: dict[str, str]) -> None:
    assert sorted(hook_sections) == hook_names()


def test_plugin_example_in_hooks_md_is_the_runnable_example() -> None:
    blocks = CODE_BLOCK.findall(HOOKS_MD.read_text(encoding="utf-8"))
    plugin = [block for block in blocks if "class HeaderStrategy" in block]
    assert len(plugin) == 1
    body = plugin[0][plugin[0].index("class HeaderStrategy") :]
    assert body in EXAMPLE.read_text(encoding="utf-8")


def test_header_strategy_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "beta tester: value=10 gray=True" in out
    assert "value=30 gray=False" in out


# --- concepts.md ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", [field.name for field in attrs.fields(Settings)])
def test_every_setting_is_documented_in_concepts_md(field: str, concepts: str) -> None:
    assert f"`{field}`" in concepts


def builtin_strategy_names() -> tuple[str, ...]:
    pm = make_plugin_manager(load_entrypoints=False)
    return StrategyRegistry.collect(collect(pm, "grayrelease_register_strategies")).names


@pytest.mark.parametrize("name", builtin_strategy_names())
def test_every_builtin_strategy_has_a_section_in_concepts_md(name: str, concepts: str) -> None:
    assert name in sections(concepts), f"docs/concepts.md needs a '### `{name}`' section"


def test_transition_table_in_concepts_md_matches_the_state_machine(concepts: str) -> None:
    rows = re.findall(r"^\| `(\w+)` \| ([A-Z, ]+) \| ([A-Z]+|\(gone\)) \|", concepts, re.MULTILINE)
    documented = {
        action: ({s.strip() for s in sources.split(",")}, None if to == "(gone)" else to)
        for action, sources, to in rows
    }
    expected = {
        action.value: ({s.value for s in sources}, to.value if to else None)
        for action, (sources, to) in TRANSITIONS.items()
    }
    assert documented == expected


def test_api_reference_lists_exactly_the_openapi_operations() -> None:
    from grayrelease_adapters.flask.openapi import openapi_document

    document = openapi_document("/api/gray-release")
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^### `([A-Z]+) (/\S*)`$", text, flags=re.MULTILINE))
    assert listed == documented


CHANNEL_PAGES = {
    "email": "grayrelease_plugins.notifiers.email",
    "dingtalk": "grayrelease_plugins.notifiers.dingtalk",
    "wecom": "grayrelease_plugins.notifiers.wecom",
    "sms": "grayrelease_plugins.notifiers.sms_aliyun",
}


@pytest.mark.parametrize(("channel", "module"), sorted(CHANNEL_PAGES.items()))
def test_each_channel_page_has_settings_its_plugin_accepts(channel: str, module: str) -> None:
    page = Path(__file__).parent.parent / "docs" / "notifications" / f"{channel}.md"
    (block,) = re.findall(r"```json\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)
    settings = Settings.from_mapping(json.loads(block))
    contributed = collect(
        make_plugin_manager(load_entrypoints=False),
        "grayrelease_register_notifiers",
        settings=settings,
        store=None,
        clock=ManualClock(),
    )
    (notifier,) = [item for plugin, item in contributed if plugin == module]
    assert notifier.name == channel


@pytest.mark.parametrize("page", ["README.md", "inbox.md"])
def test_notification_settings_on_the_pages_start_an_engine(page: str, tmp_path: Path) -> None:
    text = (Path(__file__).parent.parent / "docs" / "notifications" / page).read_text("utf-8")
    block = re.findall(r"```json\n(.*?)```", text, re.DOTALL)[0]
    settings = {
        **json.loads(block),
        "database_url": f"sqlite:///{tmp_path / 'g.db'}",
        "background_sync": False,
    }
    with GrayRelease.from_settings(settings, load_entrypoints=False) as gr:
        routing = settings["notify"]["routing"]
        assert set(routing["channels"]) <= set(gr.notifiers)
        plan = gr.create_plan(
            {
                "planName": "p",
                "appName": "a",
                "environment": "prod",
                "configKeys": ["k"],
                "grayStrategy": "PERCENTAGE",
                "grayRules": {"percentage": 10},
                "grayValues": {"k": "v"},
            },
            actor="alice",
        )
        gr.start(plan.id, actor="alice")
        gr.rollback(plan.id, actor="alice")  # a warning: every channel takes it
        channels = {n.channel for n in gr.plan_notifications(plan.id).items}
        assert channels == set(routing["channels"])


def test_settings_on_the_security_page_start_an_engine(tmp_path: Path) -> None:
    text = (DOCS / "security.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 3  # the auth section, the audit key, the limits
    for n, block in enumerate(blocks):
        settings = {
            **json.loads(block),
            "database_url": f"sqlite:///{tmp_path / f'{n}.db'}",
            "background_sync": False,
        }
        with GrayRelease.from_settings(settings, load_entrypoints=False) as gr:
            assert gr.verify_audit().ok
            assert gr.auth.enabled == ("auth" in settings)


def test_the_apollo_page_settings_are_valid() -> None:
    from grayrelease_adapters.apollo import ApolloSettings

    text = (DOCS / "apollo.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    data = json.loads(block)
    assert Settings.from_mapping(data).backend == "apollo"
    parsed = ApolloSettings.from_section(data["apollo"])
    assert parsed.config_service("pro") == "http://apollo-config-pro.example.com:8080"
    assert parsed.namespace_of("demo-app", "prod", "database").env == "PRO"
    # Every setting the page's table lists is one the section takes, and the other way round.
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE))
    assert listed == set(data["apollo"])


def test_the_nacos_page_settings_are_valid() -> None:
    from grayrelease_adapters.nacos import NacosSettings

    text = (DOCS / "nacos.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    data = json.loads(block)
    assert Settings.from_mapping(data).backend == "nacos"
    parsed = NacosSettings.from_section(data["nacos"])
    assert set(parsed.files) == {"database", "spring"}
    assert parsed.username == "nacos"


def test_the_judge_page_checks_and_default_checks_start_an_engine(tmp_path: Path) -> None:
    """The ``autoRollback`` example and the ``settings.analysis`` example of judge.md are
    accepted as written: the checks by a plan, the defaults by an engine that then gives them
    to a plan without checks."""
    text = (DOCS / "judge.md").read_text(encoding="utf-8")
    (checks,) = re.findall(r"```json\n(\"autoRollback\".*?)```", text, re.DOTALL)
    (section,) = re.findall(r"```yaml\n(analysis:.*?)```", text, re.DOTALL)
    settings = {
        **yaml.safe_load(section),
        "database_url": f"sqlite:///{tmp_path / 'judge.db'}",
        "background_sync": False,
    }
    body = {
        "planName": "docs",
        "appName": "payment",
        "environment": "prod",
        "configKeys": ["k"],
        "grayStrategy": "CANARY",
        "grayRules": {
            "canary": {"canaryInstances": ["10.0.0.1"], "stepPercentage": 20, "stepInterval": 5}
        },
    }
    with GrayRelease.from_settings(settings, load_entrypoints=False) as gr:
        own = gr.create_plan({**body, **json.loads("{" + checks + "}")}, actor="docs")
        assert own.auto_rollback is not None
        assert len(own.auto_rollback.checks) == 5
        guarded = gr.create_plan(body, actor="docs")
        assert guarded.auto_rollback is not None
        assert [c.threshold for c in guarded.auto_rollback.checks] == [None, 0.02]
