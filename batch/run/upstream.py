"""Chains, as the run room sees them: a job whose `[input] job = "NAME"` reads another
job's predictions gets its rows from an `Upstream` the front door hands the Runner
(batch.data.chains.UpstreamReader: it reads the cache and the scores, which sit beside
and above this room).

Planning a chain of 100,000 rows in a second or two needs more than content keys: a
row's key comes from rendering its prompt, and rendering every row again is what
takes the time. So a chain's rows carry a `basis` (a digest of their fields), and the
Upstream keeps, per candidate, the key each row's basis gave under the job's `digest`
(everything else that decides a key: model and adapter identities, templates, shared
context, sampling); both are content addresses, made in batch.run.keys (`row_basis`,
`plan_digest`). A row whose basis and digest are unchanged, and whose latest record
still has that key, is cached without being rendered; any other is planned as usual.
The memo is a cache of a pure function, so it can never make a wrong key: at worst a
row is rendered again. The Upstream makes that comparison for all rows at once, in
Arrow (`plan_rows`): the planner sees the remembered rows as counts and keys, and
only the others as rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # plan imports this module's protocol: annotations only
    from batch.run.inputs import InputRow
    from batch.run.plan import Plan
    from batch.run.spec.job import JobSpec


@dataclass(frozen=True)
class Known:
    """What planning knows of one candidate before it reads a chain's rows: the digest
    its keys are planned under, and its latest records (input ids, keys, failed)."""

    candidate: str
    digest: str
    current: tuple[list[str], list[str], list[bool]]


@dataclass
class Remembered:
    """One candidate's rows that need no rendering: their ids, the key each has, and
    whether that record failed."""

    ids: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    failed: list[bool] = field(default_factory=list)


@dataclass
class ChainRows:
    """A chain's rows for planning: `remembered` per candidate (in the order asked), and
    `rows`, the rows some candidate must plan."""

    rows: Iterator[InputRow]
    remembered: list[Remembered]


class Upstream(Protocol):
    """Where a chain's rows come from, and where what planning learnt about them goes."""

    def rows(self, spec: JobSpec) -> Iterator[InputRow]:
        """The job's rows, read from its upstream job's latest predictions. Raises a
        UsageError (exit 2) when the upstream job does not exist."""
        ...

    def plan_rows(self, spec: JobSpec, known: Sequence[Known], *, retry_failed: bool,
                  limit: int | None) -> ChainRows:
        """The job's first `limit` rows (None: all), those each candidate of `known`
        remembers (same basis and digest as last time, and its latest record still has
        the key they gave; a failed one not when `retry_failed`) apart from the rest."""
        ...

    def record(self, spec: JobSpec, plans: Sequence[Plan], *, complete: bool) -> None:
        """After a real run's planning: the job's file, and (for a chain) which upstream
        record fed each row and the key it planned; `complete` is False when only the
        first rows were planned (`--limit`)."""
        ...
