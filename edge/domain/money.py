"""Exact fixed-point arithmetic for settlement: integer fen, decimal prices and ratios.

Prices, quantities and ratios arrive as decimal strings and stay `Decimal`; every product
is computed as an exact integer fraction and rounded half up to the fen once, at the
step the rules name. No floats, and no dependence on the decimal context's precision.
"""

import re
from decimal import Decimal

_DECIMAL_STRING = re.compile(r"-?[0-9]+(?:\.([0-9]+))?")


def parse_decimal_string(text: object) -> tuple[Decimal, int] | None:
    """`Decimal` and number of decimal places of a plain decimal string such as "0.0350".

    Returns None for anything else: numbers, exponents, spaces, signs other than a leading
    minus, non-ASCII digits.
    """
    if not isinstance(text, str):
        return None
    match = _DECIMAL_STRING.fullmatch(text)
    if match is None:
        return None
    places = len(match.group(1) or "")
    return Decimal(text), places


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up; both non-negative, denominator > 0."""
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (2 * remainder >= denominator)


def yuan_times_quantity_in_fen(price_yuan: Decimal, quantity: Decimal) -> int:
    """round(price × quantity), in fen."""
    price_n, price_d = price_yuan.as_integer_ratio()
    qty_n, qty_d = quantity.as_integer_ratio()
    return round_half_up(price_n * qty_n * 100, price_d * qty_d)


def fen_times_ratio(amount_fen: int, ratio: Decimal) -> int:
    """round(amount × ratio), in fen."""
    ratio_n, ratio_d = ratio.as_integer_ratio()
    return round_half_up(amount_fen * ratio_n, ratio_d)


def format_yuan(amount_fen: int) -> str:
    """¥12.34 for 1234 fen (display only)."""
    sign = "-" if amount_fen < 0 else ""
    yuan, fen = divmod(abs(amount_fen), 100)
    return f"{sign}¥{yuan:,}.{fen:02d}"
