"""A small pinyin input for the search fields of a terminal without a keyboard: the
Chinese characters of the installed names (catalog items and diagnoses), each with its
pinyin readings, ranked by how many names contain it. Typing `xi` offers 西 希 息 …, so a
doctor can enter 西林 by tapping and the search finds 阿莫西林胶囊; every character offered
occurs in some name, so every one can be found.

Built once per installed catalog (the caller caches it); a look-up runs no pypinyin.

Free text — a resident's name, a village, a hospital — needs characters no catalog holds:
its index adds the 3,755 characters in common use (GB 2312 level 1) after those of the
installed names, so 村 and 梅 can be typed too.
"""

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from pypinyin import Style, pinyin

MAX_CANDIDATES = 12
MAX_TYPED = 32  # letters typed since the last character; more is not a syllable anyway
TYPED = re.compile(r"[a-z]*")


def is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


@dataclass(frozen=True)
class Entry:
    char: str
    reading: str  # its usual pinyin, toneless, ü as v (绿 → lv)
    others: tuple[str, ...]  # its other readings (血 xue: xie), offered after the usual ones
    names: int  # how many names contain the character

    def tier(self, typed: str) -> int | None:
        """How well `typed` fits: the usual reading exactly (0) or its start (1), another
        reading exactly (2) or its start (3); None when it does not fit."""
        if self.reading == typed:
            return 0
        if self.reading.startswith(typed):
            return 1
        if typed in self.others:
            return 2
        if any(r.startswith(typed) for r in self.others):
            return 3
        return None


@dataclass(frozen=True)
class CharacterIndex:
    entries: tuple[Entry, ...]  # most names first, then by character

    def candidates(self, typed: str, limit: int = MAX_CANDIDATES) -> list[Entry]:
        """The characters a syllable (or the start of one) may stand for, those read so
        usually and exactly first (xi → 西 before 心 and 胶, read xiao only rarely), each
        tier by how many names contain them."""
        if not typed or not TYPED.fullmatch(typed):
            return []
        tiers: list[list[Entry]] = [[], [], [], []]
        for entry in self.entries:  # most names first: each tier comes out ranked
            tier = entry.tier(typed)
            if tier is not None and len(tiers[tier]) < limit:
                tiers[tier].append(entry)
        return [entry for tier in tiers for entry in tier][:limit]


def readings(ch: str) -> list[str]:
    """The character's readings, its usual one first (pypinyin lists it first)."""
    found = pinyin(ch, style=Style.NORMAL, heteronym=True, errors="ignore")
    usual = [r for group in found for r in group if TYPED.fullmatch(r)]
    return list(dict.fromkeys(usual))


def common_characters() -> list[str]:
    """GB 2312's level 1: the 3,755 characters in common use, in its order (by pinyin)."""
    chars = []
    for row in range(0xB0, 0xD8):
        for cell in range(0xA1, 0xFF):
            try:
                chars.append(bytes((row, cell)).decode("gb2312"))
            except UnicodeDecodeError:  # the end of row 55 is empty
                continue
    return chars


def build_index(names: Iterable[str], also: Iterable[str] = ()) -> CharacterIndex:
    """The characters of `names`, each counted once per name that contains it, and then
    the characters of `also` that no name holds (counted 0, in the order given)."""
    counts: Counter[str] = Counter()
    for name in names:
        counts.update({ch for ch in name if is_han(ch)})
    order = {ch: i for i, ch in enumerate(dict.fromkeys(also))}
    for ch in order:
        counts.setdefault(ch, 0)
    entries = []
    for ch, n in counts.items():
        if found := readings(ch):
            entries.append(Entry(ch, found[0], tuple(found[1:]), n))
    entries.sort(key=lambda e: (-e.names, order[e.char] if e.names == 0 else -1, e.char))
    return CharacterIndex(tuple(entries))
