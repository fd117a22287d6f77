"""Who may use the side port (docs/security.md): clients of the allowed networks, showing the
server's token on every route but health, the talk page's own file and the identity challenge;
browsers only from the server's own pages (or configured origins) under one of its names, which
stops cross-site WebSocket hijacking and DNS rebinding; and a bound on the WebSockets one client
address may hold."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..access import AllowList, ClientCap, tokens_match
from ..metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = frozenset({"/healthz", "/", "/api/challenge"})  # health, the talk page (no data), identity proof
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class SideAccess:
    """The side port's access rules."""

    token: str
    names: frozenset[str]  # the host names and addresses browsers may reach the server by
    http_port: int
    https_port: int | None
    origins: frozenset[str] = frozenset()  # further web origins whose pages may use it
    metrics_public: bool = False
    allow: AllowList | None = None
    sockets: ClientCap = field(default_factory=lambda: ClientCap(64))  # WebSockets per client address

    @classmethod
    def build(
        cls, token: str, names: Iterable[str], http_port: int, https_port: int | None, origins: Iterable[str] = (),
        hosts: Iterable[str] = (), metrics_public: bool = False, allow: AllowList | None = None,
        max_client_sockets: int = 64,
    ) -> SideAccess:
        """`names`: the server's own names and addresses; `hosts`, `origins`: configured ones."""
        known = frozenset(o.lower().rstrip("/") for o in origins)
        own = {n.lower() for n in (*names, *hosts)} | LOCAL_NAMES
        own |= {host for o in known if (host := urlsplit(o).hostname)}
        return cls(token, frozenset(own), http_port, https_port, known, metrics_public, allow,
                   ClientCap(max_client_sockets))

    def is_open(self, path: str) -> bool:
        return path in OPEN_PATHS or (self.metrics_public and path == "/metrics")

    def has_token(self, request: web.Request) -> bool:
        """`Authorization: Bearer TOKEN`, or `?token=` (browsers cannot set a WebSocket's headers)."""
        given = request.headers.get("Authorization", "")
        given = given.removeprefix("Bearer ") if given.startswith("Bearer ") else request.query.get("token", "")
        return bool(given) and tokens_match(given, self.token)

    def browser_problem(self, request: web.Request) -> str | None:
        """Why a request from a browser page is refused, or None (requests without an Origin
        are not from a page)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        host = urlsplit(f"//{request.host}").hostname or ""
        if host.lower() not in self.names:
            return f"this server is not reached as {host!r} from a browser (--allowed-host)"
        if origin.lower().rstrip("/") in self.origins:
            return None
        parts = urlsplit(origin)
        ports = {"http": (self.http_port, 80), "https": (self.https_port, 443)}.get(parts.scheme or "", ())
        try:
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme or "")
        except ValueError:
            port = None
        if (parts.hostname or "").lower() in self.names and port in ports:
            return None
        return f"pages of {origin} may not use this server (--allowed-origin)"


def _refuse(status: int, error: str, **headers: str) -> web.Response:
    return web.json_response({"error": error}, status=status, headers=headers)


def guard_middleware(access: SideAccess, metrics: Metrics) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if access.allow is not None and not access.allow.allows(request.remote):
            metrics.refused("http")
            return web.Response(status=403, text="this client's network is not allowed (--allow)\n",
                                headers={"Connection": "close"})
        if (problem := access.browser_problem(request)) is not None:
            metrics.refused("http-origin")
            return _refuse(403, problem)
        if not access.is_open(request.path) and not access.has_token(request):
            metrics.refused("http-token")
            return _refuse(401, "missing or wrong bearer token", **{"WWW-Authenticate": 'Bearer realm="coda"'})
        return await handler(request)

    return check


class SocketSlot:
    """One WebSocket of a client address, counted while it is open."""

    def __init__(self, access: SideAccess, request: web.Request) -> None:
        self.access, self.client = access, request.remote or ""

    def __enter__(self) -> SocketSlot:
        if not self.access.sockets.take(self.client):
            raise web.HTTPTooManyRequests(text=f"at most {self.access.sockets.limit} WebSockets per client")
        return self

    def __exit__(self, *_: object) -> None:
        self.access.sockets.give_back(self.client)
