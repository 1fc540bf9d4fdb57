"""Whole units: the terminal's own rule for quantities, stricter than the settlement
engine's (which takes any quantity above 0 with at most 3 decimals, as the county's
contract says, and stays so).

A village clinic dispenses and bills what it counts: a box, a bottle, an ampoule, a
sachet, a patch, a tablet, a capsule, a consultation. So an item whose unit is one of
`WHOLE_UNITS` takes whole numbers only, and 1.5 boxes is refused on the settle page with a
plain message next to its line; an item measured by weight, volume, length or time (g,
ml, 小时, 日 …) keeps the engine's 3 decimals. A unit the list does not know is left to the
engine. The rule is applied to the live quote and to the confirmation alike.
"""

from decimal import Decimal, InvalidOperation

from flask_babel import gettext as _

from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.model import MAX_QUANTITY, QUANTITY_PLACES, Rejection, Visit

# packages, pieces, doses and services counted one by one
WHOLE_UNITS = frozenset(
    ["盒", "瓶", "支", "袋", "贴", "片", "粒", "丸", "枚", "个", "只", "套", "组", "包", "卷",
     "罐", "副", "根", "条", "块", "张", "板", "管", "剂", "次", "人次", "项", "例", "台"]
)  # fmt: skip
CODE = "WHOLE_UNITS_ONLY"


def whole_units_only(unit: str | None) -> bool:
    return (unit or "").strip() in WHOLE_UNITS


def check_whole_units(store: SqliteDeviceStore, visit: Visit) -> None:
    """Refuse the first line that gives a fraction of a counted unit."""
    items = store.catalog_items(line.code for line in visit.lines)
    for index, line in enumerate(visit.lines):
        item = items.get(line.code)
        if item is None or not whole_units_only(item.unit):
            continue
        try:
            amount = Decimal(str(line.quantity))
            whole = amount == amount.to_integral_value()
        except (InvalidOperation, ValueError, TypeError):
            continue  # the engine judges what is not a number
        if not amount.is_finite() or not 0 < amount <= MAX_QUANTITY:
            continue  # the engine's own message (BAD_QUANTITY) says what is wrong
        if amount.as_tuple().exponent < -QUANTITY_PLACES:  # type: ignore[operator]
            continue
        if not whole:
            raise Rejection(CODE, item.unit, line=index)


def error_json(rejection: Rejection) -> dict:
    """The settle page's error for a fraction of a counted unit."""
    return {
        "code": CODE,
        "field": "line",
        "line": rejection.line,
        "message": _(
            "This item is counted in whole %(unit)s: give a whole number (1, 2, 3 …), not a"
            " fraction.",
            unit=rejection.message,
        ),
    }
