"""``NacosBackend``: config values read from and published to Nacos.

The read path never waits on the network once a data id is known: each data id is fetched
the first time a key in it is read, then kept in memory and watched by one long-polling thread
(Nacos's listener API), so changes made in Nacos directly show within moments, for the
original-value snapshot and the drift check alike.

Publishing compares and sets: the content is published with the MD5 of what this backend last
saw (``casMd5``), so a change made in Nacos since is refused, not overwritten. Nacos honours
``casMd5`` over HTTP from 2.3.0 only (older servers overwrite silently), so the backend asks the
server its version when it starts and refuses to start against an older one, unless
``compare_and_set`` is ``read-compare-publish``: the config is then read again just before
each publish and the publish refused when it changed (a short window remains: docs/nacos.md).

With ``beta``, the backend also hears plan events (a backend is a plugin too): while an
IP_WHITELIST plan on whole data ids is live, its gray values are published as Nacos betas to
the listed addresses, and the betas are stopped when the plan ends. A beta call that fails is
retried at the next refresh until it goes through, so an ended plan's beta does not linger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import attrs

from grayrelease_core import BackendError, ConfigRef, ConfigurationError, PlanEvent, hookimpl
from grayrelease_core.addresses import is_address

from .client import (
    CAS_OVER_HTTP,
    SERVER_STATES,
    ConfigId,
    NacosClient,
    changed_since_read,
    honours_cas_md5,
    nacos_md5,
)
from .settings import FIELD, READ_COMPARE_PUBLISH, KeyFile, NacosSettings

log = logging.getLogger("grayrelease")
MAX_BACKOFF = 30.0
BETA_RETRY = 5.0
"""Seconds before a beta call that failed is tried again."""
BETA_LIVE = frozenset({"STARTED", "RESUMED"})
BETA_OVER = frozenset({"COMPLETED", "ROLLED_BACK", "AUTO_ROLLBACK", "DELETED"})


@attrs.frozen
class Beta:
    """A gray value served by Nacos itself to some addresses."""

    content: str
    ips: tuple[str, ...]


@attrs.frozen
class Entry:
    """What Nacos holds for one data id, as last seen."""

    content: str | None
    keys: Mapping[str, str] | None = None
    """The file's keys, when the data id is a file of keys and it parsed."""
    problem: str = ""
    """Why the file's keys could not be read."""

    @property
    def md5(self) -> str:
        return "" if self.content is None else nacos_md5(self.content)


