"""`clinic` commands for on-site maintenance (doctor, backup, restore); `edge.cli` registers
every command listed here."""

import click

COMMANDS: list[click.Command] = []
