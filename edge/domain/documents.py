"""Untrusted JSON documents into settlement values, or `BAD_INPUT` naming the field.

Every document from outside (quote documents, catalog and roster files, county updates)
passes through here; the engine only ever sees well-formed values. Unknown keys are
ignored so that newer documents stay readable; `null` counts as absent.
"""

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar, cast

from edge.domain.model import (
    CERTIFIED_VISIT_TYPE,
    GENDERS,
    INSURANCE_TYPES,
    ITEM_CLASSES,
    ITEM_KINDS,
    PRICE_PLACES,
    QUANTITY_PLACES,
    STATUSES,
    SUPPLEMENT_BASES,
    SUPPLEMENT_PAYS_AS,
    Accumulators,
    AssistanceScheme,
    Benefit,
    CatalogItem,
    Category,
    ChronicCert,
    CriticalIllness,
    OfflineLimits,
    Person,
    Policy,
    PremiumRule,
    Rejection,
    Supplement,
    Visit,
    VisitLine,
)
from edge.domain.money import parse_decimal_string
from edge.domain.service_point import MASKED_ID_NUMBER, MONTH_DAY

T = TypeVar("T")
Parser = Callable[[Any, str], T]

# Bounds that keep every amount inside SQLite's 64-bit integers with room to spare.
MAX_FEN = 10**13
MAX_PRICE = Decimal(10**8)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MISSING = object()


def bad(path: str, problem: str, line: int | None = None) -> Rejection:
    return Rejection("BAD_INPUT", f"{path} {problem}", line)


# ---- scalar parsers: (value, path) -> value --------------------------------------------


def text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad(path, "must be a non-empty string")
    return value


# An ICD-10 code as the national clinical version writes them (J06.900, I10.x00,
# E11.900x001) or a TCM code (BNG010, A01.01.01): a letter, then letters, digits, dots.
_DIAGNOSIS_CODE = re.compile(r"[A-Z][A-Za-z0-9]{1,7}(\.[A-Za-z0-9]{1,8}){0,3}")


def diagnosis_code(value: Any, path: str) -> str:
    """A diagnosis code in the form the county's lists use (never free text)."""
    if not isinstance(value, str) or not _DIAGNOSIS_CODE.fullmatch(value):
        raise bad(path, "must be a diagnosis code such as J06.900")
    return value


def optional_text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise bad(path, "must be a string")
    return value


def one_of(choices: Iterable[str]) -> Parser[str]:
    allowed = tuple(choices)

    def parse(value: Any, path: str) -> str:
        if value not in allowed or not isinstance(value, str):
            raise bad(path, f"must be one of {', '.join(allowed)} (got {value!r})")
        return value

    return parse


def iso_date(value: Any, path: str) -> date:
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise bad(path, f"must be a date as YYYY-MM-DD (got {value!r})")


