"""Chained jobs: `[input] job = "NAME"` reads another job's latest predictions as rows.

Each row is the upstream input row's fields plus `output`, `score`, `input_id` and
`key` of its latest successful prediction (by the candidate `input.candidate` names,
or the upstream job's only one). Failed upstream predictions and upstream rows not
predicted yet do not flow down; they do once the upstream job answers them.
`explode = true` makes one row per item of each answer: its `n` samples, or the
items of the JSON list it holds, each with its `position` in the row and in its id
(`<upstream id>#<position>`); an answer that is not a JSON list becomes a failed
row saying why.

The upstream's input fields come from its input as its job file reads it now (the
job file it was last run from, recorded in lineage.db, or a job file of that name
beside the downstream one), so an upstream that is itself a chain is read
recursively. What each planning found (which upstream record fed each row, and the
key it gave) goes to lineage.db (batch.data.lineage): `curate` names sources from
it, and the next planning skips rendering rows whose fields did not change
(batch.run.upstream).
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch.cache.errors import UnknownJobError
from batch.cache.reader import Predictions
from batch.cache.scan import latest_table
from batch.data import chain_rows
from batch.data.lineage import LineageStore, PlanInfo
from batch.run.inputs import InputRow, jsonl_row, read_rows
from batch.run.keys import row_basis
from batch.run.spec.files import MAX_JOB_FILE, FileProblem, read_text
from batch.run.spec.job import JobSpec, load_spec
from batch.run.upstream import ChainRows, Known
from batch.score.store import scores_for, value_columns
from schemas.errors import UsageError

if TYPE_CHECKING:  # the plan's type, for annotations
    from batch.run.plan import Plan

log = logging.getLogger("almanac.batch")
# The upstream prediction's columns a chain row is made of.
COLUMNS = ["input_id", "key", "output", "outputs", "error"]
_NO_MEMO = pa.table({"input_id": pa.array([], pa.string()), "basis": pa.array([], pa.string()),
                     "key": pa.array([], pa.string())})


class UpstreamError(UsageError):
    """A chain's upstream job cannot be read: it does not exist, its job file cannot be
    found, it has several candidates and none was named, or the chain loops."""


@dataclass
class _Seen:
    """What the last reading of one chain job's rows yielded, for `record`."""

    upstream: str
    candidate: str
    refs: dict[str, tuple[str | None, str, str, int | None]] = field(default_factory=dict)
    # Rows read in Arrow: their refs made only when a real run records them.
    later: Callable[[], dict[str, tuple[str | None, str, str, int | None]]] | None = None

    def all_refs(self) -> dict[str, tuple[str | None, str, str, int | None]]:
        if self.later is not None:
            self.refs, self.later = self.later(), None
        return self.refs


