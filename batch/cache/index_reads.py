"""The prediction index's queries that locate records: part of `batch.cache.index`, the
index's one owner (its `Index` is these queries plus opening, writing and the jobs' and
shards' bookkeeping). Every query returns a list, so no statement (and no read
snapshot) stays open between calls; each is one round trip, with the job's and the
candidates' ids looked up inside it."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from batch.cache.errors import AmbiguousKeyError
from batch.cache.index_rows import (
    MIN_PREFIX,
    CandidateInfo,
    Located,
    begins,
    key_in,
    key_out,
    key_prefix,
    prefix_ranges,
)
from batch.cache.rowcheck import Claims
from batch.cache.sidestore import SideStore

CHUNK = 500  # SQLite host parameters per IN (...) query
_T = TypeVar("_T")

JOB = "(SELECT id FROM jobs WHERE name = ?)"
# A Located's columns, and where they come from (`j` only where the job is not known).
LOC = "r.input_id, r.key, s.name, r.row, r.state, l.label"
FROM = "records r JOIN shards s ON s.id = r.shard JOIN labels l ON l.id = r.label"
LATEST = 2  # `state` bit: the latest of its (job, input, candidate); bit 0: failed


def hex_keys(raw: bytes, n: int) -> pa.Array:
    """`n` SHA-256 keys of 32 bytes each, end to end, as the hex strings shards hold."""
    offsets = np.arange(0, 64 * (n + 1), 64, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()),
                                       pa.py_buffer(raw.hex().encode("ascii")))


def _split(joined: str | bytes, separator: str, kind: pa.DataType) -> pa.Array:
    """The pieces of one long text, split in Arrow (a Python string per piece costs
    more than the query that made the text)."""
    import pyarrow.compute as pc  # whole-job reads only: a lookup does without it

    return pc.split_pattern(pa.array([joined], kind), separator).flatten()


def _integers(joined: str) -> np.ndarray:
    """Comma-separated integers (a group_concat) as int64."""
    return _split(joined, ",", pa.large_string()).cast(pa.int64()).to_numpy()


def chunks(items: list[_T], size: int = CHUNK) -> Iterator[list[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def marks(part: list[Any]) -> str:
    return ",".join("?" * len(part))


def located(job: str, row: tuple[Any, ...]) -> Located:
    input_id, key, shard, n, state, label = row
    return Located(job, input_id, key_out(key), shard, n, bool(state & 1), label)


def among(job: str, labels: list[str] | None) -> tuple[str, tuple[Any, ...]]:
    """` AND r.label IN (...)` for a selection of candidates by label; nothing for None."""
    if labels is None:
        return "", ()
    return (f" AND r.label IN (SELECT l2.id FROM labels l2 JOIN jobs j2 ON j2.id = l2.job "
            f"WHERE j2.name = ? AND l2.label IN ({marks(labels) or 'NULL'}))", (job, *labels))


def flags(failed: bool | None, all_versions: bool) -> str:
    latest = "" if all_versions else f" AND r.state >= {LATEST}"
    return latest + ("" if failed is None else f" AND (r.state & 1) = {int(failed)}")


class IndexReads(SideStore):
    """The locating queries of one connection to `predictions/index.db` (opened, and
    its failures translated, as every side store's: batch.cache.sidestore)."""

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's `PRAGMA data_version`):
        what a reader keeps about the index is current while it stays the same."""
        return int(self._all("PRAGMA data_version")[0][0])

    # -- candidates --------------------------------------------------------------------------

    def candidates(self, job: str) -> list[CandidateInfo]:
        """The job's current candidates in their order. A job no run has named candidates
        for (written before candidates, or by hand) has those its latest records name,
        each labelled with its model."""
        listed = [CandidateInfo(*r) for r in self._all(
            "SELECT label, model, revision, adapter, adapter_revision, ordinal FROM candidates "
            f"WHERE job = {JOB} ORDER BY ordinal, label", (job,))]
        if listed:
            return listed
        labels = self._all(f"SELECT DISTINCT l.label FROM records r JOIN labels l ON l.id = r.label "
                           f"WHERE r.job = {JOB} AND r.state >= {LATEST} ORDER BY 1", (job,))
        return [CandidateInfo(label, label, None, None, None, i) for i, (label,) in enumerate(labels)]

    def candidate_counts(self, job: str) -> dict[str, tuple[int, int]]:
        """{candidate: (latest records, of which failed)} over every candidate of the job."""
        counts = self._all(f"SELECT r.label, count(*), sum(r.state & 1) FROM records r "
                           f"WHERE r.job = {JOB} AND r.state >= {LATEST} GROUP BY r.label", (job,))
        names = dict(self._all(f"SELECT id, label FROM labels WHERE job = {JOB}", (job,)))
        return {names[label]: (n, failed) for label, n, failed in counts}

    def every_candidate(self) -> list[tuple[str, CandidateInfo, str | None]]:
        """(job, candidate, when the job's newest shard was written) for every job's
        current candidates as its last run named them, the most recently written job
        first: which models and adapters the cache can answer for, across jobs."""
        return [(job, CandidateInfo(*info), written) for job, *info, written in self._all(
            "SELECT j.name, c.label, c.model, c.revision, c.adapter, c.adapter_revision, "
            "c.ordinal, (SELECT max(s.created_at) FROM shards s WHERE s.job = c.job) AS written "
            "FROM candidates c JOIN jobs j ON j.id = c.job ORDER BY written DESC, j.name, "
            "c.ordinal")]

    # -- locating records --------------------------------------------------------------------

    def latest_for(self, job: str, candidate: str, input_ids: list[str]) -> dict[str, Located]:
        """{input id: its latest record by `candidate`} for the ids that have one."""
        out: dict[str, Located] = {}
        # In order, so that neighbouring ids share the index's pages: a third less work
        # for thousands of random ids than in the order asked.
        for part in chunks(sorted(input_ids)):
            for row in self._all(
                    f"SELECT {LOC} FROM {FROM} WHERE r.job = {JOB} AND r.input_id IN "
                    f"({marks(part)}) AND l.label = ? AND r.state >= {LATEST}",
                    (job, *part, candidate)):
                out[row[0]] = located(job, row)
        return out

    def latest_keys(self, job: str, candidate: str) -> tuple[list[str], list[str], list[bool]]:
        """(input ids, keys, failed) of every latest record of the job by `candidate`, as
        three columns in one pass: a chain's planning checks all its rows at once, in
        Arrow (batch.run.upstream). Keys leave as `key_out` gives them."""
        rows = self._all(
            "SELECT r.input_id, CASE WHEN typeof(r.key) = 'blob' THEN lower(hex(r.key)) "
            "ELSE r.key END, r.state & 1 FROM records r WHERE r.job = (SELECT id FROM jobs "
            "WHERE name = ?1) AND r.label = (SELECT l.id FROM labels l JOIN jobs j ON j.id = "
            f"l.job WHERE j.name = ?1 AND l.label = ?2) AND r.state >= {LATEST}",
            (job, candidate))
        ids, keys, failed = zip(*rows, strict=True) if rows else ((), (), ())
        return list(ids), list(keys), [bool(f) for f in failed]

    def versions_for(self, job: str, candidate: str,
                     pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Located]:
        """Earlier records of the same input and candidate with the same key (a prompt
        changed back)."""
        out: dict[tuple[str, str], Located] = {}
        for input_id, key in pairs:
            rows = self._all(f"SELECT {LOC} FROM {FROM} WHERE r.job = {JOB} AND r.input_id = ? "
                             "AND l.label = ? AND r.key = ?", (job, input_id, candidate, key_in(key)))
            if rows:
                out[(input_id, key)] = located(job, rows[0])
        return out

    def generated_anywhere(self, keys: list[str]) -> dict[str, Located]:
        """One successful record per key, from any job and candidate, to copy instead of
        generating."""
        return {key: found[0] for key, found in self.all_generated(keys).items()}

    def all_generated(self, keys: list[str]) -> dict[str, list[Located]]:
        """Every successful record of each key, from any job and candidate."""
        out: dict[str, list[Located]] = {}
        stored = {key_in(k): k for k in keys}
        for part in chunks(list(stored)):
            for row in self._all(
                    f"SELECT j.name, {LOC} FROM {FROM} JOIN jobs j ON j.id = r.job "
                    f"WHERE substr(r.key, 1, 8) IN ({marks(part)}) AND (r.state & 1) = 0 "
                    "ORDER BY r.id", [key_prefix(k) for k in part]):
                key = stored.get(row[2])
                if key is not None:  # the full key, not only its first 8 bytes
                    out.setdefault(key, []).append(located(row[0], row[1:]))
        return out

    def by_key(self, key: str, job: str | None = None) -> Located | None:
        """A record with this content address, in `job` or in any job: a success if there
        is one, else the newest."""
        stored = key_in(key)
        where, params = "substr(r.key, 1, 8) = ? AND r.key = ?", [key_prefix(stored), stored]
        if job is not None:
            where, params = where + f" AND r.job = {JOB}", [*params, job]
        rows = self._all(f"SELECT j.name, {LOC} FROM {FROM} JOIN jobs j ON j.id = r.job "
                         f"WHERE {where} ORDER BY r.state & 1, s.name DESC LIMIT 1", params)
        if not rows and len(key) >= MIN_PREFIX and not isinstance(stored, bytes):
            # Not a whole key: the beginning of one, as git takes an abbreviated hash. (A
            # whole SHA-256 begins no other key: its miss, as the OpenAI path's, costs one
            # read.)
            matches = self.keys_beginning(key, job)
            if len(matches) > 1:
                raise AmbiguousKeyError(key, matches)
            return self.by_key(matches[0], job) if matches and matches[0] != key else None
        return located(rows[0][0], rows[0][1:]) if rows else None

    def keys_beginning(self, prefix: str, job: str | None = None, limit: int = 10) -> list[str]:
        """Up to `limit` + 1 distinct keys (in `job`, or in any job) that begin with
        `prefix`, in order: one is the key meant, more say the prefix is ambiguous. Each
        range is read through the index by key (records_by_key)."""
        found: list[str] = []
        for lo, hi in prefix_ranges(prefix):
            where = "substr(r.key, 1, 8) >= ?" + ("" if hi is None else " AND substr(r.key, 1, 8) < ?")
            params: list[Any] = [lo, *([] if hi is None else [hi])]
            if job is not None:
                where, params = where + f" AND r.job = {JOB}", [*params, job]
            with self.guard():
                cursor = self.db.execute(f"SELECT DISTINCT r.key FROM records r WHERE {where} "
                                         "ORDER BY substr(r.key, 1, 8), r.key", params)
                for (stored,) in cursor:
                    if begins(key_out(stored), prefix):
                        found.append(key_out(stored))
                        if len(found) > limit:
                            return found
        return found

    def versions(self, job: str, input_id: str, candidates: list[str] | None = None) -> list[Located]:
        """Every record of one input (by these candidates), oldest first."""
        where, labels = among(job, candidates)
        return [located(job, r) for r in self._all(
            f"SELECT {LOC} FROM {FROM} WHERE r.job = {JOB} AND r.input_id = ?{where} "
            "ORDER BY s.name, r.row", (job, input_id, *labels))]

    def listing(self, job: str, candidates: list[str] | None, *, failed: bool | None,
                all_versions: bool, limit: int, offset: int) -> list[Located]:
        """One page of the records of these candidates (None: every candidate), the latest
        of each input or every version, in input id order, then the candidates' order."""
        where, labels = among(job, candidates)
        if candidates is not None and len(candidates) <= 1:
            join, order = "", "r.input_id, r.shard, r.row"
        else:  # the job's candidate order; candidates it no longer lists come last
            join = " LEFT JOIN candidates c ON c.job = r.job AND c.label = l.label"
            order = "r.input_id, coalesce(c.ordinal, 1 << 30), l.label, r.shard, r.row"
        return [located(job, r) for r in self._all(
            f"SELECT {LOC} FROM {FROM}{join} WHERE r.job = {JOB}{where}"
            f"{flags(failed, all_versions)} ORDER BY {order} LIMIT ? OFFSET ?",
            (job, *labels, int(limit), int(offset)))]

    def count(self, job: str, candidates: list[str] | None, *, failed: bool | None,
              all_versions: bool) -> int:
        where, labels = among(job, candidates)
        return self._all(f"SELECT count(*) FROM records r WHERE r.job = {JOB}{where}"
                         f"{flags(failed, all_versions)}", (job, *labels))[0][0]

    def current(self, job: str, input_ids: list[str], candidates: list[str] | None, *,
                all_versions: bool) -> list[Located]:
        """The records the index lists for these inputs and candidates: their latest, or
        every version."""
        where, labels = among(job, candidates)
        out: list[Located] = []
        for part in chunks(input_ids):
            out += [located(job, r) for r in self._all(
                f"SELECT {LOC} FROM {FROM} WHERE r.job = {JOB} AND r.input_id IN "
                f"({marks(part)}){where}{flags(None, all_versions)}", (job, *part, *labels))]
        return out

    def current_rows(self, job: str, candidates: list[str], *, all_versions: bool
                     ) -> tuple[dict[int, str], np.ndarray]:
        """Every record these candidates' listing pages through, in its order (input id,
        then candidate order, then as written), packed one integer each: shard id << 34 |
        row << 2 | state (bit 0 failed); and {shard id: name}. One string from SQLite and
        one parse: a million rows as Python tuples would cost seconds."""
        labels = dict(self._all(f"SELECT label, id FROM labels WHERE job = {JOB}", (job,)))
        ids = [labels[c] for c in candidates if c in labels]
        names = dict(self._all(f"SELECT id, name FROM shards WHERE job = {JOB}", (job,)))
        if not ids:
            return names, np.empty(0, dtype=np.int64)
        if len(ids) == 1 and not all_versions:  # the index's own order: nothing to sort
            order = "r.input_id"
        else:
            ordinal = " ".join(f"WHEN {label} THEN {i}" for i, label in enumerate(ids))
            order = f"r.input_id, CASE r.label {ordinal} END, r.shard, r.row"
        packed = self._all(
            "SELECT group_concat(packed) FROM (SELECT (r.shard << 34) | (r.row << 2) | r.state "
            f"AS packed FROM records r WHERE r.job = {JOB} AND r.label IN ({marks(ids) or 'NULL'})"
            f"{flags(None, all_versions)} ORDER BY {order})", (job, *ids))[0][0]
        if not packed:
            return names, np.empty(0, dtype=np.int64)
        return names, np.fromstring(packed, dtype=np.int64, sep=",")

    def rows_by_shard(self, job: str, *, all_versions: bool,
                      candidates: list[str] | None = None) -> dict[str, list[int]]:
        """{shard: its rows the index lists (of these candidates)}, ascending."""
        return {shard: rows.tolist() for shard, rows in
                self.row_arrays(job, all_versions=all_versions, candidates=candidates).items()}

    def row_arrays(self, job: str, *, all_versions: bool,
                   candidates: list[str] | None = None) -> dict[str, np.ndarray]:
        """{shard: its rows the index lists (of these candidates), ascending}, in one pass
        over the job (there is no index by shard, and a query per shard would scan the
        job's rows each time); the pairs go straight into an array, a million in a
        second, where a Python list per shard took twice that."""
        where, labels = among(job, candidates)
        names = dict(self._all(f"SELECT id, name FROM shards WHERE job = {JOB}", (job,)))
        with self.guard():
            cursor = self.db.execute(f"SELECT r.shard, r.row FROM records r WHERE r.job = {JOB}"
                                     f"{where}{flags(None, all_versions)}", (job, *labels))
            pairs = np.fromiter(chain.from_iterable(cursor), dtype=np.int64).reshape(-1, 2)
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        shard, row = pairs[order, 0], pairs[order, 1]
        if not len(shard):  # a job whose every row has left the index
            return {}
        starts = np.flatnonzero(np.r_[True, shard[1:] != shard[:-1]])
        ends = [*starts[1:], len(shard)]
        return {names[int(shard[a])]: row[a:b] for a, b in zip(starts, ends, strict=True)
                if int(shard[a]) in names}

    def claims(self, job: str, candidates: list[str] | None, *, all_versions: bool) -> Claims:
        """What the index says of the records a whole-job read takes (these candidates'
        latest, or every version), column by column for batch.cache.rowcheck to compare
        with the rows read: one pass and a few strings from SQLite, not a tuple per
        record (which at a million records costs seconds)."""
        where, labels = among(job, candidates)
        params = (job, *labels)
        shard_names = dict(self._all(f"SELECT id, name FROM shards WHERE job = {JOB}", (job,)))
        label_names = dict(self._all(f"SELECT id, label FROM labels WHERE job = {JOB}", (job,)))
        selected = f"FROM records r WHERE r.job = {JOB}{where}{flags(None, all_versions)}"
        packed, label, ids, keys, n, plain = self._all(
            "SELECT group_concat((r.shard << 34) | (r.row << 2) | (r.state & 1)), "
            "group_concat(r.label), CAST(group_concat(r.input_id, char(0)) AS BLOB), "
            "CAST(group_concat(r.key, '') AS BLOB), count(*), "
            f"coalesce(sum(typeof(r.key) = 'blob' AND length(r.key) = 32), 0) {selected}",
            params)[0]
        if not n:
            return Claims(shard_names, label_names, np.empty(0, np.int64),
                          np.empty(0, np.int64), pa.array([], pa.string()),
                          pa.array([], pa.string()))
        split = _split(ids, "\0", pa.large_binary()).cast(pa.string())
        if plain != n or len(split) != n:  # a hand-made key, an input id holding NUL
            rows = self._all(f"SELECT (r.shard << 34) | (r.row << 2) | (r.state & 1), r.label, "
                             f"r.input_id, r.key {selected}", params)
            return Claims(shard_names, label_names,
                          np.array([r[0] for r in rows], np.int64),
                          np.array([r[1] for r in rows], np.int64),
                          pa.array([r[2] for r in rows], pa.string()),
                          pa.array([key_out(r[3]) for r in rows], pa.string()))
        return Claims(shard_names, label_names, _integers(packed), _integers(label), split,
                      hex_keys(keys, n))

    def records_by_shard(self, job: str) -> Iterator[tuple[str, int, str, str, bool, str]]:
        """Every record of the job as (shard, row, input id, key, failed, candidate), shard
        by shard, row by row; lazily, so call inside `snapshot()` and consume it there. A
        record whose shard the index does not list (or lists as another job's) names it
        `#<id>`."""
        with self.guard():
            for shard, row, input_id, key, state, label in self.db.execute(
                    "SELECT coalesce(s.name, '#' || r.shard), r.row, r.input_id, r.key, r.state, "
                    "l.label FROM records r LEFT JOIN shards s ON s.id = r.shard AND s.job = r.job "
                    f"JOIN labels l ON l.id = r.label WHERE r.job = {JOB} ORDER BY 1, 2", (job,)):
                yield shard, row, input_id, key_out(key), bool(state & 1), label

    def latest_mismatches(self, job: str) -> int:
        """How many (input, candidate) pairs of the job have more than one latest record."""
        return self._all(f"SELECT count(*) FROM (SELECT 1 FROM records r WHERE r.job = {JOB} "
                         f"AND r.state >= {LATEST} GROUP BY r.input_id, r.label "
                         "HAVING count(*) > 1)", (job,))[0][0]
