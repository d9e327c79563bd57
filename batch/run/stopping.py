"""Stopping a run on SIGINT or SIGTERM without losing what was finished.

cron timeouts and `systemctl stop` send SIGTERM, a terminal sends SIGINT. Inside
`catch_stops()` both raise `Stopped` in the main thread, which unwinds the run the
way an error does: the shard writer writes the rows it holds, the index commits
them, the run is recorded as interrupted and the job's lock is released. The CLI
then exits 130 (SIGINT) or 143 (SIGTERM), the shell's 128 + signal number.

A signal that arrives inside `shielded()` (a shard being written and indexed, the
run's record being written) waits for the end of that section, so a stop never
leaves half a write behind it. Only the first signal stops: repeats while the run
winds down are ignored (SIGKILL still ends it; the next run recovers).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from schemas.errors import ExitCode

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED}


class Stopped(BaseException):
    """A stop signal, raised where the main thread was. A BaseException, like
    KeyboardInterrupt: no `except Exception` on the way may swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")
        self.result: Any = None  # the interrupted run's result, when a run was going

    @property
    def exit_code(self) -> int:
        return int(EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum))


class _State:
    depth = 0  # nested catch_stops()
    shield = 0  # nested shielded()
    received: int | None = None
    raised = False
    previous: dict[int, Any] = {}


_state = _State()


def _handle(signum: int, _frame: FrameType | None) -> None:
    if _state.received is not None:
        return  # already stopping: let the run finish writing what it has
    _state.received = signum
    if _state.shield == 0:
        _state.raised = True
        raise Stopped(signum)


@contextmanager
def catch_stops() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Stopped` while inside. Re-entrant; outside the main
    thread (where Python cannot take signals) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.depth == 0:
        _state.received, _state.raised = None, False
        _state.previous = {s: signal.signal(s, _handle) for s in STOP_SIGNALS}
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0:
            for s, handler in _state.previous.items():
                signal.signal(s, handler)
            _state.previous = {}


@contextmanager
def shielded() -> Iterator[None]:
    """A section a stop must not cut in two: a signal arriving inside is raised at its end."""
    _state.shield += 1
    try:
        yield
    finally:
        _state.shield -= 1
    if _state.shield == 0 and _state.received is not None and not _state.raised \
            and _state.depth > 0:
        _state.raised = True
        raise Stopped(_state.received)


def stop_requested() -> int | None:
    """The signal that asked this process to stop, if one did."""
    return _state.received
