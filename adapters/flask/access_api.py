"""The REST API of grants (``/grants``) and API tokens (``/tokens``)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, request

from grayrelease_core import ValidationError

from .caller import actor, state
from .http import json_body, json_response, optional_text, query

GRANT_FIELDS = ("actor", "role", "appName", "environment")
TOKEN_FIELDS = ("actor", "scope", "days", "name")
GRANT_ID = re.compile(r"[1-9][0-9]{0,17}")
TOKEN_ID = re.compile(r"[0-9a-f]{16}")
MAX_NAME = 128


def register_access_routes(api: Blueprint) -> None:
    @api.get("/grants")
    def list_grants() -> Response:
        who = actor()
        params = query(request, frozenset({"actor", "appName", "environment"}))
        grants = state().engine.grants(
            actor=who,
            grantee=optional_text(params, "actor", maximum=MAX_NAME),
            app_name=optional_text(params, "appName", maximum=MAX_NAME),
            environment=optional_text(params, "environment", maximum=MAX_NAME),
        )
        return json_response({"items": [grant.to_wire() for grant in grants]})

    @api.post("/grants")
    def add_grant() -> Response:
        query(request, ())
        who = actor()
        body = _fields(GRANT_FIELDS, required=GRANT_FIELDS)
        grant = state().engine.grant(
            actor=who,
            grantee=body["actor"],
            role=body["role"],
            app_name=body["appName"],
            environment=body["environment"],
        )
        return json_response(grant.to_wire(), 201)

    @api.delete("/grants/<grant_id>")
    def remove_grant(grant_id: str) -> Response:
        query(request, ())
        who = actor()
        if GRANT_ID.fullmatch(grant_id) is None:
            raise ValidationError("grantId", "must be a grant's number", value=grant_id)
        state().engine.revoke(int(grant_id), actor=who)
        return Response(status=204)

    @api.get("/tokens")
    def list_tokens() -> Response:
        who = actor()
        params = query(request, frozenset({"actor"}))
        owner = optional_text(params, "actor", maximum=MAX_NAME) or who
        tokens = state().engine.tokens(actor=who, owner=owner)
        return json_response({"items": [token.to_wire() for token in tokens]})

    @api.post("/tokens")
    def create_token() -> Response:
        query(request, ())
        who = actor()
        body = _fields(TOKEN_FIELDS, required=("scope",))
        if "actor" in body and not isinstance(body["actor"], str):
            raise ValidationError("actor", "must be an actor's name", value=body["actor"])
        secret, token = state().engine.create_token(
            actor=who,
            owner=body.get("actor"),
            scope=body["scope"],
            days=body.get("days", 90),
            name=body.get("name", ""),
        )
        return json_response({**token.to_wire(), "token": secret}, 201)

    @api.delete("/tokens/<token_id>")
    def revoke_token(token_id: str) -> Response:
        query(request, ())
        who = actor()
        if TOKEN_ID.fullmatch(token_id) is None:
            raise ValidationError("tokenId", "must be a token's id", value=token_id)
        state().engine.revoke_token(token_id, actor=who)
        return Response(status=204)


def _fields(allowed: tuple[str, ...], *, required: tuple[str, ...]) -> dict[str, Any]:
    body = json_body(request)
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object", value=type(body).__name__)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationError(unknown[0], f"unknown field; allowed fields are {', '.join(allowed)}")
    for name in required:
        if name not in body:
            raise ValidationError(name, "is required")
    return body
