"""The console's audit log: `console-audit.log` in the hub's data directory, one JSON
line per audited act (who, what, which request, when), appended and synced, readable by
the hub's owner only (0600). What is audited there is never the data itself: opening an
ID number writes who opened which request's number, not the number."""

import json
import os
from pathlib import Path

AUDIT_FILE = "console-audit.log"


def append_audit(data_dir: Path, entry: dict) -> None:
    """Add one line; the file is made 0600 on first use and only ever appended to."""
    line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
    fd = os.open(Path(data_dir) / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_audit(data_dir: Path) -> list[dict]:
    """Every audited act so far, oldest first (none when nothing was audited yet)."""
    try:
        text = (Path(data_dir) / AUDIT_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
