"""On-site maintenance of a device: the doctor's checks, backups and restores.

Each doctor check is a pure function from what was gathered to a `Finding` (status,
message, advice; every text in Chinese and English); `run_doctor` gathers (files, SQLite,
the card reader, the printer, systemd) and calls them.

A backup is one gzip'd tar archive, `clinic-backup-<device>-<YYYYmmdd-HHMMSS>.tar.gz`,
mode 0600, holding `manifest.json`, `clinic.db` (a consistent copy made with SQLite's
online backup API while the terminal keeps running) and `device.key` (the private key:
a backup must be kept like cash). A restore verifies the archive (hashes, SQLite
integrity, the ledger chain, that the key is the ledger's) and refuses a backup whose
ledger ends before what the county has acknowledged, unless forced; the database it
replaces is kept aside in `replaced-<time>/`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import sqlite_utils
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from edge.adapters.identity import KEY_FILE
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, StoreError
from edge.clock import CLINIC_TZ
from edge.domain.ledger import Verification, b64url, raw_public_key

OK, WARNING, ERROR, SKIPPED = "ok", "warning", "error", "skipped"
STATUS_ORDER = {OK: 0, SKIPPED: 0, WARNING: 1, ERROR: 2}

SERVICE_UNIT = "clinic-terminal.service"
DISK_WARN_MB = 500
DISK_ERROR_MB = 100
DEFAULT_MAX_SYNC_HOURS = 24
VOLATILE_FILESYSTEMS = {"tmpfs", "ramfs"}
OVERLAY_FILESYSTEMS = {"overlay", "aufs"}

BACKUP_FORMAT = "clinic-backup-1"
BACKUP_PREFIX = "clinic-backup-"
BACKUP_SUFFIX = ".tar.gz"
DEFAULT_KEEP = 7
MANIFEST = "manifest.json"
ARCHIVE_MEMBERS = (MANIFEST, DATABASE_FILE, KEY_FILE)
MAX_MEMBER_BYTES = 8 << 30  # a device database is megabytes; refuse absurd members
SQLITE_HEADER = b"SQLite format 3\x00"


# ---- findings ------------------------------------------------------------------------------


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


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.0f} MB"


# ---- the checks (pure) ------------------------------------------------------------------------


def check_service(state: str | None, unit: str = SERVICE_UNIT) -> Finding:
    """`state` is what `systemctl is-active` says; None where systemd is not running."""
    if state is None:
        return Finding(
            SKIPPED, Text("此系统未运行 systemd，未检查服务", "systemd is not running here")
        )
    if state == "active":
        return Finding(OK, Text(f"{unit} 正在运行", f"{unit} is running"))
    logs = f"journalctl -u {unit} -n 50"
    if state in ("activating", "reloading", "deactivating"):
        return Finding(
            WARNING,
            Text(f"{unit} 状态为 {state}", f"{unit} is {state}"),
            Text(
                f"一分钟后再运行 clinic doctor；查看日志：{logs}",
                f"run clinic doctor again in a minute; logs: {logs}",
            ),
        )
    return Finding(
        ERROR,
        Text(f"{unit} 未运行（{state}）", f"{unit} is not running ({state})"),
        Text(
            f"sudo systemctl restart {unit}；查看日志：{logs}",
            f"sudo systemctl restart {unit}; logs: {logs}",
        ),
    )


def check_storage(
    *, exists: bool, fs_type: str | None, mode: int | None, owner: str, foreign: list[str]
) -> Finding:
    """The data directory: on persistent storage, private (0700), every file its owner's."""
    if not exists:
        return Finding(
            ERROR,
            Text("数据目录不存在", "the data directory does not exist"),
            Text(
                "新设备：clinic init；更换设备：clinic restore 备份文件",
                "a new device: clinic init; a replaced one: clinic restore BACKUP",
            ),
        )
    problems = []
    if fs_type in VOLATILE_FILESYSTEMS:
        problems.append(
            Finding(
                ERROR,
                Text(
                    f"数据在内存文件系统（{fs_type}）上，断电即丢失",
                    f"the data is on {fs_type}, a RAM filesystem: a power cut loses it",
                ),
                Text(
                    "把 /var/lib/clinic 放到数据分区（见部署说明 fstab）",
                    "mount the data partition on /var/lib/clinic (README: fstab)",
                ),
            )
        )
    elif fs_type in OVERLAY_FILESYSTEMS:
        problems.append(
            Finding(
                WARNING,
                Text(
                    f"数据在叠加文件系统（{fs_type}）上：若开启了只读根分区，断电即丢失",
                    f"the data is on {fs_type}: with the read-only root overlay it is lost at"
                    " power-off",
                ),
                Text(
                    "把 /var/lib/clinic 放到单独的数据分区（见部署说明）",
                    "put /var/lib/clinic on its own data partition (README)",
                ),
            )
        )
    if mode is not None and mode & 0o077:
        problems.append(
            Finding(
                WARNING,
                Text(
                    f"数据目录其他用户可访问（权限 {mode:o}）",
                    f"the data directory is open to other users (mode {mode:o})",
                ),
                Text("sudo chmod 700 数据目录", "sudo chmod 700 DATA_DIR"),
            )
        )
    if foreign:
        names = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
        problems.append(
            Finding(
                ERROR,
                Text(
                    f"这些文件不属于 {owner}，终端服务可能无法写入：{names}",
                    f"files not owned by {owner}, which the terminal may not write: {names}",
                ),
                Text(
                    f"sudo chown -R {owner}: 数据目录；以后用 /usr/local/bin/clinic 运行命令",
                    f"sudo chown -R {owner}: DATA_DIR; run commands through /usr/local/bin/clinic",
                ),
            )
        )
    return merge(
        problems,
        Finding(OK, Text("持久存储，仅本用户可访问", "persistent storage, private to its owner")),
    )


