"""The prediction cache on disk: immutable Parquet shards any reader opens, a SQLite
index beside them, recovery after a crash, fingerprints of local weights, and
one lock per job."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batch.cache.index import FORMAT, Located
from batch.cache.lock import JobLock, JobLockedError
from batch.cache.schema import PredictionRecord, arrow_schema, columns, declared_types
from batch.cache.shards import file_sha256
from batch.cache.store import PredictionStore, ShardWriter
from batch.query import Predictions
from batch.run.keys import fingerprint_dir, stat_signature
from tests.cache_support import index_table

RUN = "0123456789abcdef0123456789abcdef"
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def record(key: str, input_id: str, *, job: str = "fruits", output: str | None = "drupe",
           error: str | None = None, run_id: str = RUN) -> dict[str, Any]:
    """A record in the shape of schemas/prediction.schema.json."""
    out: dict[str, Any] = {name: None for name in columns()}
    out.update(
        key=key, job=job, input_id=input_id, model="tiny", revision="sha256:abc",
        candidate="tiny", prompt=f"{input_id}:", output=None if error else output,
        finish_reason=None if error else "stop", prompt_tokens=3,
        output_tokens=None if error else 1, run_id=run_id, created_at=WHEN, error=error,
        params=json.dumps({"temperature": 0.0}),
    )
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    s = PredictionStore(tmp_path / "predictions")
    yield s
    s.close()


def write(store: PredictionStore, records: list[dict[str, Any]], *, job: str = "fruits",
          shard_rows: int = 1000, run_id: str = RUN) -> list[str]:
    with ShardWriter(store, job, run_id, shard_rows, row_group_rows=4) as writer:
        for r in records:
            writer.add(r)
    return writer.shards


def index_sql(store: PredictionStore, sql: str) -> list[tuple]:
    """The index file as any SQLite client sees it."""
    db = sqlite3.connect(store.root / "index.db")
    try:
        with db:
            return db.execute(sql).fetchall()
    finally:
        db.close()


def index_format(root: Path) -> int:
    db = sqlite3.connect(root / "index.db")
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def table(store: PredictionStore, name: str) -> list[tuple]:
    """A table of the index in names (its ids looked up), or a plain table as it is."""
    if name == "fingerprints":
        return index_sql(store, f"SELECT * FROM {name} ORDER BY 1, 2, 3")
    return index_table(store.root, name)


# -- shards -----------------------------------------------------------------------------------


def test_records_helper_matches_the_schema() -> None:
    assert columns()[:16] == ["key", "job", "input_id", "model", "revision", "adapter",
                              "candidate", "adapter_revision", "prompt", "output",
                              "finish_reason", "prompt_tokens", "output_tokens", "run_id",
                              "created_at", "error"]
    assert set(record("k", "a")) == set(columns())


def test_the_record_type_is_the_schemas_columns_and_types() -> None:
    """PredictionRecord spells out schemas/prediction.schema.json: same columns, same
    order, and each annotation the type the schema's `x-arrow` and nullability imply."""
    hints = typing.get_type_hints(PredictionRecord)
    assert list(hints) == list(declared_types()) == columns()
    assert hints == declared_types()


def test_shards_rotate_at_shard_rows_and_leave_no_temporaries(store: PredictionStore) -> None:
    records = [record(f"k{i:02d}", f"in{i:02d}") for i in range(25)]
    shards = write(store, records, shard_rows=10)

    directory = store.job_dir("fruits")
    assert len(shards) == 3 and shards == sorted(shards)
    assert sorted(p.name for p in directory.iterdir()) == shards  # nothing hidden, no .tmp
    assert [pq.read_metadata(directory / s).num_rows for s in shards] == [10, 10, 5]
    for shard in shards:
        assert pq.read_schema(directory / shard).remove_metadata() == arrow_schema()


def test_columns_whose_values_all_differ_are_written_without_a_dictionary(
        store: PredictionStore) -> None:
    """Keys, input ids and prompts differ row by row: a dictionary would hold each value
    once more. Outputs that repeat, and the job, keep theirs."""
    records = [record(f"k{i:02d}", f"in{i:02d}", output="drupe" if i % 2 else "pome")
               for i in range(10)]
    (shard,) = write(store, records)
    meta = pq.read_metadata(store.job_dir("fruits") / shard)
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        chunks = {c.path_in_schema: c for c in map(group.column, range(group.num_columns))}
        for name in ("key", "input_id", "prompt"):
            assert not chunks[name].has_dictionary_page, name
        for name in ("output", "job", "model", "params"):
            assert chunks[name].has_dictionary_page, name
    with Predictions.at(store.root, "fruits") as p:
        assert p.get_many([r["input_id"] for r in records]) == {r["input_id"]: r for r in records}


