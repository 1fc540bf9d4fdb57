"""Reading a county catalog file (CSV with the national catalog's columns, or JSON), and
the diagnosis list (`code,name` CSV).

Rows are validated lazily as the store inserts them, so a 300,000-row file never sits in
memory; the first bad row stops the import and the store rolls back.
"""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from edge.domain.documents import (
    CATALOG_CSV_COLUMNS,
    a_list,
    bad,
    catalog_item_from_json,
    catalog_row_from_csv,
    field,
    text,
)
from edge.domain.model import CatalogItem

REQUIRED_COLUMNS = ("code", "name", "kind", "class", "price")


@dataclass
class CatalogFile:
    version: str | None  # a JSON file may carry its version; a CSV file never does
    items: Iterator[CatalogItem]


def open_catalog_file(path: Path, encoding: str = "utf-8-sig") -> CatalogFile:
    if path.suffix.lower() == ".json":
        return _json_catalog(path, encoding)
    return CatalogFile(None, _csv_items(path, encoding))


def _json_catalog(path: Path, encoding: str) -> CatalogFile:
    try:
        document = json.loads(path.read_text(encoding=encoding), parse_float=Decimal)
    except UnicodeDecodeError:
        raise _not_encoded(path, encoding) from None
    except RecursionError:  # json gives up deep inside, with a traceback otherwise
        raise bad(str(path), "is nested too deeply (文件嵌套过深)") from None
    except ValueError as error:
        raise bad(str(path), f"is not valid JSON: {error}") from None
    version = None
    if isinstance(document, dict):
        version = field(document, "version", "", text, None)
        document = field(document, "items", "", a_list)
    items = (
        catalog_item_from_json(entry, f"items[{i}]")
        for i, entry in enumerate(a_list(document, "items"))
    )
    return CatalogFile(version, items)


def _csv_items(path: Path, encoding: str) -> Iterator[CatalogItem]:
    with path.open(encoding=encoding, newline="") as handle:
        try:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise bad(str(path), f"lacks the columns {', '.join(missing)}")
            unknown = [c for c in header if c not in CATALOG_CSV_COLUMNS]
            if unknown:
                raise bad(str(path), f"has unknown columns {', '.join(unknown)}")
            for row in reader:
                # csv line numbers count the header: row 2 is the first item.
                where = f"line {reader.line_num}"
                if None in row:
                    raise bad(where, "has more cells than the header")
                yield catalog_item_from_json(catalog_row_from_csv(row), where)
        except UnicodeDecodeError:
            raise _not_encoded(path, encoding) from None
        except csv.Error as error:  # a cell over csv's 128 KiB limit, a stray NUL …
            line = reader.line_num + 1  # the row being read when csv gave up
            raise bad(
                f"line {line}", f"is not a catalog row ({error}) / 第 {line} 行不是有效的目录行"
            ) from None


def _not_encoded(path: Path, encoding: str):
    return bad(
        str(path),
        f"is not {encoding} text; save it as UTF-8 or pass --encoding gb18030",
    )


def read_diagnoses(path: Path) -> list[tuple[str, str]]:
    """(code, name) rows of a `code,name` CSV file (UTF-8, with or without BOM)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        try:
            return [
                (row["code"].strip(), row["name"].strip())
                for row in csv.DictReader(handle)
                if (row.get("code") or "").strip() and (row.get("name") or "").strip()
            ]
        except csv.Error as error:
            raise bad(str(path), f"is not a code,name list ({error}) / 不是诊断目录") from None
