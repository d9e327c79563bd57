"""Cutting text for narrow cells without losing what tells rows apart.

A job's candidates often share a long beginning (`almanac/fruit-specialist`, and the
same model with one adapter or another), and its prompts a few-shot prefix: cut from the
right, every row reads the same. These keep the part that differs: an adapter's name
before its base's, and a prompt's own part after the prefix its page shares.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tui.format import clip

ELLIPSIS = "…"
# Where a shared prompt prefix may end: after a line, a space or punctuation, so that a
# row's own word is never cut in two ("peach: drupe⏎" + "plum:", not "p" + "lum:").
_BOUNDARY = re.compile(r"[\s.,;:!?)\]}>|/\\-]")


def tail(text: str, width: int) -> str:
    """The end of `text` in `width` characters, an ellipsis in front if cut."""
    flat = clip(text, len(text) + 1)  # one line, newlines as ⏎
    return flat if len(flat) <= width else ELLIPSIS + flat[len(flat) - width + 1:]


def _name(ref: str) -> str:
    """A model or adapter reference's own name: a Hub id or a directory without what
    comes before its last `/`."""
    return ref.rstrip("/").rsplit("/", 1)[-1] or ref


def _shared_name_start(names: Iterable[str]) -> int:
    """How many leading characters `names` share up to a word's end in each (the next
    character a boundary, or none): `tiny-generalist` and `tiny-generalist-fruit-lora`
    share 15; 0 for fewer than two names."""
    found = list(dict.fromkeys(names))
    if len(found) < 2:
        return 0
    first, last = min(found), max(found)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    while n > 0 and not all(len(x) == n or _BOUNDARY.match(x[n]) for x in found):
        n -= 1
    return n


def _by_parts(labels: list[str], width: int) -> dict[str, str]:
    """`base+adapter` as their names: organisations and directories dropped, and of an
    adapter's name what it shares with the other adapters' and its base's (`…`); the
    adapter's part kept whole before the base's."""
    parts = {label: label.partition("+")[::2] for label in labels}
    adapters = {_name(a) for _, a in parts.values() if a}
    bases = {_name(b) for b, a in parts.values() if a}
    start = max(_shared_name_start(adapters), _shared_name_start(adapters | bases))
    out = {}
    for label, (base, adapter) in parts.items():
        if not adapter:
            out[label] = clip(_name(base), width)
            continue
        name = _name(adapter)
        rest = name[start:].lstrip("-_.: ")
        own = "+" + (ELLIPSIS + rest if start and rest else name)
        room = width - len(own)
        out[label] = clip(_name(base), room) + own if room >= 5 else "+" + tail(own[1:], width - 1)
    return out


def short_labels(labels: Iterable[str], width: int) -> dict[str, str]:
    """Each candidate label in at most `width` characters, told apart from the others
    where cutting allows: whole when all fit; else by the models' and adapters' own names
    (see `_by_parts`); else by their ends; else cut as any text is."""
    found = list(dict.fromkeys(labels))
    if all(len(label) <= width for label in found):
        return {label: label for label in found}
    for short in (_by_parts(found, width), {label: tail(label, width) for label in found}):
        if len(set(short.values())) == len(found):
            return short
    return {label: clip(label, width) for label in found}


def shared_prefix(texts: Iterable[str | None], *, at_least: int = 8) -> str:
    """The beginning every one of `texts` shares (given at least two that differ), ended
    at a boundary; "" if that is shorter than `at_least`."""
    distinct = {t for t in texts if t}
    if len(distinct) < 2:
        return ""
    first, last = min(distinct), max(distinct)  # what these two share, all share
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    while n > 0 and not _BOUNDARY.match(first[n - 1]):
        n -= 1
    return first[:n] if n >= at_least else ""


def own_part(text: str | None, prefix: str, width: int) -> str:
    """`text` cut to `width`, its `prefix` (when it has it) shown as an ellipsis."""
    if text is None:
        return ""
    if not prefix or not text.startswith(prefix) or len(text) == len(prefix):
        return clip(text, width)
    return ELLIPSIS + clip(text[len(prefix):], width - 1)
