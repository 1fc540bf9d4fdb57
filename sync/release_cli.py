"""`clinic release build`: make a release directory for the county to publish
(`sync.release_build`). `edge.console` registers the group."""

from pathlib import Path

import click

from edge.cli_options import now
from sync.releases import ARCHES

COMMANDS: list[click.Command] = []


@click.group()
def release() -> None:
    """Software releases: build one for the county to publish (docs/releases.md)."""


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