class NacosBackend:
    """Config values in Nacos, mirrored in memory and watched."""

    name = "nacos"

    def __init__(self, settings: NacosSettings, client: NacosClient | None = None) -> None:
        self.settings = settings
        self._client = client or NacosClient(
            settings.server,
            username=settings.username,
            password=settings.password,
            timeout=settings.timeout,
        )
        self._mirror: dict[ConfigId, Entry] = {}
        self._formats: dict[ConfigId, KeyFile] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self.before_change: Callable[[], None] | None = None
        """Called by the watcher before a change pushed by Nacos enters the mirror (the
        engine looks at the store first: see ``ConfigBackend``)."""
        self._betas_due: dict[ConfigId, Beta | None] = {}
        """Betas to publish (or, ``None``, to stop) that Nacos has not taken yet."""
        self._beta_retry_at = 0.0
        self._read_first: bool | None = None
        """Whether a publish reads the config first (read-compare-publish) rather than leave
        the compare to Nacos; ``None`` until the server's version is known."""
        self._learn_server(starting=True)
        if settings.watch:
            self._watcher = threading.Thread(
                target=self._watch, name="grayrelease-nacos", daemon=True
            )
            self._watcher.start()

    # --- the ConfigBackend protocol -------------------------------------------------------

    def get(self, ref: ConfigRef) -> str | None:
        config, file = self.settings.locate(ref)
        entry = self._mirror.get(config)
        if entry is None:
            entry = self._load(config, file)
        if file is None:
            return entry.content
        if entry.keys is None:
            raise BackendError(
                f"Nacos at {self.settings.server}: {config} is not a {file.format.name} file "
                f"any more: {entry.problem}",
                details={"server": self.settings.server, "config": str(config)},
            )
        return entry.keys.get(ref.config_key)

    def publish(self, ref: ConfigRef, value: str | None, *, actor: str) -> None:
        read_first = self._read_first
        if read_first is None:
            read_first = self._learn_server(starting=False)
        config, file = self.settings.locate(ref)
        entry = self._mirror.get(config) or self._load(config, file)
        if file is None:
            if value is None:
                if entry.content is not None:
                    self._client.delete(config)
                self._store(config, Entry(None), file)
                return
            content = value
        else:
            try:
                content = file.format.write(entry.content or "", ref.config_key, value)
            except ValueError as exc:
                raise BackendError(
                    f"Nacos at {self.settings.server}: cannot write {ref.config_key} into "
                    f"{config}: {exc}",
                    details={"server": self.settings.server, "config": str(config)},
                ) from exc
        # A server that ignores casMd5: compare here. An edit landing between this read and
        # the publish below is still overwritten (docs/nacos.md).
        if read_first and self._client.get(config) != entry.content:
            raise changed_since_read(self.settings.server, config)
        self._client.publish(
            config,
            content,
            cas_md5=entry.md5 if entry.content is not None else None,
            type_=file.format.name if file else "text",
            actor=actor,
            description="grayrelease",
        )
        self._store(config, _entry(content, file), file)

    def refresh(self) -> None:
        """With the watcher, nothing: it keeps the mirror current. Without it, forget what
        was read, so the next read (and a publish's compare-and-set) sees Nacos as it is."""
        if self._watcher is None:
            with self._lock:
                self._mirror.clear()
        if self._betas_due and time.monotonic() >= self._beta_retry_at:
            self._settle_betas()

    def close(self) -> None:
        self._stopped.set()
        self._watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=1.0)  # a poll in flight ends with the daemon thread

    # --- what the server can do ------------------------------------------------------------

    def _learn_server(self, *, starting: bool) -> bool:
        """Ask the server its version and settle how publishes compare and set: whether a
        publish must read the config first (read-compare-publish).

        A server that cannot be asked at start is asked again before each publish until it
        answers; meanwhile, under ``read-compare-publish``, publishes read first.

        :raises ConfigurationError: the server cannot compare and set (or does not say its
            version) and ``compare_and_set`` is ``require``.
        :raises BackendError: (not ``starting``) the server could not be asked, under ``require``.
        """
        server = self.settings.server
        since = ".".join(map(str, CAS_OVER_HTTP))
        fallback = self.settings.compare_and_set == READ_COMPARE_PUBLISH
        try:
            version = self._client.server_version()
        except BackendError as exc:
            if starting:
                log.warning("grayrelease: %s; asking again before the first publish", exc.message)
                return fallback
            if not fallback:
                raise BackendError(
                    f"{exc.message}; compare-and-set needs to know whether Nacos is {since} "
                    f"or later: let {' and '.join(SERVER_STATES)} through to Nacos, or set "
                    f"{FIELD}.compare_and_set to {READ_COMPARE_PUBLISH!r}",
                    details=exc.details,
                ) from exc
            return True
        if version is not None and honours_cas_md5(version):
            self._read_first = False
            return False
        if version is None:
            problem = (
                f"Nacos at {server} did not say its version (neither "
                f"{' nor '.join(SERVER_STATES)} answered one), so whether it honours casMd5 "
                f"(Nacos {since} and later do) is unknown"
            )
            remedy = "let those routes through to Nacos"
        else:
            problem = (
                f"Nacos at {server} is version {version}, which ignores casMd5 on an HTTP "
                f"publish (Nacos honours it from {since} on): a publish would overwrite an "
                "edit made in Nacos since it was read"
            )
            remedy = f"upgrade Nacos to {since} or later"
        if not fallback:
            raise ConfigurationError(
                f"{problem}. Either {remedy}, or set {FIELD}.compare_and_set to "
                f"{READ_COMPARE_PUBLISH!r} to read each config again just before publishing "
                "it (docs/nacos.md says what window that leaves)",
                details={
                    "field": f"{FIELD}.compare_and_set",
                    "server": server,
                    "version": version,
                },
            )
        log.info("grayrelease: %s; publishing by %s", problem, READ_COMPARE_PUBLISH)
        self._read_first = True
        return True

    # --- beta offload ------------------------------------------------------------------------

    @hookimpl
    def grayrelease_plan_event(self, event: PlanEvent) -> None:
        plan = event.plan
        if not self.settings.beta or plan.strategy != "IP_WHITELIST":
            return
        if event.action not in BETA_LIVE | BETA_OVER:
            return
        # Nacos matches betas by exact address: CIDR blocks stay with the library.
        ips = tuple(a for a in plan.rules.get("ipWhitelist", ()) if is_address(a))
        wanted: dict[ConfigId, Beta | None] = {}
        for item, ref in zip(plan.items, plan.refs, strict=True):
            config, file = self.settings.locate(ref)
            if file is not None:
                continue  # a key inside a file: a beta would carry the whole file
            gray = item.gray_value if event.action in BETA_LIVE and ips else None
            wanted[config] = None if gray is None else Beta(gray, ips)
        with self._lock:
            self._betas_due.update(wanted)
        self._settle_betas()

    def _settle_betas(self) -> None:
        with self._lock:
            due = dict(self._betas_due)
        for config, beta in due.items():
            try:
                if beta is None:
                    self._client.delete(config, beta=True)
                else:
                    self._client.publish(
                        config, beta.content, beta_ips=beta.ips, actor="grayrelease"
                    )
            except BackendError as exc:
                log.warning("grayrelease: Nacos beta of %s not settled (%s); retrying", config, exc)
                self._beta_retry_at = time.monotonic() + BETA_RETRY
                continue
            with self._lock:
                if self._betas_due.get(config) == beta:
                    del self._betas_due[config]

    # --- the mirror ---------------------------------------------------------------------------

    def _load(self, config: ConfigId, file: KeyFile | None) -> Entry:
        entry = _entry(self._client.get(config), file)
        return self._store(config, entry, file)

    def _reload(self, config: ConfigId, polled: str | None) -> None:
        """Read a config the watch says changed, and keep it only if the mirror still holds
        what was polled: a publish of ours that landed meanwhile stored the newer value, and
        the read may have been answered before it (the next poll compares again anyway)."""
        entry = _entry(self._client.get(config), self._formats.get(config))
        with self._lock:
            current = self._mirror.get(config)
            if current is None or current.md5 == polled:
                self._mirror[config] = entry

    def _store(self, config: ConfigId, entry: Entry, file: KeyFile | None) -> Entry:
        with self._lock:
            self._mirror[config] = entry
            if file is not None:
                self._formats[config] = file
        self._watching.set()
        return entry

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopped.is_set():
            with self._lock:
                md5s = {config: entry.md5 for config, entry in self._mirror.items()}
            if not md5s:
                self._watching.wait(self.settings.poll_timeout)
                self._watching.clear()
                continue
            try:
                changed = self._client.listen(md5s, self.settings.poll_timeout)
                if self.before_change is not None and any(c in md5s for c in changed):
                    self.before_change()
                for config in changed:
                    if config in md5s:
                        self._reload(config, md5s[config])
                backoff = 1.0
            except Exception as exc:
                if self._stopped.is_set():
                    return
                log.warning("grayrelease: watching Nacos failed (%s); again in %gs", exc, backoff)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)


def _entry(content: str | None, file: KeyFile | None) -> Entry:
    if file is None or content is None:
        return Entry(content, {} if file is not None else None)
    try:
        return Entry(content, file.format.read(content))
    except ValueError as exc:
        return Entry(content, None, str(exc))
