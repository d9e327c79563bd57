"""What stands in front of the routes: the Host check, the bearer token, HEAD as GET.

- `HostCheck`: on a loopback address the server answers only requests whose Host
  header names a loopback host (`localhost`, `127.0.0.1`, `[::1]`...). A web page
  that rebinds its own domain name to 127.0.0.1 (DNS rebinding) sends its own name
  as Host, and is refused before any route runs.
- `BearerToken`: with a token, every request but the documentation and `/health`
  needs `Authorization: Bearer <token>` (compared in constant time): 401 without it.
- `HeadAsGet`: HEAD is answered wherever GET is, with GET's headers and no body.

Each answers with the API's JSON error body. Pure ASGI: no request is read twice.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from almanac.server.errors import error_body

# Reachable without the token: what describes the API, and liveness for load balancers.
PUBLIC_PATHS = frozenset({"/health", "/docs", "/openapi.json"})


def is_loopback_name(host: str) -> bool:
    """`localhost`, `*.localhost`, or a loopback address (127.0.0.0/8, ::1)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """The host part of a Host header: `[::1]:8765` → `::1`, `localhost:80` → `localhost`."""
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


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
    """Refuses a Host header that does not name a loopback host (400)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _header(scope, b"host")
            # No Host at all is HTTP/1.0 from a tool, not a browser page: let it through.
            if host is not None and not is_loopback_name(_host_name(host)):
                await _refuse(send, 400, "this server answers loopback host names only "
                                         "(localhost, 127.0.0.1, [::1])")
                return
        await self.app(scope, receive, send)


class BearerToken:
    """Refuses requests without `Authorization: Bearer <token>` (401)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            given = (_header(scope, b"authorization") or "").encode("latin-1")
            if not hmac.compare_digest(given, self.expected):
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