def check_database(*, exists: bool, integrity: list[str] | None, error: str | None) -> Finding:
    """`integrity` is what PRAGMA integrity_check returned; `error` why it could not run."""
    if not exists:
        return Finding(
            ERROR,
            Text("没有设备数据库", f"no device database ({DATABASE_FILE})"),
            Text(
                "新设备：clinic init；更换设备：clinic restore 备份文件",
                "a new device: clinic init; a replaced one: clinic restore BACKUP",
            ),
        )
    restore = Text(
        "停止终端（sudo systemctl stop clinic-terminal），"
        "从最近的备份恢复：clinic restore 备份文件；先联系县医保平台",
        "stop the terminal (sudo systemctl stop clinic-terminal) and restore the latest backup:"
        " clinic restore BACKUP; call the county first",
    )
    if error is not None or integrity is None:
        return Finding(
            ERROR,
            Text(f"数据库无法读取：{error}", f"the database cannot be read: {error}"),
            restore,
        )
    if integrity == ["ok"]:
        return Finding(OK, Text("完整性检查通过", "integrity check passed"))
    shown = "; ".join(integrity[:3])
    return Finding(
        ERROR, Text(f"数据库已损坏：{shown}", f"the database is damaged: {shown}"), restore
    )


def check_ledger(verification: Verification | None, error: str | None = None) -> Finding:
    if verification is None:
        return Finding(
            ERROR,
            Text(f"无法检查账本：{error}", f"the ledger cannot be checked: {error}"),
            Text(
                "运行 clinic device show；没有设备身份时先 clinic init",
                "run clinic device show; without an identity run clinic init",
            ),
        )
    if verification.ok:
        return Finding(
            OK,
            Text(
                f"{verification.count} 条记录，签名链完整",
                f"{verification.count} records, chain intact",
            ),
        )
    seq = verification.first_bad_seq
    return Finding(
        ERROR,
        Text(
            f"账本在第 {seq} 条记录处断裂：{verification.reason}",
            f"the ledger is broken at seq {seq}: {verification.reason}",
        ),
        Text(
            "不要删除或恢复任何数据；导出账本（clinic ledger export -o 文件）并联系县医保平台核对",
            "delete and restore nothing; export the ledger (clinic ledger export -o FILE) and"
            " call the county to compare it with the hub's copy",
        ),
    )


def check_key(*, exists: bool, mode: int | None, problem: str | None) -> Finding:
    """The private key file: present, mode 0600, and the key the ledger was begun with."""
    if not exists:
        return Finding(
            ERROR,
            Text(
                "设备密钥文件不存在，无法签名结算",
                f"the key file {KEY_FILE} is missing: nothing can be signed",
            ),
            Text(
                "从本设备的备份恢复：clinic restore 备份文件",
                "restore this device's backup: clinic restore BACKUP",
            ),
        )
    if mode is not None and mode & 0o077:
        return Finding(
            ERROR,
            Text(
                f"设备密钥其他用户可读（权限 {mode:o}），结算已停止",
                f"the device key is readable by others (mode {mode:o}): settlement is stopped",
            ),
            Text(f"sudo chmod 600 数据目录/{KEY_FILE}", f"sudo chmod 600 DATA_DIR/{KEY_FILE}"),
        )
    if problem is not None:
        return Finding(
            ERROR,
            Text(f"设备密钥不可用：{problem}", f"the device key cannot be used: {problem}"),
            Text(
                "从本设备的备份恢复密钥：clinic restore 备份文件",
                "restore this device's key from its backup: clinic restore BACKUP",
            ),
        )
    return Finding(OK, Text("存在，权限 600，与账本一致", "present, mode 600, matches the ledger"))


def check_reader(url: str, error: Any | None, card_present: bool | None = None) -> Finding:
    """`error` is the `CardError` (code, message_zh, message_en, detail) opening it gave."""
    if error is not None:
        detail = f"（{error.detail}）" if error.detail else ""
        advice = {
            "PCSC_UNAVAILABLE": Text(
                "sudo systemctl restart pcscd.socket pcscd；检查 pcscd 是否已安装",
                "sudo systemctl restart pcscd.socket pcscd; is pcscd installed?",
            ),
            "BAD_URL": Text(
                "检查 /etc/clinic/clinic.env 中的 CLINIC_READER",
                "check CLINIC_READER in /etc/clinic/clinic.env",
            ),
        }.get(
            error.code,
            Text(
                "插好读卡器的 USB 线（换一个 USB 口），然后运行 pcsc_scan 查看",
                "plug the reader in (try another USB port); pcsc_scan lists readers",
            ),
        )
        return Finding(
            ERROR,
            Text(
                f"{url}：{error.message_zh}{detail}",
                f"{url}: {error.code} {error.message_en}{detail}",
            ),
            advice,
        )
    card = {True: Text("，有卡", ", a card is in it"), False: Text("，无卡", ", no card in it")}
    extra = card.get(card_present, Text("", ""))
    return Finding(OK, Text(f"{url} 已连接{extra.zh}", f"{url} is connected{extra.en}"))


