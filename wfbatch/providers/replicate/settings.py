"""Replicate's section (`[replicate]`, WFBATCH_REPLICATE__*) and its label."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from wfbatch.providers.config import ProviderLimits, host_of, missing_key


class ReplicateSettings(ProviderLimits):
    """Replicate's predictions API (providers.md §3). Costs are in US dollars, as for fal."""

    api_key: SecretStr | None = None
    base_url: str = "https://api.replicate.com/v1"
    model: str = Field(
        default="black-forest-labs/flux-schnell",
        description="owner/name (official model) or owner/name:version, used when an entry names none",
    )
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="US dollars per image by model ('default' for any): overrides the price table",
    )
    wait: int | None = Field(
        default=None, ge=1, le=60, description="send `Prefer: wait=N` (seconds) on create; None = off"
    )
    size_mode: Literal["auto", "aspect_ratio", "width_height"] = Field(
        default="auto",
        description="how width x height is sent: flux models take aspect_ratio (+ megapixels), others "
        "width/height; auto picks by model name",
    )
    reconcile_pages: int = Field(
        default=5, ge=1, le=100, description="pages of GET /predictions read to find a lost create"
    )

    def configuration_problems(self) -> list[str]:
        return missing_key(self.api_key, "Replicate", "replicate")

    def label(self) -> str:
        return f"replicate ({self.model} at {host_of(self.base_url.rstrip('/'))})"
