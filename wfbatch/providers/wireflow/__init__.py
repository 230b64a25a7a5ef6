"""Wireflow (providers.md §1): `client` talks to the API, `parse` reads its answers, `bodies` writes
what is sent, `settings` is its section (plans, label).

Nothing is imported here: the registry reaches the settings without loading the client."""
