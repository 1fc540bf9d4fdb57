"""Card readers chosen by URL, as pyserial's `serial_for_url` chooses a port:

    emulated://            an in-process reader with an empty slot (insert cards in code)
    emulated://A32011501   … with that demo card in it (card number, insured number or a
                           broken card's name: `clinic card list`)
    pcsc://                any PC/SC reader (pyscard and pcscd)
    pcsc://NAME            the PC/SC reader called NAME (%-escapes allowed)

Each scheme names the module of its backend, imported only when a URL asks for it (so
pyscard, the optional `pcsc` extra, is loaded only for `pcsc://`). A backend module has
`open_reader(location, *, today)`, given the URL's unescaped part after `scheme://`.
"""

from __future__ import annotations

import importlib
from datetime import date
from urllib.parse import unquote

from drivers.cards.base import CardReader
from drivers.cards.errors import CardError

BACKENDS = {
    "pcsc": "drivers.cards.pcsc",
    "emulated": "drivers.cards.emulated",
}


def card_reader_for_url(url: str, *, today: date) -> CardReader:
    """A reader by URL; an `emulated://CARD` reader holds that demo card as of `today`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise CardError("BAD_URL", f"{url!r}: use pcsc://[READER] or emulated://[CARD]")
    if scheme not in BACKENDS:
        known = ", ".join(BACKENDS)
        raise CardError("BAD_URL", f"{url!r}: unknown scheme {scheme!r} ({known})")
    backend = importlib.import_module(BACKENDS[scheme])
    return backend.open_reader(unquote(rest), today=today)
