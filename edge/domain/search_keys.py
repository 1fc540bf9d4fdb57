"""Search keys for Chinese names: full pinyin and pinyin initials (阿莫西林 → amoxilin, amxl).

Computed once, at import time, so a search never runs pypinyin.
"""

import re
from functools import lru_cache

from pypinyin import lazy_pinyin

_NOT_KEY_CHAR = re.compile(r"[^0-9a-z]+")
_FOREIGN = "\x00"  # marks a chunk pypinyin passed through (latin, digits, punctuation)


def _mark_foreign(chunk: str) -> str:
    return _FOREIGN + chunk


def search_key(text: str) -> str:
    """Lower-case letters and digits only, as typed on a keypad (ASCII); Chinese kept."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


@lru_cache(maxsize=65536)
def pinyin_keys(name: str) -> tuple[str, str]:
    """(full pinyin, initials) of a name; Latin letters and digits are kept in both."""
    full, initials = [], []
    for syllable in lazy_pinyin(name, errors=_mark_foreign):
        if syllable.startswith(_FOREIGN):
            chunk = _NOT_KEY_CHAR.sub("", syllable[1:].lower())
            full.append(chunk)
            initials.append(chunk)
        else:
            full.append(syllable)
            initials.append(syllable[:1])
    return "".join(full), "".join(initials)
