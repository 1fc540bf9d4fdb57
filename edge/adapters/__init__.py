"""The device's adapters, named after their technology: the SQLite store (the one owner of
`clinic.db`'s schema), key files, catalog files; and, shared with the county hub's
console, password hashing, gettext message catalogs and web security headers."""
