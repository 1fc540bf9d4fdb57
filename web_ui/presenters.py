"""What the pages show, as plain dicts of display strings: amounts are formatted from
integer fen here, on the server (the browser never does arithmetic on money)."""

from collections.abc import Sequence
from datetime import date

from flask_babel import gettext as _

from edge.domain.documents import InsuredPerson
from edge.domain.model import Accumulators, Policy
from edge.domain.money import format_yuan
from edge.domain.records import MONEY_FIELDS, payer_amounts
from edge.domain.settlement import age_in_years, assistance_scheme, not_eligible_reason
from web_ui import messages

# Every amount a split shows, from a settlement result, a record's `result` or a reversal's
# `amounts`: the total and the payers (records.MONEY_FIELDS), then the details. A member a
# version 1 document lacks shows as ¥0.00.
MONEY = MONEY_FIELDS
DETAIL_MONEY = (
    "inscp_total",
    "deductible_applied",
    "policy_selfpay",
    "fulamt_total",
    "overlmt_total",
    "preselfpay_total",
    "fund_fixed_total",
)
# The payers between the total and the cash, in the chain's order.
CHAIN = ("fund", "critical_illness", "assistance", "supplements", "personal_account",
         "family_account")  # fmt: skip


def local_date(day: date | None) -> str:
    """A day as the terminal says it: 2026年12月1日 (never 2026-12-01)."""
    if day is None:
        return ""
    return _("%(month)d/%(day)d/%(year)d", year=day.year, month=day.month, day=day.day)


def usable_visit_types(person, policy: Policy, today: date) -> list[str]:
    """The patient's visit types, less those that require a certificate the patient does not
    hold valid today (慢特病门诊 and 两病门诊 only with a valid certificate for them)."""
    valid = {c.disease_code for c in person.chronic_certs if c.valid_on(today)}
    usable = []
    for visit_type in messages.ordered_visit_types(policy.visit_types(person.insurance_type)):
        benefit = policy.benefits[(person.insurance_type, visit_type)]
        if benefit.requires_certificate:
            accepted = valid if benefit.diseases is None else valid & set(benefit.diseases)
            if not accepted:
                continue
        usable.append(visit_type)
    return usable


def patient_panel(
    entry: InsuredPerson,
    policy: Policy,
    accumulators: dict[str, Accumulators],
    today: date,
    diagnosis_names: dict[str, str],
    family_holders: Sequence[InsuredPerson] = (),
) -> dict:
    """The patient panel: who, eligibility, categories, what is left of the year, and the
    employees whose personal account the patient may use (家庭共济)."""
    person = entry.person
    visit_types = usable_visit_types(person, policy, today)
    reason = not_eligible_reason(person, today)
    if reason is None:
        eligibility = None
    elif person.status != "active":
        eligibility = _("Insurance status: %(status)s", status=messages.STATUSES[person.status])
    else:
        waiting_until = local_date(person.waiting_until)
        eligibility = _("In the waiting period until %(day)s", day=waiting_until)
    categories = person.categories_on(today)
    scheme = assistance_scheme(policy, categories)
    year = []
    for visit_type in visit_types:
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
        "visit_types": [(v, messages.visit_type_label(v)) for v in visit_types],
        "family_holders": [
            {
                "insured_id": holder.insured_id,
                "name": holder.name,
                "balance": format_yuan(holder.person.account_balance),
                "text": _(
                    "%(name)s's personal account, balance %(balance)s",
                    name=holder.name,
                    balance=format_yuan(holder.person.account_balance),
                ),
            }
            for holder in family_holders
        ],
        "employee": person.insurance_type == "employee",
        "account_balance": format_yuan(person.account_balance),
        "card_expired": entry.card_expiry is not None and entry.card_expiry < today,
        "card_expiry": local_date(entry.card_expiry) or None,
        "chronic_certs": [
            {
                "code": cert.disease_code,
                "name": diagnosis_names.get(cert.disease_code, ""),
                "valid_from": local_date(cert.valid_from),
                "valid_to": local_date(cert.valid_to),
                "valid": cert.valid_on(today),
            }
            for cert in person.chronic_certs
        ],
    }


def split(result: dict) -> dict:
    """The settlement split of a `Settlement.to_dict()` (or a record's `result`, or a
    reversal's `amounts`); what a version 1 document lacks is ¥0.00."""
    amounts = {**result, **payer_amounts(result)} if "supplements" in result else result
    return {name: format_yuan(amounts.get(name, 0)) for name in (*MONEY, *DETAIL_MONEY)}


def family_holder_text(holder_id: str | None, holder_name: str = "") -> str:
    """Whose personal account the family account is, for the doctor and the patient."""
    if not holder_id:
        return ""
    return _("%(name)s's personal account", name=holder_name or holder_id)


