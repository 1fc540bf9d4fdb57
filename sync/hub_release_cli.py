"""`clinic hub release …`: software releases at the county hub (`docs/releases.md`).
`edge.console` adds this group to `clinic hub`."""

from pathlib import Path

import click

from edge.cli_options import json_option, print_json
from edge.cli_options import now as _now
from sync.cli import hub_dir_option, open_hub, plain_errors


@click.group("release")
def release() -> None:
    """Software releases: publish one for the fleet, list, withdraw."""


def _row(published) -> dict:
    manifest = published.manifest
    return {
        "version": published.version,
        "arch": published.arch,
        "python": published.python,
        "published_at": published.published_at,
        "withdrawn_at": published.withdrawn_at,
        "files": len(manifest["files"]),
        "bytes": sum(f["size"] for f in manifest["files"]),
    }


@release.command("publish")
@hub_dir_option
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@json_option
def release_publish(hub_dir: Path, folder: Path, as_json: bool) -> None:
    """Check a release directory (`clinic release build`), sign it with the county key
    and offer it to devices of its architecture."""
    from sync.hub.adapters.county_key import load_county_key
    from sync.hub.services import releases

    with open_hub(hub_dir) as store, plain_errors():
        published = releases.publish(store, load_county_key(hub_dir), hub_dir, folder, _now())
    if as_json:
        print_json(_row(published))
        return
    click.echo(
        f"软件版本 {published.version}（{published.arch}）已签名发布 /"
        f" release {published.version} for {published.arch} published and signed"
    )


@release.command("list")
@hub_dir_option
@json_option
def release_list(hub_dir: Path, as_json: bool) -> None:
    """Every published release, oldest first."""
    with open_hub(hub_dir) as store:
        rows = [_row(r) for r in store.releases()]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("尚未发布软件版本 / no release published yet", err=True)
    for row in rows:
        withdrawn = f"  withdrawn {row['withdrawn_at']}" if row["withdrawn_at"] else ""
        click.echo(
            f"{row['version']}  {row['arch']}  {row['python']}  {row['files']} files"
            f"  {row['bytes']} bytes  published {row['published_at']}{withdrawn}"
        )


@release.command("withdraw")
@hub_dir_option
@click.argument("version")
@click.option("--arch", required=True, type=click.Choice(["aarch64", "x86_64"]))
def release_withdraw(hub_dir: Path, version: str, arch: str) -> None:
    """Offer this release no more; devices that have it keep it."""
    from sync.hub.services import releases

    with open_hub(hub_dir) as store, plain_errors():
        releases.withdraw(store, version, arch, _now())
    click.echo(f"软件版本 {version}（{arch}）已撤回 / release {version} for {arch} withdrawn")
