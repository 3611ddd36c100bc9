"""The hooks a plugin may implement; the built-in plugins use exactly these.

Every hook carries the ``grayrelease_`` prefix. ``register_*`` hooks contribute lists that the
caller flattens (a name claimed twice is a start-up error naming both plugins); ``make_*``
hooks are ``firstresult``: the first plugin to return something other than ``None`` wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .access import Scope
    from .backend import ConfigBackend
    from .clock import Clock
    from .metrics import MetricSource
    from .migrations import MigrationSet
    from .models import Plan, PlanEvent
    from .notify import Notifier
    from .settings import Settings
    from .store import PlanStore
    from .strategy import Strategy

hookspec = pluggy.HookspecMarker("grayrelease")


# --- contributions, collected once when a GrayRelease is built ----------------------------


@hookspec
def grayrelease_register_strategies() -> list[Strategy]:
    """Contribute gray strategies.

    :returns: strategies, each with a ``name`` unique across all plugins.
    """
    raise NotImplementedError


@hookspec
def grayrelease_register_notifiers(
    settings: Settings, store: PlanStore, clock: Clock
) -> list[Notifier]:
    """Contribute notification channels (email, SMS, DingTalk, the inbox, ...).

    Collected once when a ``GrayRelease`` is built; routing names a channel by ``name``, and
    the outbox calls its ``send(message, recipients)``. A channel may also have
    ``requires_recipients = True`` (routing must give it someone) and
    ``check_recipient(recipient)`` (raises ``ValueError``), so that routing refuses a bad
    address when it is saved.

    :param settings: the installation's settings, for channel credentials and URLs; a
        channel whose section is malformed raises ``ValidationError`` naming the setting.
    :param store: the plan store (the inbox keeps its messages there).
    :param clock: the engine's clock, for the times a channel signs or stamps.
    :returns: notifiers, each with a unique ``name``.
    """
    raise NotImplementedError


@hookspec
def grayrelease_register_metric_sources(settings: Settings, store: PlanStore) -> list[MetricSource]:
    """Contribute metric sources (pushed samples, Prometheus, ...) for the ticker's judge.

    Collected once when a ``GrayRelease`` is built. A check names its source by ``name``.

    :param settings: the installation's settings (``settings.section(name)`` for options).
    :param store: the plan store, whose ``gray_release_monitor`` samples the ``push`` source
        reads.
    :returns: metric sources, each with a unique ``name``.
    """
    raise NotImplementedError


@hookspec
def grayrelease_register_migrations(settings: Settings) -> list[MigrationSet]:
    """Contribute the Alembic migrations of a plugin's tables.

    Collected by ``grayrelease db upgrade|downgrade|current``. A plugin also applies its own
    migrations when it builds its store or backend (``prepare_schema``).

    :param settings: the installation's settings, for the database URL.
    :returns: migration sets, each with its own script folder and version table.
    """
    raise NotImplementedError


# --- providers: one plugin wins -------------------------------------------------------------


@hookspec(firstresult=True)
def grayrelease_make_store(settings: Settings) -> PlanStore | None:
    """Provide the plan store for ``settings.database_url``.

    ``firstresult``: the first store returned is used; return ``None`` to let others try.

    :param settings: the installation's settings.
    :returns: a store, or ``None`` when this plugin does not handle the URL.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def grayrelease_make_backend(settings: Settings) -> ConfigBackend | None:
    """Provide the config backend named by ``settings.backend``.

    ``firstresult``: the first backend returned is used; return ``None`` for other names.

    :param settings: the installation's settings (``settings.section(name)`` for options).
    :returns: a backend, or ``None`` when this plugin does not provide that backend.
    """
    raise NotImplementedError


# --- control path ---------------------------------------------------------------------------


@hookspec
def grayrelease_authorize(
    actor: str,
    action: str,
    plan: Plan | None,
    scope: Scope,
    settings: Settings,
    store: PlanStore,
) -> bool | None:
    """Decide whether ``actor`` may perform ``action`` on ``plan`` (or in ``scope``).

    Called before every action in the core, so the Python API, the REST API and the CLI
    all obey it; the ticker's own actions come with the actor ``system``. Any ``False``
    denies; ``True`` or ``None`` leaves the decision to the others. To say what is missing,
    raise ``PermissionDenied`` with a message and details instead of returning ``False``.

    :param actor: who acts (a user name or token owner; ``system`` for the ticker).
    :param action: ``view``, ``create``, ``update``, ``delete``, ``start``, ``pause``,
        ``resume``, ``promote``, ``complete``, ``rollback``, ``report-metrics``,
        ``schedule-start``, ``auto-complete``, ``write-config``,
        ``approve``, ``reject``, ``grant`` or ``audit``.
    :param plan: the plan acted on (``None`` for ``create``, grants, lists and the audit).
    :param scope: the app and environment acted in (``*`` for all of them).
    :param settings: the installation's settings.
    :param store: the plan store (grants, and approvals in the audit trail).
    :returns: ``False`` to deny.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def grayrelease_identify(request: Any) -> str | None:
    """Name the actor behind an HTTP request (a host's own login, SSO, mTLS, ...).

    Called by the HTTP adapters before every request that needs an actor. ``firstresult``:
    the first name returned wins; the Flask adapter's bearer-token check runs last.

    :param request: the framework's request object (``flask.Request`` in the Flask adapter).
    :returns: the actor's name, or ``None`` when this plugin cannot tell.
    """
    raise NotImplementedError


@hookspec
def grayrelease_plan_event(event: PlanEvent) -> None:
    """React to a plan action after its transaction committed.

    A failing implementation is logged and does not undo or block the action.

    :param event: the action, the plan after (and before) it, the actor and the time.
    """
    raise NotImplementedError
