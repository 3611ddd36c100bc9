"""The ``nacos`` settings section, validated at start-up: each error names its setting."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs
from grayrelease_adapters.placeholders import fill, ref_template

from grayrelease_core import ConfigRef, ValidationError
from grayrelease_core.rules import rules_object, seconds, service_url

from .client import ConfigId
from .files import FORMATS, FileFormat

FIELD = "settings.nacos"
DEFAULT_SERVER = "http://127.0.0.1:8848"
"""Nacos is run by its users; its own default address."""
REQUIRE: Final = "require"
READ_COMPARE_PUBLISH: Final = "read-compare-publish"
CompareAndSet = Literal["require", "read-compare-publish"]


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
    beta: bool = False
    """Offload IP whitelists to Nacos: while an IP_WHITELIST plan on whole data ids is live,
    its gray values are also published as Nacos betas to the listed addresses, so unmodified
    Nacos clients on them get the gray value too."""
    watch: bool = True
    """Keep a long-polling thread on the data ids read; off for one-shot processes (the CLI),
    which then read Nacos afresh before each publish."""
    compare_and_set: CompareAndSet = REQUIRE
    """How a publish is kept from overwriting an edit made in Nacos since it was read.
    ``require``: by Nacos itself (``casMd5``, honoured over HTTP from Nacos 2.3.0), and the
    backend refuses to start against a server that cannot. ``read-compare-publish``: against
    such a server, read the config just before publishing and refuse when it changed, which
    leaves a short window (docs/nacos.md)."""

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
                "beta",
                "compare_and_set",
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
        namespace = ref_template(data.get("namespace", ""), f"{FIELD}.namespace", allow_empty=True)
        files = _files(data.get("files", {}))
        watch, beta = data.get("watch", True), data.get("beta", False)
        for name, flag in (("watch", watch), ("beta", beta)):
            if not isinstance(flag, bool):
                raise ValidationError(f"{FIELD}.{name}", "must be true or false", value=flag)
        compare_and_set = data.get("compare_and_set", REQUIRE)
        if compare_and_set not in (REQUIRE, READ_COMPARE_PUBLISH):
            raise ValidationError(
                f"{FIELD}.compare_and_set",
                f"must be {REQUIRE!r} or {READ_COMPARE_PUBLISH!r}",
                value=compare_and_set,
            )
        return cls(
            server=server,
            username=username,
            password=password,
            namespace=namespace,
            files=files,
            timeout=seconds(data.get("timeout", 5), f"{FIELD}.timeout", 120),
            poll_timeout=seconds(data.get("poll_timeout", 30), f"{FIELD}.poll_timeout", 120),
            watch=watch,
            beta=beta,
            compare_and_set=compare_and_set,
        )

    def locate(self, ref: ConfigRef) -> tuple[ConfigId, KeyFile | None]:
        """Where ``ref`` lives: its data id, and the file format when it is a key inside one."""
        tenant = fill(self.namespace, ref)
        file = self.files.get(ref.group_name)
        if file is None:
            return ConfigId(tenant, ref.group_name, ref.config_key), None
        return ConfigId(tenant, ref.group_name, fill(file.data_id, ref)), file


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
        data_id = ref_template(data["data_id"], f"{field}.data_id")
        files[str(group)] = KeyFile(data_id, FORMATS[form])
    return files
