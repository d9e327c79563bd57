"""The index's format 3: what format 2 (candidates, names and hex keys repeated in every
row) held is upgraded in place, answers unchanged and the file smaller; keys are
stored as 32 bytes when they are SHA-256 hex, as text otherwise."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from batch.cache.index import FORMAT, Index
from batch.cache.index_rows import key_in, key_out
from batch.cache.index_upgrade import FORMAT_2
from batch.cache.repair import repair
from batch.cache.verify import verify
from batch.query import Predictions
from tests.cache_support import index_sql, index_table, key_for, record, write

ROWS = 3000


def _as_format_2(root: Path) -> list[tuple]:
    """Rewrite `root`'s index as format 2 wrote it (the same rows, in its tables); returns
    its records as names."""
    records = index_table(root, "records")
    latest = index_table(root, "latest")
    shards = index_table(root, "shards")
    candidates = index_table(root, "candidates")
    (root / "index.db").unlink()
    db = sqlite3.connect(root / "index.db")
    with db:
        for statement in FORMAT_2:
            db.execute(statement)
        db.execute("CREATE INDEX records_by_key ON records (key, failed)")
        db.execute("CREATE TABLE fingerprints (path TEXT PRIMARY KEY, signature TEXT NOT NULL, "
                   "digest TEXT NOT NULL)")
        db.executemany("INSERT INTO shards VALUES (?, ?, ?, ?, ?, ?, ?)", shards)
        for table, rows in (("records", records), ("latest", latest)):
            db.executemany(f"INSERT INTO {table} (job, input_id, candidate, key, shard, row, "
                           "failed) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?)", candidates)
        db.execute("PRAGMA user_version = 2")
    db.execute("VACUUM")
    db.close()
    return records


def test_a_format_2_index_is_upgraded_with_every_answer_and_shrinks(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    rows = [record(f"in-{i:05d}", output=f"drupe {i}", error="boom" if i % 50 == 7 else None)
            for i in range(ROWS)]
    write(root, rows, shard_rows=1000)
    write(root, [record("in-00003", version=2, output="newer")], run_id="f" * 32)
    write(root, [record("leek", job="veg", key="not-a-sha256")], job="veg")
    with Predictions.at(root, "fruits") as p:
        before = p.get_many([r["input_id"] for r in rows])
    records = _as_format_2(root)
    size_2 = (root / "index.db").stat().st_size

    with Predictions.at(root, "fruits") as p:  # a reader upgrades it
        assert p.get_many([r["input_id"] for r in rows]) == before
        assert [r["output"] for r in p.versions("in-00003")] == ["drupe 3", "newer"]
        assert p.count(failed=True) == ROWS // 50
    assert index_sql(root, "PRAGMA user_version") == [(FORMAT,)]
    assert index_table(root, "records") == records
    assert (root / "index.db").stat().st_size < size_2 / 2
    assert verify(root).ok
    with Predictions.at(root, "veg") as p:
        assert p.by_key("not-a-sha256")["input_id"] == "leek"


def test_keys_are_stored_in_32_bytes_when_they_are_sha256_hex() -> None:
    sha = key_for("plum")
    assert key_in(sha) == bytes.fromhex(sha) and key_out(key_in(sha)) == sha
    for other in ("x" + sha[1:], sha.upper(), "k1", ""):
        assert key_in(other) == other and key_out(key_in(other)) == other


def test_repair_drops_records_naming_a_shard_the_index_does_not_list(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    write(root, [record(f"r{i}") for i in range(10)], shard_rows=5)
    index_sql(root, "INSERT INTO records (job, input_id, label, key, shard, row, state) "
                    "SELECT job, 'ghost', label, key, 999, row, 2 FROM records LIMIT 1")
    assert [f.kind for f in verify(root).problems] == ["orphan-records"]
    assert repair(root, tmp_path / "locks").rebuilt == ["fruits"]
    assert verify(root).ok
    index = Index.open_readonly(root)
    assert index is not None
    try:
        assert index.latest_for("fruits", "tiny", ["ghost", "r3"]).keys() == {"r3"}
    finally:
        index.close()


def test_text_search_pages_in_listing_order_and_a_selection_of_nobody_is_empty(
        tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    write(root, [record(f"r{i:02d}", output=f"Drupe {i}" if i % 3 else None,
                        error=None if i % 3 else "boom") for i in range(30)], shard_rows=7)
    write(root, [record("r04", version=2, output="pome")], run_id="f" * 32)
    with Predictions.at(root, "fruits") as p:
        assert p.page(contains="drupe", model="nobody") == ([], 0)
        page, total = p.page(contains="DRUPE 1", limit=3, offset=1)
        assert total == 8 and [r["input_id"] for r in page] == ["r10", "r11", "r13"]
        assert [r["input_id"] for r in p.search(contains="drupe", limit=2)] == ["r01", "r02"]
        assert p.count(contains="drupe 4") == 0  # r04's latest says pome now
        assert len(p.search(contains="drupe 4", all_versions=True)) == 1
        assert p.count(contains="", failed=True) == 0 and p.count(failed=True) == 10
