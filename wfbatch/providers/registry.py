"""Every provider wfbatch has, in one table: its settings, how to build it, how to label its results
and its traits. Nothing outside this module compares provider names: it asks the entry.

Provider modules are imported only when a provider is built (a CLI that never talks to Wireflow
never imports its client)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from wfbatch.providers.base import Provider, RequestGate
from wfbatch.providers.http.headers import (
    RateLimitDialect,
    no_dialect,
    openai_dialect,
    replicate_dialect,
    wireflow_dialect,
)
from wfbatch.providers.local import LABEL as LOCAL_LABEL
from wfbatch.settings import (
    ComfyUISettings,
    FalSettings,
    LocalSettings,
    OpenAISettings,
    ProviderLimits,
    ReplicateSettings,
    Settings,
    StabilitySettings,
    WireflowSettings,
)


@dataclass(frozen=True)
class ProviderTraits:
    starts_count_as_requests: bool
    """A start also counts against requests_per_minute (Wireflow's docs: starts have their own)."""
    idempotent_submit: bool
    """A resent submit (same idempotency key) cannot start a second paid job."""
    synchronous: bool
    """The submit's answer carries the image; there is nothing to poll."""
    reports_balance: bool
    """`balance()` can say how much is left."""
    estimates_cost: bool
    """`estimate()` asks the provider (or its price table) rather than answering None."""
    remote_cancel: bool
    """`cancel()` can stop a submitted job."""
    cost_unit: Literal["credits", "USD"]
    rate_limit_dialect: RateLimitDialect
    """How its answers spell rate-limit headers (see providers/http/headers.py)."""
    remote: bool
    """Talks to a service over HTTP (and so has a simulator route set and a fidelity test)."""
    expected_latency: float | None = None
    """Seconds one image takes, for `wfbatch plan` before any history; None = the generic default."""
    batch_api: bool = False
    """Has a batch mode (`mode = "batch"`): jobs grouped into remote batches, `remote_batches()`."""


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    settings_class: type[ProviderLimits]
    """Its section in Settings is named after the provider (`[wireflow]`, WFBATCH_WIREFLOW__*)."""
    factory: str
    """`module:Class` of the provider, built as Class(settings_section, gate)."""
    label: Callable[[Settings], str]
    traits: ProviderTraits


class UnknownProvider(ValueError):
    """A prompt file or the configuration named a provider wfbatch does not have."""


def _host(base_url: str) -> str:
    return urlsplit(base_url).netloc or base_url


def _wireflow_label(settings: Settings) -> str:
    wireflow = settings.wireflow
    return f"wireflow (workflow {wireflow.workflow_id or '?'} at {_host(wireflow.base_url)})"


def _openai_label(settings: Settings) -> str:
    return f"openai ({settings.openai.model} at {_host(settings.openai.base_url)})"


def _fal_label(settings: Settings) -> str:
    return f"fal ({settings.fal.model} at {_host(settings.fal.base_url)})"


def _replicate_label(settings: Settings) -> str:
    return f"replicate ({settings.replicate.model} at {_host(settings.replicate.base_url)})"
def _stability_label(settings: Settings) -> str:
    return f"stability ({settings.stability.model} at {_host(settings.stability.base_url)})"


def _comfyui_label(settings: Settings) -> str:
    comfy = settings.comfyui
    graph = comfy.workflow.name if comfy.workflow is not None else f"built-in graph, {comfy.checkpoint}"
    hosts = ", ".join(_host(url) for url in comfy.servers())
    return f"comfyui ({graph} at {hosts})"


REGISTRY: dict[str, ProviderEntry] = {
    entry.name: entry
    for entry in (
        ProviderEntry(
            "local",
            LocalSettings,
            "wfbatch.providers.local:LocalProvider",
            lambda settings: LOCAL_LABEL,
            ProviderTraits(
                starts_count_as_requests=True,
                idempotent_submit=True,  # rendering twice costs nothing and gives the same picture
                synchronous=True,
                reports_balance=False,
                estimates_cost=False,
                remote_cancel=False,
                cost_unit="credits",
                rate_limit_dialect=no_dialect,
                remote=False,
                expected_latency=0.05,
            ),
        ),
        ProviderEntry(
            "wireflow",
            WireflowSettings,
            "wfbatch.providers.wireflow:WireflowProvider",
            _wireflow_label,
            ProviderTraits(
                starts_count_as_requests=False,
                idempotent_submit=True,  # Idempotency-Key (providers.md §1.11: contract assumed)
                synchronous=False,
                reports_balance=True,
                estimates_cost=True,
                remote_cancel=False,
                cost_unit="credits",
                rate_limit_dialect=wireflow_dialect,
                remote=True,
            ),
        ),
        ProviderEntry(
            "openai",
            OpenAISettings,
            "wfbatch.providers.openai:OpenAIProvider",
            _openai_label,
            ProviderTraits(
                starts_count_as_requests=True,
                idempotent_submit=False,  # providers.md §10: no idempotency header
                synchronous=True,
                reports_balance=False,  # only with an admin key (organization costs): not here
                estimates_cost=True,  # from the price table
                remote_cancel=False,
                cost_unit="USD",
                rate_limit_dialect=openai_dialect,
                remote=True,
                batch_api=True,  # providers.md §6: the Batch API, half price within 24 h
            ),
        ),
        ProviderEntry(
            "fal",
            FalSettings,
            "wfbatch.providers.fal:FalProvider",
            _fal_label,
            ProviderTraits(
                starts_count_as_requests=True,
                idempotent_submit=False,  # providers.md §10: no key, no list call to reconcile with
                synchronous=False,
                reports_balance=False,  # the billing API needs a key with billing:usage:read
                estimates_cost=True,  # from the price table or `costs`
                remote_cancel=True,  # PUT cancel_url
                cost_unit="USD",
                rate_limit_dialect=no_dialect,  # no rate-limit headers; a 429's Retry-After is still read
                remote=True,
            ),
        ),
        ProviderEntry(
            "stability",
            StabilitySettings,
            "wfbatch.providers.stability:StabilityProvider",
            _stability_label,
            ProviderTraits(
                starts_count_as_requests=True,  # 150 requests / 10 s counts every request
                idempotent_submit=False,  # providers.md §10: none
                synchronous=True,
                reports_balance=True,  # GET /v1/user/balance
                estimates_cost=True,  # from the credit table
                remote_cancel=False,
                cost_unit="credits",
                rate_limit_dialect=no_dialect,  # no rate-limit headers documented
                remote=True,
            ),
        ),
        ProviderEntry(
            "replicate",
            ReplicateSettings,
            "wfbatch.providers.replicate:ReplicateProvider",
            _replicate_label,
            ProviderTraits(
                starts_count_as_requests=True,
                # No key (providers.md §10); a lost create is reconciled from the list before any
                # re-send, and a re-send that still happens is recorded as a possible duplicate.
                idempotent_submit=False,
                synchronous=False,
                reports_balance=False,
                estimates_cost=True,  # from the price table or `costs`
                remote_cancel=True,  # POST urls.cancel
                cost_unit="USD",
                rate_limit_dialect=replicate_dialect,
                remote=True,
            ),
        ),
        ProviderEntry(
            "comfyui",
            ComfyUISettings,
            "wfbatch.providers.comfyui:ComfyUIProvider",
            _comfyui_label,
            ProviderTraits(
                starts_count_as_requests=False,  # no limits at all
                idempotent_submit=True,  # prompt_id derived from the key; submit reconciles first
                synchronous=False,
                reports_balance=False,
                estimates_cost=False,  # free
                remote_cancel=True,  # POST /queue {delete}, then /interrupt if it is the one running
                cost_unit="credits",
                rate_limit_dialect=no_dialect,
                remote=True,
            ),
        ),
    )
}

KNOWN_PROVIDERS: tuple[str, ...] = tuple(REGISTRY)


def entry(name: str) -> ProviderEntry:
    found = REGISTRY.get(name)
    if found is None:
        raise UnknownProvider(f"unknown provider {name!r}; known: {', '.join(KNOWN_PROVIDERS)}")
    return found


def traits(name: str) -> ProviderTraits:
    return entry(name).traits


def batch_mode(spec_mode: str | None, provider: str, settings: Settings) -> bool:
    """Whether a job goes through its provider's batch API: its own `mode`, else the section's."""
    if not traits(provider).batch_api:
        return False
    return (spec_mode or getattr(settings.provider_limits(provider), "mode", "direct")) == "batch"


def configuration_problems(name: str, settings: Settings) -> list[str]:
    """What keeps a known provider from working as configured, without building it."""
    return settings.provider_limits(name).configuration_problems()


def build_provider(name: str, settings: Settings, gate: RequestGate) -> Provider:
    found = entry(name)
    module_name, class_name = found.factory.split(":")
    provider_class = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = provider_class(settings.provider_limits(name), gate)
    return provider


def provider_label(name: str, settings: Settings) -> str:
    """How results of a provider are labelled for people, without building the provider."""
    found = REGISTRY.get(name)
    return found.label(settings) if found is not None else name
