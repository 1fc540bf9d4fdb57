"""The county hub's use cases, one module for each thing they are about:

* `county.py`: the county, provisioning device slots, revoking devices;
* `enrollment.py`: enrolling a device, authenticating its signed requests;
* `uploads.py`: uploaded ledger records (ingest), heartbeats, exports;
* `publishing.py`: signed catalog, policy and roster versions, and the updates devices get;
* `reconciliation.py`: the county's recomputation of uploads, and what differs;
* `reports.py`: fleet status and the CSV reports.

Each gathers inputs from a `HubStore` (`sync.hub.ports`), calls pure code
(`sync.protocol`, `sync.updates`, `sync.hub.ingest`, `sync.hub.reconcile`) and applies
the outputs in one unit of work. The store and `now` are always arguments: none of them
opens a database or reads the clock.
"""
