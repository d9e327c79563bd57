"""The arithmetic of a comparison: a mean with its seeded bootstrap interval, and the
Pareto front of quality against cost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SEED = 0
RESAMPLES = 2000
LEVEL = 0.95
# Resampled values held at once by the row-resampling path: bounds memory for big jobs.
CELLS = 4_000_000
# Up to this many distinct values, resample counts of each value (a multinomial draw)
# instead of rows: the same bootstrap distribution, at a cost independent of the rows.
FEW_LEVELS = 64


@dataclass(frozen=True)
class Estimate:
    n: int
    mean: float | None
    low: float | None
    high: float | None


def mean_interval(values: Sequence[float], *, seed: int = SEED, resamples: int = RESAMPLES,
                  level: float = LEVEL) -> Estimate:
    """The mean of `values` and a percentile bootstrap interval over them (rows drawn
    with replacement, `resamples` times, from a generator seeded with `seed`): the same
    values always give the same interval."""
    data = np.asarray(values, dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return Estimate(0, None, None, None)
    mean = float(data.mean())
    if n == 1:
        return Estimate(1, mean, mean, mean)
    rng = np.random.default_rng(seed)
    levels, counts = np.unique(data, return_counts=True)
    if levels.size <= FEW_LEVELS:
        draws = rng.multinomial(n, counts / n, size=resamples)
        means = draws @ levels / n
    else:
        means = np.empty(resamples)
        step = max(1, CELLS // n)
        for start in range(0, resamples, step):
            stop = min(resamples, start + step)
            rows = rng.integers(0, n, size=(stop - start, n))
            means[start:stop] = data[rows].mean(axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    # The interval holds the mean: floating sums of many resamples can land a hair outside.
    return Estimate(n, mean, min(float(low), mean), max(float(high), mean))


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[bool | None]:
    """For each (score, cost): True on the front (no other point scores at least as well
    for at most the cost, and better in one), False when dominated, None when the score
    or the cost is unknown (such a point can be neither)."""
    known = [(i, s, c) for i, (s, c) in enumerate(points) if s is not None and c is not None]
    out: list[bool | None] = [None] * len(points)
    for i, score, cost in known:
        out[i] = not any(s >= score and c <= cost and (s > score or c < cost)
                         for j, s, c in known if j != i)
    return out
