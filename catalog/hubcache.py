"""Catalog entries for the models already in the local Hugging Face cache.

Only the disk is read (scan_cache_dir and the snapshot files), so this works
with HF_HUB_OFFLINE=1 and on machines without network.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants, scan_cache_dir
from huggingface_hub.errors import CacheNotFound
from huggingface_hub.utils import CachedRepoInfo, CachedRevisionInfo

from catalog.hubhttp import library_calls
from catalog.localmodels import LocalModelError, entry_from_directory
from catalog.records import ModelEntry
from schemas.errors import AlmanacError


class CacheScanError(AlmanacError):
    """The cache directory itself cannot be scanned."""


def default_cache_dir() -> Path:
    """huggingface_hub's own choice: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    return Path(constants.HF_HUB_CACHE)


def scan_cache(cache_dir: Path | None = None) -> tuple[list[ModelEntry], list[str]]:
    """One entry per cached model repo, and one warning per repo that was skipped. A
    directory given that does not exist is an error; the default one missing means that
    nothing was ever downloaded on this machine, which is no model rather than a failure."""
    if cache_dir is None and not default_cache_dir().is_dir():
        return [], []
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not cache_dir.is_dir():  # before huggingface_hub, whose own error would read as damage
        raise CacheScanError(f"no Hugging Face cache at {cache_dir}")
    try:
        with library_calls():  # huggingface_hub failing in its own code: one line
            info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        raise CacheScanError(f"no Hugging Face cache at {cache_dir}") from None
    except (ValueError, OSError) as exc:
        raise CacheScanError(f"cannot scan the Hugging Face cache at {cache_dir}: {exc}") from None
    warnings = [str(w) for w in info.warnings]
    entries = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        revision = pick_revision(repo)
        if revision is None:
            warnings.append(f"{repo.repo_id}: skipped: no snapshot in the cache")
            continue
        try:
            entry = entry_from_directory(
                revision.snapshot_path, name=repo.repo_id.rsplit("/", 1)[-1], source="cache"
            )
        except LocalModelError as exc:
            warnings.append(f"{repo.repo_id}: skipped: {exc}")
            continue
        entry.ref = entry.repo_id = repo.repo_id
        entry.revision = revision.commit_hash
        entry.local_path = str(revision.snapshot_path)
        entries.append(entry)
    return entries, warnings


def pick_revision(repo: CachedRepoInfo) -> CachedRevisionInfo | None:
    """The snapshot refs/main points to, else the most recently modified one."""
    revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
    main = [r for r in revisions if "main" in r.refs]
    return (main or revisions or [None])[0]
