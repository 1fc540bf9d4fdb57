"""The card driver's Chinese messages reach the doctor as they are: plain words, no codes
or jargon a village doctor cannot act on."""

import re

from drivers.cards.errors import MESSAGES, CardError


def test_no_chinese_card_message_says_pin_or_a_status_word():
    for code, (zh, _en) in MESSAGES.items():
        assert "PIN" not in zh.upper(), code
        assert re.search(r"[0-9A-F]{4}", zh) is None, code  # no 6982 and the like
        assert "所选文件" not in zh, code


def test_a_locked_card_says_what_to_do_next():
    error = CardError("SECURITY_STATUS", sw=0x6982)
    assert error.message_zh.startswith("卡片已锁定") and "电子凭证" in error.message_zh
