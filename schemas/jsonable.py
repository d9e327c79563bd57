"""Values as JSON takes them, for every room that writes JSON (records, API answers,
cached predictions): one rule for datetimes and for floats JSON has no word for."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` as JSON takes it: datetimes as ISO text, and a float that is not finite as
    null (JSON has no NaN nor Infinity; a reader would choke on the bare words)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
