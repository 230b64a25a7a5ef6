"""Stability AI v2beta Stable Image (providers.md §4): `client` talks to the API, `request` writes
the form, `prices` is the default credit table. `rules` and `validation` are the parse-time checks,
`settings` its section: importable without httpx.

Nothing is imported here: the registry reaches the settings without loading the client."""
