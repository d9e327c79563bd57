"""uvicorn's h11 protocol with a deadline and a size bound for the request head.

uvicorn times out idle keep-alive connections, but a client that sends its request
line and headers a byte at a time (slowloris) holds a connection, and a worker's
file descriptor, for as long as it likes. Here each request's head must arrive
within `header_timeout` seconds of the connection opening or of the previous
response: otherwise the client gets a 408 and the connection is closed.

h11 bounds only a head still incomplete in its buffer: one that arrives whole in
one read passes at any size. Here a head (request line and headers, up to the blank
line) over `MAX_HEAD` bytes gets a 431 and the connection is closed, however it
arrived.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from almanac.server.errors import error_body
from almanac.server.limits import HEADER_TIMEOUT, MAX_HEAD

# The blank line ending a head, as h11 reads it (a bare LF is taken for CRLF).
_HEAD_END = re.compile(rb"\r?\n\r?\n")


def _closing_response(status: int, reason: bytes, message: str) -> bytes:
    body = json.dumps(error_body(status, message)).encode()
    return (b"HTTP/1.1 " + str(status).encode() + b" " + reason +
            b"\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


def _timeout_response() -> bytes:
    return _closing_response(408, b"Request Timeout", "the request head did not arrive in time")


def _head_size(pending: bytes) -> int:
    """The bytes of the head at the start of `pending` (all of them while it is unfinished);
    blank lines before a request line are not part of it."""
    start = len(pending) - len(pending.lstrip(b"\r\n"))
    end = _HEAD_END.search(pending, start)
    return (end.end() if end else len(pending)) - start


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def handle_events(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            pending, _ = self.conn.trailing_data  # what h11 holds, not yet parsed
            if _head_size(pending) > MAX_HEAD:
                self._disarm()
                self.transport.write(_closing_response(
                    431, b"Request Header Fields Too Large",
                    f"the request line and headers are over {MAX_HEAD // 1024} KiB"))
                self.transport.close()
                return
        super().handle_events()
        # The head is in once h11 has moved past waiting for it.
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request's head: same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.transport.write(_timeout_response())
        self.transport.close()


def protocol_with_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class with its own deadline (uvicorn takes a class, not an instance)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
