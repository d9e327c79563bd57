"""The OpenAI endpoints' reads: the served models, and a request answered by its content
key from any job, or refused as not cached (and the miss recorded).

A request names a served model (batch.openai_api.served), or a model the catalog
knows (by its reference, repo id or name; `BASE+ADAPTER` with a catalog adapter),
which the cache may not answer for yet: its misses are what `almanac misses run`
generates first. A name neither knows is `ModelNotFoundError`. The request's key is
computed with each identity the served model's runs recorded; the newest successful
record of any of them answers. A key whose only record failed is that failure
(`CachedFailureError`); no record at all is a miss.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batch.openai_api.asked import Asked
from batch.openai_api.errors import CachedFailureError, ModelNotFoundError, NotCachedError
from batch.openai_api.misses import MissRecorder
from batch.openai_api.served import ServedModel, served_id, served_models
from batch.query import CacheReader, PredictionRecord
from schemas.errors import UnavailableError

if TYPE_CHECKING:  # SQLAlchemy loads with the first catalog question, not with the server
    from sqlalchemy.orm import Session, sessionmaker

_MISS_SAYS = {
    "recorded": "it is recorded, and the next `almanac misses run` generates it",
    "seen": "it is recorded, and the next `almanac misses run` generates it",
    "off": "this server does not record misses",
    "too_large": "it was not recorded: its body is over what a miss may hold",
    "full": "it was not recorded: the miss store is full (`almanac misses run` empties it)",
    "unwritable": "it was not recorded: the miss store cannot be written (see the server's log)",
}


@dataclass(frozen=True)
class Answer:
    record: PredictionRecord
    key: str
    model: str  # the served id the answer is given under


class OpenAIReader:
    """Answers for one home's cache, shared by a server's threads. `catalog` opens the
    catalog's sessions (read-only; it may raise UnavailableError where there is none);
    `misses` records what was not cached (None: nothing is recorded)."""

    def __init__(self, reader: CacheReader,
                 catalog: Callable[[], sessionmaker[Session]] | None = None,
                 misses: MissRecorder | None = None) -> None:
        self.reader, self.catalog, self.misses = reader, catalog, misses
        self._lock = threading.Lock()
        self._version: int | None = None
        self._served: dict[str, ServedModel] = {}

    def close(self) -> None:
        if self.misses is not None:
            self.misses.close()

    # -- models -------------------------------------------------------------------------------

    def served(self) -> dict[str, ServedModel]:
        """{id: model}, read again whenever a run has committed to the index since."""
        version = self.reader.query(lambda ix: ix.data_version(), None)
        with self._lock:
            if version is None or version != self._version:
                rows = self.reader.query(lambda ix: ix.every_candidate(), [])
                self._served = served_models(rows, self._repo_ids())
                self._version = version
            return self._served

    def model(self, name: str) -> ServedModel:
        """A served model by the id GET /v1/models lists; ModelNotFoundError if none."""
        found = self.served().get(name)
        if found is None:
            raise ModelNotFoundError(name)
        return found

    def _repo_ids(self) -> Callable[[str], str | None]:
        seen: dict[str, str | None] = {}

        def repo_id(ref: str) -> str | None:
            if ref not in seen:
                found = self._in_catalog(ref)
                seen[ref] = found[1] if found else None
            return seen[ref]

        return repo_id

    def _in_catalog(self, name: str, *, adapter: bool = False) -> tuple[str, str | None] | None:
        """(reference, repo id) of the catalog model `name` finds (an adapter, with
        `adapter`), or None, also where there is no catalog."""
        if self.catalog is None:
            return None
        from catalog.lookup import find_model

        try:
            with self.catalog()() as session:
                found = find_model(session, name)
                if found is None or (adapter and found.relation != "adapter"):
                    return None
                return found.ref, found.repo_id
        except UnavailableError:
            return None

    def _named(self, name: str) -> tuple[ServedModel | None, str, str | None]:
        """(served model or None, model reference, adapter) a request's `model` names."""
        served = self.served()
        if (hit := served.get(name)) is not None:
            return hit, hit.model, hit.adapter
        if (model := self._in_catalog(name)) is not None:
            return served.get(model[0]), model[0], None
        for i, char in enumerate(name):
            if char != "+":
                continue
            base, adapter = self._in_catalog(name[:i]), self._in_catalog(name[i + 1:], adapter=True)
            if base is not None and adapter is not None:
                return served.get(served_id(base[0], adapter[0])), base[0], adapter[0]
        raise ModelNotFoundError(name)

    # -- answers ------------------------------------------------------------------------------

    def answer(self, asked: Asked) -> Answer:
        served, model, adapter = self._named(asked.model)
        keys = [asked.key(*identity) for identity in served.identities] if served else []
        best: tuple[str, PredictionRecord] | None = None
        failed: tuple[str, PredictionRecord] | None = None
        for key in keys:
            found = self.reader.by_key(key)
            if found is None:
                continue
            if found["error"] is not None:
                failed = failed or (key, found)
            elif best is None or found["created_at"] > best[1]["created_at"]:
                best = (key, found)
        name = served_id(model, adapter)
        if best is not None:
            return Answer(best[1], best[0], name)
        if failed is not None:
            raise CachedFailureError(f"{name!r} was run on this request and it failed: "
                                     f"{failed[1]['error']}", failed[0])
        miss = "off" if self.misses is None else self.misses.record(
            asked.key(model, adapter), model, adapter, asked.endpoint, asked.body_json())
        raise NotCachedError(f"{name!r} has no cached answer to this request; {_MISS_SAYS[miss]}",
                             keys[0] if keys else None, miss)
