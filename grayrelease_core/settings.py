"""Installation settings: a plain mapping validated once into a frozen object."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from .errors import ValidationError


@attrs.frozen
class Settings:
    """What ``GrayRelease.from_settings`` accepts. Unknown top-level keys must be plugin
    sections (objects such as ``{"nacos": {...}}``); anything else is refused by name."""

    database_url: str = "sqlite:///grayrelease.db"
    """SQLAlchemy URL of the plan store; a SQLite file by default."""
    backend: str = "memory"
    """Name of the config backend (``memory``, ``sql``, or one a plugin provides)."""
    cache_ttl: float = 1.0
    """Seconds a process may serve a plan state another process changed."""
    hit_flush_interval: float = 5.0
    """Seconds between writes of buffered gray hits to ``gray_release_instance``."""
    background_sync: bool = True
    """Run a daemon thread that refreshes the index and flushes hits; when off, the host
    calls ``GrayRelease.sync()`` itself."""
    auto_migrate: bool = True
    """Bring the database schema to the installed version at start (Alembic). Turn off where
    deploys run ``grayrelease db upgrade`` themselves; a behind schema is then an error."""
    action_lease: float = 60.0
    """Seconds a process on another host may hold a plan's claim before recovery takes it
    over (a holder on the same host is checked by its process id at once)."""
    settle_time: float = 30.0
    """Seconds after a completion or a rollback publishes during which every process serves
    the published values where its own backend mirror does not show them yet."""
    default_group: str = "default"
    """The group used when a plan or a request names none."""
    metric_retention: float = 168.0
    """Hours pushed metric samples are kept; each tick deletes older ones."""
    sections: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    """Per-plugin options, keyed by plugin section name."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None = None) -> Settings:
        """Validate ``data``; each error names the setting and what is wrong with it."""
        data = dict(data or {})
        values: dict[str, Any] = {}
        sections: dict[str, Mapping[str, Any]] = {}
        for key, value in data.items():
            if key in ("database_url", "backend", "default_group"):
                if not isinstance(value, str) or not value.strip():
                    raise ValidationError(
                        f"settings.{key}", "must be a non-empty string", value=value
                    )
                values[key] = value.strip()
            elif key == "metric_retention":
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not 1 <= value <= 24 * 366
                ):
                    raise ValidationError(
                        f"settings.{key}", "must be a number of hours from 1 to 8784", value=value
                    )
                values[key] = float(value)
            elif key in ("cache_ttl", "hit_flush_interval"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValidationError(
                        f"settings.{key}", "must be a number of seconds", value=value
                    )
                if not math.isfinite(value) or value < 0 or value > 3600:
                    raise ValidationError(
                        f"settings.{key}", "must be from 0 to 3600 seconds", value=value
                    )
                values[key] = float(value)
            elif key in ("action_lease", "settle_time"):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                    or not 1 <= value <= 3600
                ):
                    raise ValidationError(
                        f"settings.{key}", "must be from 1 to 3600 seconds", value=value
                    )
                values[key] = float(value)
            elif key in ("background_sync", "auto_migrate"):
                if not isinstance(value, bool):
                    raise ValidationError(f"settings.{key}", "must be true or false", value=value)
                values[key] = value
            elif isinstance(value, Mapping):
                sections[str(key)] = MappingProxyType(dict(value))
            else:
                raise ValidationError(
                    f"settings.{key}",
                    "unknown setting (plugin options go in an object named after the plugin)",
                    value=value,
                )
        return cls(**values, sections=MappingProxyType(sections))

    def section(self, name: str) -> Mapping[str, Any]:
        """A plugin's options (empty when not given)."""
        return self.sections.get(name, MappingProxyType({}))
