"""Writing where a user pointed a command (`-o PATH`, `--errors PATH`): the one rule
every writer follows, so that none can forget it.

- `-` is standard output.
- A path naming one of this process's open descriptors (`/dev/stdout`, `/dev/stderr`,
  `/dev/fd/N`, `/proc/self/fd/N`, or a symbolic link to one) is written through that
  descriptor, wherever the shell pointed it: a file opened for appending is appended to.
- An existing path that is not a regular file (a character or block device such as
  `/dev/null`, a FIFO, a symbolic link to one) is opened and written as a stream: never
  created, truncated, or replaced.
- A regular file, or a new path, is written beside itself under a temporary name,
  flushed to disk and renamed over the target: a reader sees the old file or the whole
  new one, and a failure leaves the old one as it was. A symbolic link is followed (its
  target is replaced, the link stays); the replaced file's permissions carry over.

Refused before anything is written (exit 2): a directory, a socket, a directory that
does not exist, binary output to a terminal. A failure while writing (no permission, a
read-only filesystem, a full disk) is one line naming the path (exit 1). A reader that
goes away (`| head`) surfaces as `ReaderGone`, which the front door ends quietly (exit 0).

It lives at the bottom of the room graph (stdlib and the error root only) so that every
room that writes a user's path uses it.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

from schemas.errors import UnavailableError, UsageError

STDOUT = "-"
T = TypeVar("T")

# Paths that name a descriptor of the process opening them; matched on the path as
# written (and on each symbolic link's target), before anything follows them.
_OWN_DESCRIPTOR = re.compile(r"/dev/(?:std(?P<std>out|err)|fd/(?P<fd>\d+))"
                             r"|/proc/(?P<pid>self|thread-self|\d+)/fd/(?P<pfd>\d+)")
# The path as given cannot be written (exit 2); anything else is a failure to write (exit 1).
_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENXIO, errno.EBADF,
                          errno.ELOOP, errno.ENAMETOOLONG, errno.EINVAL})
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_BUFFER = 1 << 16


class OutputPathError(UsageError):
    """The path cannot take this output as given: a directory, a socket, a missing
    directory, a terminal for binary data. Nothing was written. Exit 2."""

    title = "bad output path"


class ReaderGone(BrokenPipeError):
    """The reader of a stream output (a pipe, a FIFO) went away: it has what it wanted."""


class OutputWriteError(UnavailableError):
    """Writing the output failed: no permission, a read-only filesystem, a full disk, an
    I/O error. A file keeps what it held before (the temporary is removed). Exit 1."""

    title = "output not written"


def output_error(shown: str, exc: OSError, *,
                 stream: bool = False) -> OutputPathError | OutputWriteError:
    """An OSError met writing `shown` (e.g. "-o out.jsonl") as one line for the user."""
    reason = (os.strerror(exc.errno) if exc.errno else str(exc)).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    if exc.errno in _PATH_ERRNOS:
        return OutputPathError(f"{shown}: {reason}")
    kept = "the stream stopped short" if stream else "nothing was written under that name"
    if exc.errno in _FULL_ERRNOS:
        return OutputWriteError(f"{shown}: no space left on its device; {kept}: free some "
                                "space and run again")
    return OutputWriteError(f"{shown}: cannot write ({reason}); {kept}")


@contextmanager
def open_output(path: str | os.PathLike[str], *, option: str = "-o",
                binary: bool = False) -> Iterator[IO[Any]]:
    """A file object to write `path` by the rule above (text is UTF-8, newlines as
    written). A regular file appears under its name only when the block ends without
    an error; an error in the block leaves it as it was."""
    where = os.fspath(path)
    shown = f"{option} {where}"
    if where == STDOUT:
        sys.stdout.flush()
        out: int | BinaryIO = sys.stdout.buffer
        if binary and sys.stdout.isatty():
            raise _terminal(shown)
        with _written(_Sink(out, shown, stream=True), binary) as fh:
            yield fh
        _flush(sys.stdout.buffer, shown)
        return
    fd = _descriptor(where, shown)
    if fd is None and (fd := _stream(where, shown)) is None:
        with _replacing(Path(os.path.realpath(where)), shown, binary) as fh:
            yield fh
        return
    try:
        if binary and os.isatty(fd):
            raise _terminal(shown)
        with _written(_Sink(fd, shown, stream=True), binary) as fh:
            yield fh
    finally:
        os.close(fd)


def refuse_non_directory(path: str | os.PathLike[str], *, option: str = "-o") -> None:
    """Refuses (exit 2) a directory output that names standard output or an existing
    path that is not a directory (a file, `/dev/null`): it is never replaced. Creates
    nothing: a command checks this before its work, and creates the directory after."""
    where = os.fspath(path)
    shown = f"{option} {where}"
    if where == STDOUT:
        raise OutputPathError(f"{shown}: this output is a directory of files; name one")
    try:
        if os.path.lexists(where) and not stat.S_ISDIR(os.stat(where).st_mode):
            raise OutputPathError(f"{shown}: exists and is not a directory")
    except OSError as exc:
        raise output_error(shown, exc) from exc


def output_directory(path: str | os.PathLike[str], *, option: str = "-o") -> bool:
    """Makes sure `path` is a directory a command may fill, by `refuse_non_directory`'s
    rule, creating it (and its parents) if missing; returns whether it was created here."""
    refuse_non_directory(path, option=option)
    if os.path.isdir(path):
        return False
    try:
        os.makedirs(path)
    except OSError as exc:
        raise output_error(f"{option} {os.fspath(path)}", exc) from exc
    return True


class _Sink(io.RawIOBase):
    """Bytes to a descriptor or a binary stream; a failure names the output, a reader
    gone (EPIPE) is `ReaderGone`."""

    def __init__(self, out: int | BinaryIO, shown: str, *, stream: bool) -> None:
        super().__init__()
        self.out, self.shown, self.stream, self.abandoned = out, shown, stream, False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(memoryview(data).cast("B"))
        if self.abandoned:  # the block failed: what is still buffered goes nowhere
            return size
        try:
            if isinstance(self.out, int):
                return os.write(self.out, data)
            self.out.write(data)
            return size
        except BrokenPipeError as exc:
            raise ReaderGone(*exc.args) from exc
        except OSError as exc:
            raise output_error(self.shown, exc, stream=self.stream) from exc


@contextmanager
def _written(sink: _Sink, binary: bool) -> Iterator[IO[Any]]:
    buffered = io.BufferedWriter(sink, buffer_size=_BUFFER)
    fh: IO[Any] = buffered if binary else io.TextIOWrapper(buffered, encoding="utf-8",
                                                           newline="")
    try:
        yield fh
        fh.flush()
    except BaseException:
        sink.abandoned = True
        raise
    finally:
        with suppress(ValueError):  # closing only ends the wrappers; descriptors are ours
            fh.close()


@contextmanager
def _replacing(real: Path, shown: str, binary: bool) -> Iterator[IO[Any]]:
    tmp = real.with_name(f".{real.name}.{os.getpid()}.tmp")
    try:
        mode: int | None = os.stat(real).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise output_error(shown, exc) from exc
    fd = _call(shown, os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        try:
            if mode is not None:
                _call(shown, os.fchmod, fd, mode)
            with _written(_Sink(fd, shown, stream=False), binary) as fh:
                yield fh
            _call(shown, os.fsync, fd)
        finally:
            os.close(fd)
        _call(shown, os.replace, tmp, real)
        _call(shown, _sync_directory, real.parent)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def _call(shown: str, step: Callable[..., T], *args: Any) -> T:
    """One step on the output's file; its OSError as one line naming the output."""
    try:
        return step(*args)
    except OSError as exc:
        raise output_error(shown, exc) from exc


