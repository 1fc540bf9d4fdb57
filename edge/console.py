"""The `clinic` console script: edge's commands (`edge.cli`) and those of the packages
built on edge, put together in one place that imports them all, so that no package's
command module depends on being imported after another's."""

from drivers.cli import card, receipt
from edge.cli import main
from edge.maintenance_cli import COMMANDS as MAINTENANCE_COMMANDS
from edge.premium_cli import COMMANDS as PREMIUM_COMMANDS
from edge.request_cli import COMMANDS as REQUEST_COMMANDS
from sync.cli import COMMANDS as SYNC_COMMANDS
from sync.cli import hub
from sync.hub_release_cli import release as hub_release
from sync.hub_requests_cli import premiums as hub_premiums
from sync.hub_requests_cli import requests as hub_requests
from sync.release_cli import COMMANDS as RELEASE_COMMANDS
from sync.statement_cli import statement_command as statement
from web_ui.cli import COMMANDS as UI_COMMANDS

for command in (
    card,
    receipt,
    *MAINTENANCE_COMMANDS,
    *REQUEST_COMMANDS,
    *PREMIUM_COMMANDS,
    *UI_COMMANDS,
    *SYNC_COMMANDS,
    *RELEASE_COMMANDS,
    statement,
):
    main.add_command(command)
hub.add_command(hub_release)
hub.add_command(hub_requests)
hub.add_command(hub_premiums)

__all__ = ["main"]

if __name__ == "__main__":
    main()
