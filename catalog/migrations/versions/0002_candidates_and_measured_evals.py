"""Runs with several candidates, what a run cost, and scores measured on users' tasks.

- `runs` learns how many engines a run started, the price of its hardware, where it
  ran (in-process or on a Ray cluster, on how many replicas) and the run's own phase
  timings (JSON).
- `run_candidates`: one row per candidate of a run (its model and adapter, counts,
  tokens, and the share of engine time it used).
- `measured_evals`: scores measured by Almanac on a job's rows, apart from the evals
  copied from model cards (`evals`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("engine_starts", sa.Integer))
        runs.add_column(sa.Column("usd_per_hour", sa.Float))
        runs.add_column(sa.Column("executor", sa.String(20), nullable=False, server_default=sa.text("'local'")))
        runs.add_column(sa.Column("replicas", sa.Integer))
        runs.add_column(sa.Column("phases", sa.Text))

    op.create_table(
        "run_candidates",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("label", sa.String(300), primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="SET NULL")),
        sa.Column("model_ref", sa.String(300), nullable=False),
        sa.Column("revision", sa.String(100)),
        sa.Column("adapter", sa.Text),
        sa.Column("adapter_revision", sa.String(100)),
        sa.Column("inputs", sa.Integer, nullable=False),
        sa.Column("cached", sa.Integer, nullable=False),
        sa.Column("copied", sa.Integer, nullable=False),
        sa.Column("generated", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("generation_s", sa.Float),
        sa.Column("engine_start_s", sa.Float),
        sa.Column("engine_group", sa.Integer),
    )
    # a model's measured throughput, now per candidate
    op.create_index("ix_run_candidates_model", "run_candidates", ["model_id"])

    op.create_table(
        "measured_evals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("adapter", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("adapter_revision", sa.String(100)),
        sa.Column("revision", sa.String(100)),
        sa.Column("label", sa.String(300)),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("ci_low", sa.Float),
        sa.Column("ci_high", sa.Float),
        sa.Column("hardware", sa.String(300)),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_id", "adapter", "task", "metric", name="uq_measured_evals"),
    )
    # models list --sort score:JOB, and a job's leaderboard
    op.create_index("ix_measured_evals_task", "measured_evals", ["task", "metric", "value"])


def downgrade() -> None:
    op.drop_table("measured_evals")
    op.drop_table("run_candidates")
    with op.batch_alter_table("runs") as runs:
        for column in ("phases", "replicas", "executor", "usd_per_hour", "engine_starts"):
            runs.drop_column(column)
