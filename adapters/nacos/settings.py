"""The ``nacos`` settings section, validated at start-up: each error names its setting."""

from __future__ import annotations

import importlib.util
import string
from collections.abc import Mapping
from typing import Any

import attrs

from grayrelease_core import ConfigRef, ValidationError
from grayrelease_core.rules import rules_object, seconds, service_url

from .client import ConfigId
from .files import FORMATS, FileFormat

FIELD = "settings.nacos"
PLACEHOLDERS = frozenset({"appName", "environment", "groupName"})
DEFAULT_SERVER = "http://127.0.0.1:8848"
"""Nacos is run by its users; its own default address."""


@attrs.frozen
class KeyFile:
    """A group whose config keys live inside one data id."""

    data_id: str
    """A template (``{appName}.properties``)."""
    format: FileFormat


@attrs.frozen
class NacosSettings:
    server: str = DEFAULT_SERVER
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    namespace: str = ""
    """Template of a ref's namespace id (tenant): ``{environment}``,
    ``{appName}-{environment}``; ``""`` is the public namespace."""
    files: Mapping[str, KeyFile] = attrs.Factory(dict)
    """Groups whose keys live inside a file; any other group's keys are whole data ids."""
    timeout: float = 5.0
    poll_timeout: float = 30.0
    watch: bool = True
    """Keep a long-polling thread on the data ids read; off for one-shot processes (the CLI),
    which then read Nacos afresh before each publish."""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> NacosSettings:
        data = rules_object(
            section,
            allowed=(
                "server",
                "username",
                "password",
                "namespace",
                "files",
                "timeout",
                "poll_timeout",
                "watch",
            ),
            required=(),
            field=FIELD,
        )
        server = service_url(
            data.get("server", DEFAULT_SERVER), f"{FIELD}.server", "http://nacos.example.com:8848"
        )
        username, password = data.get("username"), data.get("password")
        for name, value in (("username", username), ("password", password)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValidationError(f"{FIELD}.{name}", "must be a non-empty string")
        if (username is None) != (password is None):
            missing = "password" if password is None else "username"
            raise ValidationError(f"{FIELD}.{missing}", "is required with a username and password")
        namespace = _template(data.get("namespace", ""), f"{FIELD}.namespace", allow_empty=True)
        files = _files(data.get("files", {}))
        watch = data.get("watch", True)
        if not isinstance(watch, bool):
            raise ValidationError(f"{FIELD}.watch", "must be true or false", value=watch)
        return cls(
            server=server,
            username=username,
            password=password,
            namespace=namespace,
            files=files,
            timeout=seconds(data.get("timeout", 5), f"{FIELD}.timeout", 120),
            poll_timeout=seconds(data.get("poll_timeout", 30), f"{FIELD}.poll_timeout", 120),
            watch=watch,
        )

    def locate(self, ref: ConfigRef) -> tuple[ConfigId, KeyFile | None]:
        """Where ``ref`` lives: its data id, and the file format when it is a key inside one."""
        values = {
            "appName": ref.app_name,
            "environment": ref.environment,
            "groupName": ref.group_name,
        }
        tenant = self.namespace.format_map(values)
        file = self.files.get(ref.group_name)
        if file is None:
            return ConfigId(tenant, ref.group_name, ref.config_key), None
        return ConfigId(tenant, ref.group_name, file.data_id.format_map(values)), file


def _files(value: Any) -> dict[str, KeyFile]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{FIELD}.files", "must be an object of group: {data_id, format}")
    files = {}
    for group, spec in value.items():
        field = f"{FIELD}.files.{group}"
        data = rules_object(spec, allowed=("data_id", "format"), required=("data_id",), field=field)
        form = data.get("format", "properties")
        if form not in FORMATS:
            raise ValidationError(
                f"{field}.format", f"must be one of {', '.join(FORMATS)}", value=form
            )
        if form == "yaml" and importlib.util.find_spec("yaml") is None:
            raise ValidationError(
                f"{field}.format", "yaml needs PyYAML: pip install 'grayrelease[nacos]'"
            )
        files[str(group)] = KeyFile(_template(data["data_id"], f"{field}.data_id"), FORMATS[form])
    return files


def _template(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ValidationError(field, "must be a text, with {appName} / {environment} / {groupName}")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValidationError(field, f"is not a valid template: {exc}", value=value) from None
    unknown = sorted(names - PLACEHOLDERS)
    if unknown:
        raise ValidationError(
            field,
            f"names {{{unknown[0]}}}; the placeholders are {{appName}}, {{environment}} and "
            "{groupName}",
            value=value,
        )
    return value
