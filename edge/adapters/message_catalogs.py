"""A package's gettext message catalogs (Babel): English message ids in its code and
templates, `translations/<locale>/LC_MESSAGES/messages.po` beside them, and the compiled
`messages.mo` shipped next to each .po. The terminal UI (`web_ui.i18n`) and the county
console (`sync.hub.i18n`) each have one; both commands take

    update    # re-extract translations/messages.pot, merge into every .po (made if new)
    compile   # .po -> .mo (commit both)
    check     # exit 1 if anything is untranslated or not compiled

`check` compares messages, not bytes: the committed .mo must hold exactly the .po's
translated, non-fuzzy messages, and every message id the code and templates use. Two
Babel versions write different bytes for the same messages (2.19 changed the header), so
a byte comparison failed whenever Babel moved, not when a translation did.
"""

import io
import struct
from collections.abc import Sequence
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "ngettext": (1, 2)}

# A message's key: its id (a tuple of singular and plural for plural messages) and context.
Key = tuple[str | tuple[str, ...], str | None]


def show(key: Key) -> str:
    message_id, context = key
    return repr(message_id) if context is None else f"{message_id!r} (context {context!r})"


def plain(value):
    """A message id or translation, with plural forms as a tuple."""
    return tuple(value) if isinstance(value, list | tuple) else value


def translated(message) -> bool:
    strings = plain(message.string)
    return all(strings) if isinstance(strings, tuple) else bool(strings)


def read_compiled(mo: Path) -> tuple[dict[Key, object], dict[str, str]]:
    """The messages of a compiled catalog, {key: translation} (a tuple for plural
    messages), and its header fields."""
    with open(mo, "rb") as handle:
        catalog = read_mo(handle)
    messages = {}
    for message in catalog:
        if not message.id:
            continue  # the header
        messages[plain(message.id), message.context] = plain(message.string)
    return messages, {name: value.strip() for name, value in catalog.mime_headers}


class MessageCatalogs:
    """The catalogs of the code and templates under `package` that `methods` (Babel's
    extraction method map, relative to `package`) name. `command` is how the messages
    tell a developer to run `update` and `compile` (`python -m web_ui.i18n`)."""

    def __init__(
        self,
        package: Path,
        methods: Sequence[tuple[str, str]],
        *,
        project: str,
        command: str,
        locales: Sequence[str] = ("zh",),
    ) -> None:
        self.package = package
        self.translations = package / "translations"
        self.methods = list(methods)
        self.project = project
        self.command = command
        self.locales = tuple(locales)

    def po_path(self, locale: str) -> Path:
        return self.translations / locale / "LC_MESSAGES" / "messages.po"

    def extract(self) -> Catalog:
        """Every message id the package's code and templates use."""
        catalog = Catalog(project=self.project, charset="utf-8")
        for _filename, _lineno, message, comments, context in extract_from_dir(
            str(self.package), self.methods, keywords=KEYWORDS, strip_comment_tags=True
        ):
            catalog.add(message, None, [], auto_comments=comments, context=context)
        return catalog

    def extracted_keys(self) -> set[Key]:
        return {(plain(m.id), m.context) for m in self.extract() if m.id}

    def read(self, locale: str) -> Catalog:
        with open(self.po_path(locale), "rb") as handle:
            return read_po(handle, locale=locale)

    def update(self) -> None:
        template = self.extract()
        self.translations.mkdir(exist_ok=True)
        with open(self.translations / "messages.pot", "wb") as handle:
            write_po(handle, template, omit_header=True, sort_output=True, no_location=True)
        for locale in self.locales:
            path = self.po_path(locale)
            if path.exists():
                catalog = self.read(locale)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                catalog = Catalog(locale=locale, project=self.project, charset="utf-8")
            catalog.update(template, no_fuzzy_matching=True)
            with open(path, "wb") as handle:
                write_po(handle, catalog, sort_output=True, no_location=True, ignore_obsolete=True)

    def compiled(self, locale: str) -> bytes:
        buffer = io.BytesIO()
        write_mo(buffer, self.read(locale), use_fuzzy=False)
        return buffer.getvalue()

    def compile_all(self) -> None:
        for locale in self.locales:
            self.po_path(locale).with_suffix(".mo").write_bytes(self.compiled(locale))

    def catalog_problems(self, locale: str, po: Path, mo: Path, wanted: set[Key]) -> list[str]:
        """What is wrong with one locale's catalog `po` and its compiled `mo`, given the
        message keys the code uses: untranslated, fuzzy or missing messages in the .po; a
        .mo that lacks a translated message, translates one differently, holds one the .po
        does not translate, or lacks one the code uses."""
        found = []
        with open(po, "rb") as handle:
            catalog = read_po(handle, locale=locale)
        expected = {}
        for message in catalog:
            if not message.id:
                continue  # the header
            key = (plain(message.id), message.context)
            if message.fuzzy:
                found.append(f"{locale}: fuzzy {show(key)} (check the translation, drop the flag)")
            elif not translated(message):
                found.append(f"{locale}: untranslated {show(key)}")
            else:
                expected[key] = plain(message.string)
        have = {(plain(m.id), m.context) for m in catalog if m.id}
        for key in sorted(wanted - have, key=str):
            found.append(f"{locale}: missing {show(key)} ({self.command} update)")

        stale = f"{mo.name} is not compiled from {po.name} ({self.command} compile)"
        if not mo.exists():
            return [*found, f"{locale}: no {mo.name}: {stale}"]
        try:
            compiled_messages, headers = read_compiled(mo)
        except (OSError, ValueError, struct.error) as error:  # UnicodeDecodeError: ValueError
            return [*found, f"{locale}: {mo.name} cannot be read ({error}): {stale}"]
        for key, string in sorted(expected.items(), key=str):
            if key not in compiled_messages:
                found.append(f"{locale}: {mo.name} lacks {show(key)}: {stale}")
            elif compiled_messages[key] != string:
                found.append(f"{locale}: {mo.name} translates {show(key)} differently: {stale}")
        for key in sorted(compiled_messages.keys() - expected.keys(), key=str):
            found.append(f"{locale}: {mo.name} translates {show(key)}, {po.name} does not: {stale}")
        for key in sorted(wanted - compiled_messages.keys() - expected.keys(), key=str):
            found.append(f"{locale}: {mo.name} lacks {show(key)}, which the code uses")
        want_plural = "".join(catalog.plural_forms.split())
        have_plural = "".join(headers.get("Plural-Forms", "").split())
        if have_plural != want_plural:
            found.append(f"{locale}: {mo.name} has Plural-Forms {have_plural!r}: {stale}")
        return found

    def problems(self) -> list[str]:
        """Untranslated, fuzzy or missing messages, and .mo files whose messages are not
        the .po's."""
        wanted = self.extracted_keys()
        found = []
        for locale in self.locales:
            po = self.po_path(locale)
            found += self.catalog_problems(locale, po, po.with_suffix(".mo"), wanted)
        return found

    def main(self, argv: list[str], usage: str = __doc__) -> int:
        command = argv[0] if argv else "check"
        if command == "update":
            self.update()
        elif command == "compile":
            self.compile_all()
        elif command == "check":
            found = self.problems()
            for line in found:
                print(line)
            return 1 if found else 0
        else:
            print(usage)
            return 2
        return 0
