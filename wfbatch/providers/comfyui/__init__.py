"""ComfyUI, self-hosted (providers.md §7): `client` talks to one or several servers, `graph` fills
the workflow per job, `progress` follows its WebSocket, `settings` is its section.

Nothing is imported here: the registry reaches the settings without loading the client."""
