"""The pure core: settlement arithmetic, its model, money, the signed ledger's records,
documents in and out, report layouts. No I/O, no clock: callers pass `now`. Imports
nothing of the project outside `edge.domain` (enforced by `make lint`)."""
