"""The catalog's tables, as SQLAlchemy 2.0 typed mappings.

The database is created and upgraded by the Alembic revisions in
`catalog/migrations`; these mappings describe it, they never create it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RELATIONS = ("finetune", "adapter", "quantized", "merge")
SOURCES = ("seed", "hub", "cache", "local")
RUN_STATUSES = ("running", "ok", "failed_rows", "error", "interrupted")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """SQLite keeps no time zone: store UTC, and give it back as aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(f"relation IN {RELATIONS}", name="ck_models_relation"),
        CheckConstraint(f"source IN {SOURCES}", name="ck_models_source"),
        # models list --sort params / --min-params / --max-params
        Index("ix_models_parameters", "parameters"),
        # models list --license
        Index("ix_models_license", "license"),
        # models list (no facet, no search), sorted by name: the first page is read in order
        Index("ix_models_name", text("name COLLATE NOCASE"), "id"),
        # models list --sort downloads without a facet or search: read backwards, in order
        Index("ix_models_downloads", "downloads", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(300), unique=True)
    repo_id: Mapped[str | None] = mapped_column(String(300))
    revision: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    architecture: Mapped[str | None] = mapped_column(String(200))
    parameters: Mapped[int | None] = mapped_column(BigInteger)
    context_length: Mapped[int | None] = mapped_column(Integer)
    dtype: Mapped[str | None] = mapped_column(String(20))
    license: Mapped[str | None] = mapped_column(String(100))
    task: Mapped[str | None] = mapped_column(String(100))
    base_model: Mapped[str | None] = mapped_column(String(300))
    relation: Mapped[str | None] = mapped_column(String(20))
    adapter_rank: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20))
    local_path: Mapped[str | None] = mapped_column(Text)
    gated: Mapped[bool] = mapped_column(default=False)
    downloads: Mapped[int | None] = mapped_column(BigInteger)
    likes: Mapped[int | None] = mapped_column(Integer)
    card: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )
    # When the Hub last described this model (discover or refresh); None: never asked.
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # JSON list of the fields the seed list or the user set, which no import overwrites.
    curated: Mapped[str | None] = mapped_column(Text)
    # The rowid of the model's models_fts row (catalog.indexing: popularity, then id).
    text_key: Mapped[int | None] = mapped_column(BigInteger)

    languages: Mapped[list[ModelLanguage]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    domains: Mapped[list[ModelDomain]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    tags: Mapped[list[ModelTag]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    evals: Mapped[list[Eval]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    def __repr__(self) -> str:
        return f"Model(ref={self.ref!r}, parameters={self.parameters!r})"


class ModelRevision(Base):
    """A revision the model had before the Hub moved it, with what the catalog knew then."""

    __tablename__ = "model_revisions"
    __table_args__ = (
        # catalog.history.revision_status: (model, revision) -> when it was replaced;
        # and a model's history, by its model_id prefix.
        UniqueConstraint("model_id", "revision", name="uq_model_revisions"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    revision: Mapped[str] = mapped_column(String(100))
    facts: Mapped[str] = mapped_column(Text)  # JSON: the record's facts at that revision
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when it was last current
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    replaced_by: Mapped[str | None] = mapped_column(String(100))

    def __repr__(self) -> str:
        return f"ModelRevision({self.model_id}, {self.revision!r} -> {self.replaced_by!r})"


class ModelFacet(Base):
    """One (domain, language) pair a model is listed under, with its name: derived from
    model_domains and model_languages by catalog.indexing, never written by hand.

    A domain here is one of the model's slugs or an ancestor of one; a language one of its
    codes or `group:NAME` for a group it belongs to; `*` stands for any. The primary key is
    the index: `models list --domain D --language L` (and either alone) sorted by name is one
    range read in order, stopping at the page's end."""

    __tablename__ = "model_facets"
    __table_args__ = {"sqlite_with_rowid": False}

    domain: Mapped[str] = mapped_column(String(100), primary_key=True)
    language: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(300, collation="NOCASE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, primary_key=True)

    def __repr__(self) -> str:
        return f"ModelFacet({self.domain!r}, {self.language!r}, {self.model_id})"


class FacetCount(Base):
    """How many models a (domain, language) pair lists, kept by catalog.indexing with every
    write: facet counts and `count` for facet filters read one row instead of counting."""

    __tablename__ = "facet_counts"
    __table_args__ = {"sqlite_with_rowid": False}

    domain: Mapped[str] = mapped_column(String(100), primary_key=True)
    language: Mapped[str] = mapped_column(String(100), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"FacetCount({self.domain!r}, {self.language!r}, {self.n})"


class SearchTerm(Base):
    """A word `models_fts` holds in its text columns, kept by catalog.indexing with every
    write (a word no model holds any longer may stay). A typed word is a prefix: the
    terms it begins (a range of this key) are looked up as whole words, which the
    full-text index reads in order and stops early on, where its own prefix query reads
    every match first (catalog.search)."""

    __tablename__ = "search_terms"
    __table_args__ = {"sqlite_with_rowid": False}

    term: Mapped[str] = mapped_column(String(200), primary_key=True)

    def __repr__(self) -> str:
        return f"SearchTerm({self.term!r})"


class CatalogMeta(Base):
    """Facts about the catalog's derived tables, e.g. the language groups they were built with."""

    __tablename__ = "catalog_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"CatalogMeta({self.key!r})"


class ModelLanguage(Base):
    __tablename__ = "model_languages"
    __table_args__ = (
        # models list --language: find models by language code
        Index("ix_model_languages_language", "language", "model_id"),
    )

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(3), primary_key=True)

    def __repr__(self) -> str:
        return f"ModelLanguage({self.model_id}, {self.language!r})"


class ModelDomain(Base):
    __tablename__ = "model_domains"
    __table_args__ = (
        # models list --domain: slug = d OR slug LIKE 'd/%'
        Index("ix_model_domains_domain", "domain", "model_id"),
    )

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    domain: Mapped[str] = mapped_column(String(100), primary_key=True)

    def __repr__(self) -> str:
        return f"ModelDomain({self.model_id}, {self.domain!r})"


class ModelTag(Base):
    """A model's free-form tags; the primary key (model_id, tag) reads a model's tags."""

    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

    def __repr__(self) -> str:
        return f"ModelTag({self.model_id}, {self.tag!r})"


class Eval(Base):
    __tablename__ = "evals"
    __table_args__ = (
        # one figure per (model, benchmark, metric): an import updates it in place
        UniqueConstraint("model_id", "benchmark", "metric", name="uq_evals"),
        # a model's card evals (models show, and each page of a listing)
        Index("ix_evals_model_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    benchmark: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"Eval({self.benchmark!r}, {self.metric!r}={self.value!r})"


class Run(Base):
    """One batch run of one job; its figures double as the model's measured performance."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(f"status IN {RUN_STATUSES}", name="ck_runs_status"),
        # almanac runs: newest first, optionally for one job
        Index("ix_runs_job_started", "job", "started_at"),
        # a model's measured throughput
        Index("ix_runs_model", "model_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    model_ref: Mapped[str] = mapped_column(String(300))
    revision: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    inputs: Mapped[int] = mapped_column(Integer, default=0)
    cached: Mapped[int] = mapped_column(Integer, default=0)
    copied: Mapped[int] = mapped_column(Integer, default=0)
    generated: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    engine_start_s: Mapped[float | None] = mapped_column(Float)
    generation_s: Mapped[float | None] = mapped_column(Float)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    hardware: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(Text)
    engine_starts: Mapped[int | None] = mapped_column(Integer)
    usd_per_hour: Mapped[float | None] = mapped_column(Float)
    executor: Mapped[str] = mapped_column(String(20), default="local", server_default=text("'local'"))  # or ray
    replicas: Mapped[int | None] = mapped_column(Integer)
    phases: Mapped[str | None] = mapped_column(Text)  # JSON: the runner's own timings

    def __repr__(self) -> str:
        return f"Run({self.id!r}, job={self.job!r}, status={self.status!r})"


class RunCandidate(Base):
    """One candidate of one run: what it answered and the engine time it took."""

    __tablename__ = "run_candidates"
    __table_args__ = (
        # a model's measured throughput, per candidate
        Index("ix_run_candidates_model", "model_id"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(300), primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    model_ref: Mapped[str] = mapped_column(String(300))
    revision: Mapped[str | None] = mapped_column(String(100))
    adapter: Mapped[str | None] = mapped_column(Text)
    adapter_revision: Mapped[str | None] = mapped_column(String(100))
    inputs: Mapped[int] = mapped_column(Integer, default=0)
    cached: Mapped[int] = mapped_column(Integer, default=0)
    copied: Mapped[int] = mapped_column(Integer, default=0)
    generated: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    generation_s: Mapped[float | None] = mapped_column(Float)  # its share of engine time
    engine_start_s: Mapped[float | None] = mapped_column(Float)
    engine_group: Mapped[int | None] = mapped_column(Integer)  # candidates sharing one engine

    def __repr__(self) -> str:
        return f"RunCandidate({self.run_id!r}, {self.label!r})"


class MeasuredEval(Base):
    """A score Almanac measured on a job's rows: kept apart from the card's `evals`."""

    __tablename__ = "measured_evals"
    __table_args__ = (
        UniqueConstraint("model_id", "adapter", "task", "metric", name="uq_measured_evals"),
        # models list --sort score:JOB, and a job's leaderboard
        Index("ix_measured_evals_task", "task", "metric", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    adapter: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))  # "": none
    adapter_revision: Mapped[str | None] = mapped_column(String(100))
    revision: Mapped[str | None] = mapped_column(String(100))  # the model's, when measured
    label: Mapped[str | None] = mapped_column(String(300))
    task: Mapped[str] = mapped_column(String(200))  # the job
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    hardware: Mapped[str | None] = mapped_column(String(300))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"MeasuredEval({self.task!r}, {self.metric!r}={self.value!r}, n={self.n})"


class Training(Base):
    """The lineage of an adapter `almanac train` made: its base, the data it learned from,
    the settings and what came of it. One row per trained model, gone with it."""

    __tablename__ = "trainings"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"),
                                          primary_key=True)
    # What decides the adapter (data, base, settings): the same key again is reused.
    key: Mapped[str] = mapped_column(String(100))
    base_ref: Mapped[str] = mapped_column(String(300))
    base_revision: Mapped[str | None] = mapped_column(String(100))
    data_path: Mapped[str] = mapped_column(Text)
    data_digest: Mapped[str] = mapped_column(String(100))
    data_filter: Mapped[str | None] = mapped_column(Text)  # train --where
    train_rows: Mapped[int] = mapped_column(Integer)
    validation_rows: Mapped[int] = mapped_column(Integer)
    sources: Mapped[str] = mapped_column(Text)  # JSON: the jobs and candidates it learned from
    settings: Mapped[str] = mapped_column(Text)  # JSON: the hyperparameters
    train_loss: Mapped[float | None] = mapped_column(Float)
    eval_loss: Mapped[float | None] = mapped_column(Float)
    steps: Mapped[int] = mapped_column(Integer)
    epochs: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(20))
    dtype: Mapped[str] = mapped_column(String(20))
    hardware: Mapped[str | None] = mapped_column(String(300))
    versions: Mapped[str] = mapped_column(Text)  # JSON: the training libraries' versions
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
