"""Progress on stderr: a bar on a terminal, a log line every few seconds otherwise (cron)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, *, interval: float = 10.0) -> None:
        self.total, self.label, self.interval = total, label, interval
        self.done = 0
        self._bar = None
        self._began = self._last = time.monotonic()
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="row", file=sys.stderr, leave=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            rate = self.done / max(now - self._began, 1e-9)
            print(f"{self.label}: {self.done}/{self.total} rows ({rate:.1f} rows/s)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
