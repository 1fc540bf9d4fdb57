"""The device's adapters, named after their technology: the SQLite store (the one owner of
`clinic.db`'s schema), key files, catalog files, password hashing."""
