"""Trained adapters' lineage: `trainings`, one row per adapter `almanac train` made (its
base, the curated set's digest and row counts, the jobs and candidates it learned from,
the hyperparameters, losses, steps, seconds and hardware).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trainings",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("base_ref", sa.String(300), nullable=False),
        sa.Column("base_revision", sa.String(100)),
        sa.Column("data_path", sa.Text, nullable=False),
        sa.Column("data_digest", sa.String(100), nullable=False),
        sa.Column("data_filter", sa.Text),
        sa.Column("train_rows", sa.Integer, nullable=False),
        sa.Column("validation_rows", sa.Integer, nullable=False),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("train_loss", sa.Float),
        sa.Column("eval_loss", sa.Float),
        sa.Column("steps", sa.Integer, nullable=False),
        sa.Column("epochs", sa.Float),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("device", sa.String(20), nullable=False),
        sa.Column("dtype", sa.String(20), nullable=False),
        sa.Column("hardware", sa.String(300)),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trainings")
