"""The doctor's checks: each a pure function from what was gathered to a `Finding`.

Nothing here reads a file, a database, the clock or a device: `probes` gathers the facts
about this machine, and the card reader and printer facts come from the probes the
command line hands to `run_doctor` (`edge.maintenance_cli`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import NamedTuple, Protocol

from edge.adapters.identity import KEY_FILE
from edge.adapters.sqlite_store import DATABASE_FILE
from edge.domain.ledger import Verification
from edge.maintenance.findings import ERROR, OK, SKIPPED, WARNING, Finding, Text, merge

SERVICE_UNIT = "clinic-terminal.service"
DISK_WARN_MB = 500
DISK_ERROR_MB = 100
DEFAULT_MAX_SYNC_HOURS = 24
VOLATILE_FILESYSTEMS = {"tmpfs", "ramfs"}
OVERLAY_FILESYSTEMS = {"overlay", "aufs"}


class DriverError(Protocol):
    """What a driver's error says: the drivers' `CardError` and `PrinterError` are these."""

    code: str
    message_zh: str
    message_en: str
    detail: str


class ReaderFacts(NamedTuple):
    """What the card reader probe found: the error opening or asking it gave, or whether
    a card is in it."""

    error: DriverError | None = None
    card_present: bool | None = None


class PrinterFacts(NamedTuple):
    """What the printer probe found: the error opening or asking it gave, or its answer:
    what stops it printing (`problem`, as the driver's error for it) and low paper."""

    error: DriverError | None = None
    problem: DriverError | None = None
    paper_near_end: bool = False


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.0f} MB"


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


def overlayroot_setting(cmdline: str) -> str | None:
    """The value of the last `overlayroot=` on a kernel command line; None when absent."""
    values = [
        word[len("overlayroot=") :] for word in cmdline.split() if word.startswith("overlayroot=")
    ]
    return values[-1] if values else None


def overlayroot_on(setting: str | None) -> bool:
    """Whether this overlayroot setting turns the read-only root on."""
    return setting is not None and setting.strip("'\"") not in ("", "disabled")


def overlayroot_keeps_data(setting: str | None, *, own_mount: bool) -> bool:
    """Whether the data directory's writes still reach the disk under this overlayroot
    setting. Debian's overlayroot (what raspi-config turns on) puts every other mount in
    RAM too unless told `recurse=0`; the root itself always is."""
    if not overlayroot_on(setting):
        return True
    assert setting is not None
    _, _, options = setting.partition(":")
    recurse = dict(option.partition("=")[::2] for option in options.split(",") if option)
    return own_mount and recurse.get("recurse", "1") == "0"


_OVERLAY_ADVICE = Text(
    "先同步（clinic sync once），再运行 sudo clinic-overlay enable"
    "（写入 overlayroot=tmpfs:recurse=0）并重启；"
    "/var/lib/clinic 必须是单独的数据分区（见部署说明：只读根分区）",
    "sync first (clinic sync once), then sudo clinic-overlay enable (it writes"
    " overlayroot=tmpfs:recurse=0) and reboot; /var/lib/clinic must be its own data partition"
    " (README: read-only root)",
)


