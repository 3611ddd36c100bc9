"""The address of the client behind a request, through the proxies the host trusts.

``X-Forwarded-For`` is a list its sender writes: only a proxy the host names in
``GRAYRELEASE_TRUSTED_PROXIES`` may add to it. The client is the right-most address that is
not one of those proxies, found walking back from the peer of the connection; with no
trusted proxies the header is ignored and the peer is the client. (Apollo takes the first
entry of the header whoever wrote it: any caller could then pick its own address, which for
an IP whitelist is the whole rule.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Request

from grayrelease_core import ValidationError
from grayrelease_core.addresses import AddressSet, is_address, parse_entry

FIELD = "GRAYRELEASE_TRUSTED_PROXIES"


def trusted_proxies(raw: Any) -> AddressSet | None:
    """``GRAYRELEASE_TRUSTED_PROXIES``: addresses or networks (``10.0.0.0/8``), matched as
    IP whitelists are; ``None`` when there are none."""
    if isinstance(raw, str) or not isinstance(raw, Iterable):
        raise ValidationError(FIELD, "must be a list of addresses or networks (10.0.0.0/8)")
    entries = []
    for entry in raw:
        if not isinstance(entry, str):
            raise ValidationError(
                FIELD, "each entry must be an address or a network (10.0.0.0/8)", value=entry
            )
        entries.append(parse_entry(entry, FIELD))
    return AddressSet(entries) if entries else None


def client_address(request: Request, trusted: AddressSet | None) -> str | None:
    """The client's address: the peer, or, when the peer is a trusted proxy, the right-most
    address of ``X-Forwarded-For`` that is not one (``None`` when there is no peer)."""
    peer = request.remote_addr
    if trusted is None or peer is None or peer not in trusted:
        return peer
    forwarded = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([hop for hop in forwarded if hop]):
        if hop not in trusted:
            return hop if is_address(hop) else peer
    return peer
