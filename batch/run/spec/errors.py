"""The run room's error for what a user wrote wrong: a job spec, or a setting in it.

Its own module so that every part of a spec (prompts, sampling, engine options)
can raise it without importing the spec loader that assembles them.
"""

from __future__ import annotations

from schemas.errors import UsageError


class SpecError(UsageError, ValueError):
    """An invalid job spec; the message names the file and the field path."""
