"""The catalog room: SQLite (SQLAlchemy 2.0 + Alembic) index of specialized models."""
