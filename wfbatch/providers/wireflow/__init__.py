"""Wireflow (providers.md §1): `client` talks to the API, `parse` reads its answers, `bodies` writes
what is sent."""

from wfbatch.providers.wireflow.client import WireflowConfigError, WireflowProvider

__all__ = ["WireflowConfigError", "WireflowProvider"]
