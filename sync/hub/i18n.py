"""The county console's message catalogs (Flask-Babel, gettext), kept like the terminal
UI's (`web_ui/i18n.py`): English message ids in `console.py` and
`templates/console/`; `translations/zh/LC_MESSAGES/messages.po` holds the Simplified
Chinese, and its compiled `messages.mo` ships in the package beside it.

    python -m sync.hub.i18n update    # re-extract messages.pot, merge into every .po
    python -m sync.hub.i18n compile   # .po -> .mo (commit both)
    python -m sync.hub.i18n check     # exit 1 if anything is untranslated or not compiled
"""

import sys
from pathlib import Path

from edge.adapters.message_catalogs import MessageCatalogs

CATALOGS = MessageCatalogs(
    Path(__file__).parent,
    [
        ("console.py", "python"),
        ("console_statements.py", "python"),
        ("console_reports.py", "python"),
        ("console_requests.py", "python"),
        ("templates/console/**.html", "jinja2"),
    ],
    project="clinic-terminal county console",
    command="python -m sync.hub.i18n",
)


def main(argv: list[str]) -> int:
    return CATALOGS.main(argv, __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
