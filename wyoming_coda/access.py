"""Which clients may connect: an allow-list of networks for the Wyoming port and the HTTP side
port (`server.allow`, `--allow CIDR`). The Wyoming protocol has no authentication, so by default
only the machine itself and private networks get in — a port forwarded to the internet by
mistake is not an open door."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

_LOGGER = logging.getLogger(__name__)

PRIVATE_NETWORKS = (
    "127.0.0.0/8", "::1/128",  # this machine
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",  # private LANs
    "169.254.0.0/16", "fe80::/10",  # link-local
    "100.64.0.0/10",  # carrier-grade NAT, also used by VPN meshes such as Tailscale
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network(value: str) -> Network:
    """A CIDR network (a bare address is a /32 or /128); ValueError when it is not one."""
    return ipaddress.ip_network(value.strip(), strict=False)


class AllowList:
    """The client networks let in; the others are refused (and each address logged once)."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks = [network(n) for n in networks]
        self._logged: set[str] = set()

    def allows(self, host: str | None) -> bool:
        """Whether a client at `host` may connect (no address, as on a unix socket: yes)."""
        if not host:
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.networks):
            return True
        if host not in self._logged and len(self._logged) < 1000:
            self._logged.add(host)
            _LOGGER.warning("Refused a client at %s: not in the allowed networks (--allow)", host)
        return False
