"""Score against cost, drawn with plotext: the same drawing on a terminal (`compare
--plot`, the plotext module) and in the TUI (a textual-plotext `Plot`, which exposes
plotext's figure API). Nothing here imports either: the caller hands its figure in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batch.score.compare import CandidateComparison

COST_AXIS = "USD per 1,000 rows"


def draw(plt: Any, entries: Sequence[CandidateComparison],
         names: Mapping[str, str] | None = None) -> str:
    """Draw `entries` on `plt` (its data cleared first): a point per candidate with a
    score and a cost, the Pareto front joined by a line; without any cost, the scores
    as bars. Each score stands on its 95% interval, a vertical line from its low to its
    high end. `names`: how to call each candidate (by label) where space is short; its
    label otherwise. Returns what the chart could not show, or ""."""
    names = names or {}
    plt.clear_data()
    metric = next((e.metric for e in entries if e.metric), None) or "score"
    scored = [e for e in entries if e.score is not None]
    priced = [e for e in scored if e.cost_per_1k is not None]
    if not scored:
        plt.title("nothing scored yet: add [score] to the job and run `almanac score JOB_FILE`")
        return "nothing scored yet"
    if not priced:
        plt.bar([names.get(e.label, e.label) for e in scored], [e.score for e in scored])
        _intervals(plt, [(i, e) for i, e in enumerate(scored, start=1)])  # bars stand at 1…n
        plt.title(f"{metric} (no cost known: state a price with --usd-per-hour or [cost] usd_per_hour)")
        plt.ylabel(metric)
        plt.ylim(0, 1)
        return "no cost known"
    front = sorted((e for e in priced if e.pareto), key=lambda e: e.cost_per_1k or 0.0)
    if len(front) > 1:
        plt.plot([e.cost_per_1k for e in front], [e.score for e in front], color="gray")
    _intervals(plt, [(e.cost_per_1k or 0.0, e) for e in priced])
    for e in priced:
        plt.scatter([e.cost_per_1k], [e.score], marker="o",
                    label=f"{names.get(e.label, e.label)}{' *' if e.pareto else ''}")
    plt.title(f"{metric} against cost (* on the quality/cost front)")
    plt.xlabel(COST_AXIS)
    plt.ylabel(metric)
    plt.ylim(0, 1)
    plt.xlim(0, max(e.cost_per_1k or 0.0 for e in priced) * 1.1 or 1.0)  # cost from zero
    missing = len(scored) - len(priced)
    return f"{missing} scored candidate(s) without a cost are not drawn" if missing else ""


def _intervals(plt: Any, at: Sequence[tuple[float, CandidateComparison]]) -> None:
    """Each candidate's 95% interval as a vertical line at `x`, drawn before the points
    so that a point stays visible on its line."""
    for x, e in at:
        if e.ci_low is not None and e.ci_high is not None:
            plt.plot([x, x], [e.ci_low, e.ci_high], marker="│", color="gray")