def _descriptor(where: str, shown: str) -> int | None:
    """A duplicate of the descriptor `where` names (`/dev/stdout`, `/proc/self/fd/3`, a
    link to one), or None if it names none of this process's."""
    here = os.path.abspath(where)
    for _ in range(40):  # the kernel's own bound on links followed
        named = _OWN_DESCRIPTOR.fullmatch(here)
        if named is not None:
            if named["pid"] not in (None, "self", "thread-self") and \
                    int(named["pid"]) != os.getpid():
                return None
            number = {"out": 1, "err": 2}.get(named["std"] or "") or int(named["fd"] or
                                                                           named["pfd"])
            for stream in (sys.stdout, sys.stderr):
                with suppress(OSError, ValueError, AttributeError):
                    if stream.fileno() == number:
                        stream.flush()
            try:
                return os.dup(number)
            except OSError as exc:
                raise OutputPathError(f"{shown}: descriptor {number} is not open") from exc
        try:
            link = os.readlink(here)
        except OSError:
            return None
        here = os.path.abspath(os.path.join(os.path.dirname(here), link))
    return None


def _stream(where: str, shown: str) -> int | None:
    """The path opened for writing as it is, if it exists and is not a regular file;
    None for a regular file or a new path (written beside, then renamed)."""
    try:
        mode = os.stat(where).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise output_error(shown, exc) from exc
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        raise OutputPathError(f"{shown}: is a directory; name a file")
    if stat.S_ISSOCK(mode):
        raise OutputPathError(f"{shown}: is a socket, which cannot be written as a file")
    try:
        return os.open(where, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise output_error(shown, exc, stream=True) from exc


def _terminal(shown: str) -> OutputPathError:
    return OutputPathError(f"{shown}: is a terminal, and this output is binary; "
                           "redirect it, or name a file")


def _flush(out: BinaryIO, shown: str) -> None:
    try:
        out.flush()
    except BrokenPipeError as exc:
        raise ReaderGone(*exc.args) from exc
    except OSError as exc:
        raise output_error(shown, exc, stream=True) from exc


def _sync_directory(directory: Path) -> None:
    """The rename made durable (where the platform lets a directory be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # a filesystem that cannot sync one
            raise
    finally:
        os.close(fd)
