"""The address of the client behind a request, through the proxies the host trusts.

``X-Forwarded-For`` is a list its sender writes: only a proxy the host names in
``GRAYRELEASE_TRUSTED_PROXIES`` may add to it. The client is the right-most address that is
not one of those proxies, found walking back from the peer of the connection; with no
trusted proxies the header is ignored and the peer is the client. (Apollo takes the first
entry of the header whoever wrote it: any caller could then pick its own address, which for
an IP whitelist is the whole rule.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from flask import Request

from grayrelease_core import ValidationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FIELD = "GRAYRELEASE_TRUSTED_PROXIES"


def trusted_proxies(raw: Any) -> tuple[Network, ...]:
    """``GRAYRELEASE_TRUSTED_PROXIES``: addresses or networks (``10.0.0.0/8``)."""
    if isinstance(raw, str) or not isinstance(raw, Iterable):
        raise ValidationError(FIELD, "must be a list of addresses or networks (10.0.0.0/8)")
    networks = []
    for entry in raw:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except (TypeError, ValueError):
            raise ValidationError(
                FIELD, "each entry must be an address or a network (10.0.0.0/8)", value=entry
            ) from None
    return tuple(networks)


def client_address(request: Request, trusted: tuple[Network, ...]) -> str | None:
    """The client's address: the peer, or, when the peer is a trusted proxy, the right-most
    address of ``X-Forwarded-For`` that is not one (``None`` when there is no peer)."""
    peer = request.remote_addr
    if not trusted or peer is None or not _is_trusted(peer, trusted):
        return peer
    forwarded = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([hop for hop in forwarded if hop]):
        if not _is_trusted(hop, trusted):
            return hop if _is_address(hop) else peer
    return peer


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
