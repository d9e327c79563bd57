"""The lookups benchmark's other two figures (bench.lookups runs them): the index's size
per prediction, table by table, and `search(contains=…)` over every output.

Search queries are fixed, so runs compare: a word in 4% of the outputs, two words
together (a pair no output holds), a common prefix (8%), a number in one output, a number prefix (1%),
one letter (87%), and a word no output holds. Each is timed as `page()` (the first 50
matches in input id order and the total, what the HTTP API and `almanac query`
ask) and as `search()` (the first 50, no total); p50 and p99 are over every query's
repetitions. The first search of a reader (it reads each shard's outputs once) is
timed apart.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

SEARCHES = ("drupe", "quince olive", "pome", "#123456", "#99", "e", "no such fruit")
REPEAT = 15


def index_size(predictions: Path, rows: int) -> dict[str, Any]:
    """The index file's bytes per prediction, in all and per table or index (dbstat),
    after a checkpoint has moved the write-ahead log into it."""
    db = sqlite3.connect(predictions / "index.db")
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        parts = {name: size for name, size in db.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")}
        free = db.execute("PRAGMA freelist_count").fetchone()[0] * \
            db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    size = (predictions / "index.db").stat().st_size
    return {
        "bytes": size,
        "bytes_per_prediction": round(size / rows, 1),
        "free_bytes": free,
        "per_prediction": {name: round(n / rows, 1) for name, n in parts.items() if n / rows >= 0.1},
    }


def _brute(outputs: list[str | None], needle: str) -> int:
    low = needle.lower()
    return sum(1 for o in outputs if o is not None and low in o.lower())


def bench_search(predictions: Path, job: str, outputs: list[str | None] | None) -> dict[str, Any]:
    """Times the searches; with `outputs` (every input's, in input id order), checks each
    total and first page against a plain scan of them."""
    from batch.query import Predictions

    out: dict[str, Any] = {"queries": list(SEARCHES), "repeat": REPEAT}
    with Predictions.at(predictions, job) as p:
        began = time.perf_counter()
        p.search(contains=SEARCHES[0], limit=50)
        out["first_search_s"] = round(time.perf_counter() - began, 3)
        paged: list[float] = []
        first: list[float] = []
        per_query: dict[str, dict[str, Any]] = {}
        for needle in SEARCHES:
            times = []
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                page, total = p.page(contains=needle, limit=50)
                times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                p.search(contains=needle, limit=50)
                first.append(time.perf_counter() - t0)
            paged += times
            per_query[needle] = {"total": total, "p50_ms": round(sorted(times)[REPEAT // 2] * 1000, 2)}
            if outputs is not None:
                want = _brute(outputs, needle)
                if total != want or len(page) != min(50, want):
                    raise AssertionError(f"search {needle!r}: {total} found, {want} expected")
                if any(needle.lower() not in (r["output"] or "").lower() for r in page):
                    raise AssertionError(f"search {needle!r} returned a row without it")
                ids = [r["input_id"] for r in page]
                if ids != sorted(ids):
                    raise AssertionError(f"search {needle!r}: not in input id order")
    out["page"] = _percentiles(paged)
    out["search_first_50"] = _percentiles(first)
    out["per_query"] = per_query
    return out


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"n": len(ms), "p50_ms": round(ms[len(ms) // 2], 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2)}
