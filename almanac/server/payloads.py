"""What the API takes and answers: the pydantic models behind the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from almanac.server.limits import MAX_BATCH, Id
from batch.query import arrow_schema
from catalog.records import ModelRecord


class Error(BaseModel):
    error: str = Field(description="A short code: not_found, bad_request, invalid, too_large, unavailable…")
    message: str
    details: list[dict[str, Any]] | None = None


def _prediction_model() -> type[BaseModel]:
    """Built from schemas/prediction.schema.json (via the Arrow schema): the one source."""
    kinds = {"string": str, "int32": int, "int64": int, "timestamp[us, tz=UTC]": datetime,
             "list<item: string>": list[str], "bool": bool}
    fields: dict[str, Any] = {}
    for f in arrow_schema():
        kind = kinds[str(f.type)]
        fields[f.name] = (kind | None, None) if f.nullable else (kind, ...)
    return create_model("Prediction", **fields)


Prediction = _prediction_model()


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class JobOut(BaseModel):
    job: str
    rows: int = Field(description="Inputs with a latest prediction.")
    failed: int = Field(description="Of those, how many failed.")
    shards: int
    bytes: int
    last_written: datetime | None


class CandidateOut(BaseModel):
    label: str
    model: str
    revision: str | None
    adapter: str | None = Field(description="The adapter as the job names it.")
    adapter_revision: str | None = Field(description="The adapter's identity.")
    ordinal: int
    rows: int = Field(description="Latest predictions of this candidate.")
    failed: int


class PredictionPage(BaseModel):
    items: list[Prediction]  # type: ignore[valid-type]
    total: int
    limit: int
    offset: int


class ModelPage(BaseModel):
    items: list[ModelRecord]
    total: int
    limit: int
    offset: int


class Lookup(BaseModel):
    ids: list[Id] = Field(max_length=MAX_BATCH, description=f"At most {MAX_BATCH} input ids.")


class LookupResult(BaseModel):
    found: dict[str, Prediction]  # type: ignore[valid-type]
    missing: list[str]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (400, 404, 413, 422, 503)
}
