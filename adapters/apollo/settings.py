"""The ``apollo`` settings section, validated at start-up: each error names its setting."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
from grayrelease_adapters.placeholders import fill, ref_template

from grayrelease_core import ConfigRef, ValidationError
from grayrelease_core.rules import rules_object, seconds, service_url

from .client import NamespaceId

FIELD = "settings.apollo"
DEFAULT_PORTAL = "http://127.0.0.1:8070"
"""Apollo's own default portal address."""
NAME = re.compile(r"[0-9a-zA-Z_.-]+")
"""What Apollo accepts as an app id, a cluster or an env name."""


@attrs.frozen
class ApolloSettings:
    token: str = attrs.field(repr=False)
    """The Open API consumer token (Apollo portal: 开放平台授权管理)."""
    portal: str = DEFAULT_PORTAL
    operator: str = "apollo"
    """The Apollo user named as the author of item changes and releases (it must exist in
    Apollo); the grayrelease actor goes into the comments."""
    cluster: str = "default"
    app_id: str = "{appName}"
    namespace: str = "{groupName}"
    envs: Mapping[str, str] = attrs.Factory(dict)
    """A ref's environment -> Apollo env (``prod`` -> ``PRO``); others are used as they are."""
    config_services: Mapping[str, str] = attrs.Factory(dict)
    """Apollo env -> its config service, watched for releases made in Apollo."""
    access_keys: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    """App id -> the access key secret its config service requires."""
    timeout: float = 5.0
    watch: bool = True

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ApolloSettings:
        data = rules_object(
            section,
            allowed=(
                "portal",
                "token",
                "operator",
                "cluster",
                "app_id",
                "namespace",
                "envs",
                "config_services",
                "access_keys",
                "timeout",
                "watch",
            ),
            required=("token",),
            field=FIELD,
        )
        watch = data.get("watch", True)
        if not isinstance(watch, bool):
            raise ValidationError(f"{FIELD}.watch", "must be true or false", value=watch)
        return cls(
            token=_text(data["token"], f"{FIELD}.token"),
            portal=service_url(
                data.get("portal", DEFAULT_PORTAL),
                f"{FIELD}.portal",
                "http://apollo-portal.example.com:8070",
            ),
            operator=_text(data.get("operator", "apollo"), f"{FIELD}.operator"),
            cluster=_name(data.get("cluster", "default"), f"{FIELD}.cluster"),
            app_id=ref_template(data.get("app_id", "{appName}"), f"{FIELD}.app_id"),
            namespace=ref_template(data.get("namespace", "{groupName}"), f"{FIELD}.namespace"),
            envs={
                env: _name(apollo_env, f"{FIELD}.envs.{env}")
                for env, apollo_env in _object(data.get("envs", {}), f"{FIELD}.envs").items()
            },
            config_services={
                _name(env, f"{FIELD}.config_services").upper(): service_url(
                    url, f"{FIELD}.config_services.{env}", "http://apollo-config.example.com:8080"
                )
                for env, url in _object(
                    data.get("config_services", {}), f"{FIELD}.config_services"
                ).items()
            },
            access_keys={
                app: _text(secret, f"{FIELD}.access_keys.{app}")
                for app, secret in _object(
                    data.get("access_keys", {}), f"{FIELD}.access_keys"
                ).items()
            },
            timeout=seconds(data.get("timeout", 5), f"{FIELD}.timeout", 120),
            watch=watch,
        )

    def locate(self, ref: ConfigRef) -> NamespaceId:
        """The Apollo namespace that holds ``ref`` (its key is the ref's config key)."""
        return self.namespace_of(ref.app_name, ref.environment, ref.group_name)

    def namespace_of(self, app_name: str, environment: str, group_name: str) -> NamespaceId:
        ref = ConfigRef(app_name, environment, group_name, "-")
        return NamespaceId(
            self.envs.get(environment, environment),
            fill(self.app_id, ref),
            self.cluster,
            fill(self.namespace, ref),
        )

    def config_service(self, env: str) -> str | None:
        """Where ``env``'s releases can be watched (Apollo env names ignore case)."""
        return self.config_services.get(env.upper())


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object")
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string")
    return value


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValidationError(
            field, "must be letters, digits, '_', '-' or '.', as Apollo allows", value=value
        )
    return value
