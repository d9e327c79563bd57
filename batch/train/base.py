"""The model an adapter is trained on: a catalog model with local weights, or a Hub
model fetched through the Hugging Face cache (and then catalogued as a cached model, so
that jobs and `adapters_of` find it). Never an adapter itself."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from batch.cache.store import PredictionStore
from batch.run.resolve import resolve_model
from batch.train.errors import TrainError, TrainUnavailableError
from catalog.localmodels import LocalModelError, entry_from_directory
from catalog.models import find_model, upsert_model

ADAPTER_CONFIG = "adapter_config.json"
# What training needs of a Hub repo: weights, configs, tokenizer files, chat templates.
FETCH = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class BaseModel:
    ref: str  # its catalog reference: what the adapter's `base_model` names
    path: Path  # the directory its weights and tokenizer load from
    identity: str  # what the prediction cache keys it by (a commit, or a weights digest)
    revision: str | None
    repo_id: str | None
    has_chat_template: bool
    languages: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()


def resolve_base(session: Session, ref: str, store: PredictionStore, *,
                 fetch: bool = True) -> BaseModel:
    """The base `ref` names. A Hub model not yet cached is fetched (`fetch`), and one the
    catalog lacks is added to it in `session` (both only when `fetch`: a dry run writes
    nothing). TrainError (exit 2) for a wrong reference; TrainUnavailableError (exit 1)
    when the weights are out of reach now."""
    model = find_model(session, ref)
    if model is not None:
        if model.relation == "adapter":
            raise TrainError(f"--base: {model.ref} is itself an adapter (of {model.base_model}): "
                             "train on its base model instead")
        if model.local_path and Path(model.local_path).is_dir():
            path = Path(model.local_path)
            _not_adapter(path, model.ref)
            resolved = resolve_model(session, model.ref, None, store)
            return BaseModel(model.ref, path, resolved.identity, resolved.revision,
                             model.repo_id, has_chat_template(path),
                             tuple(lang.language for lang in model.languages),
                             tuple(d.domain for d in model.domains))
        if not model.repo_id:
            raise TrainError(f"--base: {model.ref} has no local weights (at {model.local_path}) "
                             "and no Hub repo id to fetch them from")
        repo_id, revision = model.repo_id, model.revision
    elif _HUB_ID.fullmatch(ref):
        repo_id, revision = ref, None
    else:
        raise TrainError(f"--base: no model {ref!r} in the catalog (see `almanac models list`), "
                         "and not a Hub repo id (ORG/NAME)")
    path = _fetch(repo_id, revision, fetch)
    _not_adapter(path, repo_id)
    sha = path.name  # a cache snapshot is named by its commit
    if model is None and fetch:
        try:
            entry = entry_from_directory(path, name=repo_id.rsplit("/", 1)[-1], source="cache")
        except LocalModelError as exc:
            raise TrainError(f"--base: {exc}") from None
        entry.ref = entry.repo_id = repo_id
        entry.revision, entry.local_path = sha, str(path)
        upsert_model(session, entry)
    return BaseModel(model.ref if model is not None else repo_id, path, f"{repo_id}@{sha}", sha,
                     repo_id, has_chat_template(path),
                     tuple(lang.language for lang in model.languages) if model else (),
                     tuple(d.domain for d in model.domains) if model else ())


def has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((path / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def _not_adapter(path: Path, ref: str) -> None:
    if (path / ADAPTER_CONFIG).is_file():
        raise TrainError(f"--base: {ref} is itself an adapter ({path / ADAPTER_CONFIG}): "
                         "train on its base model instead")


def _fetch(repo_id: str, revision: str | None, fetch: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=FETCH,
                                      local_files_only=not fetch))
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise TrainError(f"--base: {repo_id} ({revision or 'main'}) cannot be fetched from the "
                         f"Hub: {type(exc).__name__}") from None
    except LocalEntryNotFoundError:
        why = "a dry run fetches nothing" if not fetch else "the Hub cannot be reached (offline?)"
        raise TrainUnavailableError(f"--base: {repo_id} is not in the Hugging Face cache and "
                                    f"{why}; fetch it first (`hf download {repo_id}`)") from None
    except Exception as exc:  # the network, the Hub itself, a full disk: not the user's input
        raise TrainUnavailableError(f"--base: cannot fetch {repo_id}: "
                                    + f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not any(path.glob("*.safetensors")):
        raise TrainError(f"--base: {repo_id}: no safetensors weights in {path}")
    return path