class UpstreamReader:
    """The runner's `Upstream` (batch.run.upstream) over one home's `predictions/`."""

    def __init__(self, predictions_root: Path) -> None:
        self.root = Path(predictions_root)
        self._seen: dict[str, _Seen] = {}

    # -- rows ---------------------------------------------------------------------------------

    def rows(self, spec: JobSpec) -> Iterator[InputRow]:
        return self._rows(spec, (), keep=True)

    def _rows(self, spec: JobSpec, trail: tuple[str, ...], *, keep: bool) -> Iterator[InputRow]:
        up = spec.input.job
        assert up is not None
        where = f"{spec.path}: input.job"
        if up == spec.name or up in trail:
            loop = " -> ".join([*trail, spec.name, up])
            raise UpstreamError(f"{where}: the chain loops ({loop})")
        label = self._candidate(spec, up)
        upstream = self._upstream_spec(spec, up)
        if upstream.input.format == "job":
            up_rows = self._rows(upstream, (*trail, spec.name), keep=False)
        else:
            up_rows = read_rows(upstream.input)
        answers = self._answers(up, label)
        scores = scores_for(self.root, up, label)
        seen = _Seen(up, label)
        if keep:
            self._seen[spec.name] = seen
        skipped, done = 0, set()
        for row in up_rows:
            if row.error is not None or row.fields is None or row.id in done:
                continue
            done.add(row.id)
            answer = answers.get(row.id)
            if answer is None:
                skipped += 1
                continue
            key, output, outputs = answer
            fields = {**row.fields, "output": output, "score": scores.get((label, row.id)),
                      "input_id": row.id, "key": key}
            if not spec.input.explode:
                basis = row_basis(fields)
                seen.refs[row.id] = (basis, row.id, key, None)
                yield InputRow(row.position, row.id, fields, basis=basis)
                continue
            for item in _exploded(spec, up, row.position, row.id, fields, outputs):
                seen.refs[item.id] = (item.basis, row.id, key, item.fields["position"]
                                      if item.fields is not None else None)
                yield item
        if skipped:
            log.info("%s: %d rows of %s have no successful prediction yet (not passed on)",
                     spec.name, skipped, up)

    def _candidate(self, spec: JobSpec, up: str) -> str:
        """The upstream candidate the chain reads; exit 2 when the job does not exist or
        has several candidates and none is named."""
        try:
            with Predictions.at(self.root, up) as predictions:
                labels = predictions.select()
        except UnknownJobError:
            raise UpstreamError(f"{spec.path}: input.job: no job {up!r} in the cache "
                                "(run it first)") from None
        wanted = spec.input.candidate
        if wanted is not None:
            if wanted not in labels:
                raise UpstreamError(f"{spec.path}: input.candidate: job {up!r} has no candidate "
                                    f"{wanted!r} (its candidates: {', '.join(labels)})")
            return wanted
        if len(labels) != 1:
            raise UpstreamError(f"{spec.path}: input.candidate: job {up!r} has "
                                f"{len(labels)} candidates ({', '.join(labels)}): name one")
        return labels[0]

    def _upstream_spec(self, spec: JobSpec, up: str) -> JobSpec:
        """The upstream job's spec: from the file it was last run from, else a job file
        of that name beside the chain's."""
        recorded = None
        store = LineageStore.open_readonly(self.root)
        if store is not None:
            with store:
                recorded = store.job_file(up)
        candidates = [recorded] if recorded is not None and recorded.is_file() else []
        candidates += sorted(p for p in spec.path.parent.glob("*.toml") if p != spec.path)
        for path in candidates:
            if path == recorded or _names(path, up):
                upstream = load_spec(path)
                if upstream.name == up:
                    return upstream
        was = f"it was last run from {recorded}, which is gone" if recorded else \
            "no run of it recorded its job file"
        raise UpstreamError(f"{spec.path}: input.job: cannot find the job file of {up!r} ({was}, "
                            f"and no job file beside this one has that name)")

    def _answers(self, up: str, label: str) -> dict[str, tuple[str, Any, list[str] | None]]:
        """{input id: (key, output, outputs)} of the upstream candidate's successes."""
        table = latest_table(self.root, up, COLUMNS, candidates=[label])
        cols = {name: table.column(name).to_pylist() for name in COLUMNS}
        return {i: (k, o, s) for i, k, o, s, e in zip(
            cols["input_id"], cols["key"], cols["output"], cols["outputs"], cols["error"],
            strict=True) if e is None}

    # -- rows for planning ---------------------------------------------------------------------

    def plan_rows(self, spec: JobSpec, known: Sequence[Known], *, retry_failed: bool,
                  limit: int | None) -> ChainRows:
        built = self._line_rows(spec) if not spec.input.explode else None
        if built is None:  # the row reader's rows, every one made in Python
            rows = list(self._rows(spec, (), keep=True))[:limit]
            ids = pa.array([r.id for r in rows], pa.string())
            basis = pa.array([r.basis for r in rows], pa.string())

            def made(some: np.ndarray) -> Iterator[InputRow]:
                return (rows[i] for i in some)
        else:
            table, made = built
            table = table.slice(0, limit)
            ids, basis = table["id"].combine_chunks(), table["basis"].combine_chunks()
        memos = self._memos(spec.name, known)
        everyone = np.ones(len(ids), dtype=bool)
        remembered = []
        for memo, k in zip(memos, known, strict=True):
            mask, mine = chain_rows.remembered(ids, basis, memo, k, retry_failed)
            everyone &= mask
            remembered.append(mine)
        left = np.flatnonzero(~everyone) if known else np.arange(len(ids))
        return ChainRows(made(left), remembered)

    def _memos(self, job: str, known: Sequence[Known]) -> list[pa.Table]:
        """Each candidate's memo: the rows planned last time under its digest."""
        store = LineageStore.open_readonly(self.root)
        if store is None:
            return [_NO_MEMO] * len(known)
        with store:
            return [store.memo(job, k.candidate, k.digest) for k in known]

    def _line_rows(self, spec: JobSpec
                   ) -> tuple[pa.Table, Callable[[np.ndarray], Iterator[InputRow]]] | None:
        """A chain's rows in Arrow, from an upstream input in JSON Lines (chain_rows): the
        table (id, basis), and how to make the rows at some positions; None for any other
        upstream input."""
        up = spec.input.job
        assert up is not None
        if up == spec.name:
            return None  # the row reader refuses the loop
        label = self._candidate(spec, up)
        upstream = self._upstream_spec(spec, up)
        lines = chain_rows.jsonl_lines(upstream.input)
        if lines is None:
            return None
        answers = latest_table(self.root, up, COLUMNS, candidates=[label])
        answers = answers.filter(pc.is_null(answers["error"]))
        firsts = pa.array(chain_rows.first_of_each_id(lines.ids))
        ids, positions, text = (a.take(firsts) for a in (lines.ids, lines.positions, lines.text))
        at = pc.index_in(ids, answers["input_id"])
        have = pc.is_valid(at)
        if skipped := len(ids) - pc.sum(have).as_py() if len(ids) else 0:
            log.info("%s: %d rows of %s have no successful prediction yet (not passed on)",
                     spec.name, skipped, up)
        ids, positions, text, at = (a.filter(have) for a in (ids, positions, text, at))
        key, output = answers["key"].take(at), answers["output"].take(at)
        score_ids, score_values = value_columns(self.root, up, label)
        score = score_values.take(pc.index_in(ids, score_ids))
        basis = chain_rows.line_basis(text, output, key, score, ids)
        def refs() -> dict[str, tuple[str | None, str, str, int | None]]:
            id_list = ids.to_pylist()
            return dict(zip(id_list, zip(basis, id_list, key.to_pylist(), repeat(None)),
                            strict=True))

        self._seen[spec.name] = _Seen(up, label, later=refs)
        id_field = upstream.input.id_field

        def made(some: np.ndarray) -> Iterator[InputRow]:
            at = pa.array(some, pa.int64())
            for i, n, row_id, line, out, value, row_key in zip(
                    some, *(c.take(at).to_pylist() for c in (positions, ids, text, output, score,
                                                             key)), strict=True):
                row = jsonl_row(n, line.decode(), id_field)
                if row.error is not None or row.fields is None:
                    continue  # what the row reader would skip
                fields = {**row.fields, "output": out, "score": value, "input_id": row_id,
                          "key": row_key}
                yield InputRow(n, row_id, fields, basis=basis[i])

        return pa.table({"id": ids, "basis": pa.array(basis, pa.string())}), made

    def record(self, spec: JobSpec, plans: Sequence[Plan], *, complete: bool) -> None:
        with LineageStore.open(self.root) as store:
            store.set_job_file(spec.name, spec.path)
            seen = self._seen.pop(spec.name, None)
            if spec.input.format != "job" or seen is None:
                return
            for plan in plans:
                if plan.digest is None or plan.keys is None:
                    continue
                refs = seen.all_refs()
                rows = {i: (key, *refs[i]) for i, key in plan.keys.items() if i in refs}
                store.save(spec.name, plan.candidate,
                           PlanInfo(plan.digest, seen.upstream, seen.candidate), rows,
                           complete=complete)
            store.forget_plans(spec.name, [p.candidate for p in plans])


