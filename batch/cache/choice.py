"""Which of a job's candidates a read means: the one place that turns `candidate`,
`model` and `adapter` (as the CLI, the HTTP API, the TUI and the Python API take
them) into labels, and says in one usage error (exit 2, HTTP 400) what is wrong.

A listing reads every candidate that matches (all of them without a criterion); a
single lookup reads exactly one: the one named, the only one that matches, or the
job's only candidate.
"""

from __future__ import annotations

from batch.cache.errors import CandidateRequiredError, UnknownCandidateError
from batch.cache.index_rows import CandidateInfo


def select(job: str, current: list[CandidateInfo], candidate: str | None = None,
           model: str | None = None, adapter: str | None = None) -> list[str]:
    """The labels of the current candidates that match every criterion given (all of
    them without any). A label the job lacks is an UnknownCandidateError; a model or
    adapter no candidate has selects none."""
    labels = [c.label for c in current]
    if candidate is not None and candidate not in labels:
        raise UnknownCandidateError(job, candidate, labels)
    return [c.label for c in current
            if (candidate is None or c.label == candidate)
            and (model is None or c.model == model)
            and (adapter is None or c.adapter == adapter)]


def choose(job: str, current: list[CandidateInfo], candidate: str | None = None,
           model: str | None = None, adapter: str | None = None) -> str | None:
    """The one candidate a single lookup reads (None: the job names none at all).
    Raises UnknownCandidateError when nothing matches what was asked, and
    CandidateRequiredError when more than one does."""
    labels = select(job, current, candidate, model, adapter)
    asked = [f"{name} {value!r}" for name, value in (("model", model), ("adapter", adapter))
             if value is not None]
    if not labels and asked:
        raise UnknownCandidateError.matching(job, " and ".join(asked),
                                             [c.label for c in current])
    if len(labels) > 1:
        raise CandidateRequiredError(job, labels, " and ".join(asked) or None)
    return labels[0] if labels else None
