"""catalog.plain answers the revision question as catalog.history does, without SQLAlchemy,
and says nothing (None) of a catalog it cannot read at the newest schema."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from catalog import plain
from catalog.db import Catalog
from catalog.history import record_replaced, revision_statuses
from catalog.models import find_model, upsert_model
from catalog.records import ModelEntry

OLD, NEW = "a" * 40, "b" * 40
WHEN = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)


@pytest.fixture
def catalog_file(home: Path) -> Path:
    path = home / "catalog.db"
    catalog = Catalog.at(path)
    with catalog.sessions.begin() as s:
        upsert_model(s, ModelEntry(ref="acme/clinical-7b", repo_id="acme/clinical-7b",
                                   name="Clinical 7B", source="hub", revision=NEW))
        upsert_model(s, ModelEntry(ref="local/twin-a", name="Twin", source="local"))
        upsert_model(s, ModelEntry(ref="local/twin-b", name="twin", source="local"))
        upsert_model(s, ModelEntry(ref="local/Ǎguila", name="Ǎguila 7B", source="local",
                                   revision="r1"))
        model = find_model(s, "acme/clinical-7b")
        assert model is not None
        record_replaced(s, model.id, OLD, {"name": "Clinical 7B"}, seen_at=None,
                        replaced_at=WHEN, replaced_by=NEW)
    catalog.close()
    return path


PAIRS = [("acme/clinical-7b", NEW), ("acme/clinical-7b", OLD), ("ACME/Clinical-7B", OLD),
         ("clinical 7b", "c" * 40), ("acme/clinical-7b", None), ("Twin", "x"),
         ("Ǎguila 7B", "r1"), ("ǎguila 7b", "r1"), ("nobody/nothing", NEW)]


def test_revision_statuses_agree_with_the_orms(catalog_file: Path) -> None:
    catalog = Catalog.at(catalog_file, migrate=False)
    with catalog.sessions() as s:
        expected = revision_statuses(s, PAIRS)
    catalog.close()
    got = plain.revision_statuses(catalog_file, PAIRS)
    assert got == expected
    assert got[("acme/clinical-7b", OLD)].replaced_at == WHEN  # and something was found
    assert got[("acme/clinical-7b", NEW)].is_current is True


def test_a_catalog_missing_not_at_the_newest_schema_or_damaged_says_nothing(
        catalog_file: Path, tmp_path: Path) -> None:
    assert plain.revision_statuses(tmp_path / "none.db", PAIRS) is None
    with sqlite3.connect(catalog_file) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert plain.revision_statuses(catalog_file, PAIRS) is None
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    assert plain.revision_statuses(garbage, PAIRS) is None
