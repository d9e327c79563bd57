"""A curated set in its directory: its data files are named by their content and are
exactly those its card names, so `datasets` never loads a stale cached copy; a new
curate replaces the set as one (leftovers of a killed curate included), refuses a path
that is not a directory, and on a full disk keeps the set it had (batch.data.curated_set)."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from almanac.cli import cli
from batch.data.curate import curate
from batch.data.curated_set import CuratedSetError, curated_data_files
from schemas.errors import ExitCode
from tests.cache_support import record, write
from tests.damage import can_mount, small_filesystem


@pytest.fixture
def predictions(home: Path) -> Path:
    return home / "predictions"


def job(predictions: Path, name: str, outputs: list[str]) -> None:
    write(predictions, [record(f"r{i:03d}", job=name, output=o, model="m", candidate="m")
                        for i, o in enumerate(outputs)], job=name)


def loaded(directory: Path, cache: Path) -> dict[str, list[str]]:
    """What `datasets.load_dataset(DIR)` returns, as the answers of each split."""
    data = datasets.load_dataset(str(directory), cache_dir=str(cache))
    return {split: [m[-1]["content"] for m in data[split]["messages"]] for split in data}


def on_disk(directory: Path) -> dict[str, list[str]]:
    return {split: [m[-1]["content"] for p in paths for m in pq.read_table(p)["messages"].to_pylist()]
            for split, paths in curated_data_files(directory).items()}


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_re_curated_set_loads_fresh_through_a_shared_datasets_cache(
        predictions: Path, tmp_path: Path) -> None:
    cache, out = tmp_path / "hf-cache", tmp_path / "sft"
    job(predictions, "teacher", [f"answer {i}" for i in range(12)])
    first = curate(predictions, "teacher", out, command="c", split=0.7)
    assert loaded(out, cache) == on_disk(out)
    old_files = set(first.files) - {"README.md"}

    # Fewer rows, the same directory, the same cache: what is on disk now, not before.
    second = curate(predictions, "teacher", out, command="c", split=0.7,
                    where="output contains '1'")
    assert sum(second.split_rows.values()) == 3  # answer 1, 10, 11
    assert loaded(out, cache) == on_disk(out)
    assert sum(len(v) for v in loaded(out, cache).values()) == 3
    # The directory holds exactly the new set: the old files are gone.
    assert listing(out) == sorted(second.files) and not old_files & set(second.files)


def test_two_sets_in_directories_of_the_same_name_each_load_their_own_rows(
        predictions: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    job(predictions, "big", [f"big {i}" for i in range(20)])
    job(predictions, "small", [f"small {i}" for i in range(5)])
    curate(predictions, "big", tmp_path / "one" / "sft", command="c", split=1)
    curate(predictions, "small", tmp_path / "two" / "sft", command="c", split=1)
    assert loaded(tmp_path / "one" / "sft", cache)["train"] == [f"big {i}" for i in range(20)]
    assert loaded(tmp_path / "two" / "sft", cache)["train"] == [f"small {i}" for i in range(5)]


def test_a_reader_of_the_card_sees_one_set_whole_while_curates_replace_it(
        predictions: Path, tmp_path: Path) -> None:
    job(predictions, "teacher", [f"answer {i}" for i in range(30)])
    out = tmp_path / "sft"
    sets = {"score is null": None, "score is null and output contains '2'": None}
    for where in sets:
        curate(predictions, "teacher", out, command="c", split=0.5, where=where)
        sets[where] = on_disk(out)
    seen: list[dict[str, list[str]]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.append(on_disk(out))
            except (FileNotFoundError, CuratedSetError):
                continue  # the set it began to read was replaced meanwhile: read again

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(4):
            for where in sets:
                curate(predictions, "teacher", out, command="c", split=0.5, where=where)
    finally:
        done.set()
        reader.join(timeout=60)
    assert seen and all(s in sets.values() for s in seen)


def test_a_curate_removes_what_an_earlier_or_killed_one_left_and_nothing_else(
        predictions: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    out.mkdir()
    left = [".train.jsonl.4242.tmp", ".validation.parquet.77.tmp", ".README.md.9.tmp",
            "train.parquet", "validation.jsonl", "train-0123456789abcdef.parquet"]
    for name in left:
        (out / name).write_text("left behind")
    (out / "notes.txt").write_text("mine")
    job(predictions, "teacher", ["a", "b"])
    report = curate(predictions, "teacher", out, command="c", split=1)
    assert listing(out) == sorted([*report.files, "notes.txt"])


def test_the_card_names_files_a_reader_can_check(predictions: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    job(predictions, "teacher", ["a", "b"])
    report = curate(predictions, "teacher", out, command="c", split=1)
    [parquet] = curated_data_files(out)["train"]
    [jsonl] = curated_data_files(out, "jsonl")["train"]
    assert parquet.name == f"{report.split_files['train']}.parquet"
    assert jsonl.name == f"{report.split_files['train']}.jsonl"
    card = (out / "README.md").read_text()
    assert f"path: {parquet.name}" in card and f"`{parquet.name}`, `{jsonl.name}`" in card

    jsonl.unlink()
    with pytest.raises(CuratedSetError, match=f"names {jsonl.name}, which is missing"):
        curated_data_files(out, "jsonl")
    (out / "README.md").unlink()
    with pytest.raises(CuratedSetError, match="no dataset card"):
        curated_data_files(out)


@pytest.fixture
def device(tmp_path: Path) -> Path:
    path = tmp_path / "dev" / "null"
    path.parent.mkdir()
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device needs CAP_MKNOD")
    return path


def test_curate_refuses_an_output_that_is_not_a_directory(
        predictions: Path, tmp_path: Path, device: Path) -> None:
    job(predictions, "teacher", ["a"])
    plain = tmp_path / "plain.txt"
    plain.write_text("mine")
    for target, message in [(device, "exists and is not a directory"),
                            (plain, "exists and is not a directory"),
                            ("-", "this output is a directory of files")]:
        result = CliRunner().invoke(cli, ["curate", "teacher", "-o", str(target)])
        assert result.exit_code == ExitCode.USAGE, result.output
        assert f"-o {target}: {message}" in result.output
    assert stat.S_ISCHR(os.stat(device).st_mode) and plain.read_text() == "mine"
    assert listing(tmp_path) == ["dev", "home", "plain.txt"]


def test_one_curate_writes_a_set_at_a_time(predictions: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    out.mkdir()
    job(predictions, "teacher", ["a"])
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a curate writing this set holds it
        result = CliRunner().invoke(cli, ["curate", "teacher", "-o", str(out)])
    finally:
        os.close(fd)
    assert result.exit_code == ExitCode.LOCKED, result.output
    assert "another curate is writing this set" in result.output and listing(out) == []


@pytest.mark.skipif(not can_mount(), reason="a real full filesystem needs mounts (tests.damage)")
def test_a_full_disk_keeps_the_set_the_directory_held(predictions: Path, tmp_path: Path) -> None:
    job(predictions, "teacher", [f"answer {i} " + "x" * 200 for i in range(40)])
    with small_filesystem(tmp_path / "disk", "256k") as disk:
        out = disk / "sft"
        first = curate(predictions, "teacher", out, command="c", split=0.8, where="score is null")
        before = on_disk(out)
        with (disk / "filler").open("wb", buffering=0) as fh:
            for size in (4096, 1):
                try:
                    while True:
                        fh.write(b"\0" * size)
                except OSError:
                    pass
        result = CliRunner().invoke(cli, ["curate", "teacher", "-o", str(out), "--split", "1"])
        assert result.exit_code == ExitCode.ERROR, result.output
        assert result.output.strip().splitlines() == [
            f"Error: -o {out}: no space left on its device; nothing was written under that "
            "name: free some space and run again"]
        assert listing(out) == sorted(first.files) and on_disk(out) == before
        fresh = disk / "fresh"
        assert CliRunner().invoke(cli, ["curate", "teacher", "-o", str(fresh)]).exit_code == 1
        assert not fresh.exists()  # a directory made for a set that could not be written
