"""Checks of the shape of untrusted JSON values (record bodies, signed documents): each
`check(value, where) -> problem or None`, composed into objects with known members only,
amounts in whole fen, texts and lists bounded. Pure; shared by the ledger's well-formed
bodies (`edge.domain.records`) and the service point's documents."""

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

MAX_FEN = 10**12  # ten billion yuan: far above any visit, day or year of a clinic
MAX_TEXT = 1000  # a free text (a reason, a warning's message)

Check = Callable[[Any, str], str | None]


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def fen(value: Any, where: str) -> str | None:
    if type(value) is not int:
        return f"{where} must be a whole number of fen, not {shown(value)}"
    if abs(value) > MAX_FEN:
        return f"{where} is out of range ({value})"
    return None


def count(value: Any, where: str) -> str | None:
    if type(value) is not int or not 0 <= value <= 2**63 - 1:
        return f"{where} must be a whole number from 0, not {shown(value)}"
    return None


def flag(value: Any, where: str) -> str | None:
    return None if type(value) is bool else f"{where} must be true or false"


def text(limit: int = 64, *, nullable: bool = False) -> Check:
    def check(value: Any, where: str) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            return f"{where} must be text, not {shown(value)}"
        if len(value) > limit:
            return f"{where} is longer than {limit} characters"
        return None

    return check


def decimal(value: Any, where: str) -> str | None:
    """A price or quantity: a finite decimal number as text ("6.80", "2")."""
    problem = text(32)(value, where)
    if problem is not None:
        return problem
    try:
        finite = Decimal(value).is_finite()
    except ArithmeticError:
        finite = False
    return None if finite else f"{where} must be a decimal number as text, not {shown(value)}"


def day(value: Any, where: str) -> str | None:
    problem = text(10)(value, where)
    if problem is not None:
        return problem
    try:
        date.fromisoformat(value)
    except ValueError:
        return f"{where} must be a date (YYYY-MM-DD), not {shown(value)}"
    return None


def pattern(pattern: re.Pattern[str], shape: str) -> Check:
    def check(value: Any, where: str) -> str | None:
        if isinstance(value, str) and pattern.fullmatch(value):
            return None
        return f"{where} must be {shape}, not {shown(value)}"

    return check


def one_of(choices: tuple[Any, ...]) -> Check:
    def check(value: Any, where: str) -> str | None:
        if any(type(value) is type(choice) and value == choice for choice in choices):
            return None
        return f"{where} must be one of {', '.join(map(str, choices))}, not {shown(value)}"

    return check


def year(value: Any, where: str) -> str | None:
    """A calendar year as a number (an insurance year)."""
    if type(value) is int and 2000 <= value <= 2200:
        return None
    return f"{where} must be a year from 2000 to 2200, not {shown(value)}"


def optional(check: Check) -> Check:
    return lambda value, where: None if value is None else check(value, where)


def list_of(check: Check, limit: int) -> Check:
    def list_check(value: Any, where: str) -> str | None:
        if not isinstance(value, list):
            return f"{where} must be a list, not {shown(value)}"
        if len(value) > limit:
            return f"{where} has more than {limit} entries"
        for number, entry in enumerate(value):
            problem = check(entry, f"{where}[{number}]")
            if problem is not None:
                return problem
        return None

    return list_check


def map_of(check: Check, limit: int = 32) -> Check:
    """{name: value}: names are short texts."""

    def map_check(value: Any, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where} must be an object, not {shown(value)}"
        if len(value) > limit:
            return f"{where} has more than {limit} members"
        for name, entry in value.items():
            problem = text()(name, f"a name in {where}") or check(entry, f"{where}.{name}")
            if problem is not None:
                return problem
        return None

    return map_check


def object(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    optional = optional or {}

    def object_check(value: Any, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where} must be an object, not {shown(value)}"
        missing = [name for name in required if name not in value]
        if missing:
            return f"{where} lacks {', '.join(missing)}"
        unknown = [name for name in value if name not in required and name not in optional]
        if unknown:
            return f"{where} has unknown members {shown(sorted(map(str, unknown)))}"
        for name, entry in value.items():
            problem = (required.get(name) or optional[name])(entry, f"{where}.{name}")
            if problem is not None:
                return problem
        return None

    return object_check
