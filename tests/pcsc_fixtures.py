"""A private pcscd with the vpcd virtual reader, for tests that go through real PC/SC.

pcscd 1.9 always puts its socket at /run/pcscd/pcscd.comm (PCSCLITE_CSOCK_NAME moves only
the client's side). So the daemon runs in its own mount namespace (`unshare --mount`), in
which a temporary folder is bind-mounted over /run/pcscd: its socket and pid file land in
that folder, never clashing with a system pcscd, and the client library finds it through
PCSCLITE_CSOCK_NAME. `pcscd --config` reads a reader.conf.d of our own that loads vpcd on
a free port P (vpcd opens slots on P and P+1), so nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")


@dataclass(frozen=True)
class PcscDaemon:
    socket_path: Path
    vpcd_port: int  # the first slot's; the second is vpcd_port + 1
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return {"PCSCLITE_CSOCK_NAME": str(self.socket_path)}

    def reader_name(self, slot: int = 0) -> str:
        return f"Virtual PCD 00 {slot:02d}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port_pair() -> int:
    """A port P such that P and P+1 are both free on this machine now."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two free consecutive ports")


@contextmanager
def private_pcscd(workdir: Path) -> Iterator[PcscDaemon]:
    if not VPCD_DRIVER.exists():
        raise RuntimeError(f"{VPCD_DRIVER} is missing: run 'make system-deps' (vsmartcard-vpcd)")
    port = free_port_pair()
    conf, run = workdir / "reader.conf.d", workdir / "run"
    conf.mkdir(parents=True)
    run.mkdir()
    (conf / "vpcd").write_text(
        f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{port:04X}\n'
        f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n"
    )
    namespace = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace.append("--map-root-user")
    script = (
        'mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd'
        ' && exec pcscd --foreground --config "$2"'
    )
    log = workdir / "pcscd.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [*namespace, "sh", "-c", script, "sh", str(run), str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    info = PcscDaemon(run / "pcscd.comm", port, log)
    try:
        _wait_until_listening(daemon, info)
        yield info
    finally:
        daemon.terminate()
        try:
            daemon.wait(5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)


def _wait_until_listening(daemon: subprocess.Popen, info: PcscDaemon) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"pcscd exited with {daemon.returncode}:\n{info.log_text()}")
        if info.socket_path.exists() and _port_listening(info.vpcd_port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"pcscd did not come up in 10 s:\n{info.log_text()}")


def _port_listening(port: int) -> bool:
    """Whether something listens on TCP `port`, read from /proc (connecting would insert a
    card, and binding to probe could race with vpcd's own bind)."""
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A":
                return True
    return False
