"""Which IP addresses the crawler may connect to (SSRF guard).

Only globally routable unicast addresses are allowed unless `crawl.allow_private` is set:
loopback, private (RFC 1918, ULA), link-local, shared (CGNAT), multicast, reserved and
unspecified addresses are refused, also when hidden as IPv4-mapped IPv6.
`crawl.private_allowlist` opens single addresses or networks (e.g. a test server on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_public(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast and not addr.is_reserved


def is_loopback_host(host: str) -> bool:
    """A host name that can only mean this machine (no politeness delay is owed to it)."""
    host = host.lower().strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    addr = parse_ip(host)
    return addr is not None and addr.is_loopback


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allow_private: bool
    allowlist: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(cls, allow_private: bool, allowlist: Sequence[str]) -> AddressPolicy:
        return cls(allow_private,
                   tuple(ipaddress.ip_network(n, strict=False) for n in allowlist))

    @property
    def open(self) -> bool:
        """True when no address is refused (no resolution needed)."""
        return self.allow_private

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why `address` may not be contacted, or None."""
        addr = parse_ip(address) if isinstance(address, str) else address
        if addr is None:
            return f"{address!r} is not an IP address"
        if self.allow_private or is_public(addr):
            return None
        if any(addr in net for net in self.allowlist if net.version == addr.version):
            return None
        return f"{addr} is not a public address (set crawl.allow_private or " \
               "crawl.private_allowlist to allow it)"
