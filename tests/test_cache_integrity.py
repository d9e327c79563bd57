"""A wrong answer is worse than no answer: damage to a shard (a flipped byte anywhere, a
truncation) or its loss is refused by every reader — the Python API, `almanac query` and
`export` (exit 1, one line naming `cache verify`), the HTTP server (503) — and filtered
reads never return a short result instead. Real damage on real files, real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from batch.cache.errors import (
    IndexUnavailableError,
    RowMismatchError,
    ShardDamagedError,
    ShardUnavailableError,
)
from batch.cache.repair import repair
from batch.cache.scan import latest_table
from batch.cache.store import PredictionStore
from batch.cache.verify import verify
from batch.query import Predictions
from tests.cache_support import index_sql, key_for, record, write
from tests.damage import flip, flip_in_column, flip_page_header, truncate
from tests.engine_support import almanac


@pytest.fixture
def predictions(home: Path) -> Path:
    return home / "predictions"


@pytest.fixture
def shards(predictions: Path) -> list[Path]:
    """Four shards of ten rows (row groups of four): shard i holds r{10i} … r{10i+9}."""
    names = write(predictions, [record(f"r{i:02d}", output=f"Drupe {i}") for i in range(40)],
                  shard_rows=10)
    return [predictions / "fruits" / name for name in names]


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """A failed command's message: one line on stderr, no traceback, nothing on stdout."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@contextmanager
def served(home: Path) -> Iterator[httpx.Client]:
    """`almanac serve` in a process of its own on a free loopback port."""
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "almanac", "serve", "--port", "0"], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    try:
        url = None
        for line in proc.stderr:  # uvicorn says where it listens once it does
            if m := re.search(r"running on (http://\S+)", line, re.IGNORECASE):
                url = m.group(1)
                break
        assert url is not None, f"almanac serve ended with {proc.wait()}"
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def refused(resp: httpx.Response) -> str:
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["error"] == "unavailable"
    return body["message"]


# -- written with checksums, read with checks -------------------------------------------------


def test_every_page_is_written_with_a_checksum_that_reading_checks(shards: list[Path]) -> None:
    intact = pq.read_table(shards[0])
    flip_in_column(shards[0], "output", group=1)
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.read_table(shards[0], page_checksum_verification=True)
    try:  # without the check, the flip decodes to wrong text, or fails otherwise
        assert pq.read_table(shards[0]) != intact
    except OSError as exc:
        assert "CRC" not in str(exc)


