"""Finding one model by the reference a person typed: the question every other module
of the catalog (and every room above it) asks first. It sits below them all, so that
history, evals and the detail record can ask it without reaching back into
`catalog.models`."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from catalog.errors import UnknownModelError
from catalog.tables import Model


def find_model(session: Session, ref: str) -> Model | None:
    """By reference, then repo id, then a case-insensitive name; None if nothing matches.
    Both sides go through SQLite's lower(), which folds ASCII only: Python's str.lower()
    on one side would make a name such as "Ǎguila 7B" unfindable even typed exactly."""
    model = session.scalar(select(Model).where(Model.ref == ref))
    if model is None:
        model = session.scalar(
            select(Model).where(or_(Model.repo_id == ref, func.lower(Model.ref) == func.lower(ref)))
        )
    if model is None:
        matches = session.scalars(
            select(Model).where(func.lower(Model.name) == func.lower(ref)).limit(2)
        ).all()
        model = matches[0] if len(matches) == 1 else None
    return model


def get_model(session: Session, ref: str) -> Model:
    model = find_model(session, ref)
    if model is None:
        raise UnknownModelError(ref)
    return model
