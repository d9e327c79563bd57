"""Alembic migrations, the ORM mapping they must agree with, and SQLite connection settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import IntegrityError

from almanac.cli import cli
from catalog import db
from catalog.db import (
    Catalog,
    CatalogError,
    CatalogMissingError,
    CatalogUnusableError,
    SchemaTooNewError,
)
from catalog.tables import Base

TABLES = {"models", "model_languages", "model_domains", "model_tags", "evals", "runs"}
INDEXES = {
    "ix_models_parameters",
    "ix_models_license",
    "ix_model_languages_language",
    "ix_model_domains_domain",
    "ix_evals_model_id",
    "ix_runs_job_started",
    "ix_runs_model",
}


def _master(path: Path) -> dict[str, set[str]]:
    """Object names in sqlite_master by type, read with the plain sqlite3 module."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    out: dict[str, set[str]] = {"table": set(), "index": set(), "virtual": set()}
    for type_, name, sql in rows:
        out[type_].add(name)
        if sql and sql.upper().startswith("CREATE VIRTUAL TABLE") and "USING FTS5" in sql.upper():
            out["virtual"].add(name)
    return out


def _version(path: Path) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def _downgrade(engine: Engine, revision: str) -> None:
    cfg = db.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@pytest.fixture
def empty_db(tmp_path: Path) -> Path:
    return tmp_path / "empty.db"


def test_upgrade_from_empty_database_creates_every_table_index_and_fts(empty_db: Path) -> None:
    engine = db.make_engine(f"sqlite:///{empty_db}")
    try:
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()
    master = _master(empty_db)
    assert TABLES | {"alembic_version", "models_fts"} <= master["table"]
    assert "models_fts" in master["virtual"]
    assert master["index"] >= INDEXES
    assert _version(empty_db) == db.head_revision()


def test_downgrade_to_base_then_upgrade_again(empty_db: Path) -> None:
    engine = db.make_engine(f"sqlite:///{empty_db}")
    try:
        db.upgrade(engine)
        _downgrade(engine, "base")
        master = _master(empty_db)
        leftovers = {t for t in master["table"] if t != "alembic_version"}
        assert leftovers == set(), f"downgrade left tables behind: {leftovers}"
        assert db.current_revision(engine) is None

        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()
    master = _master(empty_db)
    assert TABLES | {"models_fts"} <= master["table"]
    assert master["index"] >= INDEXES


def test_the_newest_revision_read_from_the_files_is_alembics_head() -> None:
    """A catalog at this revision opens without loading Alembic (catalog.db)."""
    assert db.newest_revision() == db.head_revision()


def test_upgrade_at_head_is_a_no_op(empty_db: Path) -> None:
    Catalog.at(empty_db).close()
    before = _master(empty_db)
    Catalog.at(empty_db).close()
    assert _master(empty_db) == before
    assert _version(empty_db) == db.head_revision()


# Indexes on an expression (name COLLATE NOCASE): Alembic cannot compare those; the test
# below checks their SQL instead.
EXPRESSION_INDEXES = {"ix_models_name": "(name COLLATE NOCASE, id)"}


def _not_fts(name: str | None, type_: str, _parent: dict) -> bool:
    # FTS5's virtual table and its shadow tables are raw SQL, not ORM mappings.
    if type_ == "index" and name in EXPRESSION_INDEXES:
        return False
    return not (type_ == "table" and name is not None and name.startswith("models_fts"))


def test_expression_indexes_exist_as_written(empty_db: Path) -> None:
    Catalog.at(empty_db).close()
    with sqlite3.connect(empty_db) as conn:
        sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall())
    for name, columns in EXPRESSION_INDEXES.items():
        assert sql[name].replace('"', "").endswith(columns), sql[name]


def test_orm_mapping_matches_migrated_schema(empty_db: Path) -> None:
    catalog = Catalog.at(empty_db)
    try:
        with catalog.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_name": _not_fts,
                    "target_metadata": Base.metadata,
                },
            )
            diffs = compare_metadata(ctx, Base.metadata)
    finally:
        catalog.close()
    assert diffs == []


