"""grayrelease: safe gray (canary) release of configuration for an existing config center."""

from __future__ import annotations

import pluggy

from .backend import ConfigBackend
from .clock import Clock, ManualClock, SystemClock
from .engine import GrayRelease
from .errors import (
    BackendError,
    ConfigurationError,
    Conflict,
    GrayReleaseError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationError,
)
from .models import (
    Client,
    ConfigRef,
    CurrentValue,
    InstanceRecord,
    ItemStatus,
    LogRecord,
    Page,
    Plan,
    PlanEvent,
    PlanItem,
    PlanStatus,
    Progress,
    Resolution,
)
from .settings import Settings
from .store import PlanQuery, PlanStore
from .strategy import Matcher, Strategy

hookimpl = pluggy.HookimplMarker("grayrelease")
"""Marker for plugin hook implementations: ``@hookimpl def grayrelease_...``."""

__all__ = [
    "BackendError",
    "Client",
    "Clock",
    "ConfigBackend",
    "ConfigRef",
    "ConfigurationError",
    "Conflict",
    "CurrentValue",
    "GrayRelease",
    "GrayReleaseError",
    "InstanceRecord",
    "InvalidTransition",
    "ItemStatus",
    "LogRecord",
    "ManualClock",
    "Matcher",
    "NotFound",
    "Page",
    "PermissionDenied",
    "Plan",
    "PlanEvent",
    "PlanItem",
    "PlanQuery",
    "PlanStatus",
    "PlanStore",
    "Progress",
    "Resolution",
    "Settings",
    "Strategy",
    "SystemClock",
    "Unauthenticated",
    "ValidationError",
    "hookimpl",
]
