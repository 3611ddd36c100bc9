"""The OpenAPI document is kept true: schemathesis runs every operation against the live app.

Each operation gets schemathesis's coverage cases (boundary values, missing and malformed
parameters, methods the path does not serve), then hypothesis-generated cases, valid and invalid,
about one in ten of them without credentials. Every response is checked against the document.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from grayrelease_adapters.flask import GrayRelease
from grayrelease_adapters.flask.openapi import SPACE, openapi_document
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import PositiveDataAcceptanceConfig
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from grayrelease_core import GrayRelease as Engine

from .conftest import spec_body

TOKEN = "openapi-fuzzer-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREFIX = "/api/gray-release"
FUZZ_EXAMPLES = 40
"""Generated cases per operation, on top of its coverage cases."""

# schemathesis 4.32's lazy loader (schemathesis.pytest.from_fixture) uses request.node._nodeid,
# which pytest 9.2 no longer has; so the operations are parametrized here, from the document.
OPERATIONS = [
    (method.upper(), path)
    for path, operations in openapi_document(PREFIX)["paths"].items()
    for method in operations
]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    positive_data_acceptance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]

BODY_RULES_BEYOND_THE_SCHEMA = [
    "POST /plan",
    "PUT /plan/{planId}",
    "POST /plan/{planId}/promote",
    "POST /plan/{planId}/metrics",
    "GET /plan/{planId}/metrics",
    "GET /config/current",
]
"""Operations whose schema-valid requests may still get a 400.

JSON Schema cannot say that grayStrategy names an installed strategy (plugins add more), that
grayRules suit that strategy, that grayValues only name keys of configKeys, or that keys stay
distinct once trimmed; that a PERCENTAGE plan can only be promoted in full; that a sample's
timestamp lies between the retention and now, or that since comes before until. So
valid-looking requests are refused there, rightly, with the field named.
"""

CREDENTIALS = st.sampled_from([AUTH] * 9 + [{}])
"""Mostly the fuzzer's token; about one request in ten without one."""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(
        GRAYRELEASE_DATABASE_URL=f"sqlite:///{tmp_path / 'gray.db'}",
        GRAYRELEASE_BACKGROUND_SYNC=False,
        GRAYRELEASE_TOKENS={TOKEN: "fuzzer"},
    )
    extension = GrayRelease(app, load_entrypoints=False)
    yield app
    extension.close(app)


def seed_plans(engine: Engine) -> list[str]:
    """A plan in every state, each on its own keys so that none blocks another."""

    def plan(group: str) -> str:
        body = spec_body(groupName=group, planName=f"seeded {group}")
        return engine.create_plan(body, actor="seeder").id

    draft, active, paused, done, undone = (
        plan(group) for group in ("draft", "active", "paused", "done", "undone")
    )
    for plan_id in (active, paused, done, undone):
        engine.start(plan_id, actor="seeder")
    engine.pause(paused, actor="seeder")
    engine.complete(done, actor="seeder")
    engine.rollback(undone, actor="seeder")
    return [draft, active, paused, done, undone]


@pytest.fixture
def api_schema(app: Flask) -> OpenApiSchema:
    """The document as the app serves it, with planIds that hit the seeded plans half the time."""
    plan_ids = seed_plans(app.extensions["grayrelease"].state(app).engine)
    accepted = [*PositiveDataAcceptanceConfig().expected_statuses, "400"]
    config = schemathesis.Config.from_dict(
        {
            "dictionaries": {"plans": {"values": plan_ids}},
            "parameters": {"path.planId": {"dictionary": "plans", "probability": 0.5}},
            "operations": [
                {
                    "include-name": BODY_RULES_BEYOND_THE_SCHEMA,
                    "checks": {"positive_data_acceptance": {"expected-statuses": accepted}},
                }
            ],
        }
    )
    schema = schemathesis.openapi.from_wsgi(f"{PREFIX}/openapi.json", app, config=config)
    schema.hook(filter_query)
    return schema


def filter_query(context: schemathesis.HookContext, query: dict[str, Any] | None) -> bool:
    """Leave out queries with a parameter that no URL can carry.

    Schemathesis may add an unknown parameter whose value is an empty list; it is not sent at
    all, yet the case still counts as invalid, and negative_data_rejection faults the 200.
    It may also give a repeated text parameter (``configKey``) ``true``, ``5`` or ``null``
    instead of strings: sent, that is the text "true", "5" or "None", a valid key, which the
    case calls invalid.
    """
    return sendable(context.operation, query)


