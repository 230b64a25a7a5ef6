"""The offline renderer's section (`[local]`, WFBATCH_LOCAL__*) and its label."""

from __future__ import annotations

from pydantic import Field

from wfbatch.providers.config import ProviderLimits

LABEL = "local (offline renderer: placeholder pictures, not a real model)"


class LocalSettings(ProviderLimits):
    """The built-in offline renderer: no network, no key, deterministic pictures."""

    costs: dict[str, float] = Field(default_factory=lambda: {"default": 0.0}, description="it is free")

    max_in_flight: int = Field(default=2, ge=1, le=1000)
    latency_min: float = Field(default=0.0, ge=0)
    latency_max: float = Field(default=0.0, ge=0)
    fail_rate: float = Field(default=0.0, ge=0, le=1, description="share of renders that fail transiently")
    permanent_fail_marker: str | None = Field(
        default=None, description="prompts containing this text fail permanently (rehearsing failures)"
    )

    def label(self) -> str:
        return LABEL
