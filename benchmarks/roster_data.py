"""A generated roster: `count` persons made from the demo county's first, each with
accumulator figures, for the roster import's bench and tests."""

import json
from datetime import date
from pathlib import Path


def generated_insured_id(index: int) -> str:
    return f"9{index:013d}"


def write_roster_json(path: Path, count: int, version: str, today: date) -> Path:
    from edge import demo

    template = demo.roster_document(today)["persons"][0]
    with path.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"version": version})[:-1] + ', "persons": [')
        for index in range(count):
            person = dict(template, insured_id=generated_insured_id(index), card_no=f"G{index:09d}")
            person["accumulators"] = {
                str(today.year): {
                    "general": {"deductible_used": index % 500, "fund_paid": 7},
                    "chronic": {"deductible_used": 0, "fund_paid": 0},
                    "assistance_paid": 3,
                }
            }
            handle.write(("," if index else "") + json.dumps(person, ensure_ascii=False))
        handle.write("]}")
    return path


def roster_import_command(python: str, data_dir: Path, path: Path, now: str) -> list[str]:
    """The store's roster import in its own process, as the sync agent runs it."""
    code = (
        "import json, sys; from datetime import datetime;"
        " from edge.adapters.sqlite_store import SqliteDeviceStore;"
        " store = SqliteDeviceStore.open(sys.argv[1]);"
        " store.import_roster(json.loads(open(sys.argv[2], encoding='utf-8').read()),"
        " now=datetime.fromisoformat(sys.argv[3]))"
    )
    return [python, "-c", code, str(data_dir), str(path), now]
