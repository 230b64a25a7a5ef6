"""OpenAI Images (providers.md §5): `client` talks to the API, `request` writes the body, `prices`
is the default US-dollar price table, `batch` the Batch API (§6). `rules` and `validation` are the
parse-time checks, `settings` its section: all importable without httpx.

Nothing is imported here: the registry reaches the settings without loading the client."""
