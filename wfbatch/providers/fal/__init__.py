"""fal.ai's queue API (providers.md §2): `client` talks to it, `request` writes the model input,
`prices` is the default US-dollar price table, `settings` its section.

Nothing is imported here: the registry reaches the settings without loading the client."""
