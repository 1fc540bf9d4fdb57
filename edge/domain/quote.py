"""`clinic quote`: recompute a settlement from one self-contained quote document."""

import json
from decimal import Decimal
from typing import Any

from edge.domain.documents import (
    accumulators_from_json,
    bad,
    catalog_from_json,
    obj,
    person_from_json,
    policy_from_json,
    visit_from_json,
)
from edge.domain.model import Rejection
from edge.domain.settlement import settle


def quote_document(document: Any) -> dict[str, Any]:
    """The quote output for a parsed JSON document: the settlement, or `{"error": …}`."""
    try:
        doc = obj(document, "document")
        settlement = settle(
            policy_from_json(doc.get("policy")),
            catalog_from_json(doc.get("catalog")),
            person_from_json(doc.get("person")),
            accumulators_from_json(doc.get("accumulators")),
            visit_from_json(doc.get("visit")),
        )
    except Rejection as rejection:
        return rejection.to_dict()
    return settlement.to_dict()


def quote_text(text: str) -> dict[str, Any]:
    """As `quote_document`, from JSON text; text that is not JSON is `BAD_INPUT`."""
    try:
        # Fractional JSON numbers become Decimal, never float; the field parsers then
        # refuse them as the wrong type (or BAD_QUANTITY, where the rules say so).
        document = json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError) as error:
        return bad("document", f"is not valid JSON: {error}").to_dict()
    return quote_document(document)
