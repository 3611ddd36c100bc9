"""A sample backend plugin whose publish fails for chosen keys, as a real config center can.

Values live in a dict like the memory backend; ``fail_on`` names the config keys whose
publish raises ``BackendError`` without changing anything, as a refused HTTP publish would.
"""

from __future__ import annotations

from grayrelease_core import BackendError, ConfigRef, Settings, hookimpl


class FailingBackend:
    name = "failing"

    def __init__(self) -> None:
        self.values: dict[ConfigRef, str] = {}
        self.fail_on: set[str] = set()
        self.published: list[tuple[str, str | None]] = []

    def get(self, ref: ConfigRef) -> str | None:
        return self.values.get(ref)

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        if ref.config_key in self.fail_on:
            raise BackendError(f"config center refused {ref.config_key}")
        self.published.append((ref.config_key, value))
        if value is None:
            self.values.pop(ref, None)
        else:
            self.values[ref] = value

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


class FailingBackendPlugin:
    @hookimpl
    def grayrelease_make_backend(self, settings: Settings) -> FailingBackend | None:
        return FailingBackend() if settings.backend == "failing" else None
