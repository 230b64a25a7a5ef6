"""Every provider wfbatch has, in one table: its settings section, how to build it, how to check
its jobs and its traits. Nothing outside this module (and the provider's own package) names a
provider: it asks the entry.

Provider clients are imported only when a provider is built (a CLI that never talks to Wireflow
never imports its client), and parse-time checks only when a job is checked. What is imported here
is light: every provider's settings section, which `wfbatch.settings` composes."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from wfbatch.core.models import JobSpec
from wfbatch.providers.base import Provider, RequestGate
from wfbatch.providers.comfyui.settings import ComfyUISettings
from wfbatch.providers.config import ProviderLimits, ProviderSections
from wfbatch.providers.fal.settings import FalSettings
from wfbatch.providers.local.settings import LocalSettings
from wfbatch.providers.openai.settings import OpenAISettings
from wfbatch.providers.replicate.settings import ReplicateSettings
from wfbatch.providers.stability.settings import StabilitySettings
from wfbatch.providers.wireflow.settings import WireflowSettings

if TYPE_CHECKING:
    from wfbatch.providers.http.headers import RateLimitDialect

NO_DIALECT = "wfbatch.providers.http.headers:no_dialect"


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
    cost_unit: Literal["credits", "USD", "free"]
    """What `estimate()`, charges and budgets count in, as `plan` and `costs` print it."""
    dialect: str
    """`module:function` reading how its answers spell rate-limit headers (see
    providers/http/headers.py); loaded when asked, so the configuration never loads the HTTP layer."""
    remote: bool
    """Talks to a service over HTTP (and so has a simulator route set and a fidelity test)."""
    expected_latency: float | None = None
    """Seconds one image takes, for `wfbatch plan` before any history; None = the generic default."""
    batch_api: bool = False
    """Has a batch mode (`mode = "batch"`): jobs grouped into remote batches, `remote_batches()`."""
    takes_images: str | None = None
    """Which of its models take input pictures (`image`, `mask`, `images`, finals made from the
    draft), said for people; None = the provider takes none (a parse-time error)."""
    final_from_draft: Literal["upscale", "refine", "regenerate"] = "regenerate"
    """How a final is made from its approved draft when the spec leaves `from_draft` out: the best
    the provider offers (an upscale keeps the approved picture and costs less than a generation)."""

    @property
    def rate_limit_dialect(self) -> RateLimitDialect:
        dialect: RateLimitDialect = _load(self.dialect)
        return dialect


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    settings_class: type[ProviderLimits]
    """Its section in Settings is named after the provider (`[wireflow]`, WFBATCH_WIREFLOW__*)."""
    factory: str
    """`module:Class` of the provider, built as Class(settings_section, gate)."""
    traits: ProviderTraits
    validator: str | None = None
    """`module:function` checking a job at parse time (`(JobSpec) -> list[str]`, no httpx);
    None = any size and params are accepted."""


class UnknownProvider(ValueError):
    """A prompt file or the configuration named a provider wfbatch does not have."""


REGISTRY: dict[str, ProviderEntry] = {
    entry.name: entry
    for entry in (
        ProviderEntry(
            "local",
            LocalSettings,
            "wfbatch.providers.local.provider:LocalProvider",
            ProviderTraits(
                starts_count_as_requests=True,
                idempotent_submit=True,  # rendering twice costs nothing and gives the same picture
                synchronous=True,
                reports_balance=False,
                estimates_cost=False,
                remote_cancel=False,
                cost_unit="free",
                dialect=NO_DIALECT,
                remote=False,
                expected_latency=0.05,
            ),
        ),
        ProviderEntry(
            "wireflow",
            WireflowSettings,
            "wfbatch.providers.wireflow.client:WireflowProvider",
            ProviderTraits(
                starts_count_as_requests=False,
                idempotent_submit=True,  # Idempotency-Key (providers.md §1.11: contract assumed)
                synchronous=False,
                reports_balance=True,
                estimates_cost=True,
                remote_cancel=False,
                cost_unit="credits",
                dialect="wfbatch.providers.http.headers:x_ratelimit_dialect",
                remote=True,
            ),
        ),
        ProviderEntry(
            "openai",
            OpenAISettings,
            "wfbatch.providers.openai.client:OpenAIProvider",
            ProviderTraits(
                starts_count_as_requests=True,
                idempotent_submit=False,  # providers.md §10: no idempotency header
                synchronous=True,
                reports_balance=False,  # only with an admin key (organization costs): not here
                estimates_cost=True,  # from the price table
                remote_cancel=False,
                cost_unit="USD",
                dialect="wfbatch.providers.openai.headers:openai_dialect",
                remote=True,
                batch_api=True,  # providers.md §6: the Batch API, half price within 24 h
                takes_images="gpt-image models and dall-e-2, through /images/edits",
                final_from_draft="refine",  # no upscaler: the draft edited at the final's settings
            ),
            "wfbatch.providers.openai.validation:spec_problems",
        ),
        ProviderEntry(
            "fal",
            FalSettings,
            "wfbatch.providers.fal.client:FalProvider",
            ProviderTraits(
                starts_count_as_requests=True,
                idempotent_submit=False,  # providers.md §10: no key, no list call to reconcile with
                synchronous=False,
                reports_balance=False,  # the billing API needs a key with billing:usage:read
                estimates_cost=True,  # from the price table or `costs`
                remote_cancel=True,  # PUT cancel_url
                cost_unit="USD",
                dialect=NO_DIALECT,  # no rate-limit headers; a 429's Retry-After is still read
                remote=True,
                takes_images="image-to-image and upscale endpoints (image_url: a data URI or the fal CDN)",
            ),
        ),
        ProviderEntry(
            "stability",
            StabilitySettings,
            "wfbatch.providers.stability.client:StabilityProvider",
            ProviderTraits(
                starts_count_as_requests=True,  # 150 requests / 10 s counts every request
                idempotent_submit=False,  # providers.md §10: none
                synchronous=True,
                reports_balance=True,  # GET /v1/user/balance
                estimates_cost=True,  # from the credit table
                remote_cancel=False,
                cost_unit="credits",
                dialect=NO_DIALECT,  # no rate-limit headers documented
                remote=True,
                takes_images=(
                    "ultra and sd3 models: image-to-image; upscale fast, conservative, creative;"
                    " edit/inpaint with a mask"
                ),
                # upscale/fast: the approved picture itself, 4x, for 2 credits (providers.md §12.2)
                final_from_draft="upscale",
            ),
            "wfbatch.providers.stability.validation:spec_problems",
        ),
        ProviderEntry(
            "replicate",
            ReplicateSettings,
            "wfbatch.providers.replicate.client:ReplicateProvider",
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
                dialect="wfbatch.providers.replicate.headers:replicate_dialect",
                remote=True,
                takes_images="models with an image input (a data URI or a file from the files API)",
            ),
            "wfbatch.providers.replicate.validation:spec_problems",
        ),
        ProviderEntry(
            "comfyui",
            ComfyUISettings,
            "wfbatch.providers.comfyui.client:ComfyUIProvider",
            ProviderTraits(
                starts_count_as_requests=False,  # no limits at all
                idempotent_submit=True,  # prompt_id derived from the key; submit reconciles first
                synchronous=False,
                reports_balance=False,
                estimates_cost=False,  # free
                remote_cancel=True,  # POST /queue {delete}, then /interrupt if it is the one running
                cost_unit="free",  # the user's own GPUs
                dialect=NO_DIALECT,
                remote=True,
                # What the user's graph does with it (img2img, upscale) is the graph's business.
                takes_images="a workflow with a LoadImage node (the picture is uploaded first)",
            ),
            "wfbatch.providers.comfyui.validation:spec_problems",
        ),
    )
}

KNOWN_PROVIDERS: tuple[str, ...] = tuple(REGISTRY)
DEFAULT_PROVIDER = "local"
"""The provider of a fresh configuration: offline, free, works everywhere."""


def entry(name: str) -> ProviderEntry:
    found = REGISTRY.get(name)
    if found is None:
        raise UnknownProvider(f"unknown provider {name!r}; known: {', '.join(KNOWN_PROVIDERS)}")
    return found


def traits(name: str) -> ProviderTraits:
    return entry(name).traits


def batch_mode(spec_mode: str | None, provider: str, settings: ProviderSections) -> bool:
    """Whether a job goes through its provider's batch API: its own `mode`, else the section's."""
    if not traits(provider).batch_api:
        return False
    return (spec_mode or getattr(settings.provider_limits(provider), "mode", "direct")) == "batch"


def configuration_problems(name: str, settings: ProviderSections) -> list[str]:
    """What keeps a known provider from working as configured (any of its accounts), without
    building it."""
    return settings.provider_limits(name).account_problems()


SpecValidator = Callable[[JobSpec], list[str]]


def _load(reference: str) -> Any:
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def build_provider(
    name: str, settings: ProviderSections, gate: RequestGate, section: ProviderLimits | None = None
) -> Provider:
    """The provider's client; `section`: an account's view of it (`ProviderLimits.account_list`),
    else the first account's."""
    if section is None:
        section = settings.provider_limits(name).account_list()[0].section
    provider: Provider = _load(entry(name).factory)(section, gate)
    return provider


