"""Which models the cache answers for, and the identities their keys were made with.

Every job's current candidates are in the index, each with the revision its last run
recorded (a Hub commit, or a local directory's weights fingerprint) and its adapter's
identity. A served model is a catalog reference, or `BASE+ADAPTER` for a model with a
LoRA adapter, as `almanac` labels such candidates; its identities are those of every
job that runs it, the most recently written first, formed from the recorded revision
by the run's own rule (batch.run.keys.model_identity). A request's key is computed
with each of them: an answer made by any run of that model and adapter is an answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from batch.cache.index_rows import CandidateInfo
from batch.run.keys import model_identity

Identity = tuple[str, str | None]  # (model identity, adapter identity): what keys hash


def served_id(model: str, adapter: str | None) -> str:
    """What requests name a model by: its catalog reference, or `BASE+ADAPTER`."""
    return model if adapter is None else f"{model}+{adapter}"


@dataclass
class ServedModel:
    id: str
    model: str  # the catalog reference of the model
    adapter: str | None  # the adapter as the jobs name it
    identities: list[Identity] = field(default_factory=list)  # newest first
    jobs: list[str] = field(default_factory=list)
    created: int = 0  # when its newest job was last written (seconds since the epoch)

    def to_json(self) -> dict[str, object]:
        """OpenAI's model object (the list of `GET /v1/models`)."""
        return {"id": self.id, "object": "model", "created": self.created,
                "owned_by": "almanac"}


def served_models(candidates: list[tuple[str, CandidateInfo, str | None]],
                  repo_id: Callable[[str], str | None]) -> dict[str, ServedModel]:
    """{id: model} from the index's `every_candidate()` (newest job first). `repo_id`
    gives a catalog model's Hub repo (None when the catalog has none or is not there).
    A candidate whose run recorded no revision (written before candidates were
    recorded, or by hand) cannot be keyed, and is left out."""
    out: dict[str, ServedModel] = {}
    for job, c, written in candidates:
        if c.revision is None or (c.adapter is not None and c.adapter_revision is None):
            continue
        repo = None if c.revision.startswith("sha256:") else repo_id(c.model)
        identity = (model_identity(c.model, repo, c.revision), c.adapter_revision)
        name = served_id(c.model, c.adapter)
        served = out.setdefault(name, ServedModel(name, c.model, c.adapter))
        if identity not in served.identities:
            served.identities.append(identity)
        if job not in served.jobs:
            served.jobs.append(job)
        if written is not None:
            served.created = max(served.created, int(datetime.fromisoformat(written).timestamp()))
    return out