def sendable(operation: Any, query: dict[str, Any] | None, meta: Any = None) -> bool:
    """What ``filter_query`` decides, for a case in hand, and more: a negative case whose
    mutation changed a repeated parameter's type reaches us already turned into text (null
    became "null", a valid key) and still counts as invalid, so it is left out by its
    mutation (seed 175339662017615422573558994229264474357 gave one)."""
    query = query or {}
    if any(value == [] for value in query.values()):
        return False
    repeated = (
        {p.name for p in operation.query if p.definition.get("schema", {}).get("type") == "array"}
        if operation is not None
        else set()
    )
    for name in repeated & set(query):
        values = query[name] if isinstance(query[name], list) else [query[name]]
        if any(not isinstance(value, str) for value in values):
            return False
    phase_data = getattr(getattr(meta, "phase", None), "data", None)
    for mutation in getattr(phase_data, "mutations", None) or ():
        if getattr(mutation, "parameter", None) in repeated and "type" in (
            getattr(mutation, "keywords", None) or ()
        ):
            return False
    return True


def run(
    cases: st.SearchStrategy[Case[Any]],
    examples: int,
    credentials: st.SearchStrategy[dict[str, str]] = CREDENTIALS,
) -> None:
    """Send up to ``examples`` of ``cases`` and check every response against the document."""

    # One inner test serves every operation, so a saved example would replay against the wrong
    # one: no example database. A failure prints its seed (--hypothesis-seed) instead.
    @given(case=cases, headers=credentials)
    @settings(max_examples=examples, deadline=None, database=None)
    def call(case: Case[Any], headers: dict[str, str]) -> None:
        if not sendable(case.operation, case.query, case.meta):
            reject()
        case.call_and_validate(headers=headers, checks=CHECKS)

    call()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_keeps_to_the_document(api_schema: OpenApiSchema, method: str, path: str) -> None:
    operation = api_schema[path][method]
    coverage = api_schema.iter_coverage_cases(
        operation,
        generation_modes=list(GenerationMode),
        generation_config=api_schema.config.generation_for(operation=operation),
    )
    for case in coverage:  # these vary the parameters; ignored_auth probes without the token
        if sendable(operation, case.query, case.meta):
            case.call_and_validate(headers=AUTH, checks=CHECKS)
    examples = operation.get_strategies_from_examples()
    if examples:  # the document's sample bodies: the spec's plans, so creation succeeds too
        run(st.one_of(examples), 5 * len(examples), st.just(AUTH))
    generated = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    run(generated, FUZZ_EXAMPLES)


def test_document_is_valid_openapi_3_1(app: Flask) -> None:
    schema = schemathesis.openapi.from_wsgi(f"{PREFIX}/openapi.json", app)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    assert schema.raw_schema["openapi"].startswith("3.1.")
    assert schema.raw_schema == openapi_document(PREFIX)


def test_document_space_is_what_strip_removes() -> None:
    """The document's patterns call blank exactly what the code's ``strip()`` removes."""
    every_character = "".join(map(chr, range(sys.maxunicode + 1)))
    assert set(re.findall(f"[{SPACE}]", every_character)) == set(
        filter(str.isspace, every_character)
    )


def _openapi_path(rule: str) -> str:
    """A Flask rule as the document writes it: ``.../plan/<plan_id>`` is ``/plan/{planId}``."""

    def parameter(match: re.Match[str]) -> str:
        first, *rest = match.group(1).split("_")
        return "{" + first + "".join(word.title() for word in rest) + "}"

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", parameter, rule.removeprefix(PREFIX))


def test_document_lists_exactly_the_blueprint_routes(app: Flask) -> None:
    served: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        blueprint, _, view = rule.endpoint.rpartition(".")
        if blueprint != "grayrelease_api" or view == "no_such_endpoint":
            continue
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        served.setdefault(_openapi_path(rule.rule), set()).update(methods)
    documented = {path: set(item) for path, item in openapi_document(PREFIX)["paths"].items()}
    assert served == documented
