"""``GrayRelease``: the Flask extension that mounts gray release into a host config center."""

from __future__ import annotations

import logging
import math
import secrets
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, current_app

from grayrelease_core import Clock, ConfigurationError, ValidationError
from grayrelease_core import GrayRelease as Engine
from grayrelease_core.access import is_reserved
from grayrelease_core.sync import BackgroundSync

from .address import trusted_proxies
from .api import create_api_blueprint
from .apollo_api import create_apollo_blueprint
from .caller import forget_request, start_request
from .console import console_prefix, register_console
from .identity import BearerTokenIdentity, StoredTokenIdentity
from .session import SessionIdentity, register_session_routes, session_keys
from .state import AppState
from .throttle import LoginThrottle

EXTENSION = "grayrelease"
log = logging.getLogger("grayrelease")

DEFAULTS: dict[str, Any] = {
    "GRAYRELEASE_DATABASE_URL": "sqlite:///grayrelease.db",
    "GRAYRELEASE_BACKEND": "memory",
    "GRAYRELEASE_URL_PREFIX": "/api/gray-release",
    "GRAYRELEASE_CONSOLE_PREFIX": "/gray-release",
    "GRAYRELEASE_CACHE_TTL": 1.0,
    "GRAYRELEASE_HIT_FLUSH_INTERVAL": 5.0,
    "GRAYRELEASE_BACKGROUND_SYNC": True,
    "GRAYRELEASE_TICK_INTERVAL": 30.0,
    "GRAYRELEASE_DELIVERY_INTERVAL": 5.0,
    "GRAYRELEASE_APPROVAL_ENVIRONMENTS": [],
    "GRAYRELEASE_SESSION_SECRET": None,
    "GRAYRELEASE_SESSION_HOURS": 12.0,
    "GRAYRELEASE_TOKENS": {},
    "GRAYRELEASE_CLIENT_TOKENS": [],
    "GRAYRELEASE_MAX_BODY_BYTES": 1024 * 1024,
    "GRAYRELEASE_APOLLO_HOLD": 60.0,
    "GRAYRELEASE_APOLLO_ACCESS_KEYS": {},
    "GRAYRELEASE_APOLLO_PREFIX": None,
    "GRAYRELEASE_APOLLO_ENVIRONMENT": None,
    "GRAYRELEASE_TRUSTED_PROXIES": [],
    "GRAYRELEASE_SETTINGS": {},
}
"""Every config key the extension reads, with its default."""


