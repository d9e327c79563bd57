"""Which models a curated dataset's answers come from, and under which licenses: the
job's candidates that answered its rows, then up the chain (lineage.db's plans) each
upstream job's candidate, whose answers the rows were made from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batch.cache.errors import UnknownJobError
from batch.cache.reader import Predictions
from batch.data.lineage import LineageStore
from catalog.licenses import output_restriction
from catalog.models import find_model

if TYPE_CHECKING:  # plain types for annotations
    import pyarrow as pa

    from catalog.db import Catalog


@dataclass
class SourceModel:
    job: str
    candidate: str
    model: str
    revision: str | None
    adapter: str | None
    license: str | None  # the catalog's (of the adapter too, when it has one: "a + b")
    restriction: str | None  # what the license asks of training on outputs, if anything
    rows: int | None  # rows of the dataset it answered; None for an upstream job's


def source_models(root: Path, job: str, table: pa.Table, catalog: Catalog | None
                  ) -> tuple[list[SourceModel], list[str]]:
    """The curated job's candidates (with their rows in `table`) and every upstream
    job's candidate, nearest first; and the upstream jobs in chain order."""
    rows, revisions = _candidate_rows(table)
    out = [m for label, n in rows.items() for m in _models(root, job, [label], catalog, n)]
    for m in out:  # the revisions the rows were made with (a candidate's may have moved on)
        m.revision = ", ".join(sorted(r for r in revisions.get(m.candidate, ()) if r)) or m.revision
    upstream: list[str] = []
    current = job
    store = LineageStore.open_readonly(root)
    if store is None:
        return out, upstream
    with store:
        while True:
            plans = store.plans(current)
            if not plans:
                break
            ups = sorted({(p.upstream, p.upstream_candidate) for p in plans.values()})
            up = ups[0][0]
            if up in upstream or up == job:
                break  # a loop the runner refuses; do not follow it here either
            upstream.append(up)
            for up_job, label in ups:
                out += _models(root, up_job, [label], catalog, None)
            current = up
    return out, upstream


def _candidate_rows(table: pa.Table) -> tuple[dict[str, int], dict[str, set[str]]]:
    """{candidate: its rows}, in the order of their first rows; {candidate: revisions}."""
    import pyarrow as pa  # the caller holds a table: pyarrow is loaded

    marked = table.select(["candidate", "revision"]).append_column(
        "at", pa.array(range(table.num_rows), pa.int64()))
    counts = marked.group_by("candidate", use_threads=False).aggregate(
        [("at", "min"), ("at", "count")]).sort_by("at_min")
    pairs = marked.group_by(["candidate", "revision"], use_threads=False).aggregate([])
    revisions: dict[str, set[str]] = {}
    for label, revision in zip(pairs["candidate"].to_pylist(), pairs["revision"].to_pylist(),
                               strict=True):
        revisions.setdefault(label, set()).add(revision or "")
    return dict(zip(counts["candidate"].to_pylist(), counts["at_count"].to_pylist(),
                    strict=True)), revisions


def _models(root: Path, job: str, labels: list[str], catalog: Catalog | None,
            rows: int | None) -> list[SourceModel]:
    try:
        with Predictions.at(root, job) as predictions:
            found = [c for c in predictions.candidates() if c.label in labels]
    except UnknownJobError:
        return []
    out = []
    for c in found:
        licenses = [_license(catalog, ref) for ref in (c.model, c.adapter) if ref]
        known = [lic for lic in licenses if lic]
        restriction = "; ".join(r for r in map(output_restriction, known) if r) or None
        out.append(SourceModel(job, c.label, c.model, c.revision, c.adapter,
                               " + ".join(known) or None, restriction, rows))
    return out


def _license(catalog: Catalog | None, ref: str) -> str | None:
    if catalog is None:
        return None
    with catalog.sessions() as s:
        model = find_model(s, ref)
        return model.license if model is not None else None
