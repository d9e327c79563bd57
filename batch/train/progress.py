"""A training's progress on stderr: a bar with the step, the loss and the time left on a
terminal; otherwise a log line at the first step and every few seconds after (cron)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class TrainProgress:
    def __init__(self, label: str, *, interval: float = 10.0, stream: TextIO | None = None) -> None:
        self.label, self.interval = label, interval
        self.stream = stream if stream is not None else sys.stderr
        self.total = self.step = self.first = 0
        self.loss: float | None = None
        self._bar: Any = None
        self._began = self._last = 0.0

    def start(self, total: int, done: int = 0) -> None:
        self.total, self.step, self.first = total, done, done
        self._began = self._last = time.monotonic()
        if done:
            self._line(f"resuming from step {done}")
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, desc=self.label, unit="step",
                             file=self.stream, leave=False, dynamic_ncols=True)

    def update(self, step: int, loss: float | None = None) -> None:
        moved, self.step = step - self.step, step
        if loss is not None:
            self.loss = loss
        if self._bar is not None:
            if self.loss is not None:
                self._bar.set_postfix(loss=f"{self.loss:.4f}", refresh=False)
            self._bar.update(moved)
            return
        now = time.monotonic()
        if step == self.first + 1 or now - self._last >= self.interval:
            self._last = now
            self._line(self.status(now))

    def status(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        rate = (self.step - self.first) / max(now - self._began, 1e-9)
        left = (self.total - self.step) / rate if rate > 0 else None
        loss = f", loss {self.loss:.4f}" if self.loss is not None else ""
        eta = f", {left:.0f} s left" if left is not None else ""
        return f"step {self.step}/{self.total}{loss} ({rate:.2f} steps/s{eta})"

    def note(self, text: str) -> None:
        """A line between the bar's updates (the evaluation, the save)."""
        if self._bar is not None:
            self._bar.write(f"{self.label}: {text}", file=self.stream)
        else:
            self._line(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _line(self, text: str) -> None:
        print(f"{self.label}: {text}", file=self.stream, flush=True)
