"""Searches at a million models: the words of the full-text index as a table.

- `search_terms`: every word `models_fts` holds in its text columns (catalog.indexing
  keeps it with each write). A search's words are prefixes; looked up here, each becomes
  the few whole words it begins, which FTS5 reads in order and stops early on, instead
  of its prefix query, which gathers every match of the prefix before the first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from catalog import indexing  # the one code that derives the read structures

    op.create_table(
        "search_terms",
        sa.Column("term", sa.String(200), primary_key=True),
        sqlite_with_rowid=False,
    )
    indexing.rebuild_terms(op.get_bind())


def downgrade() -> None:
    op.drop_table("search_terms")