def check_printer(url: str | None, status: Any | None, error: Any | None) -> Finding:
    """`status` is the `PrinterStatus` the printer answered; `error` a `PrinterError`."""
    if not url:
        return Finding(
            SKIPPED,
            Text("未配置打印机", "no printer configured"),
            Text(
                "在 /etc/clinic/clinic.env 设置 CLINIC_PRINTER，或用 --printer",
                "set CLINIC_PRINTER in /etc/clinic/clinic.env, or pass --printer",
            ),
        )
    if error is not None:
        return Finding(
            ERROR,
            Text(f"{url}：{error.message_zh}", f"{url}: {error.code} {error.message_en}"),
            Text(
                "检查电源、连线、纸和纸仓盖；串口设备见 /dev/clinic-printer（部署说明 udev）",
                "check power, cable, paper and cover; the port is /dev/clinic-printer (README:"
                " udev)",
            ),
        )
    if status is not None and status.problem:
        from drivers.printer import MESSAGES

        zh, en = MESSAGES[status.problem]
        return Finding(
            ERROR,
            Text(f"{url}：{zh}", f"{url}: {status.problem} {en}"),
            Text(
                "装纸、合上纸仓盖、重启打印机", "load paper, close the cover, restart the printer"
            ),
        )
    if status is not None and status.paper_near_end:
        return Finding(
            WARNING,
            Text(f"{url}：纸将用完", f"{url}: paper is running low"),
            Text("准备一卷新纸", "have a new roll ready"),
        )
    return Finding(OK, Text(f"{url} 就绪", f"{url} is ready"))


def check_disk(free: int, total: int, *, warn_bytes: int, error_bytes: int) -> Finding:
    said = Text(f"剩余 {_mb(free)}（共 {_mb(total)}）", f"{_mb(free)} free of {_mb(total)}")
    advice = Text(
        "删除旧的本地备份（数据目录/backups），或换更大的存储卡；不要删除 clinic.db",
        "delete old local backups (DATA_DIR/backups) or move to a larger card; never delete"
        " clinic.db",
    )
    if free < error_bytes:
        return Finding(
            ERROR, Text(f"磁盘几乎已满：{said.zh}", f"the disk is almost full: {said.en}"), advice
        )
    if free < warn_bytes:
        return Finding(
            WARNING, Text(f"磁盘空间不足：{said.zh}", f"disk space is low: {said.en}"), advice
        )
    return Finding(OK, said)


def check_clock(
    now: datetime,
    *,
    last_record_at: datetime | None,
    clock_behind_since: str | None,
    not_before: date,
) -> Finding:
    """A clock behind the last record or before this software was built is wrong."""
    advice = Text(
        "用 timedatectl 查看并设置正确时间（sudo date -s '2026-11-22 09:30'）；"
        "建议加装 DS3231 时钟模块（部署说明）。"
        "记录时间不会倒退，时钟回拨会作为 clock_behind 事件签名记录",
        "check with timedatectl and set the time (sudo date -s '2026-11-22 09:30'); fit a"
        " DS3231 RTC (README). Record times never go back: a clock behind is signed as a"
        " clock_behind event",
    )
    problems = []
    if now.date() < not_before:
        problems.append(
            Finding(
                WARNING,
                Text(
                    f"系统时间 {now:%Y-%m-%d %H:%M} 早于本软件的构建日期 {not_before}",
                    f"the clock reads {now:%Y-%m-%d %H:%M}, before this software was built"
                    f" ({not_before})",
                ),
                advice,
            )
        )
    if last_record_at is not None and now < last_record_at:
        problems.append(
            Finding(
                WARNING,
                Text(
                    f"系统时间 {now:%Y-%m-%d %H:%M} 早于最后一条账本记录"
                    f"（{last_record_at:%Y-%m-%d %H:%M}）",
                    f"the clock reads {now:%Y-%m-%d %H:%M}, before the last ledger record"
                    f" ({last_record_at:%Y-%m-%d %H:%M})",
                ),
                advice,
            )
        )
    elif clock_behind_since is not None:
        problems.append(
            Finding(
                WARNING,
                Text(
                    f"自 {clock_behind_since} 起时钟曾落后（已签名记录）",
                    f"the clock was found behind the ledger (since {clock_behind_since}; signed)",
                ),
                advice,
            )
        )
    return merge(
        problems, Finding(OK, Text(f"{now:%Y-%m-%d %H:%M %Z}", f"{now:%Y-%m-%d %H:%M %Z}"))
    )


def check_sync(
    now: datetime, *, last_sync_at: datetime | None, max_hours: int | None, waiting: int
) -> Finding:
    hours = max_hours or DEFAULT_MAX_SYNC_HOURS
    queue = Text(f"，{waiting} 条记录待上传", f", {waiting} records waiting")
    advice = Text(
        "检查网络，然后 clinic sync once；尚未注册时：clinic enroll --hub 地址 --code 注册码",
        "check the network, then clinic sync once; not enrolled yet: clinic enroll --hub URL"
        " --code CODE",
    )
    if last_sync_at is None:
        return Finding(
            WARNING,
            Text(f"从未与县平台同步{queue.zh}", f"never synced with the county{queue.en}"),
            advice,
        )
    age = now - last_sync_at
    age_hours = max(age, timedelta(0)).total_seconds() / 3600
    said = Text(
        f"上次同步 {last_sync_at:%Y-%m-%d %H:%M}（{age_hours:.0f} 小时前）{queue.zh}",
        f"last sync {last_sync_at:%Y-%m-%d %H:%M} ({age_hours:.0f} h ago){queue.en}",
    )
    if age > timedelta(hours=hours):
        return Finding(
            WARNING,
            Text(f"超过 {hours} 小时未同步：{said.zh}", f"no sync for over {hours} h: {said.en}"),
            advice,
        )
    return Finding(OK, said)


