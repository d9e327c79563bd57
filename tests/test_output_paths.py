"""Where a user points `-o` / `--errors`: a device or a FIFO is written through and
survives, `-` is stdout, a regular file appears whole or not at all, a reader that
stops early (`| head`) ends the command quietly, and a path that cannot take the
output is one line with its exit code, nothing half-written (schemas.output_path)."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from almanac.cli import cli
from schemas.errors import ExitCode
from tests.cache_support import record, write
from tests.damage import can_mount, read_only, small_filesystem

ROWS = 30
FAILED = 3
FORMATS = ("parquet", "jsonl", "csv", "openai-batch")
needs_mount = pytest.mark.skipif(not can_mount(), reason="a real full or read-only filesystem "
                                                         "needs mounts (tests.damage)")


@pytest.fixture
def job(home: Path) -> str:
    records = [record(f"r{i:03d}", output=f"answer {i} " + "é" * 40) for i in range(ROWS)]
    records += [record(f"bad{i}", error="prompt too long") for i in range(FAILED)]
    write(home / "predictions", records)
    return "fruits"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def export(fmt: str, output: str | Path, *more: str):
    return invoke("export", "fruits", "--format", fmt, "-o", str(output), *more)


def rows_in(fmt: str, data: bytes) -> int:
    """How many predictions an export's bytes hold, read as a consumer would."""
    if fmt == "parquet":
        return pq.read_table(pa.BufferReader(data)).num_rows
    text = data.decode("utf-8")
    if fmt == "csv":
        return len(list(csv.DictReader(io.StringIO(text, newline=""))))
    return len([json.loads(line) for line in text.splitlines()])


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """A character device like /dev/null (1, 3), made in a scratch directory."""
    (tmp_path / "dev").mkdir()
    path = tmp_path / "dev" / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device needs CAP_MKNOD")
    return path


class Fifo:
    """A FIFO with a real reader already waiting on it (`cat FIFO > FILE`)."""

    def __init__(self, directory: Path) -> None:
        self.path, self.got = directory / "fifo", directory / "got"
        os.mkfifo(self.path)
        with self.got.open("wb") as sink:
            self.reader = subprocess.Popen(["cat", str(self.path)], stdout=sink)

    def received(self) -> bytes:
        """Everything the reader got, once it has seen the writer close (it exits then)."""
        self.reader.wait(timeout=60)
        return self.got.read_bytes()


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Fifo]:
    directory = tmp_path / "fifo-dir"
    directory.mkdir()
    made = Fifo(directory)
    try:
        yield made
    finally:
        if made.reader.poll() is None:  # the writer never came: nothing else will end it
            made.reader.kill()
            made.reader.wait()


