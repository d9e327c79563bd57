"""Human sizes: parameter counts (`7B`, `350M`), memory (`24GB`) and whether weights fit."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal, get_args

_SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_NUM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)
_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?)B?\s*$", re.IGNORECASE)

BYTES_PER_PARAM = {
    "float32": 4.0,
    "fp32": 4.0,
    "float16": 2.0,
    "fp16": 2.0,
    "bfloat16": 2.0,
    "int8": 1.0,
    "int4": 0.5,
}
Quant = Literal["int4", "int8", "fp16"]  # what `--fits` may assume instead of the dtype
QUANTS: tuple[str, ...] = get_args(Quant)
# Weights are not the whole story: activations, KV cache and runtime buffers.
OVERHEAD = 1.2


# Bounds on what a filter may ask for: far above any model or machine, far below the
# largest integer SQLite stores (a query with a bigger number would overflow).
MAX_PARAMS = 10**15
MAX_MEMORY = 2**60


def parse_params(text: str) -> int:
    m = _NUM.match(str(text))
    if not m:
        raise ValueError(f"not a parameter count: {text!r} (try 7B, 1.1B or 350M)")
    # Decimal, not float: int(4.1 * 10**9) is 4_099_999_999.
    count = int(Decimal(m.group(1)) * _SCALE[m.group(2).upper()])
    if count > MAX_PARAMS:
        raise ValueError(f"parameter count out of range: {text!r} (at most 1000T)")
    return count


def parse_memory(text: str) -> int:
    """Bytes in `24GB`, `24GiB`, `512M`; decimal and binary units both mean binary here,
    as memory is sold."""
    m = _MEM.match(str(text))
    if not m:
        raise ValueError(f"not a memory size: {text!r} (try 24GB or 512MB)")
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[m.group(2).upper()]
    size = int(Decimal(m.group(1)) * 1024**power)
    if size > MAX_MEMORY:
        raise ValueError(f"memory size out of range: {text!r} (at most 1048576TB)")
    return size


def format_params(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value >= 100 else f"{value:.3g}{unit}"
    return str(n)


def weight_bytes(parameters: int, dtype: str | None, quant: str | None = None) -> float:
    per = BYTES_PER_PARAM.get((quant or dtype or "bfloat16").lower(), 2.0)
    return parameters * per


def fits(parameters: int | None, dtype: str | None, memory: int, quant: str | None = None) -> bool:
    if parameters is None:
        return False
    return weight_bytes(parameters, dtype, quant) * OVERHEAD <= memory
