"""Reading the files a job names, whatever the path turns out to be.

A job file, a context file or an input may be a directory, a device (`/dev/zero`
never ends), a FIFO (a read blocks forever), not UTF-8, or far larger than any
prompt: each is refused with one line saying so, before anything is read that
could take unbounded time or memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_JOB_FILE = 16 * 1024 * 1024  # bytes of a job's TOML
MAX_CONTEXT_FILE = 64 * 1024 * 1024  # bytes of a shared context (prompts are far shorter)


class FileProblem(ValueError):
    """Why a file cannot be read, worded to follow its name ("'x' is a directory")."""


class FileMissing(FileProblem):
    pass


def check_regular(path: Path) -> os.stat_result:
    """The file's status, if it is a regular file (after symlinks); else FileProblem."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise FileMissing("does not exist") from None
    except OSError as exc:
        raise FileProblem(f"cannot be read: {exc.strerror or exc}") from None
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise FileProblem("is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file"
        raise FileProblem(f"is {kind}, not a regular file")
    return status


def read_text(path: Path, limit: int) -> str:
    """A regular file of at most `limit` bytes, decoded as UTF-8."""
    size = check_regular(path).st_size
    if size > limit:
        raise FileProblem(f"is {size:,} bytes (at most {limit:,})")
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise FileProblem(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FileProblem(f"is over {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileProblem(f"is not UTF-8 text (byte {exc.start:,}, line {line})") from None
