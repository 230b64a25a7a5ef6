"""fal.ai's queue API (providers.md §2): `client` talks to it, `request` writes the model input,
`prices` is the default US-dollar price table."""

from wfbatch.providers.fal.client import FalConfigError, FalProvider

__all__ = ["FalConfigError", "FalProvider"]
