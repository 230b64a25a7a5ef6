"""fal.ai's section (`[fal]`, WFBATCH_FAL__*) and its label."""

from __future__ import annotations

from pydantic import Field, SecretStr

from wfbatch.providers.config import ProviderLimits, host_of, missing_key


class FalSettings(ProviderLimits):
    """fal.ai's queue API (providers.md §2). Costs are in US dollars: a default price table for the
    default endpoints (providers/fal/prices.py) unless `costs` names the endpoint (or `default`)."""

    api_key: SecretStr | None = None
    base_url: str = "https://queue.fal.run"
    model: str = Field(default="fal-ai/flux/schnell", description="endpoint id used when an entry names none")
    storage_url: str = Field(
        default="https://rest.fal.ai", description="fal's REST API, where input pictures are uploaded"
    )
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="US dollars per image by endpoint id ('default' for any): overrides the price table",
    )
    max_in_flight: int = Field(
        default=2, ge=1, le=1000, description="fal runs 2 requests at once on a new account (up to 40)"
    )

    def configuration_problems(self) -> list[str]:
        return missing_key(self.api_key, "fal", "fal")

    def label(self) -> str:
        return f"fal ({self.model} at {host_of(self.base_url.rstrip('/'))})"
