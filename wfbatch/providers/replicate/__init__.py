"""Replicate's predictions API (providers.md §3): `client` talks to it, `request` writes the
create body and matches a listed prediction against it, `prices` is the default US-dollar table.
`rules` and `validation` are the parse-time checks, `settings` its section: importable without httpx.

Nothing is imported here: the registry reaches the settings without loading the client."""
