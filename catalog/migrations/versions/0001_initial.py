"""Initial catalog: models, languages, domains, tags, evals, runs, full-text index.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ref", sa.String(300), nullable=False, unique=True),
        sa.Column("repo_id", sa.String(300)),
        sa.Column("revision", sa.String(100)),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("architecture", sa.String(200)),
        sa.Column("parameters", sa.BigInteger),
        sa.Column("context_length", sa.Integer),
        sa.Column("dtype", sa.String(20)),
        sa.Column("license", sa.String(100)),
        sa.Column("task", sa.String(100)),
        sa.Column("base_model", sa.String(300)),
        sa.Column("relation", sa.String(20)),
        sa.Column("adapter_rank", sa.Integer),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("local_path", sa.Text),
        sa.Column("gated", sa.Boolean, nullable=False),
        sa.Column("downloads", sa.BigInteger),
        sa.Column("likes", sa.Integer),
        sa.Column("card", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "relation IN ('finetune', 'adapter', 'quantized', 'merge')", name="ck_models_relation"
        ),
        sa.CheckConstraint("source IN ('seed', 'hub', 'cache', 'local')", name="ck_models_source"),
    )
    op.create_index("ix_models_parameters", "models", ["parameters"])
    op.create_index("ix_models_license", "models", ["license"])

    for table, column, length in (
        ("model_languages", "language", 3),
        ("model_domains", "domain", 100),
        ("model_tags", "tag", 100),
    ):
        op.create_table(
            table,
            sa.Column(
                "model_id",
                sa.Integer,
                sa.ForeignKey("models.id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column(column, sa.String(length), primary_key=True),
        )
    op.create_index("ix_model_languages_language", "model_languages", ["language", "model_id"])
    op.create_index("ix_model_domains_domain", "model_domains", ["domain", "model_id"])

    op.create_table(
        "evals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("benchmark", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("source", sa.Text),
        sa.UniqueConstraint("model_id", "benchmark", "metric", name="uq_evals"),
    )
    op.create_index("ix_evals_model_id", "evals", ["model_id"])

    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="SET NULL")),
        sa.Column("model_ref", sa.String(300), nullable=False),
        sa.Column("revision", sa.String(100)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("inputs", sa.Integer, nullable=False),
        sa.Column("cached", sa.Integer, nullable=False),
        sa.Column("copied", sa.Integer, nullable=False),
        sa.Column("generated", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("engine_start_s", sa.Float),
        sa.Column("generation_s", sa.Float),
        sa.Column("tokens_per_s", sa.Float),
        sa.Column("hardware", sa.String(300)),
        sa.Column("error", sa.Text),
        sa.CheckConstraint(
            "status IN ('running', 'ok', 'failed_rows', 'error', 'interrupted')",
            name="ck_runs_status",
        ),
    )
    op.create_index("ix_runs_job_started", "runs", ["job", "started_at"])
    op.create_index("ix_runs_model", "runs", ["model_id"])

    # rowid = models.id; kept in step by catalog.models on every write.
    op.execute(
        "CREATE VIRTUAL TABLE models_fts USING fts5("
        "ref, name, description, tags, card, tokenize='unicode61 remove_diacritics 2')"
    )


def downgrade() -> None:
    op.execute("DROP TABLE models_fts")
    for table in ("runs", "evals", "model_tags", "model_domains", "model_languages", "models"):
        op.drop_table(table)
