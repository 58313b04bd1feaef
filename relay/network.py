"""Who is the client: the peer, or the address a trusted proxy says it forwarded for.

``X-Forwarded-For`` and ``Forwarded`` are believed only when the direct peer is one of
``server.trusted_proxies``; anyone else could write them. Walking the list from the right
(the hop nearest relay), trusted proxies are skipped and the first other address is the
client, so a client cannot spoof itself in by sending its own header to the proxy.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping

from relay.configtypes import IPNetwork

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_FORWARDED_FOR = re.compile(r'(?i)(?:^|[;,\s])for=("?)\[?([^;,"\]]+)\]?(?::\d+)?\1')


@functools.lru_cache(maxsize=4096)  # every request parses its peer: most peers come back
def parse_address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: Address | None, networks: Iterable[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in networks)


def _hops(headers: Mapping[str, str]) -> list[str]:
    """The forwarded-for chain, leftmost (original client) first."""
    forwarded = headers.get("Forwarded")
    if forwarded:
        return [match.group(2) for match in _FORWARDED_FOR.finditer(forwarded)]
    chain = headers.get("X-Forwarded-For", "")
    return [hop.strip() for hop in chain.split(",") if hop.strip()]


def client_address(
    peer: str | None, headers: Mapping[str, str], trusted: tuple[IPNetwork, ...]
) -> str | None:
    """The client's address as text: see the module docstring."""
    address = parse_address(peer)
    if not trusted or not within(address, trusted):
        return str(address) if address is not None else peer
    for hop in reversed(_hops(headers)):
        hop_address = parse_address(hop)
        if hop_address is None:
            break  # garbage in the chain: stop believing it, keep the last good hop
        address = hop_address
        if not within(address, trusted):
            break
    return str(address) if address is not None else peer