def test_job_directory_is_one_dataset_for_pyarrow(store: PredictionStore) -> None:
    records = [record(f"k{i:02d}", f"in{i:02d}") for i in range(25)]
    write(store, records, shard_rows=10)

    dataset = ds.dataset(store.job_dir("fruits"), format="parquet")
    assert dataset.schema.names == columns()
    read = dataset.to_table().sort_by("key").to_pylist()
    assert read == records
    whole = pq.read_table(store.job_dir("fruits"))
    assert whole.num_rows == 25


@pytest.mark.skipif(importlib.util.find_spec("duckdb") is None, reason="duckdb not installed")
def test_job_directory_is_readable_by_duckdb(store: PredictionStore) -> None:
    import duckdb

    write(store, [record(f"k{i:02d}", f"in{i:02d}") for i in range(25)], shard_rows=10)
    pattern = str(store.job_dir("fruits") / "*.parquet")
    con = duckdb.connect()
    try:
        count, distinct = con.execute(
            "SELECT count(*), count(DISTINCT input_id) FROM read_parquet(?)", [pattern]
        ).fetchone()
        assert (count, distinct) == (25, 25)
        names = [row[0] for row in con.execute("DESCRIBE SELECT * FROM read_parquet(?)",
                                                [pattern]).fetchall()]
        assert names == columns()
    finally:
        con.close()


@pytest.mark.skipif(importlib.util.find_spec("polars") is None, reason="polars not installed")
def test_job_directory_is_readable_by_polars(store: PredictionStore) -> None:
    import polars as pl

    write(store, [record(f"k{i:02d}", f"in{i:02d}") for i in range(25)], shard_rows=10)
    frame = pl.read_parquet(store.job_dir("fruits") / "*.parquet")
    assert frame.height == 25 and frame.columns == columns()
    assert frame.filter(pl.col("input_id") == "in07")["output"].to_list() == ["drupe"]


def test_index_tables_match_the_shards(store: PredictionStore) -> None:
    records = [record("k1", "a"), record("k2", "b"), record("x3", "c", error="template error")]
    records += [record("k4", "d")]
    shards = write(store, records, shard_rows=3)
    directory = store.job_dir("fruits")

    shard_rows = {row[1]: row for row in table(store, "shards")}
    assert set(shard_rows) == set(shards)
    for name in shards:
        job, _, rows, size, sha, run_id, _created = shard_rows[name]
        assert (job, run_id) == ("fruits", RUN)
        assert rows == pq.read_metadata(directory / name).num_rows
        assert size == (directory / name).stat().st_size
        assert sha == file_sha256(directory / name)
    expected = [
        ("fruits", "a", "tiny", "k1", shards[0], 0, 0), ("fruits", "b", "tiny", "k2", shards[0], 1, 0),
        ("fruits", "c", "tiny", "x3", shards[0], 2, 1), ("fruits", "d", "tiny", "k4", shards[1], 0, 0),
    ]
    assert table(store, "records") == expected
    assert table(store, "latest") == expected
    assert set(pq.read_table(directory / shards[0], columns=["candidate"])["candidate"].to_pylist()) == {"tiny"}
    assert table(store, "candidates") == [("fruits", "tiny", "tiny", None, None, None, 0)]


def test_read_rows_returns_full_records_in_the_order_asked(store: PredictionStore) -> None:
    records = [record(f"k{i}", f"in{i}") for i in range(7)]
    write(store, records, shard_rows=3)
    latest = store.latest_for("fruits", "tiny", [f"in{i}" for i in range(7)])
    wanted = [latest["in5"], latest["in0"], latest["in5"], latest["in3"]]

    assert store.read_rows(wanted) == [records[5], records[0], records[5], records[3]]
    assert store.read_rows([]) == []


def test_newer_record_of_an_input_becomes_latest_and_the_old_one_stays_findable(
    store: PredictionStore,
) -> None:
    first = write(store, [record("old", "a"), record("k-b", "b")])
    second = write(store, [record("new", "a", output="pome")], run_id="f" * 32)

    latest = store.latest_for("fruits", "tiny", ["a", "b", "unknown"])
    assert set(latest) == {"a", "b"}
    assert latest["a"] == Located("fruits", "a", "new", second[0], 0, False, "tiny")
    assert latest["b"].shard == first[0]
    older = store.versions_for("fruits", "tiny", [("a", "old"), ("a", "nope")])
    assert older == {("a", "old"): Located("fruits", "a", "old", first[0], 0, False, "tiny")}
    assert store.read_rows([older[("a", "old")]])[0]["output"] == "drupe"


