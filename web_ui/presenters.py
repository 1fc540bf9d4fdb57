"""What the pages show, as plain dicts of display strings: amounts are formatted from
integer fen here, on the server (the browser never does arithmetic on money)."""

from datetime import date

from flask_babel import gettext as _

from edge.domain.documents import InsuredPerson
from edge.domain.model import Accumulators, Policy
from edge.domain.money import format_yuan
from edge.domain.settlement import age_in_years, assistance_scheme, not_eligible_reason
from web_ui import messages

MONEY = ("total", "fund", "assistance", "personal_account", "cash")
DETAIL_MONEY = (
    "inscp_total",
    "deductible_applied",
    "policy_selfpay",
    "fulamt_total",
    "overlmt_total",
    "preselfpay_total",
)


def patient_panel(
    entry: InsuredPerson,
    policy: Policy,
    accumulators: dict[str, Accumulators],
    today: date,
    diagnosis_names: dict[str, str],
) -> dict:
    """The patient panel: who, eligibility, categories and what is left of the year."""
    person = entry.person
    reason = not_eligible_reason(person, today)
    if reason is None:
        eligibility = None
    elif person.status != "active":
        eligibility = _("Insurance status: %(status)s", status=messages.STATUSES[person.status])
    else:
        waiting_until = person.waiting_until.isoformat() if person.waiting_until else ""
        eligibility = _("In the waiting period until %(day)s", day=waiting_until)
    categories = person.categories_on(today)
    scheme = assistance_scheme(policy, categories)
    year = []
    for visit_type in policy.visit_types(person.insurance_type):
        benefit = policy.benefits[(person.insurance_type, visit_type)]
        used = accumulators[visit_type]
        year.append(
            {
                "visit_type": messages.visit_type_label(visit_type),
                "deductible_left": format_yuan(max(0, benefit.deductible - used.deductible_used)),
                "cap_left": format_yuan(max(0, benefit.annual_cap - used.fund_paid)),
            }
        )
    assistance_left = None
    if scheme is not None:
        paid = next(iter(accumulators.values())).assistance_paid  # year-wide
        assistance_left = format_yuan(max(0, scheme.annual_cap - paid))
    return {
        "insured_id": entry.insured_id,
        "name": entry.name,
        "card_no": entry.card_no,
        "id_number_masked": entry.id_number_masked,
        "gender": _("Male") if person.gender == "M" else _("Female"),
        "age": age_in_years(person.birth_date, today),
        "insurance_type": str(messages.INSURANCE_TYPES[person.insurance_type]),
        "status": str(messages.STATUSES[person.status]),
        "eligible": reason is None,
        "eligibility": eligibility,
        "categories": [str(messages.CATEGORIES.get(c, c)) for c in sorted(categories)],
        "assistance_scheme": (
            str(messages.CATEGORIES.get(scheme.name, scheme.name)) if scheme else None
        ),
        "assistance_left": assistance_left,
        "year": year,
        "visit_types": [
            (v, messages.visit_type_label(v)) for v in policy.visit_types(person.insurance_type)
        ],
        "employee": person.insurance_type == "employee",
        "account_balance": format_yuan(person.account_balance),
        "card_expired": entry.card_expiry is not None and entry.card_expiry < today,
        "card_expiry": entry.card_expiry.isoformat() if entry.card_expiry else None,
        "chronic_certs": [
            {
                "code": cert.disease_code,
                "name": diagnosis_names.get(cert.disease_code, ""),
                "valid_from": cert.valid_from.isoformat() if cert.valid_from else "",
                "valid_to": cert.valid_to.isoformat() if cert.valid_to else "",
                "valid": cert.valid_on(today),
            }
            for cert in person.chronic_certs
        ],
    }


def split(result: dict) -> dict:
    """The settlement split of a `Settlement.to_dict()` (or a record's `result`)."""
    return {name: format_yuan(result[name]) for name in (*MONEY, *DETAIL_MONEY)}


def settlement_view(result: dict, lines: list[dict]) -> dict:
    """The split with each line's amounts and why anything is self-paid.

    `lines` gives each result line's name, quantity, unit and price, in the same order.
    """
    shown = []
    for index, (line, item) in enumerate(zip(result["lines"], lines, strict=True)):
        self_paid = line["fulamt_ownpay"] + line["overlmt_selfpay"] + line["preselfpay"]
        reasons = [
            {"code": code, "message": str(messages.LINE_REASONS.get(code, code))}
            for code in line["reasons"]
        ]
        if line["preselfpay"]:
            reasons.append(
                {
                    "code": "CLASS_B_PREPAY",
                    "message": _("Class B item: a share is self-paid first."),
                }
            )
        shown.append(
            {
                "index": index,
                "code": line["code"],
                "name": item.get("name", ""),
                "quantity": item.get("quantity", ""),
                "unit": item.get("unit", ""),
                "price": f"¥{item['price']}" if item.get("price") else "",
                "amount": format_yuan(line["amount"]),
                "self_paid": format_yuan(self_paid),
                "covered": format_yuan(line["inscp"]),
                "reasons": reasons,
            }
        )
    return {
        "split": split(result),
        "eligible": result["eligible"],
        "lines": shown,
        "warnings": [
            {
                "code": w["code"],
                "message": str(messages.WARNINGS.get(w["code"], w["code"])),
                "detail": w["message"],
            }
            for w in result["warnings"]
        ],
    }


def review_messages(reasons: list[str]) -> list[dict]:
    return [
        {"code": code, "message": str(messages.NEEDS_REVIEW.get(code, code))} for code in reasons
    ]
