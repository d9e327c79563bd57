"""The one place that decides where Almanac keeps its files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import UnavailableError

ENV_HOME = "ALMANAC_HOME"


class HomeError(UnavailableError):
    """The home's directories cannot be made (a read-only place, a path under /proc):
    one line naming the directory, exit 1."""


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--home` beats `ALMANAC_HOME`, which beats the platform's user data dir."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if env := os.environ.get(ENV_HOME):
        return Path(env).expanduser().resolve()
    import platformdirs  # only for the default home: an override needs none of it

    return Path(platformdirs.user_data_dir("almanac", appauthor=False))


@dataclass(frozen=True)
class Home:
    """The layout of an Almanac home directory."""

    root: Path

    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.db"

    @property
    def catalog_url(self) -> str:
        return f"sqlite:///{self.catalog_db}"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def models(self) -> Path:
        """Models Almanac builds itself: the demo's, and the adapters `almanac train` makes."""
        return self.root / "models"

    @property
    def training(self) -> Path:
        """Checkpoints of trainings a signal stopped, by their inputs' key, until resumed."""
        return self.root / "training"

    @property
    def distill(self) -> Path:
        """`almanac distill`'s work: curated sets and evaluation jobs, per student."""
        return self.root / "distill"

    @property
    def misses(self) -> Path:
        """The jobs `almanac misses run` writes (one directory each); the misses themselves
        are kept beside the shards (`predictions/misses.db`)."""
        return self.root / "misses"

    def ensure(self) -> Home:
        for path in (self.root, self.predictions, self.locks, self.logs):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                what = "its directory" if path == self.root else f"its {path.name}/ directory"
                why = "a file is in its place" if path.exists() and not path.is_dir() \
                    else exc.strerror or str(exc)
                raise HomeError(f"home {self.root}: cannot create {what} ({why})") from None
        return self
