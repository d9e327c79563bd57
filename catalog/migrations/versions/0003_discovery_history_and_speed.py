"""Discovery and refresh from the Hub, revision history, and listings at a million models.

- `models.refreshed_at`: when the Hub last described the model (`models refresh
  --older-than` picks the oldest first); `models.curated`: the fields the seed list or
  the user set, which an import never overwrites (seed rows start with all of theirs).
- `model_revisions`: a revision the Hub moved a model away from, with the facts the
  catalog held for it, so jobs made on it can say so.
- Listings at a million models (catalog.indexing derives and keeps these): `models_fts`
  is rebuilt with popularity-ordered rowids (`models.text_key`) and a `facets` column of
  (domain, language) tokens, no positions kept (words are matched one by one);
  `model_facets` lists each model under its (domain, language) pairs by name;
  `facet_counts` counts them; `catalog_meta` records the language groups they were built
  with; `ix_models_name` and `ix_models_downloads` read unfiltered listings in order.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# What a seed row listed before this revision counts as curated: everything but the
# live figures the Hub owns (revision, gated, downloads, likes).
SEED_CURATED = ["name", "description", "architecture", "parameters", "context_length", "dtype",
                "license", "task", "base_model", "relation", "adapter_rank", "languages",
                "domains", "tags", "evals"]


FTS_COLUMNS = "ref, name, description, tags, card"
TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"


def upgrade() -> None:
    from catalog import indexing  # the one code that derives the read structures

    with op.batch_alter_table("models") as models:
        models.add_column(sa.Column("refreshed_at", sa.DateTime(timezone=True)))
        models.add_column(sa.Column("curated", sa.Text))
        models.add_column(sa.Column("text_key", sa.BigInteger))
    op.execute(sa.text("UPDATE models SET curated = :curated WHERE source = 'seed'")
               .bindparams(curated=json.dumps(SEED_CURATED)))

    op.create_table(
        "model_revisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("revision", sa.String(100), nullable=False),
        sa.Column("facts", sa.Text, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True)),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_by", sa.String(100)),
        # revision_status: (model, revision) -> when replaced; a model's history by prefix
        sa.UniqueConstraint("model_id", "revision", name="uq_model_revisions"),
    )

    # models list --domain D --language L sorted by name: one range of this key, in order
    op.create_table(
        "model_facets",
        sa.Column("domain", sa.String(100), primary_key=True),
        sa.Column("language", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(300, collation="NOCASE"), primary_key=True),
        sa.Column("model_id", sa.Integer, primary_key=True),
        sqlite_with_rowid=False,
    )
    # facet counts and counts of facet filters: one row read per (domain, language)
    op.create_table(
        "facet_counts",
        sa.Column("domain", sa.String(100), primary_key=True),
        sa.Column("language", sa.String(100), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "catalog_meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    # models list with no facet or search, sorted by name: the first page read in order
    op.create_index("ix_models_name", "models", [sa.text("name COLLATE NOCASE"), "id"])
    # models list --sort downloads with no facet or search: read backwards, in order
    op.create_index("ix_models_downloads", "models", ["downloads", "id"])

    op.execute("DROP TABLE models_fts")
    op.execute(f"CREATE VIRTUAL TABLE models_fts USING fts5({FTS_COLUMNS}, facets, "
               f"detail=column, {TOKENIZE})")
    indexing.rebuild(op.get_bind())


def downgrade() -> None:
    op.execute("DROP TABLE models_fts")
    op.execute(f"CREATE VIRTUAL TABLE models_fts USING fts5({FTS_COLUMNS}, {TOKENIZE})")
    op.execute(
        "INSERT INTO models_fts (rowid, ref, name, description, tags, card) "
        "SELECT id, replace(ref, '/', ' ') || ' ' || ref, name, description, "
        "coalesce((SELECT group_concat(tag, ' ') FROM model_tags WHERE model_id = models.id), ''), "
        "card FROM models")
    op.drop_index("ix_models_downloads", "models")
    op.drop_index("ix_models_name", "models")
    for table in ("catalog_meta", "facet_counts", "model_facets", "model_revisions"):
        op.drop_table(table)
    with op.batch_alter_table("models") as models:
        models.drop_column("text_key")
        models.drop_column("curated")
        models.drop_column("refreshed_at")
