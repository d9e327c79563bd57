"""From catalog references to what the engine loads and what the cache keys on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from batch.cache.store import PredictionStore
from batch.run.keys import fingerprint_dir, model_identity
from catalog.models import find_model, get_model
from schemas.errors import AlmanacError, UnavailableError

_SHA = re.compile(r"^[0-9a-f]{40}$")


class ResolveError(AlmanacError, RuntimeError):
    pass


class HubUnreachableError(UnavailableError):
    """The Hub could not say which commit a model's branch is at (network down, offline
    mode, rate limit, a server error): the job is fine, try again later (exit 1)."""


@dataclass(frozen=True)
class ResolvedModel:
    ref: str  # catalog reference, the `model` column
    load: str  # what vllm.LLM(model=...) gets: a directory or a repo id
    revision: str | None  # pinned in every row: a commit sha or a weights fingerprint
    identity: str  # the model part of every cache key
    load_revision: str | None = None  # what vllm.LLM(revision=...) gets


@dataclass(frozen=True)
class ResolvedAdapter:
    path: str  # what vLLM loads
    identity: str  # the adapter part of every cache key (`lora:sha256:…`)
    rank: int
    base: str | None = None  # the model it was trained on, as its config or catalog entry says
    catalog_ref: str | None = None  # its catalog reference, if the catalog has it


def resolve_model(session: Session, ref: str, revision: str | None,
                  store: PredictionStore) -> ResolvedModel:
    model = get_model(session, ref)
    if model.local_path and Path(model.local_path).is_dir():
        if model.source == "cache" and model.revision and not revision:
            # A Hub cache snapshot is immutable: its commit is its identity.
            return ResolvedModel(model.ref, model.local_path, model.revision,
                                 model_identity(model.ref, model.repo_id, model.revision))
        digest = fingerprint_dir(Path(model.local_path), store.fingerprint_get,
                                 store.fingerprint_put)
        return ResolvedModel(model.ref, model.local_path, digest,
                             model_identity(model.ref, None, digest))
    if not model.repo_id:
        raise ResolveError(
            f"model {model.ref!r} has no repo id and its local path "
            f"{model.local_path!r} is not a directory"
        )
    sha = _resolve_hub_revision(model.repo_id, revision or model.revision)
    return ResolvedModel(model.ref, model.repo_id, sha, model_identity(model.ref, model.repo_id, sha),
                         sha)


def _resolve_hub_revision(repo_id: str, revision: str | None) -> str:
    if revision and _SHA.match(revision):
        return revision
    from huggingface_hub import HfApi, constants

    # The local cache knows what a branch pointed to when it was downloaded.
    ref_file = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    if ref_file.is_file():
        return ref_file.read_text().strip()
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return HfApi().model_info(repo_id, revision=revision).sha
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:  # the job names it wrong
        raise ResolveError(
            f"cannot resolve the revision of {repo_id!r} ({revision or 'main'}): "
            f"{type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    except Exception as exc:  # the network, offline mode, the Hub itself: not the job's fault
        raise HubUnreachableError(
            f"cannot resolve the revision of {repo_id!r} ({revision or 'main'}): the Hub did "
            f"not answer ({type(exc).__name__}: {exc}".splitlines()[0] + "); try again, or pin "
            "`revision` to a commit sha in the job"
        ) from exc


def resolve_adapter(session: Session, adapter: str, store: PredictionStore) -> ResolvedAdapter:
    path = Path(adapter)
    entry = None
    if not path.is_dir():
        entry = find_model(session, adapter)
        if entry is not None and entry.local_path and Path(entry.local_path).is_dir():
            path = Path(entry.local_path)
        else:
            try:
                from huggingface_hub import snapshot_download

                path = Path(snapshot_download(adapter))
            except Exception as exc:
                raise ResolveError(f"adapter {adapter!r} is neither a directory, a catalog "
                                   f"model with a local path, nor downloadable: {exc}") from exc
    config = path / "adapter_config.json"
    if not config.is_file():
        raise ResolveError(f"adapter {adapter!r}: no adapter_config.json in {path}")
    try:
        settings = json.loads(config.read_text())
        rank = int(settings.get("r", 8))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ResolveError(f"adapter {adapter!r}: unreadable adapter_config.json: {exc}") from exc
    base = (entry.base_model if entry is not None else None) or \
        settings.get("base_model_name_or_path") or None
    digest = fingerprint_dir(path, store.fingerprint_get, store.fingerprint_put)
    return ResolvedAdapter(str(path), f"lora:{digest}", rank, base,
                           entry.ref if entry is not None else None)
