"""What the extension keeps per Flask app."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from grayrelease_core import GrayRelease as Engine
from grayrelease_core.addresses import AddressSet
from grayrelease_core.sync import BackgroundSync


@attrs.define
class AppState:
    """One app's engine and the request-handling settings read from its config."""

    engine: Engine
    """The gray-release engine serving this app."""
    url_prefix: str
    """Where the REST API is mounted (``GRAYRELEASE_URL_PREFIX``)."""
    client_tokens: frozenset[str]
    """Tokens a config read must carry; empty means config reads are open."""
    max_body_bytes: int
    """Largest accepted request body (``GRAYRELEASE_MAX_BODY_BYTES``)."""
    ticker: BackgroundSync | None = None
    """The thread that runs ``engine.tick()`` every ``GRAYRELEASE_TICK_INTERVAL`` seconds."""
    courier: BackgroundSync | None = None
    """The thread that runs ``engine.deliver()`` every ``GRAYRELEASE_DELIVERY_INTERVAL``."""
    apollo_hold: float = 60.0
    """Seconds an Apollo client's notification poll is held (``GRAYRELEASE_APOLLO_HOLD``)."""
    apollo_access_keys: Mapping[str, str] = attrs.Factory(dict)
    """App id -> the secret its Apollo clients sign with (``GRAYRELEASE_APOLLO_ACCESS_KEYS``)."""
    apollo_prefix: str = "/api/gray-release/apollo"
    """Where the Apollo-compatible endpoint is mounted (``GRAYRELEASE_APOLLO_PREFIX``)."""
    apollo_environment: str | None = None
    """The one environment it serves with no environment in its paths
    (``GRAYRELEASE_APOLLO_ENVIRONMENT``); ``None``: ``{prefix}/{environment}/...``."""
    trusted_proxies: AddressSet | None = None
    """Proxies whose ``X-Forwarded-For`` names the client (``GRAYRELEASE_TRUSTED_PROXIES``)."""

    def close(self) -> None:
        """Stop the threads (waiting for a round in progress), then close the engine."""
        for thread in (self.ticker, self.courier):
            if thread is not None:
                thread.stop()
        self.engine.close()
