"""The SQLite side stores beside the shards (the prediction index, the scores, the chains'
lineage) open, fail and refuse the same way: one opener (batch.cache.sidestore), each
store's own error, every one an UnavailableError (exit 1, HTTP 503)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batch.cache.errors import DiskFullError, SideStoreError
from batch.cache.index import Index
from batch.cache.sidestore import SideStore
from batch.data.lineage import LineageStore, LineageStoreError, PlanInfo
from batch.score.store import Score, ScoreStore, ScoreStoreError
from schemas.errors import UnavailableError

STORES = [Index, ScoreStore, LineageStore]


@pytest.mark.parametrize("store", STORES, ids=lambda s: s.FILE)
def test_a_new_store_is_created_by_its_writer_and_read_by_readers(tmp_path: Path,
                                                                  store: type[SideStore]) -> None:
    root = tmp_path / "predictions"
    assert store.open_readonly(root) is None  # nothing written yet: nothing to read
    with store.open(root) as writer:
        assert writer.version() == store.FORMAT
        assert writer._all("PRAGMA journal_mode")[0][0] == "wal"
    with store.open_readonly(root) as reader:
        assert reader.version() == store.FORMAT
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.execute("PRAGMA user_version = 0")


@pytest.mark.parametrize("store", STORES, ids=lambda s: s.FILE)
def test_a_damaged_file_is_the_stores_own_one_line_error(tmp_path: Path,
                                                         store: type[SideStore]) -> None:
    tmp_path.joinpath(store.FILE).write_bytes(b"not a database at all" * 100)
    for opening in (store.open, store.open_readonly):
        with pytest.raises(store.ERROR) as caught:
            opening(tmp_path)
        error = caught.value
        assert isinstance(error, SideStoreError) and isinstance(error, UnavailableError)
        assert (error.exit_code, error.http_status, error.damaged) == (1, 503, True)
        assert f"{store.FILE}: it is damaged" in str(error) and store.DAMAGED_HINT in str(error)
        assert "\n" not in str(error)


@pytest.mark.parametrize("store", STORES, ids=lambda s: s.FILE)
def test_a_file_of_a_newer_format_is_refused_and_left_as_it_is(tmp_path: Path,
                                                               store: type[SideStore]) -> None:
    store.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / store.FILE)
    db.execute(f"PRAGMA user_version = {store.FORMAT + 1}")
    db.close()
    for opening in (store.open, store.open_readonly):
        with pytest.raises(UnavailableError, match=f"format {store.FORMAT + 1}"):
            opening(tmp_path)
    db = sqlite3.connect(tmp_path / store.FILE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.FORMAT + 1
    db.close()


def test_a_write_that_fails_halfway_leaves_nothing_of_itself(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.db.execute("INSERT INTO scorings VALUES ('job', 's', 'exact', 'now')")
            raise RuntimeError("stopped half-way")
        assert store.scoring("job") is None
        store.save("job", "s", "exact", [Score("a", "1", "k", "b", 1.0)], [("a", "1")])
        assert store.scores_for("job") == {("a", "1"): 1.0}


def test_sqlites_errors_become_the_stores_errors_by_what_they_say(tmp_path: Path) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"
    assert isinstance(LineageStore.unusable(tmp_path / "lineage.db", full), DiskFullError)
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorname = "SQLITE_BUSY"
    found = ScoreStore.unusable(tmp_path / "scores.db", busy)
    assert isinstance(found, ScoreStoreError) and "another process holds it locked" in str(found)
    with LineageStore.open(tmp_path) as store, pytest.raises(sqlite3.OperationalError):
        store._all("SELECT nothing FROM nowhere")  # our own SQL is a bug, not the file's state
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "lineage.db").touch()  # a writer that died before its tables
    with pytest.raises(LineageStoreError, match="format 0, this Almanac reads 1"):
        LineageStore.open_readonly(tmp_path / "empty")
    with LineageStore.open(tmp_path) as store:
        store.save("chain", "a", PlanInfo("d", "up", "a"), {"1": ("k", "b", "1", "uk", None)},
                   complete=True)
        assert store.plans("chain") == {"a": PlanInfo("d", "up", "a")}
