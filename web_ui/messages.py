"""Every code the engine, the services and the drivers can answer with, as a message in
plain words for the operator (translated: Simplified Chinese by default), and the form
field it belongs next to. Nothing here is ever shown as a stack trace."""

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l

from edge.domain.model import Rejection

# Rejections: the visit is not settled.
REJECTIONS = {
    "BAD_INPUT": _l("The visit is not filled in correctly."),
    "EMPTY_VISIT": _l("Add at least one item before settling."),
    "TOO_MANY_LINES": _l("A visit can have at most 200 items."),
    "CHRONIC_NOT_CERTIFIED": _l(
        "Chronic visit refused: the patient holds no valid chronic disease certificate"
        " for any of the diagnoses. Choose a certified diagnosis or a general visit."
    ),
    "UNKNOWN_ITEM": _l("This item is not in the catalog."),
    "ITEM_NOT_VALID": _l("This item is not valid today (outside its catalog validity)."),
    "BAD_QUANTITY": _l(
        "The quantity must be a number above 0, at most 100000, with at most 3 decimals."
    ),
    "UNKNOWN_PERSON": _l("This insured person is not in this terminal's roster."),
    "UNKNOWN_DIAGNOSIS": _l("This diagnosis is not in this terminal's diagnosis list."),
    "UNKNOWN_OPERATOR": _l("Your operator account is unknown or disabled: sign in again."),
    "AMOUNT_TOO_LARGE": _l("The total is far beyond what a village clinic settles."),
    "UNKNOWN_SETTLEMENT": _l("There is no such settlement on this terminal."),
    "ALREADY_REVERSED": _l("This settlement has already been reversed."),
    "PERIOD_NOT_ENDED": _l("This month has not ended yet: close it once it has."),
    "ALREADY_CLOSED": _l("This month is already closed."),
    "ALREADY_SETTLED": _l("This visit has already been settled: see today's settlements."),
    "CARD_NOT_IN_ROSTER": _l(
        "This card is not the one on the roster for this person (replaced or reported lost)."
    ),
    "VOUCHER_USED": _l("This e-voucher has already been used: refresh it and scan again."),
    "DEVICE_REVOKED": _l(
        "The county has withdrawn this terminal: it can no longer settle or reverse"
        " settlements. Call the county medical insurance office."
    ),
    "FAMILY_ACCOUNT_NOT_SHARED": _l(
        "The family account cannot pay: no employee has shared a personal account with this"
        " patient (or not the one chosen)."
    ),
}

# Why a line is (partly) self-paid.
LINE_REASONS = {
    "NOT_COVERED": _l("Class C item: not covered, paid in full by the patient."),
    "GENDER_RESTRICTED": _l("Restricted to the other gender: paid in full by the patient."),
    "AGE_RESTRICTED": _l("Outside the item's age limits: paid in full by the patient."),
    "CHRONIC_ONLY": _l(
        "Covered only in a chronic visit for a certified diagnosis: paid in full by the patient."
    ),
    "QTY_OVER_LIMIT": _l("Above the covered quantity per visit: the excess is self-paid."),
    "OVER_PAYMENT_STANDARD": _l("Price above the payment standard: the difference is self-paid."),
    "FIXED_PAYMENT": _l("The fund pays a fixed amount for this item."),
}

WARNINGS = {
    "NOT_ELIGIBLE": _l("Not eligible for benefits today: the visit is settled fully in cash."),
}

NEEDS_REVIEW = {
    "OFFLINE_TOO_LONG": _l(
        "This terminal has not synced with the county for too long: settlements are marked"
        " for county review."
    ),
    "OFFLINE_FUND_LIMIT": _l(
        "The fund paid since the last sync is above the offline limit: settlements are"
        " marked for county review."
    ),
    "VISITS_PER_DAY_LIMIT": _l(
        "This patient has reached the visits-per-day limit: the settlement is marked for"
        " county review."
    ),
}

INSURANCE_TYPES = {"resident": _l("Resident insurance"), "employee": _l("Employee insurance")}
# The catalog's item classes (甲/乙/丙类), as the receipt and the split show them.
ITEM_CLASSES = {"A": _l("Class A"), "B": _l("Class B"), "C": _l("Class C")}
VISIT_TYPES = {
    "general": _l("General outpatient"),
    "chronic": _l("Chronic disease outpatient"),
    "two_diseases": _l("Hypertension and diabetes outpatient"),
}


def visit_type_label(visit_type: str) -> str:
    """A visit type's name for the doctor; a county's own visit type shows as it is named."""
    return str(VISIT_TYPES.get(visit_type, visit_type))