def test_orm_mapping_comparison_notices_a_difference(empty_db: Path) -> None:
    """Guards the test above: a schema that differs from the mapping must show up."""
    catalog = Catalog.at(empty_db)
    try:
        with catalog.engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_models_license")
        with catalog.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"include_name": _not_fts})
            diffs = compare_metadata(ctx, Base.metadata)
    finally:
        catalog.close()
    assert [d[0] for d in diffs] == ["add_index"]
    assert diffs[0][1].name == "ix_models_license"


def _stamp_future(path: Path) -> None:
    Catalog.at(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")


def test_database_from_a_newer_almanac_is_refused(empty_db: Path) -> None:
    _stamp_future(empty_db)
    before = _master(empty_db)
    with pytest.raises(SchemaTooNewError, match="9999"):
        Catalog.at(empty_db)
    with pytest.raises(SchemaTooNewError, match="newer Almanac"):
        Catalog.at(empty_db, migrate=False)
    # Refused before anything touched it.
    assert _version(empty_db) == "9999"
    assert _master(empty_db) == before


def test_cli_on_a_newer_database_exits_1_with_a_message(home: Path) -> None:
    _stamp_future(home / "catalog.db")
    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 1
    # A ClickException ends in SystemExit; an uncaught error would be the exception itself.
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert "9999" in result.stderr
    assert "newer Almanac" in result.stderr
    assert result.stdout == ""


def test_uninitialized_catalog_without_migrate_says_run_init(empty_db: Path) -> None:
    with pytest.raises(CatalogError, match="almanac init"):
        Catalog.at(empty_db, migrate=False)


def test_connections_use_wal_foreign_keys_and_busy_timeout(empty_db: Path) -> None:
    catalog = Catalog.at(empty_db)
    try:
        with catalog.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.BUSY_TIMEOUT_MS
    finally:
        catalog.close()
    # WAL is a property of the file: a plain connection sees it too.
    with sqlite3.connect(empty_db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_foreign_keys_are_enforced_on_catalog_connections(empty_db: Path) -> None:
    catalog = Catalog.at(empty_db)
    try:
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), catalog.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO model_languages (model_id, language) VALUES (12345, 'en')"
            )
    finally:
        catalog.close()


def test_plain_engine_does_not_get_the_settings(empty_db: Path) -> None:
    """The settings come from make_engine's connect hook, not from SQLite defaults."""
    engine = create_engine(f"sqlite:///{empty_db}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    finally:
        engine.dispose()


# -- open_catalog: the one opener of the CLI (writer), the TUI and the server (readers) -------


@pytest.mark.parametrize("readonly", [True, False], ids=["readonly", "no-migrate"])
def test_a_reader_refuses_a_missing_catalog_and_creates_nothing(
        tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "home" / "catalog.db"
    with pytest.raises(CatalogMissingError, match="almanac init") as info:
        db.open_catalog(path, readonly=readonly, migrate=False)
    assert info.value.path == path and info.value.exit_code == 1
    assert not (tmp_path / "home").exists()


def test_a_read_only_catalog_reads_and_cannot_write(empty_db: Path) -> None:
    db.open_catalog(empty_db).close()
    catalog = db.open_catalog(empty_db, readonly=True, cache_kib=4096)
    try:
        with catalog.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM models").scalar() == 0
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -4096
        # One line for the person (catalog.db.CatalogUnusableError), not SQLite's exception.
        with pytest.raises(CatalogUnusableError, match="read-only"), catalog.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM models")
    finally:
        catalog.close()
    with pytest.raises(ValueError, match="cannot be migrated"):
        db.open_catalog(empty_db, readonly=True, migrate=True)


def test_a_read_only_catalog_is_refused_when_out_of_date(empty_db: Path) -> None:
    sqlite3.connect(empty_db).close()  # a file, but no schema: `almanac init` never ran
    with pytest.raises(CatalogError, match="almanac init"):
        db.open_catalog(empty_db, readonly=True)
    _stamp_future(empty_db)
    with pytest.raises(SchemaTooNewError, match="newer Almanac"):
        db.open_catalog(empty_db, readonly=True)


def test_a_home_with_url_characters_in_its_path(tmp_path: Path) -> None:
    path = tmp_path / "odd #1 ?x=y %20" / "catalog.db"
    db.open_catalog(path).close()
    assert path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [path.parent.name]
    catalog = db.open_catalog(path, readonly=True)
    try:
        with catalog.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM models").scalar() == 0
    finally:
        catalog.close()
