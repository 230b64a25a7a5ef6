"""Stability AI v2beta Stable Image (providers.md §4): `client` talks to the API, `request` writes
the form, `prices` is the default credit table. Parse-time rules live in
`wfbatch.providers.stability_rules`, importable without httpx."""

from wfbatch.providers.stability.client import StabilityConfigError, StabilityProvider

__all__ = ["StabilityConfigError", "StabilityProvider"]
