"""catalog.sizes: parameter counts, memory sizes and whether weights fit."""

from __future__ import annotations

import pytest

from catalog import sizes

GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("7B", 7_000_000_000),
        ("7b", 7_000_000_000),
        ("1.1B", 1_100_000_000),
        ("4.1B", 4_100_000_000),  # float arithmetic would give 4_099_999_999
        ("1.15B", 1_150_000_000),
        ("350M", 350_000_000),
        ("70G", 70_000_000_000),
        ("1.5T", 1_500_000_000_000),
        ("125K", 125_000),
        (" 13 B ", 13_000_000_000),
        ("6738415616", 6_738_415_616),
    ],
)
def test_parse_params(text: str, count: int) -> None:
    assert sizes.parse_params(text) == count


@pytest.mark.parametrize("text", ["7e9", "lots", "", "B", "-7B", "7BB", "7 billion", "1,000"])
def test_parse_params_rejects_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a parameter count: .*try 7B"):
        sizes.parse_params(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("24GB", 24 * GIB),  # memory is sold in binary units: GB and GiB mean the same here
        ("24GiB", 24 * GIB),
        ("24gb", 24 * GIB),
        ("24 GB", 24 * GIB),
        ("24G", 24 * GIB),
        ("512MB", 512 * 1024**2),
        ("512M", 512 * 1024**2),
        ("1TB", 1024**4),
        ("2.5GB", int(2.5 * GIB)),
        ("4096", 4096),
    ],
)
def test_parse_memory(text: str, size: int) -> None:
    assert sizes.parse_memory(text) == size


@pytest.mark.parametrize("text", ["a lot", "", "GB", "24PB", "24 gigs", "-1GB"])
def test_parse_memory_rejects_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a memory size: .*try 24GB"):
        sizes.parse_memory(text)


def test_fits_uses_dtype_then_quant_with_20_percent_headroom() -> None:
    seven_b = 7_000_000_000
    # 7e9 x 2 bytes x 1.2 = 16.8e9 bytes.
    assert sizes.fits(seven_b, "bfloat16", 16_800_000_000)
    assert not sizes.fits(seven_b, "bfloat16", 16_799_999_999)
    # Unknown or missing dtype counts as 16-bit.
    assert sizes.fits(seven_b, None, 16_800_000_000)
    assert not sizes.fits(seven_b, None, 16_799_999_999)
    # float32 doubles it; int8 and int4 halve and quarter it.
    assert not sizes.fits(seven_b, "float32", 24 * GIB)  # 33.6e9
    assert sizes.fits(seven_b, "float32", 33_600_000_000)
    assert sizes.fits(seven_b, "bfloat16", 8_400_000_000, quant="int8")
    assert not sizes.fits(seven_b, "bfloat16", 8_399_999_999, quant="int8")
    assert sizes.fits(seven_b, "float32", 4_200_000_000, quant="int4")
    assert not sizes.fits(seven_b, "float32", 4_199_999_999, quant="int4")


def test_fits_70b_needs_int4_for_48gib() -> None:
    seventy_b = 68_976_926_720
    assert not sizes.fits(seventy_b, "bfloat16", 48 * GIB)
    assert not sizes.fits(seventy_b, "bfloat16", 48 * GIB, quant="int8")  # 82.8e9
    assert sizes.fits(seventy_b, "bfloat16", 48 * GIB, quant="int4")  # 41.4e9
    assert not sizes.fits(seventy_b, "bfloat16", 24 * GIB, quant="int4")
    assert sizes.fits(seventy_b, "int4", 48 * GIB)  # already quantized (AWQ)


def test_fits_without_a_parameter_count_is_false() -> None:
    assert not sizes.fits(None, "bfloat16", 10**15)


def test_quants_have_byte_sizes() -> None:
    assert set(sizes.QUANTS) <= set(sizes.BYTES_PER_PARAM)
    assert sizes.OVERHEAD == 1.2


@pytest.mark.parametrize(
    ("count", "text"),
    [(6_738_415_616, "6.74B"), (100_000_000_000, "100B"), (3_407_872, "3.41M"), (None, "?"), (999, "999")],
)
def test_format_params(count: int | None, text: str) -> None:
    assert sizes.format_params(count) == text