def payers(result: dict, family_holder: str = "") -> list[dict]:
    """Who paid what, in the chain's order: each payer with a non-zero amount, between the
    total and the cash (which a split always shows). `result` is a settlement result of
    either rules version; `family_holder` says whose account the family account is."""
    rows = []
    for payer in CHAIN:
        if payer == "supplements":
            rows += [
                _payer(paid["pays_as"], paid["amount"], messages.supplement_label(paid["name"]),
                       paid["name"])
                for paid in result.get("supplements", [])
                if paid["amount"]
            ]  # fmt: skip
        elif result.get(payer, 0):
            detail = family_holder if payer == "family_account" else ""
            rows.append(_payer(payer, result[payer], detail))
    return rows


def amount_payers(amounts: dict, family_holder: str = "") -> list[dict]:
    """The same rows for amounts given per payer (a reversal's `amounts`, either version),
    supplements summed by the national field they pay as."""
    return [
        _payer(payer, amounts[payer], family_holder if payer == "family_account" else "")
        for payer in MONEY_FIELDS
        if payer not in ("total", "cash") and amounts.get(payer, 0)
    ]


def _payer(payer: str, fen: int, detail: str = "", name: str = "") -> dict:
    return {
        "payer": payer,
        "name": name,
        "label": str(messages.PAYERS.get(payer, payer)),
        "detail": detail,
        "amount": format_yuan(fen),
    }


def fund_limit(result: dict) -> dict | None:
    """Why the fund paid what it did, in one sentence, when a cap held it back
    (`fund_limited_by`; version 1 results have none). The caps come from the result
    itself: the limit that bound equals what the fund paid, so the visit cap is `fund`,
    and the day's and the year's caps are what the fund has paid after this visit."""
    limit = result.get("fund_limited_by")
    if not limit:
        return None
    fund = result["fund"]
    after = result.get("accumulators_after", {})
    if limit == "visit_cap":
        message = _("The fund has reached the per-visit limit of %(cap)s for this visit.",
                    cap=format_yuan(fund))  # fmt: skip
    elif limit == "day_cap":
        paid_after = after.get("day_fund_paid", fund)
        paid = format_yuan(paid_after - fund)
        message = (
            _("The fund has reached the daily limit of %(cap)s (already paid today: %(paid)s).",
              cap=format_yuan(paid_after), paid=paid)
            if fund
            else _("The fund has reached the daily limit (already paid today: %(paid)s).",
                   paid=paid)
        )  # fmt: skip
    elif limit == "annual_cap":
        paid_after = after.get("fund_paid", fund)
        paid = format_yuan(paid_after - fund)
        message = (
            _("The fund has reached the annual limit of %(cap)s (already paid this year:"
              " %(paid)s).", cap=format_yuan(paid_after), paid=paid)
            if fund
            else _("The fund has reached the annual limit (already paid this year: %(paid)s).",
                   paid=paid)
        )  # fmt: skip
    else:
        message = _("The fund has reached a limit of the policy.")
    return {"code": limit, "message": message}


def settlement_view(
    result: dict, lines: list[dict], family_holder: str = "", item_classes: dict | None = None
) -> dict:
    """The split with who paid, why the fund paid what it did, each line's amounts and why
    anything is self-paid.

    `lines` gives each result line's name, quantity, unit and price, in the same order;
    `family_holder` whose account the family account is (`family_holder_text`);
    `item_classes` each item's class (A/B/C: 甲/乙/丙) by code, when the caller knows it.
    Each line's own share (自付: the class B share paid first and what is over the price
    limit) and self-funded part (自费: outside the catalog's coverage) are apart; what the
    patient pays within the policy (the deductible and the co-payment) is the visit's
    `policy_selfpay`, so the columns and the cash add up.
    """
    shown = []
    item_class_labels = {
        code: messages.ITEM_CLASSES.get(item_class, "")
        for code, item_class in (item_classes or {}).items()
    }
    for index, (line, item) in enumerate(zip(result["lines"], lines, strict=True)):
        self_paid = line["fulamt_ownpay"] + line["overlmt_selfpay"] + line["preselfpay"]
        reasons = [
            {"code": code, "message": _line_reason(code, line)}
            for code in line["reasons"]
            if code != "FIXED_PAYMENT" or result["eligible"]  # the fund pays nothing then
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
                "own_share": format_yuan(line["preselfpay"] + line["overlmt_selfpay"]),
                "self_funded": format_yuan(line["fulamt_ownpay"]),
                "item_class": str(item_class_labels.get(line["code"], "")),
                "covered": format_yuan(line["inscp"]),
                "reasons": reasons,
            }
        )
    return {
        "split": split(result),
        "own_share_total": format_yuan(
            result.get("preselfpay_total", 0) + result.get("overlmt_total", 0)
        ),
        "payers": payers(result, family_holder),
        "fund_limit": fund_limit(result),
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


def _line_reason(code: str, line: dict) -> str:
    if code == "FIXED_PAYMENT" and line.get("fund_fixed"):
        return _("The fund pays a fixed %(amount)s for this item.",
                 amount=format_yuan(line["fund_fixed"]))  # fmt: skip
    return str(messages.LINE_REASONS.get(code, code))


def review_messages(reasons: list[str]) -> list[dict]:
    return [
        {"code": code, "message": str(messages.NEEDS_REVIEW.get(code, code))} for code in reasons
    ]
