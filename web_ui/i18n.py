"""The UI's message catalogs (Flask-Babel, gettext). English message ids in the code and
templates; `translations/zh/LC_MESSAGES/messages.po` holds the Simplified Chinese, and
its compiled `messages.mo` ships in the package beside it.

    python -m web_ui.i18n update    # re-extract messages.pot, merge into every .po
    python -m web_ui.i18n compile   # .po -> .mo (commit both)
    python -m web_ui.i18n check     # exit 1 if anything is untranslated or not compiled

`check` compares messages, not bytes (`edge.adapters.message_catalogs`, which the county
console's catalog uses too).
"""

import sys
from pathlib import Path

from edge.adapters.message_catalogs import MessageCatalogs

PACKAGE = Path(__file__).parent
CATALOGS = MessageCatalogs(
    PACKAGE,
    [("**.py", "python"), ("templates/**.html", "jinja2")],
    project="clinic-terminal web_ui",
    command="python -m web_ui.i18n",
)
TRANSLATIONS = CATALOGS.translations
LOCALES = CATALOGS.locales

po_path = CATALOGS.po_path
update = CATALOGS.update
compile_all = CATALOGS.compile_all
catalog_problems = CATALOGS.catalog_problems
problems = CATALOGS.problems


def main(argv: list[str]) -> int:
    return CATALOGS.main(argv, __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
