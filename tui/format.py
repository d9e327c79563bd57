"""Short, fixed-width renderings of numbers, times and text for table cells.

Times are absolute UTC, never "3 minutes ago": what a screen shows then
depends only on the data, which keeps snapshots and captures stable.
"""

from __future__ import annotations

from datetime import UTC, datetime

from catalog.sizes import format_params

__all__ = ["clip", "count", "counted", "duration", "params", "rate", "when"]


def params(n: int | None) -> str:
    return "" if n is None else format_params(n)


def count(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def counted(n: int | None, noun: str) -> str:
    """`1 record`, `2 records`, `1,204 models`."""
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def rate(tokens_per_s: float | None, decimals: int = 1) -> str:
    return "" if tokens_per_s is None else f"{tokens_per_s:,.{decimals}f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def when(at: datetime | None) -> str:
    if at is None:
        return ""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def clip(text: str | None, width: int) -> str:
    """One line of at most `width` characters: newlines shown as ⏎, an ellipsis if cut."""
    if text is None:
        return ""
    flat = text.replace("\r\n", "\n").replace("\n", "⏎")
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"