def check_storage(
    *,
    exists: bool,
    fs_type: str | None,
    mode: int | None,
    owner: str,
    foreign: list[str],
    own_mount: bool = True,
    overlayroot: Sequence[tuple[str, str]] = (),
) -> Finding:
    """The data directory: its writes reach the disk (not a RAM or overlay filesystem, and
    no read-only root overlay configured that would put it in RAM at the next boot),
    private (0700), every file its owner's. `own_mount`: the data directory is on a mount
    of its own, not on the root filesystem; `overlayroot`: (where, value) of each
    `overlayroot=` found on the running and the next boot's kernel command line."""
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
        # With overlayroot the writable layer is RAM; any overlay is treated as one.
        problems.append(
            Finding(
                ERROR,
                Text(
                    f"数据在叠加文件系统（{fs_type}）上：写入只进内存，重启即丢失",
                    f"the data is on {fs_type}: its writes go to RAM and are lost at the next"
                    " reboot",
                ),
                _OVERLAY_ADVICE,
            )
        )
    else:
        unsafe = [
            (where, value)
            for where, value in overlayroot
            if not overlayroot_keeps_data(value, own_mount=own_mount)
        ]
        if unsafe:
            said = "; ".join(f"{where}: overlayroot={value}" for where, value in unsafe)
            where_zh = "数据目录不是单独的分区" if not own_mount else "缺少 recurse=0"
            where_en = (
                "the data directory is not its own mount"
                if not own_mount
                else "recurse=0 is missing"
            )
            problems.append(
                Finding(
                    ERROR,
                    Text(
                        f"已配置只读根分区（{said}），{where_zh}：下次启动后数据的写入将只进内存",
                        f"the read-only root overlay is configured ({said}) and {where_en}:"
                        " from the next boot on the data's writes would go to RAM",
                    ),
                    _OVERLAY_ADVICE,
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


def check_reader(url: str | None, facts: ReaderFacts | None) -> Finding:
    """`facts` is what the reader probe found at `url`; no `url`: no reader given."""
    if not url or facts is None:
        return Finding(SKIPPED, Text("未指定读卡器", "no reader given"))
    error = facts.error
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
        return Finding(ERROR, _driver_said(url, error, detail), advice)
    extra = Text("", "")
    if facts.card_present is not None:
        extra = (
            Text("，有卡", ", a card is in it")
            if facts.card_present
            else Text("，无卡", ", no card in it")
        )
    return Finding(OK, Text(f"{url} 已连接{extra.zh}", f"{url} is connected{extra.en}"))


_PRINTER_UNREACHABLE = Text(
    "检查电源、连线、纸和纸仓盖；串口设备见 /dev/clinic-printer（部署说明 udev）",
    "check power, cable, paper and cover; the port is /dev/clinic-printer (README: udev)",
)
_PRINTER_NEEDS_A_HAND = Text(
    "装纸、合上纸仓盖、重启打印机", "load paper, close the cover, restart the printer"
)


def check_printer(url: str | None, facts: PrinterFacts | None) -> Finding:
    """`facts` is what the printer probe found at `url`; no `url`: none configured."""
    if not url or facts is None:
        return Finding(
            SKIPPED,
            Text("未配置打印机", "no printer configured"),
            Text(
                "在 /etc/clinic/clinic.env 设置 CLINIC_PRINTER，或用 --printer",
                "set CLINIC_PRINTER in /etc/clinic/clinic.env, or pass --printer",
            ),
        )
    fault = facts.error or facts.problem
    if fault is not None:
        advice = _PRINTER_UNREACHABLE if facts.error is not None else _PRINTER_NEEDS_A_HAND
        return Finding(ERROR, _driver_said(url, fault), advice)
    if facts.paper_near_end:
        return Finding(
            WARNING,
            Text(f"{url}：纸将用完", f"{url}: paper is running low"),
            Text("准备一卷新纸", "have a new roll ready"),
        )
    return Finding(OK, Text(f"{url} 就绪", f"{url} is ready"))


def _driver_said(url: str, error: DriverError, detail: str = "") -> Text:
    return Text(
        f"{url}：{error.message_zh}{detail}", f"{url}: {error.code} {error.message_en}{detail}"
    )


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
    saved_in_ram: str | None = None,
) -> Finding:
    """A clock behind the last record or before this software was built is wrong.
    `saved_in_ram`: where fake-hwclock saves the time when that is lost at reboot (the
    read-only root, no RTC), so that the clock would restart at an old time."""
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
    if saved_in_ram is not None:
        problems.append(
            Finding(
                WARNING,
                Text(
                    f"fake-hwclock 把时间保存在 {saved_in_ram}，只读根分区下它在内存中："
                    "重启后时钟会回到开启只读根分区之前的时间",
                    f"fake-hwclock saves the time to {saved_in_ram}, in RAM under the read-only"
                    " root: after a reboot the clock restarts at the time saved before the"
                    " overlay was turned on",
                ),
                Text(
                    "再运行一次 install.sh（它把保存位置设在数据分区：/etc/default/fake-hwclock），"
                    "或加装 DS3231 时钟模块（部署说明：时钟）",
                    "run install.sh again (it keeps the saved time on the data partition:"
                    " /etc/default/fake-hwclock), or fit a DS3231 RTC (README: The clock)",
                ),
            )
        )
    return merge(
        problems, Finding(OK, Text(f"{now:%Y-%m-%d %H:%M %Z}", f"{now:%Y-%m-%d %H:%M %Z}"))
    )


def check_sync(
    now: datetime,
    *,
    last_sync_at: datetime | None,
    max_hours: int | None,
    waiting: int,
    photos_set_aside: Sequence[tuple[str, str | None]] = (),
) -> Finding:
    """`photos_set_aside`: (sha256, code) of request photos the agent gave up on (gone or
    damaged here, or refused by the hub): no sync sends them, so they are always said."""
    finding = _sync_age(now, last_sync_at=last_sync_at, max_hours=max_hours, waiting=waiting)
    if not photos_set_aside:
        return finding
    named = "; ".join(f"{sha[:12]} {code or '?'}" for sha, code in photos_set_aside[:5])
    more = len(photos_set_aside) - 5
    named += f" … (+{more})" if more > 0 else ""
    count = len(photos_set_aside)
    message = Text(
        f"{finding.message.zh}；{count} 张申请照片未能上传：{named}",
        f"{finding.message.en}; {count} request photos could not be uploaded: {named}",
    )
    advice = Text(
        "clinic sync status 列出原因；请重新拍照并补交申请（补充材料），或联系县医保局",
        "clinic sync status says why; take the photo again and send it with a follow-up"
        " request, or call the county",
    )
    return Finding(WARNING if finding.status == OK else finding.status, message, advice)


def _sync_age(
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
