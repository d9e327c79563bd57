"""One lock per job, so cron can start a run while the last one is still going."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from schemas.errors import AlmanacError, ExitCode, UnavailableError


class JobLockedError(AlmanacError, RuntimeError):
    exit_code = ExitCode.LOCKED
    title = "locked"

    def __init__(self, job: str, holder: str) -> None:
        super().__init__(f"job {job!r} is locked by another run ({holder}); nothing was written")
        self.job = job


class LockUnavailableError(UnavailableError):
    """The job's lock file cannot be made or opened (`locks/` read-only, or not a
    directory): nothing was done. Exit 1."""

    def __init__(self, job: str, path: Path, exc: OSError) -> None:
        why = f"{path.parent.name}/ is not a directory" if path.parent.exists() \
            and not path.parent.is_dir() else exc.strerror or str(exc)
        super().__init__(f"job {job!r}: cannot take its lock {path} ({why}); "
                         "nothing was written")
        self.job = job


class JobLock:
    """An flock on `locks/<job>.lock`: released by the kernel even after `kill -9`."""

    def __init__(self, locks_dir: Path, job: str) -> None:
        self.path = locks_dir / f"{job}.lock"
        self.job = job
        self._fd: int | None = None
        try:
            locks_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, or a file in its place
            raise LockUnavailableError(job, self.path, exc) from None

    def __enter__(self) -> JobLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockUnavailableError(self.job, self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JobLockedError(self.job, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
