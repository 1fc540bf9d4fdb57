"""The order of catalog, policy and roster versions, shared by the device and the hub.

A version is `YEAR[.N…]` (2026.11, 2026.11.2; at most 8 numbers), numbers only, its first number at
most MAX_YEARS_AHEAD past today's year: a signed `9999999999`, `3000.1` or `v2` would
otherwise sort after every normal version ever published and freeze that kind for good.
A version already installed that breaks this rule is replaced by the next sane one
(`supersedes`): that is the county's way back (docs/updates.md)."""

from datetime import date

MAX_YEARS_AHEAD = 1
_MAX_PARTS, _MAX_DIGITS = 8, 6


def version_order(version: str) -> tuple[tuple[int, int, str], ...]:
    """Dotted versions compare part by part, numbers as numbers: 2026.10 > 2026.9."""
    # isdigit() alone also takes "²", which int() refuses
    return tuple(
        (0, int(p), "") if p.isascii() and p.isdigit() else (1, 0, p) for p in version.split(".")
    )


def version_problem(version: str, today: date) -> str | None:
    """Why `version` is not a sane version on `today`, or None: numbers only (a letter
    sorts after every number), and a first number (the year) not past next year."""
    parts = version.split(".")
    if not 1 <= len(parts) <= _MAX_PARTS or not all(
        p.isascii() and p.isdigit() and len(p) <= _MAX_DIGITS for p in parts
    ):
        return f"version {version!r} is not YEAR[.N…] (at most 8 numbers of at most 6 digits)"
    latest = today.year + MAX_YEARS_AHEAD
    if int(parts[0]) > latest:
        return f"version {version!r}: its year is after {latest}"
    return None


def supersedes(offered: str, installed: str, today: date) -> bool:
    """Whether `offered` (a sane version) may replace `installed`: newer, or `installed` is
    itself out of bounds (a version signed by mistake, left behind by the next sane one)."""
    if version_problem(installed, today) is not None:
        return True
    return version_order(offered) > version_order(installed)
