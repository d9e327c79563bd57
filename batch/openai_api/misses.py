"""`predictions/misses.db`: requests the OpenAI endpoints could not answer from the cache,
kept as the next run's work. Its schema, its connections and every query on it.

A miss is one distinct request: (model, adapter, prompt or messages, sampling) as the
catalog names them, keyed like a request (batch.run.keys.request_key, with the
catalog references in place of the identities), so a request asked a thousand times
is one row, counted, with when it was first and last asked. Its `body` is the
request's own (without `model` and the streaming fields): what an OpenAI batch line
carries, so `almanac misses run` hands the runner the very body that was asked.

The store is bounded: at most `max_rows` misses, and none whose body is over
`max_bytes`. What is over the bounds is answered as any miss but not kept; the store
counts it by reason (`unrecorded`), and `almanac misses` says so. Opened as every
side store is (batch.cache.sidestore); its failures are `MissStoreError`s (exit 1).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch.cache.errors import DiskFullError, SideStoreError
from batch.cache.index_reads import chunks, marks
from batch.cache.sidestore import SideStore
from batch.openai_api.served import served_id

log = logging.getLogger("almanac.openai")

MISSES_FILE = "misses.db"
FORMAT = 1
MAX_MISSES = 10_000  # distinct misses kept
MAX_MISS_BYTES = 64 * 1024  # bytes of one miss's request body
SCHEMA = """
CREATE TABLE IF NOT EXISTS misses (
    id TEXT PRIMARY KEY, model TEXT NOT NULL, adapter TEXT, endpoint TEXT NOT NULL,
    body TEXT NOT NULL, seen INTEGER NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL
) WITHOUT ROWID;
-- `almanac misses --model`, `misses run`: one model's misses, oldest first
CREATE INDEX IF NOT EXISTS misses_by_model ON misses (model, adapter, first_seen);
-- misses answered but not kept, by reason (full, too_large): one row each
CREATE TABLE IF NOT EXISTS unrecorded (
    reason TEXT PRIMARY KEY, seen INTEGER NOT NULL, last_seen TEXT NOT NULL, detail TEXT NOT NULL
) WITHOUT ROWID;
"""
_MISS = "id, model, adapter, endpoint, body, seen, first_seen, last_seen"
# One model's misses: by its served id (`BASE+ADAPTER` too) or its catalog reference.
_OF_MODEL = "(model = ?1 OR (adapter IS NOT NULL AND model || '+' || adapter = ?1))"


class MissStoreError(SideStoreError):
    """misses.db cannot be used: damaged, unreadable, or written by a newer Almanac."""


@dataclass(frozen=True)
class Miss:
    id: str
    model: str
    adapter: str | None
    endpoint: str
    body: dict[str, Any]
    seen: int
    first_seen: datetime
    last_seen: datetime

    @property
    def served(self) -> str:
        return served_id(self.model, self.adapter)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["served"] = self.served
        out["first_seen"], out["last_seen"] = self.first_seen.isoformat(), self.last_seen.isoformat()
        return out


@dataclass(frozen=True)
class Unrecorded:
    reason: str  # full | too_large
    seen: int
    last_seen: datetime
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "last_seen": self.last_seen.isoformat()}


def _miss(row: tuple[Any, ...]) -> Miss:
    mid, model, adapter, endpoint, body, seen, first, last = row
    return Miss(mid, model, adapter, endpoint, json.loads(body), seen,
                datetime.fromisoformat(first), datetime.fromisoformat(last))


class MissStore(SideStore):
    """One connection to `predictions/misses.db`. Not locked: `MissRecorder` serialises
    a server's threads."""

    FILE = MISSES_FILE
    FORMAT = FORMAT
    SCHEMA = SCHEMA
    WHAT = "miss store"
    ERROR = MissStoreError

    def add(self, miss_id: str, model: str, adapter: str | None, endpoint: str, body: str, *,
            max_rows: int = MAX_MISSES, max_bytes: int = MAX_MISS_BYTES) -> str:
        """Count one miss: "recorded" (new), "seen" (asked before), or why it was not
        kept ("too_large", "full"), which is counted instead."""
        now = datetime.now(UTC).isoformat()
        size = len(body.encode())
        with self.transaction():
            if size > max_bytes:
                return self._unrecorded("too_large", now, f"a request body of {size} bytes, over "
                                                          f"the {max_bytes} bytes a miss may hold")
            self.db.execute("UPDATE misses SET seen = seen + 1, last_seen = ? WHERE id = ?",
                            (now, miss_id))
            if self.db.execute("SELECT changes()").fetchone()[0]:
                return "seen"
            held = self.db.execute("SELECT count(*) FROM misses").fetchone()[0]
            if held >= max_rows:
                return self._unrecorded("full", now, f"the store held {held} misses, its bound")
            self.db.execute(f"INSERT INTO misses ({_MISS}) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                            (miss_id, model, adapter, endpoint, body, now, now))
            return "recorded"

    def _unrecorded(self, reason: str, now: str, detail: str) -> str:
        self.db.execute("INSERT INTO unrecorded (reason, seen, last_seen, detail) "
                        "VALUES (?, 1, ?, ?) ON CONFLICT (reason) DO UPDATE SET "
                        "seen = seen + 1, last_seen = excluded.last_seen, detail = excluded.detail",
                        (reason, now, detail))
        return reason

    def misses(self, model: str | None = None) -> list[Miss]:
        """The misses (of one model), by model, then oldest first."""
        where, params = (f"WHERE {_OF_MODEL}", (model,)) if model is not None else ("", ())
        return [_miss(r) for r in self._all(
            f"SELECT {_MISS} FROM misses {where} ORDER BY model, adapter, first_seen, id", params)]

    def unrecorded(self) -> list[Unrecorded]:
        return [Unrecorded(reason, seen, datetime.fromisoformat(last), detail)
                for reason, seen, last, detail in self._all(
                    "SELECT reason, seen, last_seen, detail FROM unrecorded ORDER BY reason")]

    def remove(self, ids: list[str]) -> int:
        """Forget these misses (answered now); how many there were."""
        gone = 0
        with self.transaction():
            for part in chunks(ids):
                gone += self.db.execute(f"DELETE FROM misses WHERE id IN ({marks(part)})",
                                        part).rowcount
        return gone

    def clear(self, model: str | None = None) -> int:
        """Forget every miss (of one model), and, for all of them, the unrecorded counts."""
        with self.transaction():
            if model is None:
                self.db.execute("DELETE FROM unrecorded")
                return self.db.execute("DELETE FROM misses").rowcount
            return self.db.execute(f"DELETE FROM misses WHERE {_OF_MODEL}", (model,)).rowcount


def read_misses(root: Path, model: str | None = None) -> tuple[list[Miss], list[Unrecorded]]:
    """The misses and unrecorded counts, read-only (none while nothing was recorded)."""
    store = MissStore.open_readonly(root)
    if store is None:
        return [], []
    with store:
        return store.misses(model), store.unrecorded()


class MissRecorder:
    """A server's way to the store: opened on the first miss, shared by its threads.
    A store that cannot be written (a read-only home, a full disk) costs the miss its
    record, never the request its answer: the log says why, once."""

    def __init__(self, root: Path, *, max_rows: int = MAX_MISSES,
                 max_bytes: int = MAX_MISS_BYTES) -> None:
        self.root, self.max_rows, self.max_bytes = root, max_rows, max_bytes
        self._store: MissStore | None = None
        self._lock = threading.Lock()
        self._warned = False

    def record(self, miss_id: str, model: str, adapter: str | None, endpoint: str,
               body: str) -> str:
        with self._lock:
            try:
                if self._store is None:
                    self._store = MissStore.open(self.root)
                return self._store.add(miss_id, model, adapter, endpoint, body,
                                       max_rows=self.max_rows, max_bytes=self.max_bytes)
            except (SideStoreError, DiskFullError, OSError) as exc:  # OSError: no predictions/ to make
                if not self._warned:
                    log.warning("misses are not being recorded: %s", exc)
                    self._warned = True
                return "unwritable"

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
