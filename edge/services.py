"""Use cases on the device: gather inputs from the store, call the pure engine."""

from edge.engine import settle
from edge.rules import Rejection, Settlement, Visit
from edge.store import SqliteDeviceStore


def quote_visit(store: SqliteDeviceStore, insured_id: str, visit: Visit) -> Settlement:
    """What settling `visit` would give now, without recording anything."""
    entry = store.insured_person(insured_id)
    if entry is None:
        raise Rejection("UNKNOWN_PERSON", f"insured person {insured_id!r} is not in the roster")
    return settle(
        store.current_policy(),
        store.catalog_items(line.code for line in visit.lines),
        entry.person,
        store.accumulators(insured_id, visit.date.year, visit.visit_type),
        visit,
    )
