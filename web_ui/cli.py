"""`clinic` commands of the terminal UI; `edge.cli` registers every command listed here."""

import click

COMMANDS: list[click.Command] = []
