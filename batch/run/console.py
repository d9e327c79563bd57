"""Almanac's own lines on the terminal; the engine's output in a log file.

vLLM, torch, transformers and Ray write to the process's stderr and stdout from Python
(logging, warnings, tqdm bars) and from native code, which writes straight to file
descriptor 2. So hiding them takes the descriptors themselves: while a run's engine
works, `engine_output` points descriptors 1 and 2 at the run's log file
(`logs/<job>-<run>.log` in the home), and Almanac's own lines (the progress bar, its
log lines) go to `console()`, a stream on the real stderr kept aside. Child processes
the engine starts meanwhile inherit the log file too.

The front door decides (`configure`): quiet with a logs directory (the CLI's default),
or verbose (`-v`: nothing captured, everything on the terminal, as for a library caller
that configured nothing). A failure inside leaves its traceback in the log and reaches
the terminal as one line naming the log; a crash in native code still prints Python's
fatal-error report on the terminal (faulthandler).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TextIO

from schemas.errors import AlmanacError

__all__ = ["ConsoleHandler", "EngineFailed", "EngineOutput", "configure", "console",
           "last_log", "log_path", "set_verbose"]


class EngineFailed(AlmanacError):
    """Something failed while the engine's output was kept in a log: the reason in one
    line, the traceback and the engine's own account in the log it names."""

    title = "engine failed"


@dataclass
class _State:
    logs: Path | None = None  # quiet: where each run's engine log goes; None: not captured
    verbose: bool = False
    console: TextIO | None = None  # the real stderr while the descriptors point at a log
    last: Path | None = None  # the log file the latest capture wrote to


_state = _State()


def configure(logs: Path | None, *, verbose: bool = False) -> None:
    """Quiet (the engine's output in `logs`), or verbose: the engine on the terminal.
    `configure(None)` is where a process starts: nothing captured."""
    _state.logs, _state.verbose, _state.last = logs, verbose, None


def set_verbose() -> None:
    _state.verbose = True


def console() -> TextIO:
    """Where Almanac's own lines go now: the terminal's stderr, even while the engine's
    output is captured."""
    return _state.console if _state.console is not None else sys.stderr


def log_path(job: str, run_id: str) -> Path | None:
    """The log a run's engine output goes to, or None when it is not captured."""
    if _state.logs is None or _state.verbose:
        return None
    return _state.logs / f"{job}-{run_id}.log"


class EngineOutput:
    """Sends file descriptors 1 and 2 to `target` (appended to) while inside; Almanac's
    own lines keep the terminal through `console()`. With no target, or inside another
    capture, nothing changes. After it, `path` is the log if anything was written to it
    (an empty one is removed)."""

    def __init__(self, target: Path | None) -> None:
        self.target = target
        self.path: Path | None = None
        self._saved: tuple[int, int] | None = None
        self._faults = False

    def __enter__(self) -> EngineOutput:
        if self.target is None or _state.console is not None:
            return self
        self.target.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _flush()
        self._saved = os.dup(1), os.dup(2)
        terminal = os.fdopen(os.dup(self._saved[1]), "w", buffering=1, encoding="utf-8",
                             errors="backslashreplace")
        self._faults = faulthandler.is_enabled()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        _state.console, _state.last = terminal, self.target
        faulthandler.enable(file=terminal)  # a native crash's report still reaches the terminal
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._saved is None or self.target is None:
            return
        failed = exc is not None and isinstance(exc, Exception) and \
            not isinstance(exc, AlmanacError)
        if failed:
            # The traceback is kept in the log, beside the engine's own account of it.
            traceback.print_exception(kind, exc, tb)
        _flush()
        terminal = console()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._saved = None
        _state.console = None
        if self._faults:
            faulthandler.enable(file=sys.stderr)
        else:
            faulthandler.disable()
        terminal.close()
        with contextlib.suppress(OSError):
            if self.target.stat().st_size == 0:
                self.target.unlink()
        self.path = self.target if self.target.exists() else None
        if failed:
            reason = str(exc).strip().splitlines()
            raise EngineFailed(f"{type(exc).__name__}: {reason[0] if reason else 'no reason'}"
                               f" (the traceback and the engine's log: {self.target})") from exc


def last_log() -> Path | None:
    """The log the latest capture wrote to (an engine closing appends to it)."""
    return _state.last


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A logging handler writing to `console()` as it is at each record."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return console()

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the console of the moment