def fen(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(path, f"must be a whole number of fen (got {value!r})")
    if not 0 <= value <= MAX_FEN:
        raise bad(path, f"must be between 0 and {MAX_FEN} fen (got {value})")
    return value


def count(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10**9:
        raise bad(path, f"must be a positive whole number (got {value!r})")
    return value


def whole_years(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 200:
        raise bad(path, f"must be a whole number of years (got {value!r})")
    return value


def flag(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise bad(path, f"must be true or false (got {value!r})")
    return value


def price(value: Any, path: str) -> Decimal:
    parsed = parse_decimal_string(value)
    if parsed is None or parsed[0] < 0:
        raise bad(path, f'must be a decimal string in yuan such as "12.50" (got {value!r})')
    amount, places = parsed
    if places > PRICE_PLACES:
        raise bad(path, f"must have at most {PRICE_PLACES} decimal places (got {value})")
    if amount >= MAX_PRICE:
        raise bad(path, f"must be below {MAX_PRICE} yuan (got {value})")
    return amount


def ratio(value: Any, path: str) -> Decimal:
    parsed = parse_decimal_string(value)
    if parsed is None or not 0 <= parsed[0] <= 1 or parsed[1] > 18:
        raise bad(path, f'must be a decimal string between "0" and "1" (got {value!r})')
    return parsed[0]


def quantity_limit(value: Any, path: str) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    parsed = parse_decimal_string(value)
    if parsed is None or parsed[0] <= 0 or parsed[1] > QUANTITY_PLACES:
        raise bad(path, f"must be a positive quantity with at most 3 decimals (got {value!r})")
    return parsed[0]


def a_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad(path, "must be a list")
    return value


def list_of(parse_item: Parser[T]) -> Parser[tuple[T, ...]]:
    def parse(value: Any, path: str) -> tuple[T, ...]:
        return tuple(parse_item(item, f"{path}[{i}]") for i, item in enumerate(a_list(value, path)))

    return parse


def obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(path, "must be an object")
    return value


def field(
    source: dict[str, Any], key: str, path: str, parse: Parser[T], default: Any = _MISSING
) -> T:
    """source[key] parsed, or `default` when absent; absent with no default is BAD_INPUT."""
    value = source.get(key)
    where = f"{path}.{key}" if path else key
    if value is None:
        if default is _MISSING:
            raise bad(where, "is missing")
        return cast(T, default)  # the caller's default stands in for an absent value
    return parse(value, where)


# ---- documents ----------------------------------------------------------------------


def rules_label(value: Any, path: str) -> int:
    if value not in (1, 2) or isinstance(value, bool) or not isinstance(value, int):
        raise bad(path, f"must be 1 or 2 (got {value!r})")
    return value


def benefit_from_json(value: Any, path: str, visit_type: str) -> Benefit:
    b = obj(value, path)
    return Benefit(
        deductible=field(b, "deductible", path, fen),
        ratio=field(b, "ratio", path, ratio),
        annual_cap=field(b, "annual_cap", path, fen),
        visit_cap=field(b, "visit_cap", path, fen, None),
        day_cap=field(b, "day_cap", path, fen, None),
        requires_certificate=field(
            b, "requires_certificate", path, flag, visit_type == CERTIFIED_VISIT_TYPE
        ),
        diseases=field(b, "diseases", path, list_of(text), None),
    )


def critical_illness_from_json(value: Any, path: str) -> CriticalIllness:
    doc = obj(value, path)
    return CriticalIllness(
        visit_types=field(doc, "visit_types", path, list_of(text)),
        insurance_types=field(doc, "insurance_types", path, list_of(one_of(INSURANCE_TYPES))),
        threshold=field(doc, "threshold", path, fen),
        ratio=field(doc, "ratio", path, ratio),
        annual_cap=field(doc, "annual_cap", path, fen),
    )


def supplement_from_json(value: Any, path: str) -> Supplement:
    doc = obj(value, path)
    return Supplement(
        name=field(doc, "name", path, text),
        pays_as=field(doc, "pays_as", path, one_of(SUPPLEMENT_PAYS_AS)),
        categories=field(doc, "categories", path, list_of(text)),
        base=field(doc, "base", path, one_of(SUPPLEMENT_BASES)),
        ratio=field(doc, "ratio", path, ratio),
        annual_cap=field(doc, "annual_cap", path, fen),
    )


def supplements_from_json(value: Any, path: str) -> tuple[Supplement, ...]:
    supplements = list_of(supplement_from_json)(value, path)
    names = [s.name for s in supplements]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise bad(f"{path}[{index}].name", f"repeats {name!r}")
    return supplements


def month_day(value: Any, path: str) -> str:
    """A day of every year as "MM-DD" (29 February is refused: not every year has it)."""
    if isinstance(value, str) and MONTH_DAY.fullmatch(value):
        try:
            date(2025, int(value[:2]), int(value[3:]))
            return value
        except ValueError:
            pass
    raise bad(path, f"must be a day of the year as MM-DD (got {value!r})")


def premium_rule_from_json(value: Any, path: str) -> PremiumRule:
    doc = obj(value, path)
    rule = PremiumRule(
        resident=field(doc, "resident", path, fen),
        collection_opens=field(doc, "collection_opens", path, month_day),
        due_by=field(doc, "due_by", path, month_day),
        full=field(doc, "full", path, list_of(text), ()),
        fixed=field(doc, "fixed", path, fen_by_name, {}),
    )
    if rule.resident <= 0:
        raise bad(f"{path}.resident", "must be more than 0 fen")
    return rule


def policy_from_json(value: Any, path: str = "policy") -> Policy:
    doc = obj(value, path)
    benefits_doc = field(doc, "benefits", path, obj)
    benefits = {}
    for insurance_type in INSURANCE_TYPES:
        by_visit = field(benefits_doc, insurance_type, f"{path}.benefits", obj)
        for visit_type, b in by_visit.items():
            if not visit_type.strip():
                raise bad(f"{path}.benefits.{insurance_type}", "names a visit type ''")
            where = f"{path}.benefits.{insurance_type}.{visit_type}"
            benefits[(insurance_type, visit_type)] = benefit_from_json(b, where, visit_type)
    assistance = {}
    for name, scheme in field(doc, "assistance", path, obj, {}).items():
        where = f"{path}.assistance.{name}"
        scheme = obj(scheme, where)
        assistance[name] = AssistanceScheme(
            name, field(scheme, "ratio", where, ratio), field(scheme, "annual_cap", where, fen)
        )
    limits = field(doc, "offline_limits", path, obj, {})
    where = f"{path}.offline_limits"
    return Policy(
        version=field(doc, "version", path, text),
        class_b_prepay_ratio=field(doc, "class_b_prepay_ratio", path, ratio),
        benefits=benefits,
        assistance=assistance,
        offline_limits=OfflineLimits(
            max_hours_since_sync=field(limits, "max_hours_since_sync", where, count, None),
            max_fund_since_sync=field(limits, "max_fund_since_sync", where, fen, None),
            max_visits_per_person_per_day=field(
                limits, "max_visits_per_person_per_day", where, count, None
            ),
        ),
        rules=field(doc, "rules", path, rules_label, 1),
        critical_illness=field(doc, "critical_illness", path, critical_illness_from_json, None),
        supplements=field(doc, "supplements", path, supplements_from_json, ()),
        premiums=field(doc, "premiums", path, premium_rule_from_json, None),
    )


def catalog_item_from_json(value: Any, path: str) -> CatalogItem:
    doc = obj(value, path)
    item = CatalogItem(
        code=field(doc, "code", path, text),
        name=field(doc, "name", path, text),
        kind=field(doc, "kind", path, one_of(ITEM_KINDS)),
        item_class=field(doc, "class", path, one_of(ITEM_CLASSES)),
        price=field(doc, "price", path, price),
        payment_standard=field(doc, "payment_standard", path, price, None),
        self_prepay_ratio=field(doc, "self_prepay_ratio", path, ratio, None),
        gender=field(doc, "gender", path, one_of(GENDERS), None),
        min_age=field(doc, "min_age", path, whole_years, None),
        max_age=field(doc, "max_age", path, whole_years, None),
        max_qty=field(doc, "max_qty", path, quantity_limit, None),
        chronic_only=field(doc, "chronic_only", path, list_of(text), ()),
        valid_from=field(doc, "valid_from", path, iso_date, None),
        valid_to=field(doc, "valid_to", path, iso_date, None),
        spec=field(doc, "spec", path, optional_text, ""),
        unit=field(doc, "unit", path, optional_text, ""),
        fund_fixed=field(doc, "fund_fixed", path, price, None),
    )
    if item.fund_fixed is not None and item.item_class != "A":
        raise bad(f"{path}.fund_fixed", f"is only for class A items (not {item.item_class})")
    if item.min_age is not None and item.max_age is not None and item.min_age > item.max_age:
        raise bad(f"{path}.min_age", "is above max_age")
    return item


def catalog_from_json(value: Any, path: str = "catalog") -> dict[str, CatalogItem]:
    catalog: dict[str, CatalogItem] = {}
    for index, entry in enumerate(a_list(value, path)):
        item = catalog_item_from_json(entry, f"{path}[{index}]")
        if item.code in catalog:
            raise bad(f"{path}[{index}].code", f"repeats code {item.code!r}")
        catalog[item.code] = item
    return catalog


def chronic_cert_from_json(value: Any, path: str) -> ChronicCert:
    doc = obj(value, path)
    return ChronicCert(
        disease_code=field(doc, "disease_code", path, text),
        valid_from=field(doc, "valid_from", path, iso_date, None),
        valid_to=field(doc, "valid_to", path, iso_date, None),
    )


def category_from_json(value: Any, path: str) -> Category:
    """A category's name (valid every day), or `{"name", "valid_from"?, "valid_to"?}`."""
    if isinstance(value, str):
        return Category(text(value, path))
    doc = obj(value, path)
    return Category(
        name=field(doc, "name", path, text),
        valid_from=field(doc, "valid_from", path, iso_date, None),
        valid_to=field(doc, "valid_to", path, iso_date, None),
    )


def person_from_json(value: Any, path: str = "person") -> Person:
    doc = obj(value, path)
    return Person(
        insurance_type=field(doc, "insurance_type", path, one_of(INSURANCE_TYPES)),
        gender=field(doc, "gender", path, one_of(GENDERS)),
        birth_date=field(doc, "birth_date", path, iso_date),
        status=field(doc, "status", path, one_of(STATUSES)),
        waiting_until=field(doc, "waiting_until", path, iso_date, None),
        categories=field(doc, "categories", path, list_of(category_from_json), ()),
        chronic_certs=field(doc, "chronic_certs", path, list_of(chronic_cert_from_json), ()),
        account_balance=field(doc, "account_balance", path, fen, 0),
    )


def fen_by_name(value: Any, path: str) -> dict[str, int]:
    return {name: fen(amount, f"{path}.{name}") for name, amount in obj(value, path).items()}


def accumulators_from_json(value: Any, path: str = "accumulators") -> Accumulators:
    doc = obj(value, path)
    return Accumulators(
        deductible_used=field(doc, "deductible_used", path, fen),
        fund_paid=field(doc, "fund_paid", path, fen),
        assistance_paid=field(doc, "assistance_paid", path, fen),
        day_fund_paid=field(doc, "day_fund_paid", path, fen, 0),
        ci_selfpay=field(doc, "ci_selfpay", path, fen, 0),
        ci_paid=field(doc, "ci_paid", path, fen, 0),
        supplements_paid=field(doc, "supplements_paid", path, fen_by_name, {}),
        family_account_balance=field(doc, "family_account_balance", path, fen, 0),
    )


def visit_line_from_json(value: Any, path: str, index: int) -> VisitLine:
    if not isinstance(value, dict):
        raise bad(path, "must be an object", index)
    code = value.get("code")
    if not isinstance(code, str):
        raise bad(f"{path}.code", "must be a string", index)
    # The quantity is checked by the engine: BAD_QUANTITY ranks after UNKNOWN_ITEM.
    return VisitLine(code=code, quantity=value.get("quantity"))


def visit_from_json(value: Any, path: str = "visit") -> Visit:
    doc = obj(value, path)
    visit_date = field(doc, "date", path, iso_date)
    visit_type = field(doc, "visit_type", path, text)  # the policy's: checked by the engine
    diagnoses = field(doc, "diagnoses", path, list_of(diagnosis_code), ())
    raw_lines = field(doc, "lines", path, a_list)
    lines = tuple(
        visit_line_from_json(line, f"{path}.lines[{i}]", i) for i, line in enumerate(raw_lines)
    )
    return Visit(
        date=visit_date,
        visit_type=visit_type,
        diagnoses=diagnoses,
        lines=lines,
        use_personal_account=field(doc, "use_personal_account", path, flag, False),
        use_family_account=field(doc, "use_family_account", path, flag, False),
    )


# ---- files from the county: catalog CSV / JSON, roster ------------------------------

CATALOG_CSV_COLUMNS = (
    "code", "name", "spec", "unit", "kind", "class", "price", "payment_standard",
    "self_prepay_ratio", "gender", "min_age", "max_age", "max_qty", "chronic_only",
    "valid_from", "valid_to", "fund_fixed",
)  # fmt: skip


def catalog_row_from_csv(row: dict[str, str | None]) -> dict[str, Any]:
    """A national-catalog CSV row as the JSON item shape: empty cells are absent."""
    item: dict[str, Any] = {}
    for column in CATALOG_CSV_COLUMNS:
        cell = (row.get(column) or "").strip()
        if not cell:
            continue
        if column in ("min_age", "max_age"):
            item[column] = int(cell) if cell.isdigit() else cell
        elif column == "chronic_only":
            item[column] = [code.strip() for code in cell.split(";") if code.strip()]
        else:
            item[column] = cell
    return item


@dataclass(frozen=True, slots=True)
class InsuredPerson:
    """A roster entry: the settlement person plus what identifies them at the clinic."""

    insured_id: str
    card_no: str
    name: str
    id_number_masked: str
    region: str
    card_expiry: date | None
    person: Person
    # {(year, visit type): deductible_used and fund_paid; (year, YEAR_WIDE): assistance,
    #  critical illness and supplements}
    accumulators: Mapping[tuple[int, str], Accumulators]
    # 家庭共济: the employees who authorised this person to use their personal account
    family_account_holders: tuple[str, ...] = ()
    # A balance the county computed (a point release): each device's last seq whose
    # records it includes; a device not named has none in it. None: the roster's balance.
    account_as_of: Mapping[str, int] | None = None


def masked_id_number(value: Any, path: str) -> str:
    if not isinstance(value, str) or not MASKED_ID_NUMBER.fullmatch(value):
        raise bad(path, "must be an ID number masked as 320115********1234 (never in full)")
    return value


YEAR_WIDE = "assistance"  # the scope of a year's figures that no visit type owns
_YEAR_WIDE_FIELDS = ("assistance_paid", "ci_selfpay", "ci_paid", "supplements_paid")


def _year_accumulators(value: Any, path: str) -> dict[str, Accumulators]:
    """One year's figures: `{visit type: {deductible_used, fund_paid}, assistance_paid,
    ci_selfpay, ci_paid, supplements_paid}`, each part optional."""
    doc = obj(value, path)
    result = {}
    for visit_type, entry in doc.items():
        if visit_type in _YEAR_WIDE_FIELDS or entry is None:
            continue
        where = f"{path}.{visit_type}"
        entry = obj(entry, where)
        result[visit_type] = Accumulators(
            deductible_used=field(entry, "deductible_used", where, fen, 0),
            fund_paid=field(entry, "fund_paid", where, fen, 0),
        )
    if any(doc.get(name) is not None for name in _YEAR_WIDE_FIELDS):
        result[YEAR_WIDE] = Accumulators(
            assistance_paid=field(doc, "assistance_paid", path, fen, 0),
            ci_selfpay=field(doc, "ci_selfpay", path, fen, 0),
            ci_paid=field(doc, "ci_paid", path, fen, 0),
            supplements_paid=field(doc, "supplements_paid", path, fen_by_name, {}),
        )
    return result


def seq_by_device(value: Any, path: str) -> dict[str, int]:
    """`{device id: seq}`: how far the county had counted each device's records."""
    result = {}
    for device_id, seq in obj(value, path).items():
        if not isinstance(device_id, str) or not 0 < len(device_id) <= 64:
            raise bad(path, f"names a device as {device_id!r}")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 10**12:
            raise bad(f"{path}.{device_id}", f"must be a record number (got {seq!r})")
        result[device_id] = seq
    return result


def insured_person_from_json(value: Any, path: str) -> InsuredPerson:
    doc = obj(value, path)
    accumulators = {}
    for year, by_scope in field(doc, "accumulators", path, obj, {}).items():
        if not (isinstance(year, str) and year.isdigit() and len(year) == 4):
            raise bad(f"{path}.accumulators", f"has {year!r}, not a year")
        for scope, values in _year_accumulators(by_scope, f"{path}.accumulators.{year}").items():
            accumulators[(int(year), scope)] = values
    return InsuredPerson(
        insured_id=field(doc, "insured_id", path, text),
        card_no=field(doc, "card_no", path, text),
        name=field(doc, "name", path, text),
        id_number_masked=field(doc, "id_number_masked", path, masked_id_number),
        region=field(doc, "region", path, optional_text, ""),
        card_expiry=field(doc, "card_expiry", path, iso_date, None),
        person=person_from_json(doc, path),
        accumulators=accumulators,
        family_account_holders=field(doc, "family_account_holders", path, list_of(text), ()),
        account_as_of=field(doc, "account_as_of", path, seq_by_device, None),
    )


def roster_from_json(value: Any, path: str = "roster") -> tuple[str, list[InsuredPerson]]:
    doc = obj(value, path)
    version = field(doc, "version", path, text)
    persons = field(doc, "persons", path, list_of(insured_person_from_json))
    seen: set[str] = set()
    for index, entry in enumerate(persons):
        for key in (entry.insured_id, "card:" + entry.card_no):
            if key in seen:
                raise bad(f"{path}.persons[{index}]", f"repeats {key!r}")
            seen.add(key)
        if entry.insured_id in entry.family_account_holders:
            raise bad(f"{path}.persons[{index}].family_account_holders", "names the person")
    return version, list(persons)
