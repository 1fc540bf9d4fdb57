"""The demo county's documents as they stand on a given day: pure (no store, no clock),
reading only the files shipped beside this module.

The files describe the county as it stood on `DEMO_DAY`. Installed on another day, every
date in them moves with it (`demo_date`), so that each person keeps showing the case their
`note` names: a child who turns 14 on the demo day turns 14 on the install day, a waiting
period that ends on the demo day ends today, a certificate that expired eleven months
before the demo day expired eleven months ago, the year's accumulators belong to the
install day's year. README.md lists the cases.
"""

import copy
import json
from datetime import date
from importlib import resources
from pathlib import Path

from dateutil.relativedelta import relativedelta

DEMO_DAY = date(2026, 11, 22)  # the day the files in this folder were written for


def data_file(name: str):
    return resources.files(__package__).joinpath(name)


def load_json(name: str) -> dict:
    """A file as written, with its dates as of `DEMO_DAY`."""
    return json.loads(data_file(name).read_text(encoding="utf-8"))


def demo_date(written: date, today: date) -> date:
    """The date that stands to `today` as `written` stands to `DEMO_DAY`: the same number
    of calendar years (so ages and birthdays hold, 29 February included), then the same
    number of days (fewer than 183 either way)."""
    years = round((written - DEMO_DAY).days / 365.2425)
    days = (written - (DEMO_DAY + relativedelta(years=years))).days
    return today + relativedelta(years=years) + relativedelta(days=days)


def _iso(written: str | None, today: date) -> str | None:
    return None if written is None else demo_date(date.fromisoformat(written), today).isoformat()


def roster_document(today: date) -> dict:
    """The demo roster as of `today`."""
    document = copy.deepcopy(load_json("roster.json"))
    for person in document["persons"]:
        for key in ("birth_date", "waiting_until", "card_expiry"):
            if key in person:
                person[key] = _iso(person[key], today)
        for dated in [*person["chronic_certs"], *person["categories"]]:
            if isinstance(dated, dict):  # a category may be a bare name, valid every day
                dated["valid_from"] = _iso(dated.get("valid_from"), today)
                dated["valid_to"] = _iso(dated.get("valid_to"), today)
        person["accumulators"] = {
            str(int(year) - DEMO_DAY.year + today.year): values
            for year, values in person["accumulators"].items()
        }
    return document


def diagnoses_file() -> Path:
    """The demo county's diagnosis list (ICD-10 code, Chinese name)."""
    return Path(str(data_file("diagnoses.csv")))


def policy_document() -> dict:
    return load_json("policy.json")  # a policy names no dates