def test_repoint_moves_latest_without_writing_a_shard(store: PredictionStore) -> None:
    first = write(store, [record("old", "a")])
    write(store, [record("new", "a")])
    shards_before = table(store, "shards")

    store.index.repoint("fruits", "tiny", [Located("fruits", "a", "old", first[0], 0, False, "tiny")])

    assert store.latest_for("fruits", "tiny", ["a"])["a"].key == "old"
    assert table(store, "shards") == shards_before


def test_writer_flushes_what_it_holds_when_the_block_raises(store: PredictionStore) -> None:
    with pytest.raises(RuntimeError, match="engine died"):
        with ShardWriter(store, "fruits", RUN, 100, 10) as writer:
            writer.add(record("k1", "a"))
            writer.add(record("k2", "b"))
            raise RuntimeError("engine died")
    assert writer.rows_written == 2 and len(writer.shards) == 1
    assert set(store.latest_for("fruits", "tiny", ["a", "b"])) == {"a", "b"}


def test_generated_anywhere_finds_keys_across_jobs_and_ignores_failures(
    store: PredictionStore,
) -> None:
    write(store, [record("k1", "a", job="one"), record("k-failed", "b", job="one", error="boom")],
          job="one")
    write(store, [record("k2", "z", job="two")], job="two")

    found = store.generated_anywhere(["k1", "k2", "k-failed", "k-unknown"])
    assert set(found) == {"k1", "k2"}
    assert (found["k1"].job, found["k1"].input_id, found["k1"].failed) == ("one", "a", False)
    assert (found["k2"].job, found["k2"].input_id) == ("two", "z")
    assert store.read_rows([found["k2"]])[0]["job"] == "two"


def test_lookups_handle_more_ids_than_one_query_takes(store: PredictionStore) -> None:
    records = [record(f"k{i:04d}", f"in{i:04d}") for i in range(1200)]
    write(store, records)
    ids = [f"in{i:04d}" for i in range(1200)]
    assert len(store.latest_for("fruits", "tiny", ids)) == 1200
    assert len(store.generated_anywhere([f"k{i:04d}" for i in range(1200)])) == 1200


# -- crash recovery ---------------------------------------------------------------------------


def test_recover_removes_a_temporary_left_by_a_crash(store: PredictionStore) -> None:
    shards = write(store, [record("k1", "a")])
    directory = store.job_dir("fruits")
    leftover = directory / ".part-20240501T000000000000-01234567-00001.parquet.tmp"
    leftover.write_bytes(b"PAR1 half a file")

    assert store.recover("fruits") == {"removed_tmp": 1, "indexed": 0, "lost": 0}
    assert not leftover.exists()
    assert sorted(p.name for p in directory.iterdir()) == shards
    assert store.recover("fruits") == {"removed_tmp": 0, "indexed": 0, "lost": 0}


def test_recover_indexes_a_shard_that_landed_but_was_never_indexed(store: PredictionStore) -> None:
    write(store, [record("old", "a"), record("k-b", "b")])
    crashed_run = "c" * 32
    landed = [record("new", "a", run_id=crashed_run),
              record("x-fail", "c", error="prompt too long", run_id=crashed_run)]
    name = "part-99991231T000000000000-cccccccc-00000.parquet"
    # A crash between the rename and the index commit leaves exactly this behind.
    pq.write_table(pa.Table.from_pylist(landed, schema=arrow_schema()),
                   store.job_dir("fruits") / name)

    assert store.recover("fruits") == {"removed_tmp": 0, "indexed": 1, "lost": 0}

    latest = store.latest_for("fruits", "tiny", ["a", "b", "c"])
    assert latest["a"] == Located("fruits", "a", "new", name, 0, False, "tiny")
    assert latest["c"] == Located("fruits", "c", "x-fail", name, 1, True, "tiny")
    assert latest["b"].key == "k-b"
    shard = next(row for row in table(store, "shards") if row[1] == name)
    assert shard[2] == 2 and shard[5] == crashed_run
    assert shard[4] == file_sha256(store.job_dir("fruits") / name)
    assert store.read_rows([latest["a"]]) == [landed[0]]
    assert store.recover("fruits") == {"removed_tmp": 0, "indexed": 0, "lost": 0}


def test_recover_indexes_several_landed_shards_oldest_first(store: PredictionStore) -> None:
    directory = store.job_dir("fruits")
    directory.mkdir(parents=True)
    for name, key in [("part-20240502T000000000000-bbbbbbbb-00000.parquet", "newer"),
                      ("part-20240501T000000000000-aaaaaaaa-00000.parquet", "older")]:
        pq.write_table(pa.Table.from_pylist([record(key, "a")], schema=arrow_schema()),
                       directory / name)

    assert store.recover("fruits")["indexed"] == 2
    assert store.latest_for("fruits", "tiny", ["a"])["a"].key == "newer"


