"""ComfyUI's section (`[comfyui]`, WFBATCH_COMFYUI__*) and its label."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from wfbatch.providers.config import ProviderLimits, host_of


class ComfyUISettings(ProviderLimits):
    """A ComfyUI server (or several) of the user's own (providers.md §7): no key, no limits, no cost."""

    base_url: str | list[str] = Field(
        default="http://127.0.0.1:8188", description="one ComfyUI server, or a list of them (one per GPU)"
    )
    workflow: Path | None = Field(
        default=None, description='an API-format workflow JSON ("Save (API Format)"); none = built-in'
    )
    checkpoint: str = Field(
        default="sd_xl_base_1.0.safetensors", description="the built-in graph's checkpoint"
    )
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description='where values go when the graph is ambiguous: {"prompt": "6.text", "seed": "3.seed"}',
    )
    runs_at_once: int = Field(
        default=1, ge=1, le=100, description="prompts one ComfyUI server executes at the same time"
    )
    max_in_flight: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="per server: runs_at_once + 1 keeps one queued (the GPU never idles)",
    )
    costs: dict[str, float] = Field(default_factory=lambda: {"default": 0.0}, description="it is free")
    poll_initial: float = Field(default=0.5, gt=0)
    poll_max: float = Field(default=3.0, gt=0)
    max_run_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _one_queued_per_server(self) -> ComfyUISettings:
        if "max_in_flight" not in self.model_fields_set:
            self.max_in_flight = (self.runs_at_once + 1) * len(self.servers())
        return self

    def servers(self) -> list[str]:
        """The base URLs, in order, without trailing slashes."""
        urls = [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)
        return [url.rstrip("/") for url in urls if url.strip()] or ["http://127.0.0.1:8188"]

    def label(self) -> str:
        graph = self.workflow.name if self.workflow is not None else f"built-in graph, {self.checkpoint}"
        return f"comfyui ({graph} at {', '.join(host_of(url) for url in self.servers())})"
