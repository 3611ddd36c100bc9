"""``ApolloBackend``: config values read from Apollo's releases and published as releases.

The values a client of Apollo sees are those of a namespace's latest release, not its items
(an item can be edited and not yet released), so the original values are read from the
latest release. Each namespace is read once, then kept in memory; where the env's config
service is configured it is watched (Apollo's notifications), so a release made in Apollo
shows within moments, for the original-value snapshot and the drift check alike.

A plan's keys are published together: the items are written, then one release titled after
the plan, so clients never see half a plan. Apollo offers no compare-and-set, so before
writing, the backend checks that the keys still hold what it last saw and that the namespace
has no unreleased edits (which the release would otherwise ship along), and it undoes the
item edits if the release fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import attrs

from grayrelease_core import BackendError, ConfigRef

from .client import ApolloConfigService, ApolloPortal, NamespaceId, Release
from .settings import ApolloSettings

log = logging.getLogger("grayrelease")
MAX_BACKOFF = 30.0


@attrs.frozen
class Snapshot:
    """What a namespace's latest release holds, as last seen."""

    values: Mapping[str, str]
    release_id: int | None
    """``None``: never released (or no such namespace)."""
    notification_id: int = -1
    """Apollo's notification id of the release, when the namespace is watched."""

    @property
    def revision(self) -> int:
        """The release's id: another release, or a rollback in Apollo, changes it, and every
        process that reads the namespace agrees on it."""
        return self.release_id or 0


