"""OpenAI Images (providers.md §5): `client` talks to the API, `request` writes the body, `prices`
is the default US-dollar price table. The per-model rules that parse-time validation shares live in
`wfbatch.providers.openai_rules` (`validate_openai_entry`), importable without httpx."""

from wfbatch.providers.openai.client import OpenAIConfigError, OpenAIProvider

__all__ = ["OpenAIConfigError", "OpenAIProvider"]
