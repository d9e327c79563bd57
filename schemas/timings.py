"""Seconds per step, for the reports of commands that time their own steps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StepTimings:
    """A report's `timed(step)`: adds the seconds spent inside to `self.timings[step]`.
    The report declares `timings: dict[str, float]` itself, where its fields are in order."""

    timings: dict[str, float]

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - began
