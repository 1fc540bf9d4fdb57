"""The county hub. Read it from the inside out:

* `model.py`: the rows and refusals; `ports.py`: `HubStore`, what the use cases need
  from storage;
* `ingest.py`, `reconcile.py`: pure decisions about an upload and a recomputation;
* `services/`: the use cases, each given a store and `now`;
* `adapters/`: the SQLite and PostgreSQL stores and the county key file;
  `bootstrap.py`: which store a hub uses, and making a new hub;
* `app.py` (the Flask app factory), `api.py` (the device API), `console.py` (the web
  console), `runtime.py` (what their views share), `server.py` (serving them).
"""
