"""Real damage to real files, for the integrity tests: flipped bytes where a reader
decodes them, truncations, garbage, read-only and full filesystems."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq


def flip_in_column(path: Path, column: str = "output", group: int = 0) -> int:
    """Flip one byte of the data of `column`'s last page in row group `group` (past the
    page's header: what the page checksum covers); the size stays. Returns the offset."""
    meta = pq.ParquetFile(path).metadata.row_group(group)
    chunk = next(meta.column(j) for j in range(meta.num_columns)
                 if meta.column(j).path_in_schema == column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    return flip(path, start + chunk.total_compressed_size - 2)


def flip_page_header(path: Path, column: str = "output", group: int = 0) -> int:
    """Flip a byte of the header of `column`'s first data page in row group `group`: what
    page checksums do not cover."""
    meta = pq.ParquetFile(path).metadata.row_group(group)
    chunk = next(meta.column(j) for j in range(meta.num_columns)
                 if meta.column(j).path_in_schema == column)
    return flip(path, chunk.data_page_offset + 2)


def flip(path: Path, offset: int) -> int:
    """Flip every bit of the byte at `offset` (negative: from the end), in place."""
    with path.open("r+b") as fh:
        fh.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
        where = fh.tell()
        byte = fh.read(1)
        fh.seek(where)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return where


def truncate(path: Path, keep: float = 0.5) -> None:
    with path.open("r+b") as fh:
        fh.truncate(int(path.stat().st_size * keep))


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount filesystems (root, where the container allows it):
    tried once on a scratch directory."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        tried = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", scratch],
                               capture_output=True)
        if tried.returncode != 0:
            return False
        subprocess.run(["umount", scratch], check=True, capture_output=True)
    return True


@contextmanager
def small_filesystem(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "48k") mounted on `directory` for the block: a real full
    disk (ENOSPC) for whatever writes there."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(directory)], check=True, capture_output=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


def grow(directory: Path, size: str) -> None:
    """Give the tmpfs at `directory` more room, keeping what it holds (space freed)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(directory)], check=True,
                   capture_output=True)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` read-only for everyone, root included: a read-only bind mount over it
    where this process may mount, else its permission bits (enough for anyone else)."""
    if can_mount():
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True,
                           capture_output=True)
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
        return
    mode = path.stat().st_mode
    path.chmod(0o444)
    try:
        yield path
    finally:
        path.chmod(mode)