class ApolloBackend:
    """Config values in Apollo, mirrored in memory and watched where a config service is set."""

    name = "apollo"

    def __init__(
        self,
        settings: ApolloSettings,
        portal: ApolloPortal | None = None,
    ) -> None:
        self.settings = settings
        self._portal = portal or ApolloPortal(
            settings.portal, settings.token, timeout=settings.timeout
        )
        self._mirror: dict[NamespaceId, Snapshot] = {}
        self._lock = threading.Lock()
        self._publishing = threading.Lock()
        self._stopped = threading.Event()
        self._watchers: dict[tuple[str, str], threading.Thread] = {}
        self._unwatched_warned: set[str] = set()
        self.before_change: Callable[[], None] | None = None
        """Called by the watcher before a change pushed by Apollo enters the mirror (the
        engine looks at the store first: see ``ConfigBackend``)."""

    # --- the ConfigBackend protocol -------------------------------------------------------

    def get(self, ref: ConfigRef) -> str | None:
        ns = self.settings.locate(ref)
        snapshot = self._mirror.get(ns) or self._load(ns)
        return snapshot.values.get(ref.config_key)

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        self.publish_all({ref: value}, actor=actor, title=f"grayrelease {ref.config_key}")

    def publish_all(
        self, values: Mapping[ConfigRef, str | None], *, actor: str, title: str
    ) -> None:
        """Publish ``values`` as one release per namespace (a plan has one), all or none."""
        by_namespace: dict[NamespaceId, dict[str, str | None]] = {}
        for ref, value in values.items():
            by_namespace.setdefault(self.settings.locate(ref), {})[ref.config_key] = value
        released: list[tuple[NamespaceId, dict[str, str | None]]] = []
        for ns, changes in by_namespace.items():
            try:
                before = self._release(ns, changes, actor=actor, title=title)
            except Exception:
                for done, previous in reversed(released):
                    try:
                        self._release(done, previous, actor=actor, title=f"undo {title}")
                    except Exception:
                        log.exception("grayrelease: could not undo the release of %s", done)
                raise
            released.append((ns, before))

    def refresh(self) -> None:
        """Forget the namespaces nobody watches, so the next read (and a publish's check)
        sees Apollo as it is; watched ones are kept current by their watcher."""
        with self._lock:
            for ns in [ns for ns in self._mirror if not self._watched(ns)]:
                del self._mirror[ns]

    def close(self) -> None:
        self._stopped.set()
        for watcher in self._watchers.values():
            watcher.join(timeout=1.0)  # a poll in flight ends with the daemon thread

    # --- the client endpoint's view -----------------------------------------------------

    def group_values(
        self, app_name: str, environment: str, group_name: str
    ) -> tuple[Mapping[str, str], int]:
        """Every released value of the group's namespace, and its revision, which changes with
        each release (for the Apollo-compatible client endpoint)."""
        ns = self.settings.namespace_of(app_name, environment, group_name)
        snapshot = self._mirror.get(ns) or self._load(ns)
        return snapshot.values, snapshot.revision

    # --- releasing ------------------------------------------------------------------------

    def _release(
        self, ns: NamespaceId, changes: Mapping[str, str | None], *, actor: str, title: str
    ) -> dict[str, str | None]:
        """Write the items and release them; returns what the keys held before."""
        with self._publishing:
            seen = self._mirror.get(ns) or self._load(ns)
            latest = self._portal.latest_release(ns)
            released = dict(latest.configurations) if latest else {}
            changed = sorted(k for k in changes if released.get(k) != seen.values.get(k))
            if changed:
                self._remember(ns, latest, seen.notification_id)
                raise BackendError(
                    f"{', '.join(changed)} in {ns} changed in Apollo ({self._portal.server}) "
                    "since it was read; nothing was published: read it again and retry",
                    details={
                        "server": self._portal.server,
                        "namespace": str(ns),
                        "casFailed": True,
                    },
                )
            items = self._portal.items(ns)
            pending = sorted(
                k for k in items.keys() | released.keys() if items.get(k) != released.get(k)
            )
            if pending:
                raise BackendError(
                    f"{ns} has unreleased changes in Apollo ({self._portal.server}) to "
                    f"{', '.join(pending[:10])}; release or discard them there first, so that "
                    "this release carries only the plan's keys; nothing was published",
                    details={"server": self._portal.server, "unreleasedKeys": pending},
                )
            comment = f"{title}, by {actor} through grayrelease"
            staged: dict[str, str | None] = {}
            try:
                for key, value in changes.items():
                    if value != items.get(key):
                        self._write_item(ns, key, value, comment)
                    staged[key] = items.get(key)
                release = self._release_or_find(ns, latest, changes, title, comment)
            except Exception:
                self._unstage(ns, staged, comment)
                raise
            self._remember(ns, release, seen.notification_id)
            return {key: released.get(key) for key in changes}

    def _release_or_find(
        self,
        ns: NamespaceId,
        latest: Release | None,
        changes: Mapping[str, str | None],
        title: str,
        comment: str,
    ) -> Release:
        """Release; when the answer is lost, look whether the release happened all the same."""
        operator = self.settings.operator
        try:
            return self._portal.release(ns, title=title, comment=comment, operator=operator)
        except BackendError:
            after = self._portal.latest_release(ns)
            if (
                after is not None
                and (latest is None or after.id != latest.id)
                and all(after.configurations.get(k) == v for k, v in changes.items())
            ):
                return after
            raise

    def _write_item(self, ns: NamespaceId, key: str, value: str | None, comment: str) -> None:
        if value is None:
            self._portal.delete_item(ns, key, operator=self.settings.operator)
        else:
            operator = self.settings.operator
            self._portal.put_item(ns, key, value, operator=operator, comment=comment)

    def _unstage(self, ns: NamespaceId, staged: Mapping[str, str | None], comment: str) -> None:
        """Put back the items a failed release left edited, so nothing is left to ship."""
        for key, value in staged.items():
            try:
                self._write_item(ns, key, value, f"undo: {comment}")
            except Exception:
                log.exception("grayrelease: could not undo the edit of %s in %s", key, ns)

    # --- the mirror ---------------------------------------------------------------------------

    def _load(self, ns: NamespaceId, notification_id: int = -1) -> Snapshot:
        return self._remember(ns, self._portal.latest_release(ns), notification_id)

    def _remember(self, ns: NamespaceId, release: Release | None, notification_id: int) -> Snapshot:
        snapshot = (
            Snapshot(release.configurations, release.id, notification_id)
            if release is not None
            else Snapshot({}, None, notification_id)
        )
        with self._lock:
            self._mirror[ns] = snapshot
        if self._watched(ns):
            self._watch_app(ns)
        return snapshot

    def _watched(self, ns: NamespaceId) -> bool:
        if not self.settings.watch:
            return False
        if self.settings.config_service(ns.env) is None:
            if ns.env not in self._unwatched_warned:
                self._unwatched_warned.add(ns.env)
                log.warning(
                    "grayrelease: no config service is set for Apollo env %s "
                    "(settings.apollo.config_services); its namespaces are read again at "
                    "every refresh instead of being watched",
                    ns.env,
                )
            return False
        return True

    def _watch_app(self, ns: NamespaceId) -> None:
        key = (ns.env, ns.app_id)
        with self._lock:
            if key in self._watchers or self._stopped.is_set():
                return
            url = self.settings.config_service(ns.env)
            assert url is not None
            service = ApolloConfigService(
                url,
                access_keys=self.settings.access_keys,
                timeout=self.settings.timeout,
                now_ms=lambda: int(time.time() * 1000),  # the server checks it against its own
            )
            watcher = threading.Thread(
                target=self._watch,
                args=(ns.env, ns.app_id, service),
                name=f"grayrelease-apollo-{ns.app_id}",
                daemon=True,
            )
            self._watchers[key] = watcher
        watcher.start()

    def _watch(self, env: str, app_id: str, service: ApolloConfigService) -> None:
        backoff = 1.0
        cluster = self.settings.cluster
        while not self._stopped.is_set():
            with self._lock:
                ids = {
                    ns.namespace: snapshot.notification_id
                    for ns, snapshot in self._mirror.items()
                    if ns.env == env and ns.app_id == app_id
                }
            try:
                changed = service.notifications(app_id, cluster, ids)
                if self.before_change is not None and any(name in ids for name in changed):
                    self.before_change()
                for name, notification_id in changed.items():
                    if name in ids:
                        self._load(NamespaceId(env, app_id, cluster, name), notification_id)
                backoff = 1.0
            except Exception as exc:
                if self._stopped.is_set():
                    return
                log.warning(
                    "grayrelease: watching Apollo %s/%s failed (%s); again in %gs",
                    env,
                    app_id,
                    exc,
                    backoff,
                )
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
