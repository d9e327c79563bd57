"""catalog.plain answers the revision question as catalog.history does, without SQLAlchemy,
and says nothing (None) of a catalog it cannot read at the newest schema; a listing over
its sqlite3 connection answers what the ORM records of the same models hold."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from catalog import plain
from catalog.db import Catalog, CatalogUnusableError
from catalog.detail import model_detail
from catalog.errors import UnknownModelError
from catalog.history import record_replaced, revision_statuses
from catalog.lookup import get_model
from catalog.models import find_model, upsert_model
from catalog.records import EvalRecord, ModelEntry
from catalog.runs import finish_run, start_run
from catalog.search import ModelFilter, count_models, list_models

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
        upsert_model(s, ModelEntry(
            ref="acme/clinical-7b-lora", name="Clinical LoRA", source="local", gated=True,
            base_model="acme/clinical-7b", relation="adapter", adapter_rank=8, parameters=4_000_000,
            local_path="/models/clinical-lora", languages=["en", "pl"], domains=["medicine"],
            tags=["lora"], evals=[EvalRecord("medqa", "accuracy", 0.5, "card")],
            curated=["name"]), refreshed_at=WHEN)
        start_run(s, "r1", "notes", "acme/clinical-7b", NEW, "Test CPU x2")
        finish_run(s, "r1", status="ok", generated=10, tokens_per_s=55.5)
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


def test_a_listing_over_sqlite3_alone_holds_what_the_orm_records_of_its_models_hold(
        catalog_file: Path) -> None:
    conn = plain.connect(catalog_file)
    assert conn is not None
    catalog = Catalog.at(catalog_file, migrate=False)
    with catalog.sessions() as s:
        listed = list_models(conn, ModelFilter())
        assert listed == list_models(s, ModelFilter())  # a session's connection: the same plans
        assert count_models(conn, ModelFilter()) == len(listed) == 5
        for record in listed:
            detail = model_detail(s, get_model(s, record.ref))
            detail.adapters, detail.measured, detail.history = [], [], []
            assert record == detail, record.ref
    catalog.close()
    conn.close()
    lora = next(r for r in listed if r.ref == "acme/clinical-7b-lora")
    assert lora.gated is True and lora.refreshed_at == WHEN and lora.created_at.tzinfo is UTC
    assert (lora.languages, lora.evals[0].benchmark, lora.curated) == (["en", "pl"], "medqa", ["name"])
    measured = next(r for r in listed if r.ref == "acme/clinical-7b").performance
    assert measured is not None and measured.tokens_per_s == 55.5
    assert measured.last_run_at is not None and measured.last_run_at.tzinfo is UTC


def test_the_names_a_base_goes_by_and_an_unknown_one(catalog_file: Path) -> None:
    conn = plain.connect(catalog_file)
    assert conn is not None
    assert plain.adapter_bases(conn, "Clinical 7B") == ["acme/clinical-7b", "acme/clinical-7b"]
    assert plain.adapter_bases(conn, "acme/clinical-7b-lora") == ["acme/clinical-7b-lora",
                                                                  "/models/clinical-lora"]
    with pytest.raises(UnknownModelError, match="no model 'nobody'"):
        plain.adapter_bases(conn, "nobody")
    conn.close()


def test_a_read_sqlite_refuses_is_one_line_naming_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with sqlite3.connect(garbage) as conn, \
            pytest.raises(CatalogUnusableError, match=r"garbage\.db: it is not an SQLite database"):
        list_models(conn, ModelFilter())
