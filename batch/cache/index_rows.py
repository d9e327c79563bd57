"""The plain records the prediction index answers with (batch.cache.index), and how a
content address is stored in it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from schemas.jsonable import jsonable

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def key_in(key: str) -> bytes | str:
    """A key as the index stores it: a SHA-256 in lowercase hex as its 32 bytes (half the
    room), anything else (a failure's key, a hand-made one) as the text it is."""
    return bytes.fromhex(key) if _SHA256_HEX.fullmatch(key) else key


def key_out(stored: bytes | str) -> str:
    return stored.hex() if isinstance(stored, bytes) else stored


def key_prefix(stored: bytes | str) -> bytes | str:
    """What the index by key holds of a stored key (`substr(key, 1, 8)`): 8 bytes of a
    SHA-256 tell one from another among billions."""
    return stored[:8]


MIN_PREFIX = 8  # the fewest characters of a key a lookup takes for the whole key
_HEX = re.compile(r"[0-9a-fA-F]+")


def prefix_ranges(prefix: str) -> list[tuple[bytes | str, bytes | str | None]]:
    """The ranges of the index by key (`substr(key, 1, 8)`, from `lo` up to `hi`, None: no
    end) that hold every stored key beginning with `prefix`: among the SHA-256 keys (bytes)
    for a hex prefix, and among the keys stored as text (a failure's, a hand-made one)."""
    ranges: list[tuple[bytes | str, bytes | str | None]] = []
    if _HEX.fullmatch(prefix):
        whole = bytes.fromhex(prefix[: len(prefix) // 2 * 2].lower())[:8]
        ranges.append((whole, _successor(whole)))
    text = prefix[:8]
    ranges.append((text, text[:-1] + chr(ord(text[-1]) + 1)))
    return ranges


def _successor(prefix: bytes) -> bytes | None:
    """The least byte string greater than every one beginning with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None


def begins(key: str, prefix: str) -> bool:
    """Whether the key (as `key_out` gives it) begins with `prefix`, hex in either case."""
    return key.startswith(prefix.lower() if _HEX.fullmatch(prefix) else prefix)


@dataclass(frozen=True)
class Located:
    """Where one record lives: row `row` of shard `shard` of `job`, the index's flag of
    failure (the record's `error IS NOT NULL`) and the candidate that made it."""

    job: str
    input_id: str
    key: str
    shard: str
    row: int
    failed: bool
    candidate: str


@dataclass(frozen=True)
class CandidateInfo:
    """One of a job's current candidates, as its last run named it."""

    label: str
    model: str
    revision: str | None
    adapter: str | None
    adapter_revision: str | None
    ordinal: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShardEntry:
    """What the index recorded of one shard when it was written."""

    name: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class JobInfo:
    job: str
    rows: int  # latest records of the job's current candidates
    failed: int  # of those, how many failed
    shards: int
    bytes: int
    last_written: datetime | None

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass(frozen=True)
class CandidateSummary:
    """One current candidate of a job, with its latest records and failures."""

    label: str
    model: str
    revision: str | None
    adapter: str | None
    adapter_revision: str | None
    ordinal: int
    rows: int
    failed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
