"""A curated set's files in its directory: written, replaced, and read back.

Each split's data files are named by their content, `train-<digest>.parquet` and its
JSON Lines twin `train-<digest>.jsonl` (the digest: the first 16 hex digits of the
SHA-256 of the split's JSON Lines, which hold every column). The card (`README.md`)
names exactly those files. `datasets` keys its cache on the directory's name and the
card's file names, not on what the files hold: were the names fixed, a re-curated set,
or another set in a directory of the same name, would load the rows cached for the
first one. A name that changes with the rows never meets a stale cache entry.

The directory belongs to its set. Replacing a set, under a lock on the directory:
leftovers of a curate that was killed are removed; the new data files are written under
temporary names, flushed, and renamed into place; then the card is renamed over the old
one; then the old set's data files are removed. A reader of the card sees the old set
whole, or the new set whole; never a card naming a file of the other. A failure before
the card lands leaves the old set as it was.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Protocol

from batch.cache.shards import fsync_path
from batch.data import card
from schemas.errors import AlmanacError, ExitCode, UsageError
from schemas.output_path import output_directory, output_error

CARD = "README.md"
SPLITS = ("train", "validation")
DIGEST_HEX = 16
# This directory's data files (content-named, or the fixed names of earlier versions)
# and the temporaries of a curate (`.train.parquet.<pid>.tmp`, `.README.md.<pid>.tmp`).
_DATA = re.compile(rf"(?:{'|'.join(SPLITS)})(?:-[0-9a-f]{{{DIGEST_HEX}}})?\.(?:parquet|jsonl)")
_TEMPORARY = re.compile(rf"\.(?:{re.escape(CARD)}|(?:{'|'.join(SPLITS)})\.(?:parquet|jsonl))"
                        r"\.\d+\.tmp")


class CuratedSetError(UsageError):
    """A directory that is not a curated set as its card describes it."""


class SetLockedError(AlmanacError):
    """Another curate is writing this directory's set. Exit 75."""

    exit_code = ExitCode.LOCKED
    title = "locked"


def curated_data_files(directory: Path, fmt: str = "parquet") -> dict[str, list[Path]]:
    """The data files a curated set's card names, by split (`{"train": [...],
    "validation": [...]}`): the Parquet files, or with `fmt="jsonl"` their JSON Lines
    twins. What a trainer reads is exactly these, never a cached copy. A set replaced
    while this reads (its old files go once the new card is in place) is read again."""
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt: {fmt!r} is neither parquet nor jsonl")
    missing: list[Path] = []
    for _ in range(3):
        try:
            text = (directory / CARD).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CuratedSetError(f"{directory}: no dataset card ({CARD}); `almanac curate "
                                  "JOB -o DIR` writes one") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CuratedSetError(f"{directory}/{CARD}: cannot be read ({exc})") from None
        try:
            named = card.data_files(text)
        except ValueError as exc:
            raise CuratedSetError(f"{directory}/{CARD}: {exc}") from None
        files = {split: [_inside(directory, name).with_suffix(f".{fmt}") for name in names]
                 for split, names in named.items()}
        missing = [p for paths in files.values() for p in paths if not p.is_file()]
        if not missing:
            return files
    raise CuratedSetError(f"{directory}: its card names {missing[0].name}, which is missing")


def _inside(directory: Path, name: str) -> Path:
    if not _DATA.fullmatch(name):
        raise CuratedSetError(f"{directory}/{CARD}: names {name!r}, not a data file of a "
                              "curated set (train-<digest>.parquet, ...)")
    return directory / name


