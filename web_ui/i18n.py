"""The UI's message catalogs (Flask-Babel, gettext). English message ids in the code and
templates; `translations/zh/LC_MESSAGES/messages.po` holds the Simplified Chinese, and
its compiled `messages.mo` ships in the package beside it.

    python -m web_ui.i18n update    # re-extract messages.pot, merge into every .po
    python -m web_ui.i18n compile   # .po -> .mo (commit both)
    python -m web_ui.i18n check     # exit 1 if anything is untranslated or not compiled
"""

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

PACKAGE = Path(__file__).parent
TRANSLATIONS = PACKAGE / "translations"
LOCALES = ("zh",)
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "ngettext": (1, 2)}
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]


def po_path(locale: str) -> Path:
    return TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"


def extract() -> Catalog:
    """Every message id the package's code and templates use."""
    catalog = Catalog(project="clinic-terminal web_ui", charset="utf-8")
    for _filename, _lineno, message, comments, context in extract_from_dir(
        str(PACKAGE), METHODS, keywords=KEYWORDS, strip_comment_tags=True
    ):
        catalog.add(message, None, [], auto_comments=comments, context=context)
    return catalog


def read(locale: str) -> Catalog:
    with open(po_path(locale), "rb") as handle:
        return read_po(handle, locale=locale)


def update() -> None:
    template = extract()
    with open(TRANSLATIONS / "messages.pot", "wb") as handle:
        write_po(handle, template, omit_header=True, sort_output=True, no_location=True)
    for locale in LOCALES:
        catalog = read(locale)
        catalog.update(template, no_fuzzy_matching=True)
        with open(po_path(locale), "wb") as handle:
            write_po(handle, catalog, sort_output=True, no_location=True, ignore_obsolete=True)


def compiled(locale: str) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, read(locale), use_fuzzy=False)
    return buffer.getvalue()


def compile_all() -> None:
    for locale in LOCALES:
        po_path(locale).with_suffix(".mo").write_bytes(compiled(locale))


def problems() -> list[str]:
    """Untranslated, fuzzy or missing messages, and .mo files that are not up to date."""
    found = []
    wanted = {m.id for m in extract() if m.id}
    for locale in LOCALES:
        catalog = read(locale)
        for message in catalog:
            if message.id and (not message.string or message.fuzzy):
                found.append(f"{locale}: untranslated {message.id!r}")
        have = {m.id for m in catalog if m.id}
        found += [f"{locale}: missing {m!r}" for m in sorted(wanted - have, key=str)]
        mo = po_path(locale).with_suffix(".mo")
        if not mo.exists() or mo.read_bytes() != compiled(locale):
            found.append(f"{locale}: {mo.name} is not compiled from {po_path(locale).name}")
    return found


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "update":
        update()
    elif command == "compile":
        compile_all()
    elif command == "check":
        found = problems()
        for line in found:
            print(line)
        return 1 if found else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
