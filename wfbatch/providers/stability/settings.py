"""Stability AI's section (`[stability]`, WFBATCH_STABILITY__*) and its label."""

from __future__ import annotations

from pydantic import Field, SecretStr

from wfbatch.providers.config import ProviderLimits, host_of, missing_key


class StabilitySettings(ProviderLimits):
    """Stability AI v2beta Stable Image (providers.md §4): synchronous, multipart in, image out.
    Costs are credits (1 credit = $0.01); the defaults are in providers/stability/prices.py.
    Stability documents 150 requests per 10 s: the defaults say exactly that (a 10 s window)."""

    api_key: SecretStr | None = None
    base_url: str = "https://api.stability.ai"
    model: str = Field(default="core", description="ultra, core, or an sd3 model such as sd3.5-large")
    requests_per_minute: int | None = Field(
        default=150, ge=1, description="requests per rate window (Stability: 150 per 10 s)"
    )
    rate_window_seconds: float = Field(default=10.0, gt=0, description="Stability's window is 10 s")
    lockout_seconds: float = Field(
        default=60.0,
        ge=0,
        description="after a 429 without Retry-After nothing is sent for this long (Stability's lockout)",
    )
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="credits per image by model name ('default' for any): overrides the built-in table",
    )
    request_deadline: float = Field(default=180.0, gt=0, description="Ultra can take a while")
    # Only a creative upscale is polled: Stability asks for its result at most every 10 s (§12.2).
    poll_initial: float = Field(default=10.0, gt=0, description="seconds between creative-upscale polls")
    poll_max: float = Field(default=30.0, gt=0)

    def configuration_problems(self) -> list[str]:
        return missing_key(self.api_key, "Stability", "stability")

    def label(self) -> str:
        return f"stability ({self.model} at {host_of(self.base_url.rstrip('/'))})"
