"""``memory``: config values in a dict, for tests, demos and hosts that keep values themselves."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from grayrelease_core import ConfigRef, Settings, ValidationError, hookimpl


class MemoryBackend:
    """Values in process memory; ``settings.memory.values`` may seed them.

    Seed format: ``{"app/env/group/key": "value"}``.
    """

    name = "memory"

    def __init__(self, values: Mapping[ConfigRef, str] | None = None) -> None:
        self._values: dict[ConfigRef, str] = dict(values or {})
        self._lock = threading.Lock()
        self._revision = 0
        self.get = self._values.get  # the read path calls this directly: no extra frame

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        with self._lock:
            if value is None:
                self._values.pop(ref, None)
            else:
                self._values[ref] = value
            self._revision += 1

    def group_values(
        self, app_name: str, environment: str, group_name: str
    ) -> tuple[dict[str, str], int]:
        """A group's values and a revision that changes with every publish (for the
        Apollo-compatible client endpoint)."""
        group = (app_name, environment, group_name)
        with self._lock:
            values = {r.config_key: v for r, v in self._values.items() if r[:3] == group}
            return values, self._revision

    def refresh(self) -> None:
        """Nothing to pick up: this process holds the only copy."""

    def close(self) -> None:
        """Nothing to release."""


def seed_values(raw: object) -> dict[ConfigRef, str]:
    """``{"app/env/group/key": "value"}`` from settings, checked entry by entry."""
    field = "settings.memory.values"
    if not isinstance(raw, Mapping):
        raise ValidationError(field, 'must be an object of "app/env/group/key": value')
    values: dict[ConfigRef, str] = {}
    for path, value in raw.items():
        parts = str(path).split("/", 3)
        if len(parts) != 4 or not all(parts):
            raise ValidationError(f"{field}.{path}", "must be named app/env/group/key")
        if not isinstance(value, str):
            raise ValidationError(f"{field}.{path}", "must be a string")
        values[ConfigRef(*parts)] = value
    return values


@hookimpl
def grayrelease_make_backend(settings: Settings) -> MemoryBackend | None:
    if settings.backend != "memory":
        return None
    return MemoryBackend(seed_values(settings.section("memory").get("values", {})))
