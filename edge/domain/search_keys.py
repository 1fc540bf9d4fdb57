"""Search keys for Chinese names, as a clinic HIS matches them: the name's characters, its
full pinyin and its pinyin initials (阿莫西林 → amoxilin, amxl), each from the start of
the name and from anywhere in it (characters from any character, pinyin from any
syllable: 西林, xilin, xl all find 阿莫西林胶囊).

A salt or form prefix (盐酸, 苯磺酸, 复方, 注射用 …) does not count against a name: the
name is also keyed from where its core begins, as a start match, and ranked by the
length of that core (so 氨氯地平 and aldp find 苯磺酸氨氯地平片 as a name that starts so).

Computed once, at import time, so a search never runs pypinyin.
"""

import csv
import re
from functools import lru_cache

from pypinyin import lazy_pinyin

_NOT_KEY_CHAR = re.compile(r"[^0-9a-z]+")
_FOREIGN = "\x00"  # marks a chunk pypinyin passed through (latin, digits, punctuation)

# Key kinds, in rank order (lower ranks first). A name's "start" is its first character or
# the first character of its core (after the prefixes below).
KEY_CODE = 0
KEY_NAME_START, KEY_INITIALS_START, KEY_PINYIN_START = 1, 2, 3
KEY_NAME_INSIDE, KEY_INITIALS_INSIDE, KEY_PINYIN_INSIDE = 4, 5, 6
NAME_KINDS = (
    KEY_NAME_START, KEY_INITIALS_START, KEY_PINYIN_START,
    KEY_NAME_INSIDE, KEY_INITIALS_INSIDE, KEY_PINYIN_INSIDE,
)  # fmt: skip
MATCHED = {
    KEY_CODE: "code",
    KEY_NAME_START: "name", KEY_INITIALS_START: "initials", KEY_PINYIN_START: "pinyin",
    KEY_NAME_INSIDE: "name", KEY_INITIALS_INSIDE: "initials", KEY_PINYIN_INSIDE: "pinyin",
}  # fmt: skip

# Salt and form prefixes of generic names, ignored for ranking. Longer first, so that
# 硫酸氢 is taken before 硫酸; several may stand in a row (注射用盐酸…).
_PREFIX_TEXT = """
注射用 复方 盐酸 苯磺酸 甲磺酸 硫酸氢 硫酸 马来酸 酒石酸 琥珀酸 富马酸 磷酸 醋酸 枸橼酸 氢溴酸
苯甲酸 门冬氨酸
"""
PREFIXES = tuple(sorted(_PREFIX_TEXT.split(), key=len, reverse=True))
_MIN_CORE = 2  # a prefix is not stripped when fewer characters than this would remain


def _mark_foreign(chunk: str) -> str:
    return _FOREIGN + chunk


def search_key(text: str) -> str:
    """Lower-case letters and digits only, as typed on a keypad (ASCII); Chinese kept."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def core_offset(name: str) -> int:
    """How many leading characters of `name` are salt or form prefixes (0 when none)."""
    offset = 0
    while True:
        rest = name[offset:]
        prefix = next((p for p in PREFIXES if rest.startswith(p)), None)
        if prefix is None or len(rest) - len(prefix) < _MIN_CORE:
            return offset
        offset += len(prefix)


def core_name(name: str) -> str:
    """`name` without its salt and form prefixes: 苯磺酸氨氯地平片 → 氨氯地平片."""
    return name[core_offset(name) :]


@lru_cache(maxsize=8192)
def _units(name: str) -> tuple[tuple[str, str], ...]:
    """(pinyin, initial) of each syllable; a run of Latin letters or digits is one unit
    that is its own pinyin and initials; punctuation is dropped."""
    units = []
    for syllable in lazy_pinyin(name, errors=_mark_foreign):
        if syllable.startswith(_FOREIGN):
            chunk = _NOT_KEY_CHAR.sub("", syllable[1:].lower())
            if chunk:
                units.append((chunk, chunk))
        else:
            units.append((syllable, syllable[:1]))
    return tuple(units)


def pinyin_keys(name: str) -> tuple[str, str]:
    """(full pinyin, initials) of a name; Latin letters and digits are kept in both."""
    units = _units(name)
    return "".join(u[0] for u in units), "".join(u[1] for u in units)


def name_keys(name: str) -> tuple[tuple[int, str], ...]:
    """Every (kind, key) a name is found by: its characters from each position, its full
    pinyin and initials from each syllable; from the start or the core's start as start
    kinds, from elsewhere as inside kinds. Sorted, without repeats."""
    keys: set[tuple[int, str]] = set()
    offset = core_offset(name)
    text = search_key(name)
    # The prefixes are Chinese characters: `offset` counts the same in `text` and in units.
    starts = {0, offset}
    for position in range(len(text)):
        kind = KEY_NAME_START if position in starts else KEY_NAME_INSIDE
        keys.add((kind, text[position:]))
    units = _units(name)
    for position in range(len(units)):
        start = position in starts
        rest = units[position:]
        keys.add((KEY_PINYIN_START if start else KEY_PINYIN_INSIDE, "".join(u[0] for u in rest)))
        keys.add(
            (KEY_INITIALS_START if start else KEY_INITIALS_INSIDE, "".join(u[1] for u in rest))
        )
    # a key found from the start need not be kept as found inside as well
    starting = {key for kind, key in keys if kind < KEY_NAME_INSIDE}
    return tuple(
        sorted(
            (kind, key)
            for kind, key in keys
            if key and not (kind >= KEY_NAME_INSIDE and key in starting)
        )
    )


def alias_keys(alias: str) -> tuple[str, ...]:
    """An alias is found by its characters, its full pinyin and its initials (上感: 上感,
    shanggan, sg), each from its start."""
    full, initials = pinyin_keys(alias)
    return tuple(sorted({key for key in (search_key(alias), full, initials) if key}))


def matches(query_key: str, code: str, name: str) -> bool:
    """Whether a search for `query_key` (a `search_key`) finds the code or name."""
    return search_key(code).startswith(query_key) or any(
        key.startswith(query_key) for _, key in name_keys(name)
    )


ALIAS_COLUMNS = ("alias", "list", "code")


def aliases_from_csv(text: str) -> list[tuple[str, str, str]]:
    """(list, alias, code) rows of an alias list: CSV with the header `alias,list,code`,
    list being `item` or `diagnosis`; blank lines and lines starting with # are skipped."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.reader(lines)
    header = tuple(cell.strip() for cell in next(reader, ()))
    if header != ALIAS_COLUMNS:
        raise ValueError(f"an alias list starts with the header {','.join(ALIAS_COLUMNS)}")
    rows = []
    for number, row in enumerate(reader, start=2):
        cells = [cell.strip() for cell in row]
        if len(cells) != 3 or not all(cells) or cells[1] not in ("item", "diagnosis"):
            raise ValueError(f"alias list row {number}: expected alias,item|diagnosis,code")
        alias, target, code = cells
        rows.append((target, alias, code))
    return rows