class NewSet:
    """The files of the set being written, under temporary names until `commit`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pending: list[tuple[Path, Path]] = []  # (temporary, final)
        self.placed: list[Path] = []  # data files put in place that were not there before
        self.card_text: str | None = None

    def split(self, name: str, write_jsonl: Callable[[Writable], None],
              write_parquet: Callable[[Path], None]) -> str:
        """Writes one split's twins; returns their content name (`train-<digest>`). The
        Parquet file is encoded on a thread of its own while the JSON Lines are written
        here: both mostly run in Arrow and hashlib, outside the GIL, so two cores share
        the work."""
        jsonl, parquet = self._temporary(f"{name}.jsonl"), self._temporary(f"{name}.parquet")
        digest = hashlib.sha256()
        with ThreadPoolExecutor(1, thread_name_prefix="curate-parquet") as pool:
            parquet_written = pool.submit(_durably, write_parquet, parquet)
            with jsonl.open("wb") as fh:
                write_jsonl(_Digesting(fh, digest))
                fh.flush()
                os.fsync(fh.fileno())
            parquet_written.result()
        stem = f"{name}-{digest.hexdigest()[:DIGEST_HEX]}"
        self.pending += [(parquet, self.directory / f"{stem}.parquet"),
                         (jsonl, self.directory / f"{stem}.jsonl")]
        return stem

    def card(self, text: str) -> None:
        tmp = self._temporary(CARD)
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        self.card_text = text

    def commit(self) -> None:
        """New data files into place, then the card, then the old set's files away."""
        if self.card_text is None:  # the old card would name files about to go
            raise RuntimeError("a curated set is replaced with its card")
        kept = {final.name for _, final in self.pending}
        for tmp, final in self.pending:
            if not final.exists():
                self.placed.append(final)
            os.replace(tmp, final)
        fsync_path(self.directory)
        os.replace(self._temporary(CARD), self.directory / CARD)
        self.placed = []  # the card names them now
        fsync_path(self.directory)
        for old in self.directory.iterdir():
            if _DATA.fullmatch(old.name) and old.name not in kept:
                with suppress(FileNotFoundError):
                    old.unlink()
        fsync_path(self.directory)

    def discard(self) -> None:
        """Everything this set wrote that no card names: the old set stays as it was."""
        for tmp in [t for t, _ in self.pending] + [self._temporary(CARD)] + self.placed:
            with suppress(FileNotFoundError):
                tmp.unlink()
        for name in ("jsonl", "parquet"):
            for split in SPLITS:
                with suppress(FileNotFoundError):
                    self._temporary(f"{split}.{name}").unlink()

    def _temporary(self, name: str) -> Path:
        return self.directory / f".{name}.{os.getpid()}.tmp"


@contextmanager
def replacing(directory: Path, *, option: str = "-o") -> Iterator[NewSet]:
    """The directory's set replaced by what the block writes into the `NewSet`, or left
    as it was if the block fails (a directory created for it is removed again)."""
    created = output_directory(directory, option=option)
    shown = f"{option} {directory}"
    new = NewSet(directory)
    try:
        with _locked(directory, shown):
            _remove_leftovers(directory)
            try:
                yield new
                new.commit()
            except BaseException:
                new.discard()
                raise
    except OSError as exc:
        _remove_if_created(directory, created)
        raise output_error(shown, exc) from exc
    except BaseException:
        _remove_if_created(directory, created)
        raise


@contextmanager
def _locked(directory: Path, shown: str) -> Iterator[None]:
    """An exclusive lock on the directory itself (released when its descriptor closes,
    by a killed process too): one curate writes a set at a time."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise SetLockedError(f"{shown}: another curate is writing this set; run "
                                     "again when it has finished") from None
            raise
        yield
    finally:
        os.close(fd)


def _remove_leftovers(directory: Path) -> None:
    """Temporaries of a curate that was killed: under the lock, no other is writing."""
    for entry in directory.iterdir():
        if _TEMPORARY.fullmatch(entry.name):
            with suppress(FileNotFoundError):
                entry.unlink()


def _remove_if_created(directory: Path, created: bool) -> None:
    if created:
        with suppress(OSError):
            directory.rmdir()  # only if empty: nothing of anyone else's goes


def _durably(write: Callable[[Path], None], path: Path) -> None:
    write(path)
    fsync_path(path)


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class _Digesting:
    """A binary file that also feeds what is written to a digest."""

    def __init__(self, fh: BinaryIO, digest: hashlib._Hash) -> None:
        self.fh, self.digest = fh, digest

    def write(self, data: bytes | memoryview, /) -> int:
        self.digest.update(data)
        return self.fh.write(data)
