"""What the county hub keeps outside memory.

* `sql.py`: the queries both stores run (`SqlHubStore`), with their differences as data
  (`Dialect`);
* `sqlite.py` (`SqliteHubStore`, `hub.db` in the data directory) and its schema,
  `sqlite_migrations.py`;
* `postgresql.py` (`PgHubStore`, psycopg 3) and its schema, `postgresql_migrations.py`;
* `county_key.py`: the county's signing key file.

Which store a hub uses is decided in `sync.hub.bootstrap`.
"""
