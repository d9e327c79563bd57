"""A run's progress on stderr (batch.run.console's stream, which keeps the terminal while
the engine's output goes to its log): one bar on a terminal, a line every few seconds
otherwise (cron). Both say rows done of the total, rows/s, output tokens/s and the time
left, counted from the first answer, so an engine's start does not dilute the rates."""

from __future__ import annotations

import time
from typing import Any

from batch.run.console import console

INTERVAL_S = 5.0  # between two lines without a terminal
# tqdm puts ", " before the postfix (the rates) itself.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} rows{postfix}, ETA {remaining}"


class Progress:
    def __init__(self, total: int, label: str, *, interval: float = INTERVAL_S) -> None:
        self.total, self.label, self.interval = total, label, interval
        self.done = self.tokens = 0
        self._bar: Any = None
        self._first: float | None = None  # when the first answer came
        self._last = 0.0
        self._paused: float | None = None  # since when no engine has been answering
        self._paused_s = 0.0
        self._closed = False

    def pause(self) -> None:
        """An engine is done; the time until the next one answers (its start) is not
        counted in the rates."""
        if self._first is not None and self._paused is None:
            self._paused = time.monotonic()

    def update(self, rows: int, output_tokens: int = 0, *, answered: bool = True) -> None:
        """Count rows written (`answered`: by the engine; rows refused before it are
        counted without starting the clock)."""
        self.done += rows
        self.tokens += output_tokens
        now = time.monotonic()
        if self._paused is not None and answered:
            gap = now - self._paused
            self._paused, self._paused_s = None, self._paused_s + gap
            if self._bar is not None:
                self._bar.start_t += gap  # tqdm's own clock, for its time left
        if self._first is None:
            if not answered:
                return
            self._first = self._last = now
            stream = console()
            if stream.isatty():
                from tqdm import tqdm

                # smoothing=0: the time left from the average since the first answer,
                # the rates' own basis.
                self._bar = tqdm(total=self.total, initial=self.done, desc=self.label,
                                 file=stream, leave=False, smoothing=0, bar_format=BAR_FORMAT,
                                 dynamic_ncols=True)
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._rates(now), refresh=False)
            self._bar.update(rows)
            return
        if now - self._last >= self.interval:
            self._last = now
            print(f"{self.label}: {self.done:,}/{self.total:,} rows, {self._rates(now)}, "
                  f"ETA {self._eta(now)}", file=console(), flush=True)

    def _elapsed(self, now: float) -> float:
        return now - (self._first or now) - self._paused_s

    def _rates(self, now: float) -> str:
        elapsed = max(self._elapsed(now), 1e-9)
        return f"{self.done / elapsed:,.1f} rows/s, {self.tokens / elapsed:,.0f} output tokens/s"

    def _eta(self, now: float) -> str:
        elapsed = self._elapsed(now)
        if not self.done or elapsed <= 0:
            return "?"
        left = (self.total - self.done) * elapsed / self.done
        minutes, seconds = divmod(round(left), 60)
        return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"

    def close(self) -> None:
        if self._bar is not None and not self._closed:
            self._bar.close()
        self._closed = True
