"""What the doctor says about one thing: a `Finding` (status, message, advice, each text in
Chinese and English), and a `Check`, the finding under its name and label."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

OK, WARNING, ERROR, SKIPPED = "ok", "warning", "error", "skipped"
STATUS_ORDER = {OK: 0, SKIPPED: 0, WARNING: 1, ERROR: 2}


@dataclass(frozen=True)
class Text:
    """One thing said in Chinese and in English."""

    zh: str
    en: str

    def __str__(self) -> str:
        return f"{self.zh} / {self.en}"

    def to_dict(self) -> dict[str, str]:
        return {"zh": self.zh, "en": self.en}


class Finding(NamedTuple):
    status: str  # ok | warning | error | skipped (could not or need not be checked)
    message: Text
    advice: Text | None = None


@dataclass(frozen=True)
class Check:
    name: str
    label: Text
    finding: Finding

    @property
    def status(self) -> str:
        return self.finding.status

    def to_dict(self) -> dict[str, Any]:
        advice = self.finding.advice
        return {
            "name": self.name,
            "label": self.label.to_dict(),
            "status": self.finding.status,
            "message": self.finding.message.to_dict(),
            "advice": advice.to_dict() if advice else None,
        }


LABELS = {
    "service": Text("终端服务", "terminal service"),
    "storage": Text("数据目录", "data directory"),
    "database": Text("数据库", "database"),
    "ledger": Text("签名账本", "signed ledger"),
    "key": Text("设备密钥", "device key"),
    "reader": Text("读卡器", "card reader"),
    "printer": Text("打印机", "receipt printer"),
    "disk": Text("磁盘空间", "disk space"),
    "clock": Text("系统时钟", "clock"),
    "sync": Text("与县平台同步", "county sync"),
    "versions": Text("目录/政策/名单", "catalog, policy, roster"),
}


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: STATUS_ORDER[s], default=OK)


def merge(findings: list[Finding], ok: Finding) -> Finding:
    """Several problems of one check as one finding (the worst status); `ok` when none."""
    if not findings:
        return ok
    advice = [f.advice for f in findings if f.advice]
    return Finding(
        worst(f.status for f in findings),
        Text("；".join(f.message.zh for f in findings), "; ".join(f.message.en for f in findings)),
        Text("；".join(a.zh for a in advice), "; ".join(a.en for a in advice)) if advice else None,
    )
