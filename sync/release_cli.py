"""`clinic release …`: `build` makes a release directory for the county to publish
(`sync.release_build`); on a terminal, `status`, `verify`, `fetch` and `apply`
(docs/releases.md, "On the device": `apply` is what clinic-update.service runs as root; the others
run as the service user, as `sudo clinic release …` does through /usr/local/bin/clinic).
`edge.console` registers the group."""

import json
import sys
from pathlib import Path

import click

from edge.cli_options import clock, data_dir_option, json_option, now, print_json
from sync.releases import ARCHES

COMMANDS: list[click.Command] = []


@click.group()
def release() -> None:
    """Software releases: build one for the county to publish (docs/releases.md); on a
    terminal, download, check, install, switch, roll back (docs/releases.md, "On the device")."""


COMMANDS.append(release)


@release.command("build")
@click.option("--arch", type=click.Choice(ARCHES), required=True, help="The terminal's machine.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="A new or empty folder for the release.")  # fmt: skip
@click.option("--python", "python", default="cp311", show_default=True,
              help="The terminal's Python (Debian bookworm: cp311).")  # fmt: skip
@click.option("--source", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=".", show_default=True, help="The checkout to build.")  # fmt: skip
@click.option("--lock", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The hashed lock (default: requirements/runtime.txt).")  # fmt: skip
@click.option("--find-links", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Also look for the locked files in this folder (pip --find-links).")  # fmt: skip
@click.option("--no-index", is_flag=True, help="Only --find-links folders, no package index.")
def release_build(arch: str, out: Path, python: str, source: Path, lock: Path | None,
                  find_links: tuple[Path, ...], no_index: bool) -> None:  # fmt: skip
    """Build the project's wheel from the checkout and fetch every locked file for ARCH.

    The folder then holds release.json (unsigned: `clinic hub release publish` signs it)
    and the files it names, each with its size and SHA-256. Refuses a non-empty folder.
    """
    from sync.cli import plain_errors
    from sync.release_build import build_release

    with plain_errors():
        document = build_release(
            source.resolve(), out, arch=arch, python=python, published_at=now(), lock=lock,
            find_links=find_links, no_index=no_index,
        )  # fmt: skip
    manifest = document["manifest"]
    click.echo(f"{out}: release {manifest['version']} for {arch}/{python},"
               f" {len(manifest['files'])} files")  # fmt: skip


OPT_DIR_OPTION = click.option(
    "--opt-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CLINIC_OPT_DIR",
    default=Path("/opt/clinic"),
    show_default=True,
    help="Where the releases are installed (venv, previous, releases/, state/).",
)
TRUST_FILE_OPTION = click.option(
    "--trust-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/clinic/county-release.pub"),
    show_default=True,
    help="The county key root recorded for releases (clinic release trust).",
)


@release.command("status")
@data_dir_option
@OPT_DIR_OPTION
@json_option
def status_command(data_dir: Path, opt_dir: Path, as_json: bool) -> None:
    """The running version, the latest release's state here, a pending switch, the
    versions refused or rolled back."""
    from sync.agent import releases
    from sync.release_apply import LAST_SWITCH, SWITCH, pending_ready

    folder = releases.releases_dir(data_dir)

    def record(name: str | Path) -> dict | None:
        try:
            return json.loads((folder / name).read_text())
        except (OSError, ValueError):
            return None

    failed = {}
    for version in sorted(releases.failed_versions(data_dir)):
        failed[version] = record(f"{releases.FAILED}/{version}")
    value: dict = {
        "version": releases.installed_version(),
        "arch": releases.machine_arch(),
        "python": releases.python_tag(),
        "release": releases.read_state(data_dir),
        "ready": pending_ready(data_dir),
        "pending_switch": record(opt_dir / "state" / SWITCH),
        "last_switch": record(LAST_SWITCH),
        "failed": failed,
    }
    if as_json:
        print_json(value)
        return
    click.echo(f"运行版本 / running: {value['version']} ({value['arch']}, {value['python']})")
    latest = value["release"]
    if latest:
        why = f" — {latest['message_zh']} / {latest['detail']}" if latest.get("detail") else ""
        click.echo(f"latest release {latest['version']}: {latest['state']} ({latest['at']}){why}")
    for version in value["ready"]:
        click.echo(f"ready to install / 待安装: {version}")
    if value["pending_switch"]:
        click.echo(f"switch to {value['pending_switch']['to']} not yet confirmed / 切换未确认")
    for version, info in failed.items():
        click.echo(f"never again / 不再安装: {version}: {(info or {}).get('reason')}")


@release.command("verify")
@data_dir_option
@TRUST_FILE_OPTION
@click.argument("version")
@json_option
def verify_command(data_dir: Path, trust_file: Path, version: str, as_json: bool) -> None:
    """Check a downloaded release (DATA_DIR/releases/VERSION) as the applier would:
    signature, files, newer than the running version, knows the database's schema.
    Changes nothing; exit 1 when it would be refused."""
    from sync.agent.releases import releases_dir
    from sync.protocol import SyncError
    from sync.release_apply import ApplyError, Settings, as_owner, check_download, database_state

    settings = Settings(data_dir=data_dir, trust_file=trust_file)
    try:
        with as_owner(data_dir):
            facts = database_state(data_dir)
            folder = releases_dir(data_dir) / version
            found = check_download(settings, version, folder, facts, now())
    except (SyncError, ApplyError, OSError) as error:
        zh = getattr(error, "message_zh", "")
        if as_json:
            print_json({"ok": False, "version": version, "error": str(error)})
        else:
            click.echo(f"{version}: 拒绝 / refused: {zh} {error}".strip(), err=True)
        sys.exit(1)
    if as_json:
        print_json({"ok": True, "version": found.version, "files": len(found.files)})
    else:
        click.echo(f"{found.version}: 可以安装 / installable ({len(found.files)} files)")


@release.command("trust")
@data_dir_option
@TRUST_FILE_OPTION
@click.option("--fingerprint", help="The county key's fingerprint as the county gave it"
              " (XXXX-XXXX-XXXX-XXXX): it must be the pinned key's.")  # fmt: skip
@click.option("--just-enrolled", is_flag=True, hidden=True,
              help="/usr/local/bin/clinic, right after the enrollment it ran.")  # fmt: skip
def trust_command(
    data_dir: Path, trust_file: Path, fingerprint: str | None, just_enrolled: bool
) -> None:
    """As root: record the county key pinned at enrollment as the key every software
    release must be signed with (/etc/clinic/county-release.pub, root's alone).
    /usr/local/bin/clinic runs it after `clinic enroll`; otherwise give --fingerprint."""
    import os

    from sync.protocol import SyncError, key_fingerprint
    from sync.release_apply import ApplyError, trust

    if os.geteuid() != 0:
        click.echo("clinic release trust: 需要 root 运行 / must run as root", err=True)
        sys.exit(1)
    if fingerprint is None and not just_enrolled:
        click.echo(
            "clinic release trust: 请用 --fingerprint 给出县里提供的公钥指纹"
            " / give --fingerprint as the county gave it",
            err=True,
        )
        sys.exit(2)
    try:
        key = trust(data_dir, trust_file, fingerprint)
    except (SyncError, ApplyError, OSError) as error:
        zh = getattr(error, "message_zh", "")
        click.echo(f"clinic release trust: {zh} {error}".strip(), err=True)
        sys.exit(1)
    click.echo(f"软件版本签名公钥已记录 / release signing key recorded: {key_fingerprint(key)}")


@release.command("fetch")
@data_dir_option
@json_option
def fetch_command(data_dir: Path, as_json: bool) -> None:
    """Run the agent's release download now (as the scheduler does every 30 minutes)."""
    from edge import bootstrap, services
    from sync.agent import releases, state
    from sync.agent.jobs import client_for
    from sync.cli import plain_errors
    from sync.protocol import SyncError

    with plain_errors():
        store = bootstrap.open_store(data_dir)
        try:
            enrollment = state.enrollment(store)
            if enrollment is None:
                raise SyncError("NOT_ENROLLED")
            identity = services.load_identity(store, data_dir)
            client = client_for(enrollment, identity, None)
            result = releases.pull_release(
                store,
                client,
                data_dir,
                enrollment.county_public_key,
                now(),
            )
        finally:
            store.close()
    if as_json:
        print_json({"release": result})
    elif result is None:
        click.echo("没有更新的版本 / no newer release offered")
    else:
        click.echo(f"{result['version']}: {result['state']} {result.get('detail') or ''}".strip())


@release.command("apply")
@data_dir_option
@OPT_DIR_OPTION
@TRUST_FILE_OPTION
@click.option("--systemctl", "systemctl_", envvar="CLINIC_SYSTEMCTL", default="systemctl",
              show_default=True, help="The systemctl program (a stand-in in tests).")  # fmt: skip
@click.option("--service", envvar="CLINIC_SERVICE", default="clinic-terminal.service",
              show_default=True, help="The terminal's unit.")  # fmt: skip
@click.option("--health-url", envvar="CLINIC_HEALTH_URL",
              default="http://127.0.0.1:8080/signin", show_default=True)  # fmt: skip
@click.option("--install-script", type=click.Path(dir_okay=False, path_type=Path),
              envvar="CLINIC_INSTALL_RELEASE",
              help="Default: OPT_DIR/bin/clinic-install-release.")  # fmt: skip
@click.option("--gate-wait", type=click.FloatRange(0), default=30 * 60.0, show_default=True,
              help="Seconds to wait for an empty outbox and no visit being built.")  # fmt: skip
@click.option("--health-wait", type=click.FloatRange(0), default=180.0, show_default=True,
              help="Seconds the new release has to answer after the switch.")  # fmt: skip
@json_option
def apply_command(
    data_dir: Path,
    opt_dir: Path,
    systemctl_: str,
    service: str,
    health_url: str,
    install_script: Path | None,
    gate_wait: float,
    health_wait: float,
    trust_file: Path,
    as_json: bool,
) -> None:
    """Install the downloaded release, switch to it when the terminal is idle, and switch
    back by itself when the terminal does not answer (root; clinic-update.service). Also
    finishes a switch a power cut interrupted. Exit 75: busy, try again later."""
    from sync.release_apply import Settings, apply

    settings = Settings(
        data_dir=data_dir,
        opt_dir=opt_dir,
        systemctl=systemctl_,
        unit=service,
        health_url=health_url,
        install_script=install_script,
        gate_wait_s=gate_wait,
        health_wait_s=health_wait,
        trust_file=trust_file,
    )
    outcome = apply(settings, clock(), echo=None if as_json else click.echo)
    if as_json:
        print_json(
            {"code": outcome.code, "state": outcome.state, "version": outcome.version,
             "lines": outcome.lines}
        )  # fmt: skip
    sys.exit(outcome.code)
