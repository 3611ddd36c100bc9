"""``nacos``: gray release beside a Nacos config center, through its v1 Open API.

Enabled with ``backend: "nacos"`` and a ``nacos`` settings section (docs/nacos.md).
"""

from __future__ import annotations

from grayrelease_core import Settings, hookimpl

from .backend import NacosBackend
from .settings import NacosSettings

__all__ = ["NacosBackend", "NacosSettings"]


@hookimpl
def grayrelease_make_backend(settings: Settings) -> NacosBackend | None:
    if settings.backend != "nacos":
        return None
    return NacosBackend(NacosSettings.from_section(settings.section("nacos")))
