"""Which clients may connect, and what they must show: an allow-list of networks for the Wyoming
port and the HTTP side port (`server.allow`, `--allow CIDR`; the Wyoming protocol has no
authentication, so by default only the machine itself and private networks get in — a port
forwarded to the internet by mistake is not an open door), and the server's token (kept in the
data directory, mode 0600), proofs made with it, and private files and folders."""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


# -- the server's token ---------------------------------------------------------------------------

TOKEN_FILE = "http-token"
PROOF_MAX_AGE = 300.0  # seconds a context proof stays valid (clocks of the two machines may differ)


def private_dir(path: Path) -> Path:
    """`path` as a directory only this user can enter (0700), made when missing."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file only this user can read (0600) from its first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    path.chmod(0o600)


def server_token(configured: str | None, token_file: str | None, data_dir: Path) -> tuple[str, Path | None]:
    """The token every client of the side port must show: the configured one, else the one in
    `token_file` (default `<data_dir>/http-token`), made with a random token on first start.
    Returns the token and the file it is kept in (None when configured directly)."""
    if configured:
        return configured, None
    path = Path(token_file).expanduser() if token_file else data_dir / TOKEN_FILE
    if path.is_file() and (token := path.read_text(encoding="utf-8").strip()):
        if len(token) < 8:
            raise ValueError(f"the token in {path} is shorter than 8 characters")
        path.chmod(0o600)
        return token, path
    private_dir(path.parent)
    write_private(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip(), path


def tokens_match(given: str, token: str) -> bool:
    """Compare in constant time."""
    return hmac.compare_digest(given.encode(), token.encode())


def proof(token: str, *parts: str) -> str:
    """HMAC-SHA256 of `parts` under the token: shows the token is held without sending it."""
    return hmac.new(token.encode(), "\n".join(parts).encode(), hashlib.sha256).hexdigest()


class ClientCap:
    """At most `limit` open connections per client address (both ports count their own)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: collections.Counter[str] = collections.Counter()

    def take(self, client: str) -> bool:
        """Count one more connection of `client`; False (nothing counted) when it holds `limit`."""
        if self._open[client] >= self.limit:
            return False
        self._open[client] += 1
        return True

    def give_back(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


def _request_parts(text: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    return text, str(context.get("user_id") or ""), str(context.get("conversation_id") or "")


def sign_request(token: str, text: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """`context` with the proof a handle request carries: the time, and the HMAC of the time, the
    text, the user id and the conversation id under the token (as the Coda integration signs)."""
    stamp = str(time.time())
    return {**context, "proof_time": stamp, "proof": proof(token, stamp, *_request_parts(text, context))}


def request_proven(token: str, text: str, context: Mapping[str, Any]) -> bool:
    """Whether a handle request's context proves the token (see `sign_request`)."""
    return check_timed_proof(token, context.get("proof"), context.get("proof_time"), *_request_parts(text, context))


def check_timed_proof(token: str, given: object, stamp: object, *parts: str) -> bool:
    """Whether `given` is the proof of (`stamp`, *parts) under the token, made within
    PROOF_MAX_AGE seconds of now (`stamp`: Unix seconds, as text or a number)."""
    try:
        age = abs(time.time() - float(stamp))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return isinstance(given, str) and age <= PROOF_MAX_AGE and tokens_match(given, proof(token, str(stamp), *parts))


_USER_ID = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")


def is_user_id(value: object) -> bool:
    """Whether `value` is a user id a client may give: an opaque key, never part of a path."""
    return isinstance(value, str) and _USER_ID.fullmatch(value) is not None
