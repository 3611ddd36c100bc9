"""``apollo``: gray release beside an Apollo config center, through its portal's Open API.

Enabled with ``backend: "apollo"`` and an ``apollo`` settings section (docs/apollo.md).
"""

from __future__ import annotations

from grayrelease_core import Settings, hookimpl

from .backend import ApolloBackend
from .settings import ApolloSettings

__all__ = ["ApolloBackend", "ApolloSettings"]


@hookimpl
def grayrelease_make_backend(settings: Settings) -> ApolloBackend | None:
    if settings.backend != "apollo":
        return None
    return ApolloBackend(ApolloSettings.from_section(settings.section("apollo")))
