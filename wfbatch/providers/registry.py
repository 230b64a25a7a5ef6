"""Build a provider by its config name."""

from __future__ import annotations

from wfbatch.providers.base import Provider, RequestGate
from wfbatch.providers.local import LocalProvider
from wfbatch.settings import Settings

KNOWN_PROVIDERS = ("local", "wireflow")


class UnknownProvider(ValueError):
    """A prompt file or the configuration named a provider wfbatch does not have."""


def build_provider(name: str, settings: Settings, gate: RequestGate) -> Provider:
    if name == "local":
        return LocalProvider(settings.local, gate)
    if name == "wireflow":
        from wfbatch.providers.wireflow import WireflowProvider

        return WireflowProvider(settings.wireflow, gate)
    raise UnknownProvider(f"unknown provider {name!r}; known: {', '.join(KNOWN_PROVIDERS)}")


def starts_count_as_requests(name: str) -> bool:
    """Wireflow's docs count execution starts separately from the per-minute request limit."""
    return name != "wireflow"


def provider_label(name: str, settings: Settings) -> str:
    """How results of a provider are labelled for people, without building the provider."""
    if name == "local":
        return LocalProvider.label
    if name == "wireflow":
        wireflow = settings.wireflow
        host = wireflow.base_url.split("//", 1)[-1].split("/", 1)[0]
        return f"wireflow (workflow {wireflow.workflow_id or '?'} at {host})"
    return name
