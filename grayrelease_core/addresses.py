"""Matching client addresses against exact IPs and CIDR blocks, IPv4 and IPv6."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from .errors import ValidationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_entry(entry: str, field: str) -> Address | Network:
    """An address or a CIDR block; a malformed one is a validation error naming ``field``."""
    try:
        if "/" in entry:
            return ipaddress.ip_network(entry, strict=False)
        return ipaddress.ip_address(entry)
    except ValueError as exc:
        raise ValidationError(
            field, f"is not an IP address or CIDR block ({exc})", value=entry
        ) from None


def is_address(text: str) -> bool:
    """Whether ``text`` is one IPv4 or IPv6 address (not a block, not a host name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=65_536)
def ip_entry(entry: str) -> Address | Network | None:
    """``entry`` as an address or CIDR block, or ``None`` when it is neither (an instance id).

    Cached: every index rebuild compiles every canary's list again, and a failed parse (an
    instance id) costs an exception."""
    try:
        return (
            ipaddress.ip_network(entry, strict=False)
            if "/" in entry
            else ipaddress.ip_address(entry)
        )
    except ValueError:
        return None


class AddressSet:
    """Exact addresses (a set lookup, O(1)) plus CIDR blocks (scanned only on a miss)."""

    __slots__ = ("_exact", "_networks")

    def __init__(self, entries: Iterable[Address | Network]) -> None:
        exact: set[str] = set()
        networks: list[Network] = []
        for entry in entries:
            if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
                if entry.num_addresses == 1:
                    exact.add(entry.network_address.compressed)
                else:
                    networks.append(entry)
            elif isinstance(entry, ipaddress.IPv6Address) and entry.ipv4_mapped is not None:
                exact.add(entry.ipv4_mapped.compressed)  # clients are looked up in IPv4 form
            else:
                exact.add(entry.compressed)
        self._exact = frozenset(exact)
        self._networks = tuple(networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or not address:
            return False
        if address in self._exact:
            return True
        if not self._networks and ":" not in address:
            # A valid IPv4 string is already in its one canonical form: a miss is final.
            return False
        try:
            parsed = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped
        if parsed.compressed in self._exact:
            return True
        return any(parsed in network for network in self._networks)
