"""OpenAI's section (`[openai]`, WFBATCH_OPENAI__*) and its label."""

from __future__ import annotations

from pydantic import Field, SecretStr

from wfbatch.providers.config import BatchModeSettings, host_of, missing_key


class OpenAISettings(BatchModeSettings):
    """OpenAI Images (providers.md §5). Costs are in US dollars: a built-in price table by model,
    quality and size (providers/openai/prices.py) unless `costs` names the model (or `default`).
    `mode = "batch"` sends jobs through the Batch API (§6): half price, done within 24 h."""

    api_key: SecretStr | None = None
    base_url: str = "https://api.openai.com/v1"
    model: str = Field(default="gpt-image-1", description="used when an entry names no model")
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="US dollars per image by model name ('default' for any): overrides the price table",
    )
    max_in_flight: int = Field(default=2, ge=1, le=1000)
    request_deadline: float = Field(
        default=300.0, gt=0, description="a high-quality image can take a minute or two to generate"
    )
    request_timeout: float = Field(default=180.0, gt=0)
    batch_max_lines: int = Field(
        default=50_000, ge=1, le=50_000, description="requests per remote batch (OpenAI allows 50,000)"
    )
    batch_max_file_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1024,
        le=200 * 1024 * 1024,
        description="bytes per uploaded input file (OpenAI allows 200 MB)",
    )

    def configuration_problems(self) -> list[str]:
        return missing_key(self.api_key, "OpenAI", "openai")

    def label(self) -> str:
        return f"openai ({self.model} at {host_of(self.base_url.rstrip('/'))})"
