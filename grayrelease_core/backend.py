"""What the engine needs from a config backend: the config center that holds the real values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from .models import ConfigRef


class ConfigBackend(Protocol):
    """Reads and publishes config values. ``get`` is on the read path: keep it in memory."""

    name: str

    def get(self, ref: ConfigRef) -> str | None:
        """The current value of ``ref`` (a ``ConfigRef``), ``None`` when the key is absent.

        :raises BackendError: the value cannot be read.
        """
        ...

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        """Set ``ref`` to ``value`` for everyone (``None`` removes the key).

        :raises BackendError: the value could not be published; nothing was changed.
        """
        ...

    # A backend may also offer ``publish_all(values, *, actor, title)``, taking
    # ``{ref: value | None}``: the values become visible together, as one change (Apollo's
    # release), or not at all. The engine then publishes a plan's keys with one call, and
    # ``title`` names the plan and the action for the config center's history.

    def refresh(self) -> None:
        """Pick up changes made elsewhere (called by the engine's sync, every ``cache_ttl``)."""
        ...

    def close(self) -> None: ...

    # A backend whose mirror is kept current by a watcher (Nacos's long polling, Apollo's
    # notifications) may also offer a ``before_change`` attribute (``None`` at first): the
    # engine sets it to a function that the watcher calls before it lets a pushed change into
    # the mirror. The engine then reads the store first, so that a plan whose publish is under
    # way is served from its intent for every key before any one of them changes here.


@runtime_checkable
class SharedDatabaseBackend(Protocol):
    """A backend whose values live in a SQL database, which may be the plan store's own.

    When it is (the same ``database_url`` as a :class:`~.store.SharedDatabaseStore`), the
    engine publishes a plan's values inside the transaction that saves the plan's new state:
    a completion or rollback is then one commit, with no window for a crash to split it.
    """

    name: str
    database_url: str | None
    """The database's name (no password), compared with the store's; ``None`` when no
    other engine can reach it (an in-memory SQLite database)."""

    def publish_in(
        self, connection: Any, values: Mapping[ConfigRef, str | None], *, actor: str
    ) -> None:
        """Write ``values`` (``None`` removes a key) through ``connection``, inside the
        caller's transaction; commit nothing. Call ``refresh()`` after the commit."""
        ...

    def refresh(self) -> None: ...