def check_versions(versions: dict[str, tuple[str | None, str | None]], now: datetime) -> Finding:
    """`versions`: kind -> (installed version, the county's expiry if known)."""
    names = {"catalog": "目录", "policy": "政策", "roster": "名单"}
    shown_zh, shown_en, problems = [], [], []
    for kind, (version, expires_at) in versions.items():
        shown_zh.append(f"{names.get(kind, kind)} {version or '无'}")
        shown_en.append(f"{kind} {version or 'none'}")
        if version is None:
            problems.append(
                Finding(
                    ERROR,
                    Text(f"没有安装{names.get(kind, kind)}", f"no {kind} installed"),
                    Text(
                        "联网后运行 clinic sync once（需先注册：clinic enroll）",
                        "connect and run clinic sync once (enroll first: clinic enroll)",
                    ),
                )
            )
        elif expires_at is not None and now >= datetime.fromisoformat(expires_at):
            problems.append(
                Finding(
                    WARNING,
                    Text(
                        f"{names.get(kind, kind)} {version} 已于 {expires_at} 过期",
                        f"{kind} {version} expired at {expires_at}",
                    ),
                    Text(
                        "联网后运行 clinic sync once 获取新版本",
                        "connect and run clinic sync once for the new version",
                    ),
                )
            )
    listed = Finding(OK, Text("，".join(shown_zh), ", ".join(shown_en)))
    if not problems:
        return listed
    found = merge(problems, listed)
    return found._replace(
        message=Text(
            f"{listed.message.zh}：{found.message.zh}", f"{listed.message.en}: {found.message.en}"
        )
    )