def test_recover_on_a_job_never_run_does_nothing(store: PredictionStore) -> None:
    assert store.recover("never") == {"removed_tmp": 0, "indexed": 0, "lost": 0}


# The index as the first version of the cache wrote it: an index.db made then must keep working.
FIRST_COLUMNS = pa.schema([f for f in arrow_schema()
                           if f.name not in ("candidate", "adapter_revision", "chat")])
# The shards of the version before records said whether their request was chat.
BEFORE_CHAT = pa.schema([f for f in arrow_schema() if f.name != "chat"])
FIRST_INDEX = """
CREATE TABLE shards (job TEXT NOT NULL, name TEXT NOT NULL, rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, run_id TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (job, name)) WITHOUT ROWID;
CREATE TABLE records (job TEXT NOT NULL, input_id TEXT NOT NULL, key TEXT NOT NULL,
    shard TEXT NOT NULL, row INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (job, input_id, key)) WITHOUT ROWID;
CREATE INDEX records_by_key ON records (key, failed);
CREATE TABLE latest (job TEXT NOT NULL, input_id TEXT NOT NULL, key TEXT NOT NULL,
    shard TEXT NOT NULL, row INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (job, input_id)) WITHOUT ROWID;
CREATE TABLE fingerprints (path TEXT PRIMARY KEY, signature TEXT NOT NULL, digest TEXT NOT NULL);
"""


def test_a_shard_written_before_the_chat_column_is_indexed_read_and_verified(
        tmp_path: Path) -> None:
    from batch.cache.verify import verify

    root = tmp_path / "predictions"
    (root / "fruits").mkdir(parents=True)
    rows = [record("k1", "a"), record("k2", "b", error="boom")]
    pq.write_table(pa.Table.from_pylist(rows, schema=BEFORE_CHAT),
                   root / "fruits" / "part-20251101T000000000000-01234567-00000.parquet")
    store = PredictionStore(root)
    try:
        assert store.recover("fruits")["indexed"] == 1  # a landed shard, decoded whole
    finally:
        store.close()
    with Predictions.at(root, "fruits") as p:
        assert p.get_many(["a", "b"]) == {r["input_id"]: {**r, "chat": None} for r in rows}
    assert verify(root).ok