def _exploded(spec: JobSpec, up: str, position: int, up_id: str, fields: dict[str, Any],
              outputs: list[str] | None) -> Iterator[InputRow]:
    """One row per item of an upstream answer, or one failed row saying why it has none."""
    if outputs is not None and len(outputs) > 1:
        items: list[Any] = list(outputs)
    else:
        why = None
        try:
            value = json.loads(fields["output"] or "")
        except json.JSONDecodeError as exc:
            why = f"not JSON ({exc.msg} at column {exc.colno})"
        except RecursionError:
            why = "not JSON (nested too deeply)"
        else:
            if not isinstance(value, list):
                why = f"a JSON {_kind(value)}, not a list"
        if why is not None:
            yield InputRow(position, up_id, error=f"input.explode: the answer of {up}/{up_id} "
                                                   f"is {why}")
            return
        items = value
    for i, item in enumerate(items):
        row = {**fields, "output": item, "position": i}
        yield InputRow(position, f"{up_id}#{i}", row, basis=row_basis(row))


def _kind(value: Any) -> str:
    return {dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _names(path: Path, job: str) -> bool:
    """Whether the TOML file at `path` is a job named `job` (unreadable files are not)."""
    try:
        return tomllib.loads(read_text(path, MAX_JOB_FILE)).get("name") == job
    except (FileProblem, tomllib.TOMLDecodeError, RecursionError):
        return False
