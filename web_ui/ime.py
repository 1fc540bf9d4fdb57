"""The pinyin input's candidates (static/js/keyboard.js asks for them while letters are
typed into a field marked `data-osk-ime`): characters of the installed catalog's item
names and the diagnosis names, from `edge.domain.ime`, built once per catalog version and
diagnosis list and kept for the app's life. A free-text field (`data-osk-ime="text"`,
`set=text`: a name, a village) also gets the characters in common use."""

import threading

from flask import Blueprint, current_app, jsonify, request
from flask_babel import gettext as _

from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.ime import (
    MAX_CANDIDATES,
    MAX_TYPED,
    TYPED,
    CharacterIndex,
    build_index,
    common_characters,
)
from web_ui.auth import HOME, require
from web_ui.context import get_store

bp = Blueprint("ime", __name__)

_lock = threading.Lock()


SETS = ("names", "text")


def character_index(store: SqliteDeviceStore, which: str = "names") -> CharacterIndex:
    """The index of what this device has installed (the diagnosis list is installed once,
    so its size tells it apart; a new catalog comes with a new version), and for free
    text the characters in common use after them."""
    (diagnoses,) = store.db.execute("SELECT count(*) FROM diagnosis").fetchone()
    stamp = (store.catalog_version(), diagnoses)
    cache = current_app.extensions.setdefault("clinic_ime", {}).setdefault(which, {})
    with _lock:
        if cache.get("stamp") != stamp:
            names = [
                name
                for table in ("catalog_item", "diagnosis")
                for (name,) in store.db.execute(f"SELECT name FROM {table}")
            ]
            cache["index"] = build_index(names, common_characters() if which == "text" else ())
            cache["stamp"] = stamp
        return cache["index"]


@bp.get("/api/ime")
@require(*HOME)
def candidates():
    typed = request.args.get("pinyin", "").strip().lower()
    if len(typed) > MAX_TYPED or not TYPED.fullmatch(typed):
        return _bad(_("Pinyin is letters a to z only."))
    try:
        limit = int(request.args.get("limit", MAX_CANDIDATES))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_CANDIDATES:
        return _bad(_("The limit is a number from 1 to %(max)d.", max=MAX_CANDIDATES))
    which = request.args.get("set", "names")
    if which not in SETS:
        return _bad(_("The character set is names or text."))
    hits = character_index(get_store(), which).candidates(typed, limit)
    return jsonify({"pinyin": typed, "candidates": [e.char for e in hits]})


def _bad(message: str):
    return jsonify({"error": {"code": "BAD_PINYIN", "message": message, "field": "pinyin"}}), 400
