"""Whether predictions were made on a model's current revision: the answer a cache lookup
asks the catalog for (catalog.history, catalog.plain), kept apart from the other records
so that a lookup loads no more of them than this one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from schemas.jsonable import jsonable


@dataclass
class RevisionStatus:
    """Whether predictions made on (model, revision) were made on the catalog's current
    revision of that model. `is_current` is None when the catalog cannot tell: the model
    is not in it, or either revision is unknown."""

    ref: str
    revision: str | None
    model_ref: str | None = None
    current_revision: str | None = None
    is_current: bool | None = None
    replaced_at: datetime | None = None  # when the catalog saw `revision` replaced

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))