class GrayRelease:
    """Gray release for a Flask app: the engine, the REST API and the ``flask gray-release`` CLI.

    ``GrayRelease(app)`` or ``ext = GrayRelease(); ext.init_app(app)``. Options that are
    objects rather than config: ``plugins`` (extra pluggy plugins, for example one that
    implements ``grayrelease_identify`` with the host's login), ``clock`` and
    ``load_entrypoints``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        plugins: Iterable[object] = (),
        clock: Clock | None = None,
        load_entrypoints: bool = True,
    ) -> None:
        self._plugins = tuple(plugins)
        self._clock = clock
        self._load_entrypoints = load_entrypoints
        self._states: weakref.WeakKeyDictionary[Flask, AppState] = weakref.WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the config once, build the engine, register the blueprint and the CLI.

        Config keys (defaults in ``DEFAULTS``):

        - ``GRAYRELEASE_DATABASE_URL``: the plan store's SQLAlchemy URL.
        - ``GRAYRELEASE_BACKEND``: the config backend (``memory``, ``sql``, or a plugin's).
        - ``GRAYRELEASE_URL_PREFIX``: where the REST API is mounted.
        - ``GRAYRELEASE_CONSOLE_PREFIX``: where the web console is mounted; empty or ``None``
          turns it off.
        - ``GRAYRELEASE_CACHE_TTL``: seconds another process's plan change may take to show.
        - ``GRAYRELEASE_HIT_FLUSH_INTERVAL``: seconds between writes of instance hits.
        - ``GRAYRELEASE_BACKGROUND_SYNC``: run the sync thread (else call ``engine.sync()``).
        - ``GRAYRELEASE_TICK_INTERVAL``: seconds between ticks of the ticker thread (canary
          steps, metric analysis, scheduled starts); 0 turns it off (run
          ``grayrelease tick`` from cron instead).
        - ``GRAYRELEASE_DELIVERY_INTERVAL``: seconds between runs of the notification thread,
          so an operator's action is told within seconds, not at the next tick (which
          delivers too); 0 turns it off.
        - ``GRAYRELEASE_APPROVAL_ENVIRONMENTS``: environments where a plan needs another
          releaser's approval to start and to complete (turns roles on, like an ``auth``
          section in ``GRAYRELEASE_SETTINGS``).
        - ``GRAYRELEASE_SESSION_SECRET``: signs the console's session cookies (default: the
          app's ``SECRET_KEY``; without either, a random key: sessions then end with the
          process and are not shared between processes).
        - ``GRAYRELEASE_SESSION_HOURS``: how long a console session lasts.
        - ``GRAYRELEASE_TOKENS``: ``{"token": "actor"}`` for ``Authorization: Bearer``.
        - ``GRAYRELEASE_CLIENT_TOKENS``: tokens a config read must carry; empty = open.
        - ``GRAYRELEASE_MAX_BODY_BYTES``: the largest request body accepted; a larger one is
          a 413, refused by its ``Content-Length`` before it is read.
        - ``GRAYRELEASE_APOLLO_HOLD``: seconds an Apollo client's notification poll is held
          when nothing changed (Apollo holds 60; 0 answers at once).
        - ``GRAYRELEASE_APOLLO_ACCESS_KEYS``: ``{"appId": "secret"}``, the access keys Apollo
          clients sign their requests with; an app listed must sign.
        - ``GRAYRELEASE_APOLLO_PREFIX``: where the Apollo-compatible endpoint is mounted
          (default ``{GRAYRELEASE_URL_PREFIX}/apollo``; ``""`` for the app's root).
        - ``GRAYRELEASE_APOLLO_ENVIRONMENT``: serve this one environment with no
          environment in the endpoint's paths, as Apollo's config service does.
        - ``GRAYRELEASE_TRUSTED_PROXIES``: addresses or networks of the proxies whose
          ``X-Forwarded-For`` names the client, for clients that send no address of
          their own.
        - ``GRAYRELEASE_SETTINGS``: more engine settings and plugin sections.
        """
        if EXTENSION in app.extensions:
            raise RuntimeError(
                "grayrelease is already registered on this app; call init_app once per app"
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        config = app.config
        tokens = _tokens(config["GRAYRELEASE_TOKENS"])
        client_tokens = _client_tokens(config["GRAYRELEASE_CLIENT_TOKENS"])
        prefix = _prefix(config["GRAYRELEASE_URL_PREFIX"])
        console = console_prefix(config["GRAYRELEASE_CONSOLE_PREFIX"], prefix)
        max_body = config["GRAYRELEASE_MAX_BODY_BYTES"]
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
            raise ValidationError(
                "GRAYRELEASE_MAX_BODY_BYTES", "must be a whole number of at least 1024"
            )
        tick_interval = _interval(config, "GRAYRELEASE_TICK_INTERVAL")
        apollo_hold = _interval(config, "GRAYRELEASE_APOLLO_HOLD")
        apollo_access_keys = _access_keys(config["GRAYRELEASE_APOLLO_ACCESS_KEYS"])
        apollo_prefix = _apollo_prefix(config["GRAYRELEASE_APOLLO_PREFIX"], prefix)
        apollo_environment = _apollo_environment(config["GRAYRELEASE_APOLLO_ENVIRONMENT"])
        proxies = trusted_proxies(config["GRAYRELEASE_TRUSTED_PROXIES"])
        delivery_interval = _interval(config, "GRAYRELEASE_DELIVERY_INTERVAL")
        extra = config["GRAYRELEASE_SETTINGS"]
        if not isinstance(extra, Mapping):
            raise ValidationError("GRAYRELEASE_SETTINGS", "must be a mapping of engine settings")
        approval = config["GRAYRELEASE_APPROVAL_ENVIRONMENTS"]
        if not isinstance(approval, list | tuple) or not all(
            isinstance(env, str) and env.strip() for env in approval
        ):
            raise ValidationError(
                "GRAYRELEASE_APPROVAL_ENVIRONMENTS", "must be a list of environment names"
            )
        if approval:  # turns roles on: approval means nothing without them
            auth = extra.get("auth", {})
            if not isinstance(auth, Mapping):
                raise ValidationError("GRAYRELEASE_SETTINGS.auth", "must be an object")
            extra = {**extra, "auth": {**auth, "approval_environments": list(approval)}}
        settings = {
            **extra,
            "database_url": config["GRAYRELEASE_DATABASE_URL"],
            "backend": config["GRAYRELEASE_BACKEND"],
            "cache_ttl": config["GRAYRELEASE_CACHE_TTL"],
            "hit_flush_interval": config["GRAYRELEASE_HIT_FLUSH_INTERVAL"],
            "background_sync": config["GRAYRELEASE_BACKGROUND_SYNC"],
        }
        engine = Engine.from_settings(
            settings,
            clock=self._clock,
            plugins=[*self._plugins, BearerTokenIdentity(tokens)],
            load_entrypoints=self._load_entrypoints,
        )
        engine.plugin_manager.register(StoredTokenIdentity(engine))
        keys = session_keys(_session_secret(app), _session_hours(config), engine.clock)
        engine.plugin_manager.register(SessionIdentity(engine, keys))
        ticker = (
            BackgroundSync(lambda: _tick_quietly(engine), tick_interval, name="grayrelease-ticker")
            if tick_interval > 0
            else None
        )
        courier = (
            BackgroundSync(
                lambda: _deliver_quietly(engine), delivery_interval, name="grayrelease-delivery"
            )
            if delivery_interval > 0
            else None
        )
        state = AppState(
            engine,
            prefix,
            client_tokens,
            max_body,
            ticker,
            courier,
            apollo_hold=apollo_hold,
            apollo_access_keys=apollo_access_keys,
            apollo_prefix=apollo_prefix,
            apollo_environment=apollo_environment,
            trusted_proxies=proxies,
        )
        self._states[app] = state
        weakref.finalize(app, state.close)
        app.extensions[EXTENSION] = self
        app.before_request(start_request)
        app.teardown_request(forget_request)
        api = create_api_blueprint()
        register_session_routes(api, keys, tokens, LoginThrottle(engine.clock))
        app.register_blueprint(api, url_prefix=prefix)
        app.register_blueprint(
            create_apollo_blueprint(apollo_environment), url_prefix=apollo_prefix or None
        )
        if console is not None:
            register_console(app, console, prefix)

        from .cli import cli

        app.cli.add_command(cli, "gray-release")

    def state(self, app: Flask | None = None) -> AppState:
        """The engine and request settings of ``app`` (default: the current app)."""
        target = app if app is not None else current_app
        target = getattr(target, "_get_current_object", lambda: target)()  # unwrap the proxy
        try:
            return self._states[target]
        except KeyError:
            raise ConfigurationError(
                "grayrelease.init_app(app) was not called for this app"
            ) from None

    @property
    def engine(self) -> Engine:
        """The current app's engine: ``resolve``, ``create_plan``, ``start``, ..."""
        return self.state().engine

    def close(self, app: Flask | None = None) -> None:
        """Stop the ticker, flush buffered hits and release the database (also done when the
        app is collected)."""
        self.state(app).close()


def _tick_quietly(engine: Engine) -> None:
    """A tick from the thread: a failure is logged and the next tick tries again."""
    try:
        report = engine.tick()
    except Exception:
        log.exception("grayrelease: tick failed")
        return
    for error in report.errors:
        log.warning("grayrelease: tick: %s", error)


def _deliver_quietly(engine: Engine) -> None:
    """A delivery run from the thread: a failure is logged and the next run tries again."""
    try:
        report = engine.deliver()
    except Exception:
        log.exception("grayrelease: delivering notifications failed")
        return
    for error in report.errors:
        log.warning("grayrelease: notification: %s", error)


def _session_secret(app: Flask) -> str | bytes:
    secret = app.config["GRAYRELEASE_SESSION_SECRET"] or app.config.get("SECRET_KEY")
    if not secret:
        log.warning(
            "grayrelease: no GRAYRELEASE_SESSION_SECRET or SECRET_KEY: console sessions are "
            "signed with a random key and end with this process"
        )
        return secrets.token_urlsafe(32)
    if not isinstance(secret, str | bytes) or len(secret) < 16:
        raise ValidationError(
            "GRAYRELEASE_SESSION_SECRET", "must be a secret of at least 16 characters"
        )
    return secret


def _session_hours(config: Mapping[str, Any]) -> float:
    hours = config["GRAYRELEASE_SESSION_HOURS"]
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * 30:
        raise ValidationError(
            "GRAYRELEASE_SESSION_HOURS", "must be a number of hours up to 720", value=hours
        )
    return float(hours)


def _interval(config: Mapping[str, Any], key: str) -> float:
    value = config[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 3600
    ):
        raise ValidationError(key, "must be from 0 (off) to 3600 seconds", value=value)
    return float(value)


def _tokens(raw: Any) -> dict[str, str]:
    field = "GRAYRELEASE_TOKENS"
    if not isinstance(raw, Mapping):
        raise ValidationError(field, 'must be a mapping {"token": "actor name"}')
    for token, actor in raw.items():
        if not isinstance(token, str) or len(token) < 16:
            raise ValidationError(field, "each token must be a string of at least 16 characters")
        if not isinstance(actor, str) or not actor.strip():
            raise ValidationError(f"{field}.<token>", "must name an actor")
        if is_reserved(actor):
            raise ConfigurationError(
                f"{field}: the actor name {actor!r} is reserved for the engine itself; "
                "give the token another name",
                details={"field": field},
            )
    return dict(raw)


def _access_keys(raw: Any) -> dict[str, str]:
    field = "GRAYRELEASE_APOLLO_ACCESS_KEYS"
    if not isinstance(raw, Mapping) or not all(
        isinstance(app_id, str) and app_id and isinstance(secret, str) and secret
        for app_id, secret in raw.items()
    ):
        raise ValidationError(field, 'must be an object of "appId": "secret"')
    return dict(raw)


def _client_tokens(raw: Any) -> frozenset[str]:
    if isinstance(raw, str) or not isinstance(raw, Iterable):
        raise ValidationError("GRAYRELEASE_CLIENT_TOKENS", "must be a list of tokens")
    tokens = list(raw)
    if any(not isinstance(t, str) or len(t) < 16 for t in tokens):
        raise ValidationError(
            "GRAYRELEASE_CLIENT_TOKENS", "each token must be a string of at least 16 characters"
        )
    return frozenset(tokens)


def _apollo_prefix(raw: Any, prefix: str) -> str:
    if raw is None:
        return f"{prefix}/apollo"
    if not isinstance(raw, str) or not (
        raw == "" or (raw.startswith("/") and not raw.endswith("/"))
    ):
        raise ValidationError(
            "GRAYRELEASE_APOLLO_PREFIX", 'must start with "/" and not end with one', value=raw
        )
    return raw


def _apollo_environment(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 128 or "/" in raw:
        raise ValidationError(
            "GRAYRELEASE_APOLLO_ENVIRONMENT", "must be an environment name (no /)", value=raw
        )
    return raw


def _prefix(raw: Any) -> str:
    if not isinstance(raw, str) or not (
        raw == "" or (raw.startswith("/") and not raw.endswith("/"))
    ):
        raise ValidationError(
            "GRAYRELEASE_URL_PREFIX", 'must start with "/" and not end with one', value=raw
        )
    return raw