def ordered_visit_types(visit_types) -> list[str]:
    """The visit types as the doctor is offered them: general first (the usual visit, and
    the one chosen unless the doctor picks another), then chronic, then the county's own
    in the order given. The store keeps a policy with its keys sorted, so the county's
    order is not known here."""
    known = [v for v in VISIT_TYPES if v in visit_types]
    return known + [v for v in visit_types if v not in VISIT_TYPES]


# Who pays, as the one-stop chain names them (settlement-rules-v2.md, section 4). A
# supplement is shown by the national field it pays as, and by its own name when known.
PAYERS = {
    "fund": _l("Insurance fund"),
    "critical_illness": _l("Critical illness insurance"),
    "assistance": _l("Medical assistance"),
    "oth_pay": _l("Special care subsidy"),
    "cvlserv_pay": _l("Civil servant subsidy"),
    "personal_account": _l("Personal account"),
    "family_account": _l("Family account"),
    "cash": _l("Cash"),
}
SUPPLEMENTS = {
    "veterans_second_compensation": _l("Veterans' second compensation"),
    "civil_servant_subsidy": _l("Civil servants' medical subsidy"),
}


def supplement_label(name: str) -> str:
    """A supplement's own name for the doctor; a county's own supplement shows as named."""
    return str(SUPPLEMENTS.get(name, name))


STATUSES = {"active": _l("Active"), "suspended": _l("Suspended"), "terminated": _l("Terminated")}
CATEGORIES = {
    "extreme_poverty": _l("Extreme poverty"),
    "low_income_guarantee": _l("Minimum living guarantee"),
    "low_income": _l("Low income"),
    "severe_disability": _l("Severe disability"),
    "disabled_veteran": _l("Disabled veteran"),
    "civil_servant": _l("Civil servant"),
}
ROLES = {
    "doctor": _l("Doctor"),
    "coordinator": _l("Coordinator"),
    "admin": _l("Administrator"),
    "tester": _l("Tester"),
}
KINDS = {
    "settlement": _l("Settlement"),
    "reversal": _l("Reversal"),
    "daily_close": _l("Daily close"),
    "event": _l("Event"),
}

ACCOUNT_ERRORS = {
    "UNKNOWN_OPERATOR": _l("Choose an operator of this terminal."),
    "WRONG_PIN": _l("Wrong PIN."),
    "LOCKED_OUT": _l("Too many wrong PINs: this operator is locked until %(until)s."),
    "NO_PIN": _l("This operator has no PIN yet: ask the administrator to set one."),
    "BAD_PIN_FORMAT": _l("A PIN is 4 to 8 digits."),
    "BAD_OPERATOR_ID": _l("An operator ID is 1 to 32 letters, digits, '.', '_' or '-'."),
    "BAD_NAME": _l("Give the operator's name."),
    "BAD_ROLE": _l("Choose a role."),
    "OPERATOR_EXISTS": _l("An operator with this ID already exists."),
    "CANNOT_DISABLE_SELF": _l("You cannot disable your own account."),
}

VOUCHER_USED = _l("This e-voucher has already been used: refresh it and scan again.")


def localized(error) -> str:
    """The message of a driver error (card, voucher, printer) in the request's language."""
    locale = get_locale()
    if locale is not None and locale.language == "en":
        return error.message_en
    return error.message_zh


def rejection_field(rejection: Rejection) -> str:
    """Which part of the settle form a rejection belongs to."""
    code = rejection.code
    if code in ("UNKNOWN_ITEM", "ITEM_NOT_VALID", "BAD_QUANTITY") or rejection.line is not None:
        return "line"
    if code in ("EMPTY_VISIT", "TOO_MANY_LINES"):
        return "lines"
    if code in ("CHRONIC_NOT_CERTIFIED", "UNKNOWN_DIAGNOSIS"):
        return "diagnoses"
    if code == "UNKNOWN_PERSON":
        return "patient"
    if code == "FAMILY_ACCOUNT_NOT_SHARED":
        return "family_account"
    if code == "AMOUNT_TOO_LARGE":
        return "total"
    if code == "BAD_INPUT":
        for prefix, name in (
            ("visit.visit_type", "visit_type"),
            ("visit.diagnoses", "diagnoses"),
            ("visit.lines", "lines"),
            ("visit.use_personal_account", "account"),
            ("visit.use_family_account", "family_account"),
            ("visit.date", "date"),
        ):
            if rejection.message.startswith(prefix):
                return name
    return "form"


def rejection_json(rejection: Rejection) -> dict:
    """A rejection as the settle page shows it: the field at fault and a plain message."""
    error: dict[str, str | int] = {
        "code": rejection.code,
        "field": rejection_field(rejection),
        "message": str(REJECTIONS.get(rejection.code, REJECTIONS["BAD_INPUT"])),
        "detail": rejection.message,
    }
    if rejection.line is not None:
        error["line"] = rejection.line
    return error
