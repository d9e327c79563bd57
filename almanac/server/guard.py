"""What stands in front of the routes: the Host check, the bearer token, HEAD as GET.

- `HostCheck`: on a loopback address the server answers only requests whose Host
  header names a loopback host (`localhost`, `127.0.0.1`, `[::1]`...). A web page
  that rebinds its own domain name to 127.0.0.1 (DNS rebinding) sends its own name
  as Host, and is refused before any route runs. Whether the server is on loopback is
  decided from the address it binds (`is_loopback_address`), however it was spelt.
- `BearerToken`: with a token, every request but the documentation and `/health`
  needs `Authorization: Bearer <token>` (the scheme in any case, RFC 7235; the token
  compared in constant time): 401 without it.
- `HeadAsGet`: HEAD is answered wherever GET is, with GET's headers and no body.

Each answers with the API's JSON error body. Pure ASGI: no request is read twice.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from almanac.server.errors import error_body

# Reachable without the token: what describes the API, and liveness for load balancers.
PUBLIC_PATHS = frozenset({"/health", "/docs", "/openapi.json"})


def is_loopback_address(address: str) -> bool:
    """Whether an IP address, as a socket reports it, is loopback: 127.0.0.0/8, ::1, or
    127.0.0.0/8 mapped into IPv6 (`::ffff:127.0.0.1`). A zone (`%lo`) is ignored."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


# The numbers-and-dots forms C's inet_aton reads: 127.1, 0x7f.1, 2130706433.
_IPV4_NUMBERS = re.compile(r"[0-9A-Fa-fXx.]+")


def _ipv4_numbers(name: str) -> str | None:
    if not _IPV4_NUMBERS.fullmatch(name):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(name))
    except OSError:
        return None


def is_loopback_name(host: str) -> bool:
    """`localhost`, `*.localhost`, or a loopback address in any spelling (127.0.0.0/8 as
    dotted or inet_aton's shorter forms, ::1, IPv4-mapped 127.0.0.0/8)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    numbers = _ipv4_numbers(name)
    return is_loopback_address(numbers if numbers is not None else name)


def binds_loopback(host: str) -> bool:
    """Whether listening on `host` binds a loopback address: the first address it resolves
    to, as `almanac serve` binds it. A host that does not resolve counts as loopback, so
    that the Host check stays on (refusing is the safe side)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return True
    return is_loopback_address(str(found[0][4][0])) if found else True


# A Host header as RFC 9110 has it: uri-host [ ":" port ], where uri-host is an IP
# literal in brackets or a reg-name. Anything else (`localhost:80@evil.com`,
# `[::1]evil.com`, `localhost:evil`) is not a host this server can be named by.
_HOST = re.compile(r"(?:\[(?P<literal>[0-9A-Za-z:.%_~-]+)\]|(?P<name>[A-Za-z0-9._~!$&'()*+,;=%-]+))"
                   r"(?::[0-9]*)?")


def _host_name(value: str) -> str | None:
    """The host part of a Host header (`[::1]:8765` → `::1`, `localhost:80` → `localhost`),
    or None when the header is not a host and port."""
    found = _HOST.fullmatch(value.strip(" \t"))
    if found is None:
        return None
    return found.group("literal") or found.group("name")


async def _refuse(send: Send, status: int, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(error_body(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class HostCheck:
    """Refuses a Host header that does not name a loopback host (400). `names`: host names
    answered besides (the name the server was told to bind, e.g. the machine's own when it
    resolves to loopback)."""

    def __init__(self, app: ASGIApp, names: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.names = frozenset(n.rstrip(".").lower() for n in names)

    def _answers(self, host: str) -> bool:
        name = _host_name(host)
        if name is None:
            return False
        return is_loopback_name(name) or name.rstrip(".").lower() in self.names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _header(scope, b"host")
            # No Host at all is HTTP/1.0 from a tool, not a browser page: let it through.
            if host is not None and not self._answers(host):
                await _refuse(send, 400, "this server answers loopback host names only "
                                         "(localhost, 127.0.0.1, [::1])")
                return
        await self.app(scope, receive, send)


class BearerToken:
    """Refuses requests without `Authorization: Bearer <token>` (401). The scheme is
    case-insensitive (RFC 7235: `bearer`, `BEARER`); the token is compared in constant time."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    def _authorized(self, value: str | None) -> bool:
        scheme, _, credentials = (value or "").strip(" \t").partition(" ")
        given = credentials.lstrip(" ").encode("latin-1")
        # Compared even when the scheme is wrong: the time taken says nothing either way.
        same = hmac.compare_digest(given, self.expected)
        return same and scheme.lower() == "bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS \
                and not self._authorized(_header(scope, b"authorization")):
            await _refuse(send, 401, "a bearer token is required (Authorization: Bearer …)",
                          [(b"www-authenticate", b'Bearer realm="almanac"')])
            return
        await self.app(scope, receive, send)


class HeadAsGet:
    """HEAD runs the GET route and sends its status and headers without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
