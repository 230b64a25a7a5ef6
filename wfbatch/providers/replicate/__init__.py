"""Replicate's predictions API (providers.md §3): `client` talks to it, `request` writes the
create body and matches a listed prediction against it, `prices` is the default US-dollar table.
The size rules that parse-time validation shares live in `wfbatch.providers.replicate_rules`."""

from wfbatch.providers.replicate.client import ReplicateConfigError, ReplicateProvider

__all__ = ["ReplicateConfigError", "ReplicateProvider"]