def image_providers() -> str:
    """'stability (ultra and ...); openai (...)': who takes input pictures, for error messages."""
    return "; ".join(
        f"{name} ({entry.traits.takes_images})"
        for name, entry in REGISTRY.items()
        if entry.traits.takes_images
    )


def check_spec(spec: JobSpec) -> list[str]:
    """What the provider's own rules find wrong with a job (nothing for an unknown provider)."""
    found = REGISTRY.get(spec.provider)
    if found is None:
        return []
    if (spec.inputs or spec.operation) and found.traits.takes_images is None:
        what = "an input image" if spec.inputs else f"a final made by {spec.operation} of its draft"
        return [f"{spec.provider} cannot take {what}; these can: {image_providers()}"]
    if found.validator is None:
        return []
    validate: SpecValidator = _load(found.validator)
    return validate(spec)


def provider_label(name: str, settings: ProviderSections) -> str:
    """How results of a provider are labelled for people, without building the provider. With
    accounts that all go to one place (each with its own `base_url`, as against the simulator),
    that place: the section's own URL, unused then, named a host nobody was talking to."""
    if name not in REGISTRY:
        return name
    section = settings.provider_limits(name)
    labels = {account.section.label() for account in section.account_list()}
    return labels.pop() if len(labels) == 1 else section.label()
