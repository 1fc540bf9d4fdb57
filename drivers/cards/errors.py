"""`CardError`: every way reading an insurance card can fail, with a code and a message in
Chinese and English that a village doctor or a field engineer can act on."""

from __future__ import annotations

from typing import Any

# code -> (Chinese, English)
MESSAGES: dict[str, tuple[str, str]] = {
    # the reader and the card in it
    "NO_CARD": ("等待插卡超时", "no card was inserted in time"),
    "CARD_REMOVED": (
        "读卡过程中卡被拔出或通信中断",
        "the card was removed while it was being read",
    ),
    "CARD_MUTE": (
        "卡片无应答（插反了或已损坏？）",
        "the card does not answer (inserted wrongly or broken?)",
    ),
    "NO_READER": ("没有连接读卡器", "no card reader is connected"),
    "READER_NOT_FOUND": ("找不到指定的读卡器", "the named card reader is not connected"),
    "READER_ERROR": ("读卡器出错", "the card reader failed"),
    "PCSC_UNAVAILABLE": (
        "智能卡服务不可用",
        "the smart card service (pcscd or pyscard) is not available",
    ),
    "BAD_URL": ("读卡器地址无法识别", "the card reader URL is not understood"),
    "UNKNOWN_CARD": ("没有这张演示卡", "there is no such demo card"),
    # what the card answered
    "BAD_RESPONSE": ("卡片应答格式错误", "the card's response is malformed"),
    "BAD_FCI": (
        "选择应用的应答不符合规范",
        "the card's answer to SELECT is not the expected application",
    ),
    "BAD_TLV": ("卡内数据格式损坏（TLV）", "the card's data is malformed (TLV)"),
    "UNKNOWN_TAG": (
        "卡内有无法识别的数据项",
        "the card holds a data field this reader does not know",
    ),
    "DUPLICATE_TAG": ("卡内数据项重复", "the card holds a data field twice"),
    "MISSING_FIELD": ("卡内缺少必需的数据项", "the card lacks a required data field"),
    "BAD_LENGTH": ("卡内数据长度错误", "a data field on the card has the wrong length"),
    "BAD_FIELD": ("卡内数据项内容无效", "a data field on the card is not valid"),
    "BAD_GBK": ("姓名不是有效的GBK编码", "the name on the card is not valid GBK text"),
    "INCONSISTENT": ("卡内数据前后矛盾", "the data on the card contradicts itself"),
    "TOO_MANY_RECORDS": (
        "卡内记录过多",
        "a file on the card has more records than the profile allows",
    ),
    "CARD_EXPIRED": ("卡片已过有效期", "the card has expired"),
    # status words (ISO/IEC 7816-4)
    "FILE_INVALIDATED": (
        "这张卡已失效（可能已挂失、冻结或注销）：请患者出示医保电子凭证",
        "selected file invalidated (the card may be reported lost, frozen or cancelled)",
    ),
    "DATA_CORRUPTED": ("卡片返回的数据可能已损坏", "part of the data returned may be corrupted"),
    "END_OF_FILE": ("读到文件末尾仍不完整", "end of file reached before all data was read"),
    "WRONG_LENGTH": ("指令长度错误", "wrong length"),
    "COMMAND_INCOMPATIBLE": ("指令与文件结构不符", "command incompatible with the file structure"),
    # What a doctor reads: plain words, no "PIN" (the card's own lock, not the terminal's).
    "SECURITY_STATUS": (
        "卡片已锁定，无法读取：请患者出示医保电子凭证，或到医保经办机构解锁",
        "the card is locked and cannot be read: use the patient's e-voucher, or have the card"
        " unlocked at the insurance office",
    ),
    "AUTH_BLOCKED": ("认证方法已锁定", "authentication method blocked"),
    "CONDITIONS_NOT_SATISFIED": ("使用条件不满足", "conditions of use not satisfied"),
    "FUNCTION_NOT_SUPPORTED": ("卡片不支持此功能", "function not supported by the card"),
    "FILE_NOT_FOUND": (
        "文件或应用未找到（不是医保卡？）",
        "file or application not found (not an insurance card?)",
    ),
    "RECORD_NOT_FOUND": ("记录未找到", "record not found"),
    "WRONG_P1P2": ("指令参数错误", "incorrect parameters P1-P2"),
    "WRONG_OFFSET": ("读取位置超出文件", "offset outside the file"),
    "INS_NOT_SUPPORTED": ("卡片不支持此指令", "instruction not supported"),
    "CLA_NOT_SUPPORTED": ("卡片不支持此指令类别", "class not supported"),
    "CARD_FAULT": ("卡片内部错误", "the card reports an internal fault"),
    "CARD_STATUS": ("卡片返回错误状态", "the card returned an error status"),
}


class CardError(Exception):
    """A card could not be read. `code` is stable; the messages are for people.

    `detail` says which field, command or value; `sw` is the status word when the card
    answered with one; `card` is what was read when the card itself is fine but not usable
    (an expired card).
    """

    def __init__(
        self, code: str, detail: str = "", *, sw: int | None = None, card: Any = None
    ) -> None:
        zh, en = MESSAGES[code]
        self.code = code
        self.detail = detail
        self.sw = sw
        self.card = card
        self.message_zh = zh
        self.message_en = en
        super().__init__(self.describe())

    def describe(self) -> str:
        sw = f" [SW {self.sw:04X}]" if self.sw is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.code}{sw} {self.message_zh} / {self.message_en}{detail}"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message_zh": self.message_zh,
            "message_en": self.message_en,
            "detail": self.detail,
            "sw": None if self.sw is None else f"{self.sw:04X}",
        }