# ---- gathering (I/O) ----------------------------------------------------------------------------


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path`, from /proc/self/mountinfo."""
    try:
        target = os.path.realpath(path)
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, best_type = "", None
    for line in lines:
        before, _, after = line.partition(" - ")
        fields = before.split()
        if len(fields) < 5 or not after:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, after.split()[0]
    return best_type


def service_state(unit: str = SERVICE_UNIT) -> str | None:
    """`systemctl is-active UNIT`, or None where systemd is not running (sd_booted)."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return None
    try:
        done = subprocess.run(
            ["systemctl", "is-active", unit], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return done.stdout.strip() or "unknown"


def build_date() -> date:
    """When this software was built or installed: the clock cannot be before it."""
    return datetime.fromtimestamp(Path(__file__).stat().st_mtime, CLINIC_TZ).date()


def _storage(data_dir: Path) -> Finding:
    if not data_dir.is_dir():
        return check_storage(exists=False, fs_type=None, mode=None, owner="", foreign=[])
    info = data_dir.stat()
    foreign = sorted(
        child.name
        for child in data_dir.iterdir()
        if child.lstat().st_uid != info.st_uid and child.name != "lost+found"
    )
    return check_storage(
        exists=True,
        fs_type=filesystem_type(data_dir),
        mode=stat.S_IMODE(info.st_mode),
        owner=_user_name(info.st_uid),
        foreign=foreign,
    )


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def integrity_check(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def _key(data_dir: Path, store: SqliteDeviceStore | None) -> Finding:
    from edge.adapters.identity import IdentityError
    from edge.services import load_identity

    path = data_dir / KEY_FILE
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return check_key(exists=False, mode=None, problem=None)
    problem = None
    if store is not None and not mode & 0o077:
        try:
            load_identity(store, data_dir)
        except (IdentityError, StoreError) as error:
            problem = str(error)
    return check_key(exists=True, mode=mode, problem=problem)


def _reader(url: str | None, today: date) -> Finding:
    if not url:
        return Finding(SKIPPED, Text("未指定读卡器", "no reader given"))
    from drivers.cards.errors import CardError
    from drivers.cards.readers import card_reader_for_url

    try:
        reader = card_reader_for_url(url, today=today)
    except CardError as error:
        return check_reader(url, error)
    try:
        present = reader.card_present()
    except CardError as error:
        return check_reader(url, error)
    finally:
        reader.close()
    return check_reader(url, None, present)


def _printer(url: str | None) -> Finding:
    if not url:
        return check_printer(url, None, None)
    from drivers.printer import PrinterError, printer_for_url

    try:
        printer = printer_for_url(url)
    except PrinterError as error:
        return check_printer(url, None, error)
    try:
        return check_printer(url, printer.status(), None)
    except PrinterError as error:
        return check_printer(url, None, error)
    finally:
        printer.close()


def installed_versions(store: SqliteDeviceStore) -> dict[str, tuple[str | None, str | None]]:
    """Each kind's installed version, with the county's expiry when the sync agent kept it."""
    expiry: dict[str, tuple[str, str]] = {}
    with contextlib.suppress(sqlite3.Error):
        has_table = store.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sync_installed'"
        ).fetchone()
        if has_table:
            for kind, version, expires_at in store.db.execute(
                "SELECT kind, version, expires_at FROM sync_installed"
            ):
                expiry[kind] = (version, expires_at)
    result = {}
    for kind, version in (
        ("catalog", store.catalog_version()),
        ("policy", store.policy_version()),
        ("roster", store.roster_version()),
    ):
        known = expiry.get(kind)
        result[kind] = (version, known[1] if known and known[0] == version else None)
    return result


@dataclass(frozen=True)
class DoctorOptions:
    reader_url: str | None = "pcsc://"
    printer_url: str | None = None
    service: str | None = SERVICE_UNIT  # None: do not check
    disk_warn_bytes: int = DISK_WARN_MB * 1_000_000
    disk_error_bytes: int = DISK_ERROR_MB * 1_000_000
    not_before: date | None = None  # the clock cannot be before this; default: build_date()


def run_doctor(data_dir: Path, now: datetime, options: DoctorOptions) -> list[Check]:
    """Every check, in the order an admin reads them. A check that cannot run (permission
    denied: not run with sudo) is an error of its own; the others still run."""
    data_dir = Path(data_dir)
    not_before = options.not_before or build_date()
    found: dict[str, Finding] = {}
    not_checked = Finding(SKIPPED, Text("数据库不可用，未检查", "not checked: no usable database"))

    def check(name: str, gather: Callable[[], Finding]) -> None:
        try:
            found[name] = gather()
        except Exception as error:  # one check's surprise must not hide the others
            found[name] = _could_not_check(error)

    check("service", lambda: _service(options.service))
    check("storage", lambda: _storage(data_dir))
    check("database", lambda: _database(data_dir))
    store = None
    if found["database"].status != ERROR:
        try:
            store = SqliteDeviceStore.open(data_dir)
            device = store.device()
        except (StoreError, sqlite3.Error) as error:
            found["database"] = check_database(exists=True, integrity=None, error=str(error))
            store = None
    try:
        if store is None:
            found["ledger"] = not_checked
        elif device is None:
            found["ledger"] = check_ledger(None, "this device has no identity yet")
        else:
            check("ledger", lambda: _ledger(store))
        check("key", lambda: _key(data_dir, store if store and device else None))
        check("reader", lambda: _reader(options.reader_url, now.date()))
        check("printer", lambda: _printer(options.printer_url))
        check("disk", lambda: _disk(data_dir, options))
        if store is None or device is None:
            check("clock", lambda: check_clock(now, last_record_at=None, clock_behind_since=None,
                                               not_before=not_before))  # fmt: skip
            found["sync"] = found["versions"] = not_checked
        else:
            check("clock", lambda: _clock(store, now, device.clock_behind_since, not_before))
            check("sync", lambda: _sync(store, now, device.last_sync_at))
            check("versions", lambda: check_versions(installed_versions(store), now))
    finally:
        if store is not None:
            store.close()
    return [Check(name, LABELS[name], finding) for name, finding in found.items()]


def _could_not_check(error: Exception) -> Finding:
    if isinstance(error, PermissionError):
        return Finding(
            ERROR,
            Text(f"没有权限：{error}", f"permission denied: {error}"),
            Text("用 sudo 运行：sudo clinic doctor", "run it with sudo: sudo clinic doctor"),
        )
    return Finding(ERROR, Text(f"无法检查：{error!r}", f"could not be checked: {error!r}"))


def _service(unit: str | None) -> Finding:
    return check_service(service_state(unit) if unit else None, unit or "")


def _database(data_dir: Path) -> Finding:
    database = data_dir / DATABASE_FILE
    if not database.is_file():
        return check_database(exists=False, integrity=None, error=None)
    try:
        return check_database(exists=True, integrity=integrity_check(database), error=None)
    except sqlite3.Error as error:
        return check_database(exists=True, integrity=None, error=str(error))


def _ledger(store: SqliteDeviceStore) -> Finding:
    from edge.services import verify_ledger

    return check_ledger(verify_ledger(store))


def _disk(data_dir: Path, options: DoctorOptions) -> Finding:
    if not data_dir.is_dir():
        return Finding(SKIPPED, Text("数据目录不存在", "no data directory"))
    usage = shutil.disk_usage(data_dir)
    return check_disk(
        usage.free,
        usage.total,
        warn_bytes=options.disk_warn_bytes,
        error_bytes=options.disk_error_bytes,
    )


def _clock(
    store: SqliteDeviceStore, now: datetime, behind_since: str | None, not_before: date
) -> Finding:
    row = store.db.execute("SELECT created_at FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    last = datetime.fromisoformat(row[0]) if row else None
    return check_clock(
        now, last_record_at=last, clock_behind_since=behind_since, not_before=not_before
    )


def _sync(store: SqliteDeviceStore, now: datetime, last_sync_at: str | None) -> Finding:
    max_hours = None
    with contextlib.suppress(StoreError, ValueError):
        max_hours = store.current_policy().offline_limits.max_hours_since_sync
    return check_sync(
        now,
        last_sync_at=datetime.fromisoformat(last_sync_at) if last_sync_at else None,
        max_hours=max_hours,
        waiting=store.outbox_count(),
    )


# ---- backup ---------------------------------------------------------------------------------


class MaintenanceError(Exception):
    """A refused backup or restore; nothing was changed. The message says what to do."""


@dataclass(frozen=True)
class DatabaseFacts:
    """What a device database file holds, with its ledger verified."""

    device_id: str
    public_key: str
    head_seq: int
    head_hash: str | None
    synced_seq: int
    last_sync_at: str | None
    versions: dict[str, tuple[str | None, str | None]]
    verification: Verification


def database_facts(path: Path) -> DatabaseFacts:
    """Read a device database that exists (writing nothing) and verify its ledger; raises
    sqlite3.Error or MaintenanceError."""
    from edge.services import verify_ledger

    if not path.is_file():
        raise MaintenanceError(f"{path} does not exist")
    conn = sqlite3.connect(path)  # read-write: a read-only one leaves -wal and -shm behind
    try:
        store = SqliteDeviceStore(sqlite_utils.Database(conn))
        device = store.device()
        if device is None:
            raise MaintenanceError(f"{path.name} holds no device identity")
        verification = verify_ledger(store)
        head = conn.execute("SELECT max(seq) FROM ledger").fetchone()[0] or 0
        return DatabaseFacts(
            device_id=device.device_id,
            public_key=device.public_key,
            head_seq=head,
            head_hash=verification.last_hash if verification.ok else None,
            synced_seq=device.synced_seq,
            last_sync_at=device.last_sync_at,
            versions=installed_versions(store),
            verification=verification,
        )
    finally:
        conn.close()


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict
    pruned: list[Path]
    warnings: list[str]


def backup_name(device_id: str, now: datetime) -> str:
    return f"{BACKUP_PREFIX}{device_id}-{now:%Y%m%d-%H%M%S}{BACKUP_SUFFIX}"


_BACKUP_NAME = re.compile(
    re.escape(BACKUP_PREFIX) + r"(?P<device>.+)-\d{8}-\d{6}" + re.escape(BACKUP_SUFFIX) + "$"
)


def backups_in(folder: Path, device_id: str) -> list[Path]:
    """This device's backups in `folder`, oldest first (the names sort by time)."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _BACKUP_NAME.match(path.name)
        if match and match["device"] == device_id and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.name)


def backup(data_dir: Path, to: Path, *, keep: int = DEFAULT_KEEP, now: datetime) -> BackupResult:
    """Write one backup generation of the (running) device into `to`, then keep only the
    newest `keep` of this device's backups there."""
    if keep < 1:
        raise MaintenanceError("--keep must be at least 1")
    data_dir, to = Path(data_dir), Path(to)
    work = Path(tempfile.mkdtemp(prefix=".backup-", dir=data_dir)) if data_dir.is_dir() else None
    if work is None:
        raise MaintenanceError(f"no device data in {data_dir}")
    try:
        copy = work / DATABASE_FILE
        store = SqliteDeviceStore.open(data_dir)
        try:
            if store.device() is None:
                raise MaintenanceError("this device has no identity yet: nothing to back up")
            _online_copy(store, copy)
        finally:
            store.close()
        problems = integrity_check(copy)
        if problems != ["ok"]:
            raise MaintenanceError(
                "the copy of the database fails SQLite's integrity check"
                f" ({'; '.join(problems[:3])}): the live database is damaged. No backup was"
                " written and older backups are kept; run clinic doctor and call the county"
            )
        facts = database_facts(copy)
        warnings = []
        if not facts.verification.ok:
            warnings.append(
                f"the ledger is broken at seq {facts.verification.first_bad_seq}"
                f" ({facts.verification.reason}): backed up as it is, as evidence;"
                " clinic restore refuses this backup"
            )
        key_bytes = _key_for_backup(data_dir, facts.public_key, warnings)
        to.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = to / backup_name(facts.device_id, now)
        if final.exists():
            raise MaintenanceError(f"{final} already exists; run the backup again in a second")
        manifest = _manifest(facts, copy, key_bytes, now)
        _write_archive(final, manifest, copy, key_bytes, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pruned = backups_in(to, facts.device_id)[:-keep]
    for old in pruned:
        old.unlink()
    if pruned:
        _fsync_dir(to)
    return BackupResult(final, manifest, pruned, warnings)


def _online_copy(store: SqliteDeviceStore, target: Path) -> None:
    """SQLite's online backup API: a consistent snapshot while others keep writing."""
    destination = sqlite3.connect(target)
    try:
        store.db.conn.backup(destination)
        destination.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    finally:
        destination.close()


def _key_for_backup(data_dir: Path, public_key: str, warnings: list[str]) -> bytes | None:
    path = data_dir / KEY_FILE
    try:
        data = path.read_bytes()
    except OSError as error:
        warnings.append(f"the device key was not backed up: {error.strerror} ({path})")
        return None
    try:
        key = load_pem_private_key(data, password=None)
        matches = b64url(raw_public_key(key.public_key())) == public_key
    except (ValueError, TypeError, AttributeError):
        matches = False
    if not matches:
        warnings.append(
            f"the device key was not backed up: {path} is damaged or not this ledger's key"
        )
        return None
    return data


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _app_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("clinic-terminal")
    except Exception:  # not installed as a distribution (a bare checkout)
        return None


def _manifest(facts: DatabaseFacts, copy: Path, key_bytes: bytes | None, now: datetime) -> dict:
    return {
        "format": BACKUP_FORMAT,
        "device_id": facts.device_id,
        "public_key": facts.public_key,
        "created_at": now.replace(microsecond=0).isoformat(),
        "host": socket.gethostname(),
        "app_version": _app_version(),
        "ledger_head_seq": facts.head_seq,
        "ledger_head_hash": facts.head_hash,
        "ledger_ok": facts.verification.ok,
        "synced_seq": facts.synced_seq,
        "last_sync_at": facts.last_sync_at,
        "versions": {kind: version for kind, (version, _) in facts.versions.items()},
        "database_sha256": _sha256_file(copy),
        "database_bytes": copy.stat().st_size,
        "key_included": key_bytes is not None,
        "key_sha256": hashlib.sha256(key_bytes).hexdigest() if key_bytes else None,
    }


def _write_archive(
    final: Path, manifest: dict, copy: Path, key_bytes: bytes | None, now: datetime
) -> None:
    partial = final.with_name(f".{final.name}.partial")
    mtime = int(now.timestamp())
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime) as zipped,
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                text = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
                tar.addfile(_member(MANIFEST, len(text), mtime, 0o644), io.BytesIO(text))
                with copy.open("rb") as handle:
                    tar.addfile(_member(DATABASE_FILE, copy.stat().st_size, mtime, 0o600), handle)
                if key_bytes is not None:
                    tar.addfile(
                        _member(KEY_FILE, len(key_bytes), mtime, 0o600), io.BytesIO(key_bytes)
                    )
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(partial, 0o600)  # on filesystems that keep modes
        os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    _fsync_dir(final.parent)


def _member(name: str, size: int, mtime: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    return info


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem (vfat) lets a directory sync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---- restore ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unpacked:
    """A backup unpacked into a private folder, verified."""

    folder: Path
    facts: DatabaseFacts
    manifest: dict | None  # None: a bare database file (the admin page's backups)
    key_included: bool


@dataclass(frozen=True)
class RestoreResult:
    device_id: str
    head_seq: int
    records: int
    replaced: Path | None  # where the database it replaced was put
    overridden: list[str] = field(default_factory=list)  # refusals --force overrode


def read_backup(archive: Path, into: Path) -> Unpacked:
    """Unpack `archive` into the empty folder `into` and verify it; MaintenanceError if
    it is not a sound backup."""
    archive = Path(archive)
    try:
        with archive.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise MaintenanceError(f"cannot read {archive}: {error.strerror}") from None
    if head == SQLITE_HEADER:
        shutil.copyfile(archive, into / DATABASE_FILE)
        manifest = None
    else:
        manifest = _unpack(archive, into)
    database = into / DATABASE_FILE
    if manifest is not None:
        if manifest.get("format") != BACKUP_FORMAT:
            raise MaintenanceError(
                f"{archive.name}: unknown backup format {manifest.get('format')!r}"
            )
        if _sha256_file(database) != manifest.get("database_sha256"):
            raise MaintenanceError(f"{archive.name}: the database does not match its manifest")
    try:
        problems = integrity_check(database)
        if problems != ["ok"]:
            raise MaintenanceError(
                f"{archive.name}: the database fails SQLite's integrity check"
                f" ({'; '.join(problems[:3])}); try an older backup"
            )
        facts = database_facts(database)
    except sqlite3.Error as error:
        raise MaintenanceError(
            f"{archive.name}: not a readable device database ({error})"
        ) from None
    if not facts.verification.ok:
        raise MaintenanceError(
            f"{archive.name}: its ledger is broken at seq {facts.verification.first_bad_seq}"
            f" ({facts.verification.reason}); try an older backup and call the county"
        )
    key = into / KEY_FILE
    if manifest is not None and manifest.get("ledger_head_seq") != facts.head_seq:
        raise MaintenanceError(f"{archive.name}: the ledger does not match its manifest")
    if key.exists():
        _require_key_of(key.read_bytes(), facts.public_key, f"{archive.name}: its device key")
    return Unpacked(into, facts, manifest, key.exists())


def _unpack(archive: Path, into: Path) -> dict:
    try:
        with tarfile.open(archive, "r:*") as tar:
            seen = set()
            for member in tar:
                if member.name not in ARCHIVE_MEMBERS or not member.isfile() or member.name in seen:
                    raise MaintenanceError(
                        f"{archive.name}: unexpected member {member.name!r}: not a clinic backup"
                    )
                if member.size > MAX_MEMBER_BYTES:
                    raise MaintenanceError(f"{archive.name}: member {member.name} is too large")
                seen.add(member.name)
                source = tar.extractfile(member)
                fd = os.open(into / member.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as error:
        raise MaintenanceError(f"{archive.name}: not a readable backup archive ({error})") from None
    if MANIFEST not in seen or DATABASE_FILE not in seen:
        raise MaintenanceError(f"{archive.name}: incomplete backup (manifest or database missing)")
    try:
        return json.loads((into / MANIFEST).read_text(encoding="utf-8"))
    except ValueError as error:
        raise MaintenanceError(f"{archive.name}: the manifest is not JSON ({error})") from None


def _require_key_of(key_bytes: bytes, public_key: str, what: str) -> None:
    try:
        key = load_pem_private_key(key_bytes, password=None)
        ok = b64url(raw_public_key(key.public_key())) == public_key
    except (ValueError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise MaintenanceError(f"{what} is damaged or is not the key this ledger was signed with")


def restore_refusals(
    backup: DatabaseFacts, live: DatabaseFacts | None, live_error: str | None
) -> list[str]:
    """Why restoring `backup` over the live database would be wrong (pure)."""
    if live_error is not None:
        return [
            f"the live database cannot be read ({live_error}), so what the county has"
            " acknowledged is unknown: check this device's acknowledged seq on the county"
            f" console (it must be at most {backup.head_seq}), then use --force"
        ]
    if live is None:
        return []
    refusals = []
    if live.device_id != backup.device_id and live.head_seq > 0:
        refusals.append(
            f"the backup is of device {backup.device_id}, but this device is {live.device_id}"
            f" with {live.head_seq} records"
        )
    elif backup.head_seq < live.synced_seq:
        refusals.append(
            f"the backup's ledger ends at seq {backup.head_seq}, but the county has already"
            f" acknowledged seq {live.synced_seq}: the ledger would go backwards and the county"
            " would see different records under the same seq"
        )
    elif backup.head_seq < live.head_seq:
        refusals.append(
            f"the backup's ledger ends at seq {backup.head_seq}, but the live ledger has"
            f" {live.head_seq} records: seq {backup.head_seq + 1}..{live.head_seq} would be lost"
        )
    return refusals


def restore(data_dir: Path, archive: Path, *, force: bool = False, now: datetime) -> RestoreResult:
    """Replace the device's database (and key) with a verified backup; the replaced files
    go to `DATA_DIR/replaced-<time>/`. Stop the terminal first."""
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    try:
        unpacked = read_backup(archive, work)
        live_db = data_dir / DATABASE_FILE
        live, live_error = None, None
        if live_db.exists():
            try:
                live = database_facts(live_db)
            except (sqlite3.Error, MaintenanceError) as error:
                live_error = str(error)
        if not unpacked.key_included:
            _require_live_key(data_dir, unpacked.facts.public_key)
        refusals = restore_refusals(unpacked.facts, live, live_error)
        if refusals and not force:
            raise MaintenanceError(
                "restore refused, nothing changed: " + "; ".join(refusals) + " (--force overrides)"
            )
        replaced = _swap(data_dir, work, unpacked.key_included, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    restored = _verify_restored(data_dir)
    return RestoreResult(
        unpacked.facts.device_id, unpacked.facts.head_seq, restored, replaced, refusals
    )


def _require_live_key(data_dir: Path, public_key: str) -> None:
    key = data_dir / KEY_FILE
    if not key.exists():
        raise MaintenanceError(
            "this backup holds no device key and there is none in the data directory:"
            " restore a full backup (.tar.gz) instead"
        )
    _require_key_of(
        key.read_bytes(), public_key, f"the device key in {data_dir} (the backup holds none)"
    )


_LIVE_FILES = (
    DATABASE_FILE,
    f"{DATABASE_FILE}-wal",
    f"{DATABASE_FILE}-shm",
    f"{DATABASE_FILE}-journal",
)


def _swap(data_dir: Path, work: Path, with_key: bool, now: datetime) -> Path | None:
    moving = [name for name in _LIVE_FILES if (data_dir / name).exists()]
    if with_key and (data_dir / KEY_FILE).exists():
        moving.append(KEY_FILE)
    aside = None
    if moving:
        aside = data_dir / f"replaced-{now:%Y%m%d-%H%M%S}"
        suffix = 1
        while aside.exists():
            suffix += 1
            aside = data_dir / f"replaced-{now:%Y%m%d-%H%M%S}-{suffix}"
        aside.mkdir(mode=0o700)
        _give_to_owner(aside, data_dir)
        for name in moving:
            os.replace(data_dir / name, aside / name)
    placed = [DATABASE_FILE, *([KEY_FILE] if with_key else [])]
    for name in placed:
        os.chmod(work / name, 0o600)
        _give_to_owner(work / name, data_dir)
        os.replace(work / name, data_dir / name)
    _fsync_dir(data_dir)
    return aside


def _give_to_owner(path: Path, data_dir: Path) -> None:
    """Root restoring for the service user: the files must stay the service's own."""
    owner = data_dir.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        os.chown(path, owner.st_uid, owner.st_gid)


def _verify_restored(data_dir: Path) -> int:
    from edge.adapters.identity import IdentityError
    from edge.services import load_identity, verify_ledger

    store = SqliteDeviceStore.open(data_dir)
    try:
        load_identity(store, data_dir)
        result = verify_ledger(store)
    except (IdentityError, StoreError) as error:
        raise MaintenanceError(f"restored, but the device cannot sign: {error}") from None
    finally:
        store.close()
    if not result.ok:
        raise MaintenanceError(f"restored, but the ledger does not verify: {result.reason}")
    return result.count


# ---- the doctor's report ---------------------------------------------------------------------

MARKS = {OK: "ok", WARNING: "warning", ERROR: "ERROR", SKIPPED: "skipped"}


def doctor_failed(checks: list[Check]) -> bool:
    return any(check.status == ERROR for check in checks)


def report_lines(checks: list[Check]) -> list[str]:
    """The doctor's findings for a person: one line each, the advice under a problem."""
    lines = []
    for check in checks:
        finding = check.finding
        lines.append(
            f"{MARKS[finding.status]:<8} {check.label.zh} {check.label.en}: {finding.message}"
        )
        if finding.advice and finding.status in (WARNING, ERROR):
            lines.append(f"{'':<8} 处理 what to do: {finding.advice}")
    errors = sum(check.status == ERROR for check in checks)
    warnings = sum(check.status == WARNING for check in checks)
    if errors or warnings:
        lines.append(
            f"{errors} 个错误，{warnings} 个警告 / {errors} error(s), {warnings} warning(s)"
        )
    else:
        lines.append("一切正常 / all checks passed")
    return lines