def ours(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_writes_through_a_device_and_the_device_survives(
        job: str, device: Path, fmt: str) -> None:
    before = os.stat(device)
    result = export(fmt, device)
    assert result.exit_code == 0, result.output
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino  # the same node, not a file renamed over it
    assert ours(device.parent) == ["null"]  # no temporary left beside it


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_streams_to_a_fifo_whose_reader_gets_every_row(
        job: str, fifo: Fifo, fmt: str) -> None:
    result = export(fmt, fifo.path)
    assert result.exit_code == 0, result.output
    assert rows_in(fmt, fifo.received()) == ROWS + FAILED
    assert stat.S_ISFIFO(os.stat(fifo.path).st_mode)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dash_writes_every_format_to_stdout(job: str, fmt: str) -> None:
    result = export(fmt, "-")
    assert result.exit_code == 0, result.output
    assert rows_in(fmt, result.stdout_bytes) == ROWS + FAILED
    assert "exported 33 predictions of fruits to stdout" in result.stderr


def test_failed_rows_go_to_a_device_or_stdout_and_the_rest_to_a_file(
        job: str, device: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = export("openai-batch", out, "--errors", str(device))
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == ROWS and stat.S_ISCHR(os.stat(device).st_mode)
    result = export("openai-batch", out, "--errors", "-")
    assert [json.loads(line)["error"]["code"] for line in result.stdout.splitlines()] == \
        ["generation_failed"] * FAILED
    same = export("openai-batch", out, "--errors", str(out))
    assert same.exit_code == ExitCode.USAGE and "--errors names the same file as -o" in same.output


def test_a_descriptor_path_is_written_where_it_points_appending_stays_appending(
        job: str, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("kept\n")
    with log.open("ab") as fh:
        for spelling in (f"/dev/fd/{fh.fileno()}", f"/proc/self/fd/{fh.fileno()}"):
            result = export("jsonl", spelling)
            assert result.exit_code == 0, result.output
    lines = log.read_text().splitlines()
    assert lines[0] == "kept" and len(lines) == 1 + 2 * (ROWS + FAILED)
    closed = export("jsonl", "/dev/fd/987")
    assert closed.exit_code == ExitCode.USAGE and "descriptor 987 is not open" in closed.output


def test_a_regular_file_is_replaced_whole_keeping_its_mode_and_the_link_to_it(
        job: str, tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert export("jsonl", link).exit_code == 0
    assert link.is_symlink() and rows_in("jsonl", target.read_bytes()) == ROWS + FAILED
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert ours(tmp_path) == ["home", "link.jsonl", "real.jsonl"]


def test_paths_that_cannot_take_the_output_are_one_line_exit_2_and_nothing_is_written(
        job: str, tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    try:
        cases = {str(tmp_path / "sock"): "is a socket",
                 str(tmp_path / "missing" / "out.jsonl"): "no such file or directory",
                 str(tmp_path / "home"): "is a directory"}
        for path, message in cases.items():
            result = export("jsonl", path)
            assert result.exit_code == ExitCode.USAGE, (path, result.output)
            assert message in result.output and "Traceback" not in result.output
    finally:
        server.close()
    assert ours(tmp_path) == ["home", "sock"]


def test_parquet_is_not_written_to_a_terminal(job: str) -> None:
    leader, follower = os.openpty()
    try:
        result = export("parquet", os.ttyname(follower))
        assert result.exit_code == ExitCode.USAGE
        assert "is a terminal, and this output is binary" in result.output
    finally:
        os.close(leader)
        os.close(follower)


def test_models_export_writes_through_a_device_a_fifo_and_stdout(
        device: Path, fifo: Fifo) -> None:
    assert invoke("init").exit_code == 0
    listed = json.loads(invoke("models", "export", "-o", "-").stdout)
    assert len(listed) > 10
    assert invoke("models", "export", "-o", str(device)).exit_code == 0
    assert stat.S_ISCHR(os.stat(device).st_mode)
    assert invoke("models", "export", "--format", "json", "-o", str(fifo.path)).exit_code == 0
    assert json.loads(fifo.received()) == listed


# -- full and read-only disks (real filesystems mounted for the test) ---------------------------


def fill(directory: Path) -> None:
    """Leaves no byte free on the filesystem at `directory`."""
    with (directory / "filler").open("wb", buffering=0) as fh:
        for size in (4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError:
                pass


@needs_mount
@pytest.mark.parametrize("command", [("export", "fruits", "--format", "jsonl"),
                                     ("models", "export")])
def test_a_full_disk_is_one_line_exit_1_and_the_old_file_is_kept(
        job: str, tmp_path: Path, command: tuple[str, ...]) -> None:
    if command[0] == "models":
        assert invoke("init").exit_code == 0
    with small_filesystem(tmp_path / "full", "64k") as directory:
        out = directory / "out.txt"
        out.write_text("the previous export\n")
        fill(directory)
        result = invoke(*command, "-o", str(out))
        assert result.exit_code == ExitCode.ERROR, result.output
        assert result.output.strip().splitlines() == [
            f"Error: -o {out}: no space left on its device; nothing was written under that "
            "name: free some space and run again"]
        assert out.read_text() == "the previous export\n"
        assert ours(directory) == ["filler", "out.txt"]


@needs_mount
def test_an_unwritable_directory_is_one_line_exit_1(job: str, tmp_path: Path) -> None:
    directory = tmp_path / "locked"
    directory.mkdir()
    with read_only(directory):
        result = export("parquet", directory / "out.parquet")
    assert result.exit_code == ExitCode.ERROR, result.output
    assert result.output.strip().splitlines() == [
        f"Error: -o {directory / 'out.parquet'}: cannot write (read-only file system); "
        "nothing was written under that name"]
    assert ours(directory) == []


# -- a reader that stops early ------------------------------------------------------------------


@pytest.mark.parametrize("args", [("export", "fruits", "--format", "jsonl", "-o", "-"),
                                  ("export", "fruits", "--format", "csv", "-o", "/dev/stdout"),
                                  ("query", "fruits", "--jsonl")])
def test_a_closed_pipe_ends_a_reader_quietly_with_exit_0(job: str, home: Path, args: tuple[str, ...]) -> None:
    """As `almanac export ... | head` when head has what it wants: the pipe's reading end
    is closed before the command writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "almanac", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300,
                              env={**os.environ, "ALMANAC_HOME": str(home)})
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (0, "")
