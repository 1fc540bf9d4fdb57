"""`clinic` commands of the county hub and the sync agent; `edge.cli` registers them."""

import click

COMMANDS: list[click.Command] = []