DAMAGE = {
    "a byte of an output page": lambda p: flip_in_column(p, "output", group=1),
    "a page header": lambda p: flip_page_header(p, "output", group=1),
    "the footer's statistics": lambda p: flip(p, -40),
    "a truncation": truncate,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_shard_is_refused_and_the_others_are_served(
        damage: str, shards: list[Path], predictions: Path) -> None:
    DAMAGE[damage](shards[1])
    with Predictions.at(predictions, "fruits") as p:
        for input_id in ("r14", "r10", "r19"):  # every row of the shard, decoded or not
            with pytest.raises(ShardDamagedError, match="cache verify fruits.*cache repair fruits"):
                p.get(input_id)
        assert p.get("r04")["output"] == "Drupe 4"
        assert p.get("r25")["output"] == "Drupe 25"


def test_a_reader_with_the_shard_open_refuses_what_was_damaged_since(
        shards: list[Path], predictions: Path) -> None:
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r01")["output"] == "Drupe 1"  # opened: its SHA-256 checked once
        assert p.get("r11")["output"] == "Drupe 11"
        flip_in_column(shards[0], "output", group=2)  # rows 8 and 9
        with pytest.raises(ShardDamagedError):
            p.get("r09")
        truncate(shards[1], keep=0.3)  # a read past the end fails; the process lives on
        with pytest.raises(ShardDamagedError):
            p.get("r19")


def test_the_cli_refuses_damage_in_one_line_naming_cache_verify(
        shards: list[Path], home: Path, tmp_path: Path) -> None:
    flip_in_column(shards[1], "output", group=0)
    line = one_line(almanac(home, "query", "fruits", "--input-id", "r11"))
    assert "cache verify fruits" in line and "damaged" in line
    assert json.loads(almanac(home, "query", "fruits", "--input-id", "r31", "--json").stdout)[0][
        "output"] == "Drupe 31"
    for listing in (["--contains", "drupe"], ["--model", "tiny"], ["--contains", "drupe 3"]):
        assert "cache verify fruits" in one_line(almanac(home, "query", "fruits", *listing))
    out = tmp_path / "out.jsonl"
    assert "cache verify fruits" in one_line(
        almanac(home, "export", "fruits", "--format", "jsonl", "-o", str(out)))
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_filtered_reads_over_a_missing_shard_fail_rather_than_come_back_short(
        shards: list[Path], predictions: Path, home: Path) -> None:
    shards[2].unlink()
    with Predictions.at(predictions, "fruits") as p:
        with pytest.raises(ShardUnavailableError, match="cache verify"):
            p.search(contains="drupe")
        with pytest.raises(ShardUnavailableError):
            p.count(contains="drupe 3")
        assert p.count() == 40  # the index alone still knows every row
    assert "cache verify fruits" in one_line(almanac(home, "query", "fruits", "--contains", "3"))
    assert "cache verify fruits" in one_line(almanac(home, "query", "fruits", "--limit", "30"))


def test_the_server_answers_503_for_damaged_or_missing_rows_and_serves_the_rest(
        shards: list[Path], home: Path) -> None:
    flip_in_column(shards[1], "output")
    shards[2].unlink()
    with served(home) as client:
        assert "cache verify fruits" in refused(client.get("/jobs/fruits/predictions/r12"))
        assert "cache verify fruits" in refused(client.get("/jobs/fruits/predictions/r22"))
        refused(client.get("/jobs/fruits/predictions", params={"contains": "drupe"}))
        refused(client.get("/jobs/fruits/predictions", params={"model": "tiny"}))
        refused(client.post("/jobs/fruits/lookup", json={"ids": ["r01", "r12"]}))
        ok = client.get("/jobs/fruits/predictions/r33")
        assert ok.status_code == 200 and ok.json()["output"] == "Drupe 33"


# -- an unusable index.db ---------------------------------------------------------------------


def test_a_garbage_index_is_one_line_and_503_then_repair_rebuilds_it(
        shards: list[Path], predictions: Path, home: Path) -> None:
    with Predictions.at(predictions, "fruits") as p:
        wanted = p.get_many([f"r{i:02d}" for i in range(40)])
    index = predictions / "index.db"
    for extra in ("index.db-wal", "index.db-shm"):
        (predictions / extra).unlink(missing_ok=True)
    index.write_bytes(b"this is not a database, it is a shopping list\n" * 200)

    with pytest.raises(IndexUnavailableError, match="cache repair"):
        Predictions.at(predictions, "fruits")
    for command in (["query", "fruits"], ["cache", "verify"], ["cache", "gc"],
                    ["export", "fruits", "--format", "jsonl", "-o", "-"]):
        assert "index.db" in one_line(almanac(home, *command))
    with served(home) as client:
        refused(client.get("/jobs"))
        refused(client.get("/jobs/fruits/predictions/r01"))

    fixed = almanac(home, "cache", "repair", "--json")
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    assert report["index_kept_as"] == ".index.db.damaged" and report["indexed"] == 4
    assert (predictions / ".index.db.damaged").read_bytes().startswith(b"this is not")
    with Predictions.at(predictions, "fruits") as p:
        assert p.get_many(list(wanted)) == wanted
    assert almanac(home, "cache", "verify").returncode == 0


def test_an_index_that_cannot_be_opened_is_one_line(shards: list[Path], predictions: Path,
                                                    home: Path) -> None:
    index = predictions / "index.db"
    for extra in ("index.db-wal", "index.db-shm"):
        (predictions / extra).unlink(missing_ok=True)
    index.unlink()
    index.mkdir()  # in the way of the file: nothing can open it
    line = one_line(almanac(home, "query", "fruits", "--input-id", "r01"))
    assert "index.db" in line and "cannot be" in line
    with served(home) as client:
        refused(client.get("/jobs/fruits/predictions/r01"))


# -- a row pointer in the index is checked against the row it points at -----------------------


def point(predictions: Path, input_id: str, version: int, at: tuple[str, int]) -> None:
    """Damage the index: move `input_id`'s record of `version` to row `at[1]` of shard `at[0]`."""
    index_sql(predictions, "UPDATE records SET row = ?, shard = (SELECT id FROM shards WHERE "
                           "name = ?) WHERE input_id = ? AND key = ?",
              at[1], at[0], input_id, bytes.fromhex(key_for(input_id, version)))


POINTERS = {
    "another input's row": ("r01", 1, 0, 2),  # r01 at row 2 of the first shard: r02
    "an older version of the same input": ("r05", 2, 0, 5),  # v2 at v1's row
}


@pytest.mark.parametrize("pointer", list(POINTERS))
def test_a_row_pointer_at_another_row_is_refused_by_every_reader_and_repaired(
        pointer: str, shards: list[Path], predictions: Path, home: Path) -> None:
    write(predictions, [record("r05", version=2, output="Drupe 5 v2")], run_id="f" * 32)
    input_id, version, shard, row = POINTERS[pointer]
    point(predictions, input_id, version, (shards[shard].name, row))
    key = key_for(input_id, version)

    with Predictions.at(predictions, "fruits") as p:
        for read in (lambda: p.get(input_id), lambda: p.get_many(["r00", input_id, "r33"]),
                     lambda: p.versions(input_id), lambda: p.by_key(key),
                     lambda: p.search(limit=40)):
            with pytest.raises(RowMismatchError, match=f"points input '{input_id}'.*row {row} of "
                                                       f"{shards[shard].name}.*cache verify fruits"):
                read()
        assert p.get("r02")["output"] == "Drupe 2" and p.get("r33")["output"] == "Drupe 33"
    for columns in (["input_id", "output"], ["output"]):  # curate's and a chain's reads
        with pytest.raises(RowMismatchError):
            latest_table(predictions, "fruits", columns)

    # A copy never carries the other row's answer: the source is passed over, and a read
    # of it for a copy is refused.
    store = PredictionStore(predictions)
    try:
        assert store.generated_anywhere([key]) == {}
        (found,) = store.index.all_generated([key])[key]
        with pytest.raises(RowMismatchError):
            store.read_rows([found])
    finally:
        store.close()

    assert [(f.shard, f.kind) for f in verify(predictions).problems
            if f.kind != "latest-mismatch"] == [(shards[shard].name, "index-mismatch")]
    assert repair(predictions, home / "locks").rebuilt == ["fruits"]
    assert verify(predictions).ok
    with Predictions.at(predictions, "fruits") as p:
        assert p.get("r01")["output"] == "Drupe 1" and p.get("r02")["output"] == "Drupe 2"
        assert p.get("r05")["output"] == "Drupe 5 v2"


def test_a_row_pointer_at_another_row_is_one_line_in_the_cli_and_503_over_http(
        shards: list[Path], predictions: Path, home: Path, tmp_path: Path) -> None:
    point(predictions, "r01", 1, (shards[0].name, 2))
    line = one_line(almanac(home, "query", "fruits", "--input-id", "r01"))
    assert "cache verify fruits" in line and f"row 2 of {shards[0].name}" in line
    out = tmp_path / "out.jsonl"
    assert "cache verify fruits" in one_line(
        almanac(home, "export", "fruits", "--format", "jsonl", "-o", str(out)))
    assert not out.exists()
    with served(home) as client:
        assert "cache verify fruits" in refused(client.get("/jobs/fruits/predictions/r01"))
        assert client.get("/jobs/fruits/predictions/r02").json()["output"] == "Drupe 2"
    checked = almanac(home, "cache", "verify")
    assert checked.returncode == 1 and "index-mismatch" in checked.stdout
