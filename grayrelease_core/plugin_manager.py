"""Building the plugin manager: built-ins from ``DEFAULT_PLUGINS``, then the entry points.

Built by a factory, never at import time, so every ``GrayRelease`` (and every test) gets
a fresh manager.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import pluggy

from . import hookspecs
from .errors import ConfigurationError

PROJECT = "grayrelease"
"""The marker name, the entry-point group and the hook prefix."""

DISABLE_ENV = "GRAYRELEASE_DISABLE_PLUGINS"
"""Comma-separated plugin names not to load: entry-point names, or a built-in's module path
(to replace a built-in with a plugin of one's own)."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "grayrelease_plugins.strategies.ip_whitelist",
    "grayrelease_plugins.strategies.user_whitelist",
    "grayrelease_plugins.strategies.percentage",
    "grayrelease_plugins.strategies.canary",
    "grayrelease_plugins.strategies.label",
    "grayrelease_plugins.stores.sqlalchemy",
    "grayrelease_plugins.backends.memory",
    "grayrelease_plugins.backends.sql",
    "grayrelease_plugins.metrics.push",
    "grayrelease_plugins.metrics.prometheus",
    "grayrelease_plugins.auth.roles",
    "grayrelease_plugins.notifiers.inbox",
    "grayrelease_plugins.notifiers.email",
    "grayrelease_plugins.notifiers.dingtalk",
    "grayrelease_plugins.notifiers.wecom",
    "grayrelease_plugins.notifiers.sms_aliyun",
)
"""Module paths of the built-in plugins, registered in this order."""


def make_plugin_manager(
    plugins: Iterable[object] = (), *, load_entrypoints: bool = True
) -> pluggy.PluginManager:
    """A fresh manager with the hookspecs, the built-ins, the entry points and ``plugins``."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in _disabled_names():
        pm.set_blocked(name)
    try:
        for module_path in DEFAULT_PLUGINS:
            if not pm.is_blocked(module_path):
                pm.register(importlib.import_module(module_path), name=module_path)
        if load_entrypoints:
            pm.load_setuptools_entrypoints(PROJECT)
        for plugin in plugins:
            pm.register(plugin)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(
            f"plugin {exc.plugin!r} does not fit the grayrelease hooks: {exc}; "
            "check the hook's name and arguments against docs/hooks.md",
            details={"plugin": str(exc.plugin)},
        ) from exc
    return pm


def collect(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call a ``register_*`` hook and flatten the lists, keeping which plugin gave what."""
    contributions: list[tuple[str, Any]] = []
    for plugin_name, call in implementations(pm, hook_name, **kwargs):
        contributions.extend((plugin_name, item) for item in call() or ())
    return contributions


def by_name(
    contributions: list[tuple[str, Any]], kind: str, protocol: type, needs: str
) -> dict[str, Any]:
    """``{name: contribution}`` from ``collect()``; refuses what does not fit ``protocol``
    (``needs`` lists its members for the message) and a name claimed twice."""
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for plugin_name, item in contributions:
        if not isinstance(item, protocol):
            raise ConfigurationError(
                f"plugin {plugin_name!r} registered {item!r}, which is not a {kind} "
                f"(it needs {needs})"
            )
        name: str = cast(Any, item).name
        if name in found:
            raise ConfigurationError(
                f"{kind} {name!r} is registered by both plugin {owners[name]!r} and plugin "
                f"{plugin_name!r}; disable one of them (GRAYRELEASE_DISABLE_PLUGINS) or rename it",
                details={kind.replace(" ", "_"): name, "plugins": [owners[name], plugin_name]},
            )
        found[name] = item
        owners[name] = plugin_name
    return found


def implementations(
    pm: pluggy.PluginManager, hook_name: str, **kwargs: Any
) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Each implementation of a hook as ``(plugin name, call)``, in registration order.

    For callers that must tell the plugins apart or keep one failure from stopping the rest.
    """
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        wanted = {name: kwargs[name] for name in impl.argnames}
        yield impl.plugin_name, functools.partial(impl.function, **wanted)


def _disabled_names() -> list[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return [name.strip() for name in raw.split(",") if name.strip()]