def test_an_index_written_by_the_first_version_is_read_and_extended(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    (root / "fruits").mkdir(parents=True)
    name = "part-20240501T000000000000-01234567-00000.parquet"
    rows = [record("k1", "a"), record("k2", "b", error="boom")]
    for r in rows:  # the shard has the columns the first version wrote
        del r["candidate"], r["adapter_revision"]
    pq.write_table(pa.Table.from_pylist(rows, schema=FIRST_COLUMNS), root / "fruits" / name)
    path = root / "fruits" / name
    db = sqlite3.connect(root / "index.db")
    with db:
        db.executescript(FIRST_INDEX)
        db.execute("INSERT INTO shards VALUES ('fruits', ?, 2, ?, ?, ?, '2024-05-01T00:00:00+00:00')",
                   (name, path.stat().st_size, file_sha256(path), RUN))
        for table_name in ("records", "latest"):
            db.executemany(f"INSERT INTO {table_name} VALUES ('fruits', ?, ?, ?, ?, ?)",
                           [("a", "k1", name, 0, 0), ("b", "k2", name, 1, 1)])
    db.close()

    with Predictions.at(root, "fruits") as p:  # a reader upgrades the index's format
        # The rows read back as the first version wrote them, their model as candidate.
        assert p.get_many(["a", "b"]) == {r["input_id"]: {**r, "candidate": "tiny",
                                                          "adapter_revision": None}
                                          for r in rows}
        assert [c.label for c in p.candidates()] == ["tiny"]
    assert index_format(root) == FORMAT
    store = PredictionStore(root)
    try:
        assert store.latest_for("fruits", "tiny", ["b"])["b"] == \
            Located("fruits", "b", "k2", name, 1, True, "tiny")
        write(store, [record("k3", "b")])
        assert store.read_rows([store.latest_for("fruits", "tiny", ["b"])["b"]])[0]["key"] == "k3"
    finally:
        store.close()


# -- fingerprints of local weights ------------------------------------------------------------


def model_dir(root: Path) -> Path:
    root.mkdir()
    (root / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (root / "model.safetensors").write_bytes(b"\x00" * 64)
    (root / "README.md").write_text("# tiny\n")
    return root


def test_fingerprint_is_stable_and_follows_the_weights_bytes(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "m")
    first = fingerprint_dir(path)
    assert first.startswith("sha256:") and fingerprint_dir(path) == first

    (path / "model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")  # same size
    changed = fingerprint_dir(path)
    assert changed != first

    (path / "model.safetensors").write_bytes(b"\x00" * 64)
    assert fingerprint_dir(path) == first


def test_fingerprint_ignores_readme_licence_and_hidden_files_but_not_tokenizer_text(
    tmp_path: Path,
) -> None:
    path = model_dir(tmp_path / "m")
    first, signature = fingerprint_dir(path), stat_signature(path)

    (path / "README.md").write_text("# tiny, now with a longer card\n")
    (path / "LICENSE.txt").write_text("MIT\n")
    (path / ".cache").mkdir()
    (path / ".cache" / "download.metadata").write_text("etag")
    assert fingerprint_dir(path) == first and stat_signature(path) == signature

    (path / "merges.txt").write_text("a b\n")  # a tokenizer file changes what the model sees
    assert fingerprint_dir(path) != first


def test_fingerprint_is_cached_per_stat_signature_in_the_index(
    store: PredictionStore, tmp_path: Path,
) -> None:
    path = model_dir(tmp_path / "m")
    digest = fingerprint_dir(path, store.fingerprint_get, store.fingerprint_put)

    rows = table(store, "fingerprints")
    assert rows == [(str(path.resolve()), stat_signature(path), digest)]

    # The stored digest is what a second call returns: it did not hash again.
    index_sql(store, "UPDATE fingerprints SET digest = 'sha256:from-the-cache'")
    assert fingerprint_dir(path, store.fingerprint_get, store.fingerprint_put) == "sha256:from-the-cache"

    # A different size is a different signature: hashed again, cache row replaced.
    (path / "model.safetensors").write_bytes(b"\x00" * 65)
    fresh = fingerprint_dir(path, store.fingerprint_get, store.fingerprint_put)
    assert fresh == fingerprint_dir(path) != digest
    assert table(store, "fingerprints") == [(str(path.resolve()), stat_signature(path), fresh)]


# -- one lock per job -------------------------------------------------------------------------


def test_second_lock_on_a_job_in_the_same_process_is_refused(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    with JobLock(locks, "fruits"):
        with pytest.raises(JobLockedError, match=f"job 'fruits' is locked by another run \\(pid {os.getpid()}\\)"):
            with JobLock(locks, "fruits"):
                pass  # pragma: no cover
        with JobLock(locks, "vegetables"):  # other jobs are independent
            pass
    with JobLock(locks, "fruits"):  # released on exit
        pass


HOLD_LOCK = """
import sys
from pathlib import Path
from batch.cache.lock import JobLock

with JobLock(Path(sys.argv[1]), sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_lock_held_by_another_process_is_refused_and_freed_when_it_is_killed(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(locks), "fruits"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JobLockedError, match=f"pid {holder.pid}") as err:
            with JobLock(locks, "fruits"):
                pass  # pragma: no cover
        assert err.value.job == "fruits"
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait(timeout=30)
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.stdout.close()
    assert holder.returncode == -9
    with JobLock(locks, "fruits"):  # the kernel released the flock
        pass


def test_a_shard_whose_indexing_fails_is_written_once_and_indexed_by_recovery(
        store: PredictionStore) -> None:
    """The shard file lands, then the index is busy past waiting: the writer must not
    write the same rows again on its way out (the dataset would hold them twice);
    the next run's recovery indexes the landed file."""
    from batch.cache.errors import IndexUnavailableError

    blocker = sqlite3.connect(store.root / "index.db", isolation_level=None)
    store.index.db.execute("PRAGMA busy_timeout=500")  # wait half a second, not thirty
    rows = [record(f"{i:064x}", f"w{i}") for i in range(10)]
    try:
        with pytest.raises(IndexUnavailableError):
            with ShardWriter(store, "fruits", RUN, 10, row_group_rows=4) as writer:
                blocker.execute("BEGIN IMMEDIATE")
                for r in rows:
                    writer.add(r)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    landed = sorted(p.name for p in (store.root / "fruits").glob("*.parquet"))
    assert len(landed) == 1 and writer.buffer == []
    assert store.recover("fruits")["indexed"] == 1
    with Predictions.at(store.root, "fruits") as p:
        assert sorted(r["input_id"] for r in p.search(limit=100)) == sorted(r["input_id"]
                                                                             for r in rows)
